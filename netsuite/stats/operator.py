# -*- test-case-name: tests.stats.test_operator -*-
"""
The operator's traffic pages, over HTTPS on a port of the stats service's
own (C{[stats.operator]}), behind the portal's operator credentials
(C{[portal.operator]}: one place for them, checked by the portal's
L{OperatorAuth}, scrypt in a thread and rate limits included):

- C{/}: the uplink's graphs (hour, day, week) and the top talkers today
  (from the service's L{Traffic}), each linking to its own page;
- C{/client/MAC}: a client's graphs (MAC with dashes or colons);
- C{/graph/NAME/PERIOD.png}: a graph (NAME: C{uplink} or a MAC; PERIOD:
  C{hour}, C{day}, C{week}), drawn by rrdtool in a thread.

A graph drawn is served again for C{refresh} seconds (L{GraphCache}, a
few dozen at most); at most C{max_renders} are being drawn or waiting to
be, the rest get a 503. Anything else is a 404, never a file.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.http import HTTPChannel
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from ..config.fields import OPTIONAL_PATH, PORT, POSITIVE_INT, POSITIVE_SECONDS, ipv4_text
from ..config.schema import ConfigError, Field
from ..portal.operator import REALM, TooManyChecks
from ..portal.pages import data_size, esc
from . import graphs

__all__ = ["OPERATOR_SECTION", "GraphCache", "Busy", "OperatorPages", "BoundedSite", "rate",
           "tls_settings", "check", "add_operator"]

_log = Logger()

OPERATOR_SECTION = {
    "enabled": Field(bool, False, "serve the operator's traffic graphs over HTTPS"),
    "port": Field(PORT, 8444, "the HTTPS port of the graphs"),
    "interface_address": Field(str, "", "listen on this address (\"\": all)", ipv4_text),
    "host": Field(str, "", "the host name (or address) operators use, named by the "
                  "certificate (\"\": interface_address)"),
    "tls_certificate": Field(OPTIONAL_PATH, "", "PEM certificate of host (then any "
                             "intermediates)"),
    "tls_key": Field(OPTIONAL_PATH, "", "PEM private key of tls_certificate"),
    "refresh": Field(POSITIVE_SECONDS, 10.0, "seconds a graph drawn is served again before "
                     "it is drawn anew"),
    "max_renders": Field(POSITIVE_INT, 8, "graphs being drawn or waiting to be, in all; "
                         "more get a 503"),
    "top": Field(POSITIVE_INT, 20, "clients in the table of top talkers"),
}
"""C{[stats.operator]}: the operator's graphs."""

HTML = b"text/html; charset=utf-8"
MAX_CACHED = 64
"""Graphs kept (about 10-20 KB each)."""

_STYLE = ("body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#1b1b1b}"
          "table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:right}"
          "td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}"
          "tr:nth-child(even){background:#f2f2f2}img{display:block;margin:.5rem 0}")
_CSP = (b"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
        b"form-action 'none'; frame-ancestors 'none'")


class Busy(Exception):
    """Too many graphs are being drawn: try again shortly."""


def _draw(path: str, args: List[str]) -> Optional[bytes]:
    """The PNG of a graph of C{path}, or None when there is no such file (in a thread)."""
    if not os.path.exists(path):
        return None
    image: bytes = graphs.render(args)["image"]
    return image


