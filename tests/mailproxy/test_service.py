"""
L{netsuite.mailproxy.service}: the proxy's mailboxes, on a memory reactor
and a real registry.
"""

from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.service import MailProxy, ipv4_mac
from netsuite.proxy.intercept import fixed_destination
from netsuite.proxy.modules import relay
from netsuite.proxy.relay import Proxy, ProxySettings
from netsuite.registry.interfaces import CONTINUE, Stop
from netsuite.registry.values import MAC
from netsuite.testing import SyncRunner, registry_on_clock

from ..proxy.test_relay import FakeOutbound, Transport
from .fakemail import logins


class Harness:
    def __init__(self, port: int = 143) -> None:
        self.registry, self.clock = registry_on_clock("mailproxy")
        self.reactor = MemoryReactorClock()
        self.outbound = FakeOutbound()
        self.macs: List[str] = []

        def make_proxy(**hooks: Any) -> Proxy:
            select = hooks.pop("select")
            return Proxy(self.reactor, select, fixed_destination("192.0.2.9", port),
                         self.outbound, ProxySettings(), **hooks)

        def mac_for(ip: str) -> Any:
            self.macs.append(ip)
            return succeed(MAC("02:00:00:00:00:05"))

        self.mailproxy = MailProxy(self.registry, make_proxy, {143: [("fake", logins)]},
                                   [("relay", relay)], mac_for)

    def accept(self) -> Any:
        peer = IPv4Address("TCP", "10.89.0.11", 40000)
        side = self.mailproxy.proxy.buildProtocol(peer)
        transport = Transport(peer)
        side.makeConnection(transport)
        return side, transport

    def connect(self) -> Any:
        side = self.outbound.calls[-1][2].buildProtocol(None)
        transport = Transport()
        side.makeConnection(transport)
        return side, transport

    def ask(self, path: str) -> Any:
        results: List[Any] = []
        self.registry.send(path, {}).addCallback(results.append)
        return results[0]


class ServiceTests(SynchronousTestCase):
    def test_mailboxes_declared(self) -> None:
        h = Harness()
        paths = [m["path"] for m in h.registry.describe("/mailproxy")]
        self.assertEqual(paths, ["/mailproxy/connect", "/mailproxy/connections",
                                 "/mailproxy/counters", "/mailproxy/login"])

    def test_login_event(self) -> None:
        h = Harness()
        seen: List[Any] = []
        h.registry.listen("/mailproxy/login", lambda m: seen.append(m) or CONTINUE)
        c, ct = h.accept()
        s, st = h.connect()
        c.dataReceived(b"LOGIN joe no\nLOGIN joe ok\n")
        h.registry.eventual.flush_sync()
        self.assertEqual([dict(m) for m in seen], [
            {"ip": "10.89.0.11", "mac": "02:00:00:00:00:05", "server": "192.0.2.9",
             "port": 143, "protocol": "imap", "user": "joe", "outcome": outcome,
             "evidence": "seen"} for outcome in ("failure", "success")])
        counters = h.ask("/mailproxy/counters")
        self.assertEqual((counters["logins"], counters["login_failures"],
                          counters["connections"], counters["live"]), (1, 1, 1, 1))

    def test_connections(self) -> None:
        h = Harness()
        h.accept()
        [entry] = h.ask("/mailproxy/connections")
        self.assertEqual((entry["client"], entry["server"], entry["modules"], entry["state"]),
                         ("10.89.0.11:40000", "192.0.2.9:143", ["fake"], "connecting"))

    def test_other_ports_are_relayed(self) -> None:
        h = Harness(port=993)
        h.accept()
        self.assertEqual(h.ask("/mailproxy/connections")[0]["modules"], ["relay"])

    def test_connect_unheard(self) -> None:
        """Without listeners on /mailproxy/connect, no message: straight to the server."""
        h = Harness()
        h.accept()
        self.assertEqual(len(h.outbound.calls), 1)
        [box] = h.registry.describe("/mailproxy/connect")
        self.assertEqual(box["counters"]["messages"], 0)

    def test_connect_refused(self) -> None:
        h = Harness()
        asked: List[Any] = []

        def refuse(message: Any) -> Any:
            asked.append(dict(message))
            return Stop({"refuse": "blocked"}) if message["ip"] == "10.89.0.11" else CONTINUE
        h.registry.listen("/mailproxy/connect", refuse)
        c, ct = h.accept()
        self.assertEqual(asked, [{"ip": "10.89.0.11", "port": 40000, "server": "192.0.2.9",
                                  "server_port": 143, "modules": ["fake"]}])
        self.assertEqual(h.outbound.calls, [])
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.ask("/mailproxy/counters")["refused"], 1)

    def test_connect_allowed(self) -> None:
        h = Harness()
        h.registry.listen("/mailproxy/connect", lambda m: CONTINUE)
        h.accept()
        self.assertEqual(len(h.outbound.calls), 1)


class MacTests(SynchronousTestCase):
    def test_ipv4_only(self) -> None:
        mac_for = ipv4_mac(lambda ip: MAC("02:00:00:00:00:07"), SyncRunner())
        got: List[Any] = []
        mac_for("10.89.0.11").addCallback(got.append)
        mac_for("2001:db8::1").addCallback(got.append)
        self.assertEqual(got, [MAC("02:00:00:00:00:07"), None])
