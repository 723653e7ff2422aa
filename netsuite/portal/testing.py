# -*- test-case-name: tests.portal.test_controller -*-
"""
A test harness for the portal, shipped so that the unit tests and the
benchmark (C{bench/portal.py}, which runs without C{tests/} on its path)
build the same thing: a L{Portal} and its web resource on a C{Clock}, with
the memory firewall's mailboxes in the same registry, and fake web
requests rendered without a network.

Not for production: the firewall is L{MemoryFirewall} and MAC addresses
come from a dict (or a function you give). Everything is built through
the public constructors.

    f = PortalFixture()
    page = f.request(b"GET", b"/login")
    done = f.request(b"POST", b"/login", args=..., cookies=...)
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from twisted.internet.address import IPv4Address as TCPAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from ..firewall.memory import MemoryFirewall
from ..firewall.service import FirewallService
from ..registry import Registry
from ..registry.values import MAC
from ..runner import IRunner
from ..testing import SyncRunner
from .controller import Portal
from .sessions import SessionStore, Sessions
from .resource import CSRF_COOKIE, PortalResource

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")  # the fixture's client with a known MAC
MAC_A = MAC("02:4e:00:00:00:0b")
HOST = "10.89.0.1:5280"
POLICY = "Be <nice> & \"polite\""

MacFinder = Callable[[ipaddress.IPv4Address], "Deferred[Optional[MAC]]"]


class FakeRequest(DummyRequest):  # type: ignore[misc]
    """
    A DummyRequest with a client, a URI, a Host, cookies in and out, and
    whether it came over HTTPS (C{secure}).
    """

    def __init__(self, method: bytes, uri: bytes, host: Optional[bytes],
                 client: ipaddress.IPv4Address = A,
                 args: Optional[Dict[bytes, Any]] = None,
                 cookies: Optional[Mapping[bytes, bytes]] = None,
                 secure: bool = False) -> None:
        DummyRequest.__init__(self, [])
        self.secure = secure
        self.method = method
        self.uri = uri
        self.client = TCPAddress("TCP", str(client), 40000)
        self.args = args or {}
        self.cookies_in = dict(cookies or {})
        self.cookies_out: Dict[bytes, Tuple[bytes, Dict[str, Any]]] = {}
        if host is not None:
            self.requestHeaders.addRawHeader(b"host", host)

    def isSecure(self) -> bool:
        return self.secure

    def getCookie(self, name: bytes) -> Optional[bytes]:
        return self.cookies_in.get(name)

    def addCookie(self, name: bytes, value: bytes, **kw: Any) -> None:
        self.cookies_out[name] = (value, kw)

    def header(self, name: bytes) -> Optional[bytes]:
        values = self.responseHeaders.getRawHeaders(name)
        return values[0] if values else None

    def body(self) -> bytes:
        return b"".join(self.written)


class PortalFixture:
    """
    Registry C{"ap"} with the memory firewall's mailboxes and the portal's.

    @param macs: the MAC of each client address (default: L{A} has
        L{MAC_A}); ignored when C{find_mac} is given.
    @param store: the sessions' store (default: a new one in memory).
    @param runner: commits the sessions' changes (default: at once).
    @param now: the clock's time at the start.
    """

    def __init__(self, idle_timeout: float = 0, session_timeout: float = 0,
                 macs: Optional[Dict[ipaddress.IPv4Address, MAC]] = None,
                 store: Optional[SessionStore] = None, lan: ipaddress.IPv4Network = LAN,
                 host: str = HOST, find_mac: Optional[MacFinder] = None,
                 policy_text: str = POLICY, now: float = 1000,
                 runner: Optional[IRunner] = None) -> None:
        self.clock = Clock()
        self.clock.advance(now)
        self.host = host
        self.registry = Registry("ap", self.clock)
        self.firewall = MemoryFirewall(self.clock, lan)
        self.firewall_service = FirewallService(self.firewall, self.registry, self.clock, 0)
        self.firewall_service.startService()
        self.macs = {A: MAC_A} if macs is None else macs
        self.sessions = Sessions(store or SessionStore(":memory:"), self.clock,
                                 runner or SyncRunner(), idle_timeout=idle_timeout,
                                 session_timeout=session_timeout)
        self.portal = Portal(self.registry, self.sessions, host,
                             find_mac=find_mac or (lambda ip: succeed(self.macs.get(ip))),
                             policy_text=policy_text)
        self.resource = PortalResource(self.portal, self.clock)

    def request(self, method: bytes, uri: bytes, host: Optional[bytes] = None,
                **kw: Any) -> FakeRequest:
        """
        Render one request (Host: the portal's, unless given) and run what
        it sent to the registry; return the request, answered.
        """
        request = FakeRequest(method, uri, self.host.encode() if host is None else host, **kw)
        request.render(self.resource)
        self.registry.eventual.flush_sync()
        return request

    def accept(self, client: ipaddress.IPv4Address, url: bytes = b"http://example.com/",
               token: bytes = b"A" * 32) -> FakeRequest:
        """
        The click-through login of C{client}: C{POST /login} accepting the
        usage policy, with a CSRF cookie and form field; return the answered
        request (303 when it worked).
        """
        return self.request(b"POST", b"/login", client=client, cookies={CSRF_COOKIE: token},
                            args={b"csrf": [token], b"accept": [b"1"], b"url": [url]})


__all__ = ["PortalFixture", "FakeRequest", "LAN", "A", "MAC_A", "HOST", "POLICY"]