class GraphCache:
    """
    Graphs drawn through C{runner}: each is drawn at most once per
    C{refresh} seconds (asking again meanwhile gets the same PNG, asking
    while it is drawn waits for that drawing); at most C{max_renders}
    drawings run or wait at once (past that L{get} fails with L{Busy});
    at most C{max_entries} PNGs are kept, the least recently asked for
    going first.
    """

    def __init__(self, runner: Any, clock: Any, refresh: float, max_renders: int,
                 max_entries: int = MAX_CACHED,
                 draw: Callable[[str, List[str]], Optional[bytes]] = _draw) -> None:
        self.runner = runner
        self.clock = clock
        self.refresh = refresh
        self.max_renders = max_renders
        self.max_entries = max_entries
        self.draw = draw
        self.renders = 0
        self._kept: "OrderedDict[Any, Tuple[float, Optional[bytes]]]" = OrderedDict()
        self._drawing: Dict[Any, List[Deferred]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Any, path: str, args: List[str]) -> "Deferred[Optional[bytes]]":
        """The PNG of the graph C{key} (drawn from C{path} with C{args}), or None: no file."""
        kept = self._kept.get(key)
        if kept is not None and self.clock.seconds() - kept[0] < self.refresh:
            self._kept.move_to_end(key)
            return succeed(kept[1])
        d: "Deferred[Optional[bytes]]" = Deferred()
        waiting = self._drawing.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        if len(self._drawing) >= self.max_renders:
            return fail(Busy())
        self._drawing[key] = [d]
        self.renders += 1
        self.runner.run(self.draw, path, args).addBoth(self._drawn, key)
        return d

    def _drawn(self, result: Any, key: Any) -> None:
        waiting = self._drawing.pop(key)
        if not isinstance(result, (bytes, type(None))):  # a Failure: keep nothing
            for d in waiting:
                d.errback(result)
            return None
        self._kept[key] = (self.clock.seconds(), result)
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
        for d in waiting:
            d.callback(result)
        return None


def rate(bytes_per_second: float) -> str:
    """A rate in bits per second, as people read it: 0 b/s, 12.5 kb/s, 3.2 Mb/s."""
    bits = max(0.0, bytes_per_second) * 8
    for unit, size in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bits >= size:
            return f"{bits / size:.3g} {unit}"
    return f"{int(bits)} b/s"


