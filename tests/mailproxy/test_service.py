"""
L{netsuite.mailproxy.service}: the proxy's mailboxes, on a memory reactor
and a real registry.
"""

from typing import Any, List

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.service import MailProxy, ipv4_mac
from netsuite.mailproxy.tls import tls_login
from netsuite.proxy.intercept import fixed_destination
from netsuite.proxy.modules import relay
from netsuite.proxy.proxy import Proxy, ProxySettings
from netsuite.registry.interfaces import CONTINUE, Stop
from netsuite.registry.values import MAC
from netsuite.testing import SyncRunner, registry_on_clock

from ..proxy.test_relay import FakeOutbound, Transport
from .fakemail import logins


def record(kind: int, body: bytes) -> bytes:
    return bytes([kind, 3, 3]) + len(body).to_bytes(2, "big") + body


def client_hello(name: bytes = b"imap.example.test") -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    sni = (len(entry).to_bytes(2, "big") + entry)
    extensions = b"\x00\x00" + len(sni).to_bytes(2, "big") + sni
    body = (b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(extensions).to_bytes(2, "big") + extensions)
    return record(22, b"\x01" + len(body).to_bytes(3, "big") + body)


class Harness:
    def __init__(self, port: int = 143, tls_seconds: Any = None) -> None:
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

        self.mailproxy = MailProxy(self.registry, make_proxy, {143: [("fake", logins)],
                                                               993: [("tls", tls_login)]},
                                   [("relay", relay)], mac_for, clock=self.reactor,
                                   tls_seconds=tls_seconds)

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
        h = Harness(port=995)
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


class TlsHeuristicTests(SynchronousTestCase):
    """The TLS heuristic's timer, on the proxy's clock."""

    def handshake(self, h: Harness) -> Any:
        seen: List[Any] = []
        h.registry.listen("/mailproxy/login", lambda m: seen.append(dict(m)) or CONTINUE)
        c, ct = h.accept()
        s, st = h.connect()
        c.dataReceived(client_hello())
        s.dataReceived(record(22, b"\x02" + b"\x00" * 40) + record(23, b"x" * 50))
        c.dataReceived(record(23, b"y" * 30))  # the session: tls-session
        return c, s, seen

    def test_inferred_after_n_seconds(self) -> None:
        h = Harness(port=993, tls_seconds=60.0)
        c, s, seen = self.handshake(h)
        h.reactor.advance(30)
        c.dataReceived(record(23, b"a" * 40))
        s.dataReceived(record(23, b"b" * 400))
        h.reactor.advance(29.9)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [])
        h.reactor.advance(0.1)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [{"ip": "10.89.0.11", "mac": "02:00:00:00:00:05",
                                 "server": "192.0.2.9", "port": 993, "protocol": "imap",
                                 "user": "", "outcome": "success", "evidence": "inferred"}])
        self.assertEqual(h.ask("/mailproxy/counters")["logins"], 1)

    def test_one_way_is_not_enough(self) -> None:
        """Only the server spoke after the handshake: no login inferred."""
        h = Harness(port=993, tls_seconds=60.0)
        c, s, seen = self.handshake(h)
        s.dataReceived(record(23, b"b" * 400))
        h.reactor.advance(60)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [])
        self.assertEqual(h.ask("/mailproxy/counters")["tls_idle"], 1)

    def test_cancelled_when_the_connection_ends(self) -> None:
        h = Harness(port=993, tls_seconds=60.0)
        c, s, seen = self.handshake(h)
        c.dataReceived(record(23, b"a" * 40))
        s.dataReceived(record(23, b"b" * 400))
        calls = len(h.reactor.getDelayedCalls())
        c.connectionLost(Failure(ConnectionDone()))
        s.connectionLost(Failure(ConnectionDone()))
        self.assertLess(len(h.reactor.getDelayedCalls()), calls)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        h.reactor.advance(120)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [])
        self.assertEqual(h.ask("/mailproxy/counters")["tls_abandoned"], 1)

    def test_closing_is_not_open(self) -> None:
        """Still flushing its last bytes when the timer fires: not open, no login."""
        h = Harness(port=993, tls_seconds=60.0)
        c, s, seen = self.handshake(h)
        c.dataReceived(record(23, b"a" * 40))
        s.dataReceived(record(23, b"b" * 400))
        c.connectionLost(Failure(ConnectionDone()))  # the server side is closing
        h.reactor.advance(60)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [])

    def test_off_by_default(self) -> None:
        h = Harness(port=993)
        c, s, seen = self.handshake(h)
        c.dataReceived(record(23, b"a" * 40))
        s.dataReceived(record(23, b"b" * 400))
        self.assertEqual(len(h.reactor.getDelayedCalls()), 1, "the idle timer only")
        h.reactor.advance(600)
        h.registry.eventual.flush_sync()
        self.assertEqual(seen, [])

    def test_needs_a_clock(self) -> None:
        self.assertRaises(ValueError, MailProxy, registry_on_clock("mailproxy")[0],
                          lambda **hooks: None, {}, [], tls_seconds=5.0)


class FakeReader:
    num = 9

    def __init__(self, fail: bool = False) -> None:
        self.running = False
        self.fail = fail

    def start(self) -> None:
        if self.fail:
            raise OSError("Failed to create queue 9.")
        self.running = True

    def stop(self) -> None:
        self.running = False


class ServiceReaderTests(SynchronousTestCase):
    """The nfqueue mode's reader in the service's life."""

    def service(self, reader: FakeReader, capable: bool) -> Any:
        from netsuite.mailproxy.service import MailProxyService
        return MailProxyService(Harness().mailproxy, MemoryReactorClock(), [], False,
                                reader=reader, can_give_verdicts=lambda: capable)

    def test_started_and_stopped(self) -> None:
        reader = FakeReader()
        service = self.service(reader, True)
        service.privilegedStartService()
        self.assertTrue(reader.running)
        service.startService()
        self.assertTrue(reader.running)
        service.stopService()
        self.assertFalse(reader.running)

    def test_cannot_bind(self) -> None:
        service = self.service(FakeReader(fail=True), True)
        self.assertRaises(SystemExit, service.privilegedStartService)

    def test_no_verdicts_without_cap_net_admin(self) -> None:
        """Kept bound without CAP_NET_ADMIN, the queue would hold every SYN: unbound."""
        reader = FakeReader()
        service = self.service(reader, False)
        service.privilegedStartService()
        service.startService()
        self.assertFalse(reader.running)

    def test_can_give_verdicts(self) -> None:
        from netsuite.proxy.nfqueue import can_give_verdicts
        path = self.mktemp()
        status = ("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\nNoNewPrivs:\t0\n"
                  "CapInh:\t0\nCapPrm:\t{c}\nCapEff:\t{c}\nCapBnd:\t{c}\nCapAmb:\t0\n")
        with open(path, "w") as f:
            f.write(status.format(c="0000000000001000"))  # CAP_NET_ADMIN is 12
        self.assertTrue(can_give_verdicts(path))
        with open(path, "w") as f:
            f.write(status.format(c="0000000000002000"))  # CAP_NET_RAW
        self.assertFalse(can_give_verdicts(path))


class MacTests(SynchronousTestCase):
    def test_ipv4_only(self) -> None:
        mac_for = ipv4_mac(lambda ip: MAC("02:00:00:00:00:07"), SyncRunner())
        got: List[Any] = []
        mac_for("10.89.0.11").addCallback(got.append)
        mac_for("2001:db8::1").addCallback(got.append)
        self.assertEqual(got, [MAC("02:00:00:00:00:07"), None])
