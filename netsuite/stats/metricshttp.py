# -*- test-case-name: tests.stats.test_metrics -*-
"""
The HTTP side of the Prometheus metrics (L{netsuite.stats.metrics}):
C{GET /metrics} rendered by a runner (at most C{max_scrapes} at once), on a
site holding at most C{max_connections}, on a port that says when it
listens.
"""

from __future__ import annotations

from typing import Any, List

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ..runner import IRunner

__all__ = ["MetricsResource", "metrics_site", "MetricsServer"]

_log = Logger()


class MetricsResource(Resource):
    """
    C{/metrics}: a snapshot taken at once (C{snapshot()}, on the reactor),
    rendered to bytes by C{runner} (C{render(snapshot)}, by default
    L{netsuite.stats.metrics.render}); at most C{max_scrapes} at a time
    (503 beyond).
    """

    isLeaf = True

    def __init__(self, snapshot: Any, runner: IRunner, max_scrapes: int = 2,
                 render: Any = None) -> None:
        Resource.__init__(self)
        self.snapshot = snapshot
        if render is None:
            from .metrics import render
        self.render_text = render
        self.runner = runner
        self.max_scrapes = max_scrapes
        self.scraping = 0
        self.scrapes = self.refused = 0

    def render_GET(self, request: Any) -> Any:
        if request.postpath not in ([b"metrics"], [b"metrics", b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found: the metrics are at /metrics\n"
        if self.scraping >= self.max_scrapes:
            self.refused += 1
            request.setResponseCode(503)
            request.setHeader(b"retry-after", b"1")
            return b"busy: too many scrapes at once\n"
        self.scraping += 1
        self.scrapes += 1
        gone: List[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(body: bytes) -> None:
            if not gone:
                request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            _log.failure("metrics: a scrape failed", failure)
            if not gone:
                request.setResponseCode(500)
                request.finish()

        def settled(_: Any) -> None:
            self.scraping -= 1
        d = self.runner.run(self.render_text, self.snapshot())
        d.addCallbacks(done, failed).addBoth(settled)
        return NOT_DONE_YET


class _Channel(HTTPChannel):
    def connectionLost(self, reason: Any) -> None:
        self.site.open -= 1
        HTTPChannel.connectionLost(self, reason)


class _BoundedSite(Site):
    """A site holding at most C{max_connections} connections (more are closed)."""

    protocol = _Channel

    def __init__(self, resource: Resource, max_connections: int, **kwargs: Any) -> None:
        Site.__init__(self, resource, **kwargs)
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0

    def buildProtocol(self, addr: Any) -> Any:
        if self.open >= self.max_connections:
            self.refused += 1
            return None
        channel = Site.buildProtocol(self, addr)
        channel.site = self
        self.open += 1
        return channel


def metrics_site(resource: Resource, max_connections: int, reactor: Any = None) -> Site:
    """The HTTP site of C{resource}: bounded connections, a 10 s idle time-out."""
    kwargs = {"reactor": reactor} if reactor is not None else {}
    site = _BoundedSite(resource, max_connections, timeout=10, **kwargs)
    site.displayTracebacks = False
    return site


class MetricsServer(Service):
    """
    The HTTP port, bound before twistd drops privileges; says "metrics
    ready" once it listens. A port it cannot bind is logged, and the rest
    of stats (the accounting log) goes on.
    """

    def __init__(self, endpoint: Any, site: Site, where: str) -> None:
        self.endpoint, self.site, self.where = endpoint, site, where
        self._listening: Any = None
        self.port: Any = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._listening = self.endpoint.listen(self.site)
        self._listening.addCallbacks(self._listened, self._failed)

    def startService(self) -> None:
        Service.startService(self)
        if self._listening is None:
            self.privilegedStartService()

    def _listened(self, port: Any) -> None:
        self.port = port
        _log.info("metrics ready: http://{where}/metrics", where=self.where,
                  netsuite_event="stats-metrics-ready")

    def _failed(self, failure: Any) -> None:
        _log.failure("metrics: cannot listen on {where} ([stats.metrics] address, port)",
                     failure, where=self.where)

    def stopService(self) -> Any:
        Service.stopService(self)
        listening, self._listening = self._listening, None
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        if listening is not None:
            listening.cancel()
        return None
