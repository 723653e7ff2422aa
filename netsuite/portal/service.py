# -*- test-case-name: tests.portal.test_service -*-
"""
The portal as a service: serve the pages on the portal port (and the
Captive Portal API over HTTPS on the API port), re-authorize the stored
sessions at start, announce the API URL through DHCP, sample the
firewall's counters and end the sessions that timed out.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from typing import Any, Dict, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

from ..registry.values import MAC
from ..services import Readiness
from .controller import Portal

__all__ = ["PortalService", "NeighbourTable", "neighbour_mac", "read_neighbours", "listen_ipv6"]

_log = Logger()


def read_neighbours(path: str = "/proc/net/arp") -> Dict[str, MAC]:
    """
    The kernel's neighbour table (this namespace's): complete entries, by IP.
    """
    found = {}
    with open(path, encoding="ascii") as table:
        next(table, None)
        for line in table:
            fields = line.split()
            if len(fields) >= 4 and fields[2] != "0x0" and fields[3] != "00:00:00:00:00:00":
                found[fields[0]] = MAC(fields[3])
    return found


class NeighbourTable:
    """
    MAC lookups from the neighbour table, read at most every C{ttl} seconds
    while the addresses asked for are in it (reading 10,000 entries takes
    about 5 ms), and again for an address it does not know. A miss is
    answered only from a read begun after it was asked: a client that has
    just appeared is in no earlier read (at the soak's start, the second
    client's first login came within 50 ms of the first's lookup and got a
    503). Misses read the table at most every C{retry} seconds: one that
    comes sooner waits in its thread for the rest of C{retry} (50 ms at
    most). Blocking: call it in a thread; it is safe from several.
    """

    def __init__(self, path: str = "/proc/net/arp", ttl: float = 1.0, retry: float = 0.05,
                 now: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self.path = path
        self.ttl = ttl
        self.retry = retry
        self._now = now
        self._sleep = sleep
        self._lock = threading.Lock()
        self._table: Dict[str, MAC] = {}
        self._read = float("-inf")  # when the last read began

    def _reread(self) -> None:
        self._read = self._now()
        self._table = read_neighbours(self.path)

    def __call__(self, ip: Any) -> Optional[MAC]:
        wanted = str(ipaddress.IPv4Address(str(ip)))
        asked = self._now()
        with self._lock:
            fresh = self._read > asked  # (begun after it was asked, in another thread)
            if self._now() - self._read > self.ttl:
                self._reread()
                fresh = True
            if wanted in self._table or fresh:
                return self._table.get(wanted)
            wait = self._read + self.retry - self._now()
        if wait > 0:
            self._sleep(wait)
        with self._lock:
            if self._read <= asked:
                self._reread()
            return self._table.get(wanted)


neighbour_mac = NeighbourTable()
"""C{ip}'s MAC from this namespace's neighbour table, or None (blocking)."""


def listen_ipv6(reactor: Any, port: int, factory: Any) -> Any:
    """
    Listen on C{[::]:port}, IPv6 only (IPv4 has its own listener on the
    same port, on C{interface_address}): where the firewall's IPv6 REDIRECT
    sends unauthorized clients' HTTP (to the address of the LAN interface
    it came in on, whichever that is). Twisted's C{listenTCP} cannot set
    C{IPV6_V6ONLY}: the socket is made here and adopted.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", port))
        sock.listen(50)  # listenTCP's backlog
        sock.setblocking(False)
        return reactor.adoptStreamPort(sock.fileno(), socket.AF_INET6, factory)
    finally:
        sock.close()  # the reactor holds its own copy