def _page(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n").encode("utf-8")


def _graphs(name: str, title: str) -> str:
    return "\n".join(
        f'<h2>{esc(period.capitalize())}</h2><img src="/graph/{esc(name)}/{period}.png" '
        f'alt="{esc(title)}, last {period}">' for period in graphs.PERIODS)


class OperatorPages(Resource):
    """
    The HTTPS site (a leaf: it dispatches on the path itself).

    @param traffic: the service's L{netsuite.stats.model.Traffic}.
    @param directory: C{[stats] directory}, where the files are.
    @param auth: the portal's L{netsuite.portal.operator.OperatorAuth}
        (None: no credentials configured, every page a 404).
    @param cache: draws and keeps the graphs.
    @param top: rows in the table of top talkers.
    """

    isLeaf = True

    def __init__(self, traffic: Any, directory: str, auth: Any, cache: GraphCache,
                 top: int = 20) -> None:
        Resource.__init__(self)
        self.traffic = traffic
        self.directory = directory
        self.auth = auth
        self.cache = cache
        self.top = top

    def render(self, request: Any) -> Any:
        request.setHeader(b"Content-Security-Policy", _CSP)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Cache-Control", b"no-store")
        if self.auth is None:
            return self._text(request, 404, "Not found: no operator credentials are set "
                              "([portal.operator]).")
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            return self._text(request, 405, "Only GET.")
        ip = ipaddress.ip_address(request.getClientAddress().host)
        if not self.auth.serves(ip):
            return self._text(request, 403, "Not served to this network.")
        gone: List[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(body: bytes) -> None:
            if not gone:
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            if failure.check(TooManyChecks):
                wait = failure.value.retry_after
                request.setHeader(b"Retry-After", str(wait).encode("ascii"))
                body = self._text(request, 429, f"Too many operator logins; wait {wait} s.")
            elif failure.check(Busy):
                request.setHeader(b"Retry-After", b"2")
                body = self._text(request, 503, "Busy drawing graphs; try again.")
            else:
                _log.failure("stats operator page failed", failure)
                body = self._text(request, 500, "Something went wrong.")
            answer(body)

        def checked(ok: bool) -> Any:
            if not ok:
                request.setHeader(b"WWW-Authenticate", REALM)
                return self._text(request, 401, "Operator credentials needed.")
            return self._route(request)
        self.auth.check(request, ip).addCallback(checked).addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _text(self, request: Any, code: int, text: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return (text + "\n").encode("utf-8")

    def _html(self, request: Any, title: str, body: str) -> bytes:
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", HTML)
        return _page(title, body)

    def _route(self, request: Any) -> Any:
        path = request.uri.split(b"?", 1)[0].decode("latin-1")
        parts = path.split("/")[1:]
        if parts == [""]:
            return self._index(request)
        if len(parts) == 2 and parts[0] == "client":
            return self._client(request, parts[1])
        if len(parts) == 3 and parts[0] == "graph" and parts[2].endswith(".png"):
            return self._graph(request, parts[1], parts[2][:-len(".png")])
        return self._text(request, 404, "Not found.")

    def _index(self, request: Any) -> bytes:
        rows = []
        for usage in self.traffic.top(self.top, "today"):
            name = usage.mac.replace(":", "-")
            rows.append(
                f'<tr><td><a href="/client/{esc(name)}">{esc(usage.ip)}</a></td>'
                f"<td>{esc(usage.mac)}</td><td>{data_size(usage.today.bytes_down)}</td>"
                f"<td>{data_size(usage.today.bytes_up)}</td>"
                f"<td>{rate(usage.rate_down)}</td><td>{rate(usage.rate_up)}</td></tr>")
        table = ("<h2>Top talkers today</h2>\n<table><tr><th>IP</th><th>MAC</th>"
                 "<th>Down today</th><th>Up today</th><th>Down now</th><th>Up now</th></tr>\n"
                 + "\n".join(rows) + "\n</table>") if rows else (
                 "<h2>Top talkers today</h2><p>No client is online.</p>")
        return self._html(request, "Traffic", "<h2>Uplink</h2>\n"
                          + _graphs("uplink", "Uplink") + "\n" + table)

    def _client(self, request: Any, name: str) -> bytes:
        path = graphs.graph_file(self.directory, name)
        if path is None or name == "uplink":
            return self._text(request, 404, "Not found.")
        mac = name.lower().replace("-", ":")
        usage = self.traffic.by_mac(mac)
        about = "<p>Not online now.</p>"
        if usage is not None:
            about = (f"<p>{esc(usage.ip)}: today {data_size(usage.today.bytes_down)} down, "
                     f"{data_size(usage.today.bytes_up)} up; now {rate(usage.rate_down)} "
                     f"down, {rate(usage.rate_up)} up.</p>")
        return self._html(request, f"Client {mac}", '<p><a href="/">All traffic</a></p>'
                          + about + _graphs(mac.replace(":", "-"), mac))

    def _graph(self, request: Any, name: str, period: str) -> Any:
        path = graphs.graph_file(self.directory, name)
        if path is None or period not in graphs.PERIODS:
            return self._text(request, 404, "Not found.")
        if name == "uplink":
            key, title = ("uplink", period), "Uplink"
        else:
            mac = name.lower().replace("-", ":")
            usage = self.traffic.by_mac(mac)
            key, title = (mac, period), mac if usage is None else f"{usage.ip} ({mac})"
        args = graphs.graph_args(path, title, period)

        def drawn(image: Optional[bytes]) -> bytes:
            if image is None:
                return self._text(request, 404, "No traffic recorded for this one.")
            request.setResponseCode(200)
            request.setHeader(b"Content-Type", b"image/png")
            request.setHeader(b"Cache-Control", b"private, max-age=%d" % self.cache.refresh)
            return image
        return maybeDeferred(self.cache.get, key, path, args).addCallback(drawn)


def tls_settings(section: Any, source: str = "config") -> Any:
    """
    The HTTPS settings of C{[stats.operator]} (a
    L{netsuite.portal.tls.ApiSettings}); L{ConfigError} when incomplete.
    """
    from ..portal.tls import ApiSettings
    if not (section.tls_certificate and section.tls_key):
        raise ConfigError(f"{source}: [stats.operator] is served over HTTPS only: set "
                          f"tls_certificate and tls_key")
    host = section.host or section.interface_address
    if not host:
        raise ConfigError(f"{source}: [stats.operator] needs host (the name in the "
                          f"certificate) when interface_address is \"\"")
    return ApiSettings(host, section.port, section.tls_certificate, section.tls_key,
                       section.interface_address)


def check(config: Any) -> Any:
    """
    The certificate and key of an enabled C{[stats.operator]}, and its
    credentials (C{[portal.operator]}); returns the TLS options.
    """
    from ..portal.tls import load_tls
    section = config.stats.operator
    operator = config.portal.operator
    if not (operator.username and operator.password_hash):
        raise ConfigError(f"{config.source}: [stats.operator] needs the operator's "
                          f"credentials: set [portal.operator] username and password_hash")
    return load_tls(tls_settings(section, config.source), config.source,
                    "[stats.operator]", "host")


MAX_CONNECTIONS = 32
MAX_BODY = 4096
IDLE_TIMEOUT = 60
"""What one site holds: open connections in all (more are closed at once),
bytes of a request body (its pages take none: past that the connection is
cut), seconds a connection may stay idle."""


class _Request(Request):
    """A request whose body is cut past L{MAX_BODY} bytes."""

    received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > MAX_BODY:
            self.channel.transport.abortConnection()
            return
        Request.handleContentChunk(self, data)


class _Channel(HTTPChannel):
    """Counts itself in its site's open connections."""

    def connectionMade(self) -> None:
        self.site.open += 1
        HTTPChannel.connectionMade(self)

    def connectionLost(self, reason: Any) -> None:
        self.site.open -= 1
        HTTPChannel.connectionLost(self, reason)


class BoundedSite(Site):
    """
    The operator's site: at most C{max_connections} open connections (more
    are closed at once), request bodies of at most L{MAX_BODY} bytes, idle
    connections closed after L{IDLE_TIMEOUT} seconds; HTTP/1.1.
    """

    protocol = _Channel
    requestFactory = _Request
    displayTracebacks = False

    def __init__(self, resource: Any, max_connections: int = MAX_CONNECTIONS,
                 reactor: Any = None) -> None:
        Site.__init__(self, resource, timeout=IDLE_TIMEOUT, reactor=reactor)
        self.max_connections = max_connections
        self.open = 0

    def buildProtocol(self, addr: Any) -> Any:
        if self.open >= self.max_connections:
            return None
        return Site.buildProtocol(self, addr)


@implementer(IStreamServerEndpoint)
class _Announced:
    """An endpoint that logs the site's URL once it listens."""

    def __init__(self, endpoint: Any, url: str) -> None:
        self.endpoint = endpoint
        self.url = url

    def listen(self, factory: Any) -> "Deferred[Any]":
        def listening(port: Any) -> Any:
            _log.info("stats operator page on {url}", url=self.url,
                      netsuite_event="stats-operator-ready")
            return port
        d: "Deferred[Any]" = self.endpoint.listen(factory)
        return d.addCallback(listening)


def add_operator(service: Any, config: Any, reactor: Any) -> None:
    """Add the HTTPS site of C{[stats.operator]} to C{service} (a StatsService)."""
    from twisted.application.internet import StreamServerEndpointService

    from ..portal.auth import operator_auth
    from ..portal.tls import api_endpoint
    from ..runner import ThreadRunner
    section = config.stats.operator
    tls = check(config)
    settings = tls_settings(section, config.source)
    checks = ThreadRunner(reactor, name="netsuite-stats-operator-checks", finish=False)
    # One drawing at a time: librrd's graph is not documented as thread-safe.
    draws = ThreadRunner(reactor, name="netsuite-stats-graphs", finish=False)
    cache = GraphCache(draws, reactor, section.refresh, section.max_renders)
    pages = OperatorPages(service.traffic, config.stats.directory,
                          operator_auth(config.portal.operator, checks, reactor), cache,
                          section.top)
    site = BoundedSite(pages, reactor=reactor)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    server = StreamServerEndpointService(_Announced(api_endpoint(reactor, settings, tls),
                                                    f"https://{host}:{settings.port}/"), site)
    server.setName("stats-operator")
    server.setServiceParent(service)
