# -*- test-case-name: tests.portal.test_service -*-
"""
The portal as a service: serve the pages on the portal port, re-authorize
the stored sessions at start, sample the firewall's counters and end the
sessions that timed out.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import Site

from ..registry.values import MAC
from .controller import Portal

__all__ = ["PortalService", "neighbour_mac"]

_log = Logger()


def neighbour_mac(ip: Any, path: str = "/proc/net/arp") -> Optional[MAC]:
    """
    C{ip}'s MAC from the kernel's neighbour table (this namespace's), or
    None. Blocking: call it in a thread.
    """
    wanted = str(ipaddress.IPv4Address(str(ip)))
    with open(path, encoding="ascii") as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) >= 4 and fields[0] == wanted and fields[2] != "0x0":
                mac = MAC(fields[3])
                if str(mac) != "00:00:00:00:00:00":
                    return mac
    return None


class PortalService(Service):
    """
    @param portal: the controller.
    @param site: the web site.
    @param reactor: listens and schedules.
    @param endpoint: server endpoint string of the portal port.
    @param sample_interval: seconds between samples and expiry (0: none).
    """

    def __init__(self, portal: Portal, site: Site, reactor: Any, endpoint: str,
                 sample_interval: float = 10.0) -> None:
        self.portal = portal
        self.site = site
        self.reactor = reactor
        self.endpoint = endpoint
        self.sample_interval = sample_interval
        self.port: Any = None
        self._sampling: Optional[LoopingCall] = None

    def startService(self) -> None:
        Service.startService(self)
        self.portal.restore()

        def listening(port: Any) -> None:
            self.port = port
            _log.info("portal ready on {endpoint} as http://{host}/",
                      endpoint=self.endpoint, host=self.portal.host,
                      netsuite_event="portal-ready")

        def failed(failure: Any) -> None:
            _log.failure("portal cannot listen on {endpoint}; stopping", failure,
                         endpoint=self.endpoint)
            if getattr(self.reactor, "running", False):
                self.reactor.stop()
        serverFromString(self.reactor, self.endpoint).listen(self.site).addCallbacks(
            listening, failed)
        if self.sample_interval > 0:
            self._sampling = LoopingCall(self.sample)
            self._sampling.clock = self.reactor
            self._sampling.start(self.sample_interval, now=False)

    def sample(self) -> Any:
        """
        One sample and expiry; failures are logged, never raised.
        """
        return self.portal.sample().addErrback(
            lambda f: _log.failure("portal sample failed", f))

    def stopService(self) -> Any:
        Service.stopService(self)
        if self._sampling is not None and self._sampling.running:
            self._sampling.stop()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None