class PortalService(Service):
    """
    @param portal: the controller.
    @param site: the web site.
    @param reactor: listens and schedules.
    @param endpoint: server endpoint string of the portal port.
    @param sample_interval: seconds between samples and expiry (0: none).
    @param api_site: the HTTPS site of the Captive Portal API, if any.
    @param api_endpoint: its server endpoint (an object).
    @param api_url: its URL (for the log).
    @param announcer: adds the DHCP option 114 listener at start (an
        L{netsuite.portal.announce.Announcer}), if any.
    @param followers: what watches other services for clients that have
        gone, from start to stop (L{netsuite.portal.leaseends}).
    @param keep_sessions: a clean stop keeps the sessions (the next start
        authorizes them again); False ends them (reason C{stopped}) and,
        unless the firewall is in this process and does not keep its
        clients either (it lets them all go as it stops, next), asks the
        firewall to deauthorize each.
    @param firewall_keeps_clients: C{[firewall] keep_clients}.
    @param ipv6_port: also listen on C{[::]} on this port, IPv6 only
        (L{listen_ipv6}); None: IPv4 only. A machine without IPv6 at all
        is told in the log and served over IPv4.
    """

    def __init__(self, portal: Portal, site: Site, reactor: Any, endpoint: str,
                 sample_interval: float = 10.0, api_site: Optional[Site] = None,
                 api_endpoint: Any = None, api_url: str = "",
                 announcer: Any = None, followers: Sequence[Any] = (),
                 keep_sessions: bool = True, firewall_keeps_clients: bool = False,
                 ipv6_port: Optional[int] = None) -> None:
        self.portal = portal
        self.site = site
        self.reactor = reactor
        self.endpoint = endpoint
        self.sample_interval = sample_interval
        self.api_site = api_site
        self.api_endpoint = api_endpoint
        self.api_url = api_url
        self.announcer = announcer
        self.followers = list(followers)
        self.keep_sessions = keep_sessions
        self.firewall_keeps_clients = firewall_keeps_clients
        self.ipv6_port = ipv6_port
        self.readiness = Readiness()
        self.port: Any = None
        self.port6: Any = None
        self.api_port: Any = None
        self._sampling: Optional[LoopingCall] = None

    def startService(self) -> None:
        Service.startService(self)
        if not self.portal.firewall_elsewhere:
            self.portal.restore()  # else each time its process is reached (DeauthorizedEnds)

        def listening(port: Any) -> None:
            self.port = port
            also = ""
            if self.ipv6_port is not None:
                try:
                    self.port6 = listen_ipv6(self.reactor, self.ipv6_port, self.site)
                    also = f" and [::]:{self.port6.getHost().port} (IPv6)"
                except OSError as e:
                    if e.errno != errno.EAFNOSUPPORT:
                        failed(Failure(), f"[::]:{self.ipv6_port}")
                        return
                    _log.warn("portal: this machine has no IPv6; serving IPv4 only")
            _log.info("portal ready on {endpoint}{also} as http://{host}/",
                      endpoint=self.endpoint, also=also, host=self.portal.host,
                      netsuite_event="portal-ready")
            self.readiness.fire()

        def failed(failure: Any, endpoint: Any) -> None:
            _log.failure("portal cannot listen on {endpoint}; stopping", failure,
                         endpoint=endpoint)
            if getattr(self.reactor, "running", False):
                self.reactor.stop()
        serverFromString(self.reactor, self.endpoint).listen(self.site).addCallbacks(
            listening, failed, errbackArgs=(self.endpoint,))
        if self.api_site is not None and self.api_endpoint is not None:
            def api_listening(port: Any) -> None:
                self.api_port = port
                _log.info("portal API ready on {url}", url=self.api_url,
                          netsuite_event="portal-api-ready")
            self.api_endpoint.listen(self.api_site).addCallbacks(
                api_listening, failed, errbackArgs=(self.api_url or self.api_endpoint,))
        if self.announcer is not None:
            self.announcer.start()
        for follower in self.followers:
            follower.start()
        if self.sample_interval > 0:
            self._sampling = LoopingCall(self.sample)
            self._sampling.clock = self.reactor
            self._sampling.start(self.sample_interval, now=False)

    def when_ready(self) -> Any:
        """Fires once the portal port listens."""
        return self.readiness.when()

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
        if self.announcer is not None:
            self.announcer.stop()
        for follower in self.followers:
            follower.stop()
        stopping = [self.portal.sessions.durable()]  # what is queued, stored
        if not self.keep_sessions:
            deauthorize = self.firewall_keeps_clients or not self.portal.firewall_here()
            stopping.append(self.portal.end_all(deauthorize=deauthorize))
        for name in ("port", "port6", "api_port"):
            port = getattr(self, name)
            if port is not None:
                setattr(self, name, None)
                stopping.append(port.stopListening())
        return gatherResults([d for d in stopping if d is not None])
