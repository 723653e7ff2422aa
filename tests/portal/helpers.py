"""
A portal with an in-memory firewall and a Clock, and fake web requests.
"""

import ipaddress

from twisted.internet.address import IPv4Address as TCPAddress
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from netsuite.firewall.memory import MemoryFirewall
from netsuite.firewall.service import FirewallService
from netsuite.portal.controller import Portal
from netsuite.portal.sessions import SessionStore, Sessions
from netsuite.portal.resource import PortalResource
from netsuite.registry import Registry
from netsuite.registry.values import MAC
from netsuite.testing import SyncRunner

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
MAC_A = MAC("02:4e:00:00:00:0b")
B = ipaddress.IPv4Address("10.89.0.12")
HOST = "10.89.0.1:5280"


class FakeRequest(DummyRequest):
    """
    A DummyRequest with a client, a URI, a Host and cookies.
    """

    def __init__(self, method, uri, host, client=A, args=None, cookies=None):
        DummyRequest.__init__(self, [])
        self.method = method
        self.uri = uri
        self.client = TCPAddress("TCP", str(client), 40000)
        self.args = args or {}
        self.cookies_in = cookies or {}
        self.cookies_out = {}
        if host is not None:
            self.requestHeaders.addRawHeader(b"host", host)

    def getCookie(self, name):
        return self.cookies_in.get(name)

    def addCookie(self, name, value, **kw):
        self.cookies_out[name] = (value, kw)

    def header(self, name):
        values = self.responseHeaders.getRawHeaders(name)
        return values[0] if values else None

    def body(self):
        return b"".join(self.written)


class PortalFixture:
    """
    Registry "ap" with the memory firewall's mailboxes and the portal's.
    """

    def __init__(self, idle_timeout=0, session_timeout=0, macs=None, store=None, runner=None):
        self.clock = Clock()
        self.clock.advance(1000)
        self.registry = Registry("ap", self.clock)
        self.firewall = MemoryFirewall(self.clock, LAN)
        self.firewall_service = FirewallService(self.firewall, self.registry, self.clock, 0)
        self.firewall_service.startService()
        self.macs = {A: MAC_A} if macs is None else macs
        self.sessions = Sessions(store or SessionStore(":memory:"), self.clock,
                                 runner or SyncRunner(),
                                 idle_timeout=idle_timeout, session_timeout=session_timeout)
        self.portal = Portal(self.registry, self.sessions, HOST,
                             find_mac=lambda ip: succeed(self.macs.get(ip)),
                             policy_text="Be <nice> & \"polite\"")
        self.resource = PortalResource(self.portal, self.clock)

    def request(self, method, uri, host=HOST.encode(), **kw):
        request = FakeRequest(method, uri, host, **kw)
        request.render(self.resource)
        self.registry.eventual.flush_sync()
        return request
