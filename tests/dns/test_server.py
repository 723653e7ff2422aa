"""
The resolver's decisions (L{netsuite.dns.server}), with a fake upstream,
a Clock and a real registry: no network.
"""

from ipaddress import IPv4Address

from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns, error
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dns.cache import Cache
from netsuite.dns.clients import AuthorizedClients
from netsuite.dns.garden import GardenFeeder, GardenNames
from netsuite.dns.policy import Policy, RateLimit
from netsuite.dns.protocol import DNSDatagram, DNSStreamFactory
from netsuite.dns.server import DNSServer, LocalNames
from netsuite.registry.interfaces import Stop
from netsuite.testing import registry_on_clock

CLIENT, OTHER = "10.89.0.100", "10.89.0.101"


class FakeUpstream:
    def __init__(self) -> None:
        self.queries = []
        self.results = {}

    def query(self, query, timeout=None):
        self.queries.append((query.name.name, query.type))
        result = self.results.get(query.name.name, None)
        if isinstance(result, Exception):
            return fail(result)
        if isinstance(result, Deferred):
            return result
        ttl = 300
        records = [dns.RRHeader(query.name.name, dns.A, dns.IN, ttl,
                                dns.Record_A("192.0.2.7", ttl))] if query.type == dns.A else []
        return succeed((records, [], []))


def query(name: bytes, qtype: int = dns.A, id: int = 7) -> bytes:
    m = dns.Message(id=id, recDes=1)
    m.queries = [dns.Query(name, qtype, dns.IN)]
    return m.toStr()


def parse(data: bytes) -> dns.Message:
    m = dns.Message()
    m.fromStr(data)
    return m


class ServerFixture:
    """A server on a real registry and a Clock, its upstream fake."""

    def setUp(self) -> None:
        self.registry, self.clock = registry_on_clock("dns")
        self.upstream = FakeUpstream()
        local = LocalNames()
        local.add("portal.hotspot.lan", "10.89.0.1")
        self.policy = Policy(self.clock, burst=5, rate=1.0, refuse_types=[dns.TXT, dns.NULL],
                             max_answer=200, suspect_threshold=3)
        self.authorized = set()
        self.registry.declare("/firewall/garden/add")
        self.garden_calls = []
        self.registry.listen("/firewall/garden/add",
                             lambda m: (self.garden_calls.append(m), Stop({"added": 1}))[1])
        self.feeder = GardenFeeder(self.registry, self.clock)
        self.server = DNSServer(self.registry, self.upstream, Cache(self.clock, size=2), local,
                                self.policy, self.authorized, GardenNames(["*.garden.test"]),
                                self.feeder)

    def answer(self, data: bytes, ip: str = CLIENT, tcp: bool = False) -> dns.Message:
        out = []
        reply = self.server.handle(data, ip, tcp)
        if isinstance(reply, Deferred):
            reply.addCallback(out.append)
            reply = out[0]
        return parse(reply)


class ServerTests(ServerFixture, SynchronousTestCase):
    def test_forwarded_then_cached(self) -> None:
        m = self.answer(query(b"x.test", id=11))
        self.assertEqual((m.id, m.answer, m.rCode), (11, 1, dns.OK))
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.7")
        self.clock.advance(100)
        m = self.answer(query(b"X.test"))
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.7")
        self.assertEqual(m.answers[0].ttl, 200)
        self.assertEqual(self.upstream.queries, [(b"x.test", dns.A)])
        self.assertEqual(self.server.counters["cached"], 1)
        self.clock.advance(201)
        self.answer(query(b"x.test"))
        self.assertEqual(len(self.upstream.queries), 2)

    def test_cache_bounded(self) -> None:
        for name in (b"a.test", b"b.test", b"c.test", b"a.test"):
            self.answer(query(name))
        self.assertEqual(len(self.server.cache), 2)
        self.assertEqual(len(self.upstream.queries), 4)

    def test_nxdomain(self) -> None:
        self.upstream.results[b"no.test"] = error.DNSNameError(dns.Message(rCode=dns.ENAME))
        self.assertEqual(self.answer(query(b"no.test")).rCode, dns.ENAME)
        self.assertEqual(self.answer(query(b"no.test")).rCode, dns.ENAME)
        self.assertEqual(len(self.upstream.queries), 1)

    def test_upstream_failure(self) -> None:
        self.upstream.results[b"down.test"] = error.DNSQueryTimeoutError(None)
        self.assertEqual(self.answer(query(b"down.test")).rCode, dns.ESERVER)
        self.assertEqual(self.server.counters["upstream_failures"], 1)
        self.answer(query(b"down.test"))
        self.assertEqual(len(self.upstream.queries), 2)  # failures are not cached

    def test_upstream_servfail(self) -> None:
        """An upstream's SERVFAIL (a DomainError too) is SERVFAIL, not a cached NXDOMAIN."""
        self.upstream.results[b"sick.test"] = error.DNSServerError(dns.Message(rCode=dns.ESERVER))
        self.assertEqual(self.answer(query(b"sick.test")).rCode, dns.ESERVER)
        self.assertEqual(self.answer(query(b"sick.test")).rCode, dns.ESERVER)
        self.assertEqual(len(self.upstream.queries), 2)
        self.assertEqual(self.server.counters["upstream_failures"], 2)

    def test_upstream_counters(self) -> None:
        self.upstream.counters = {"sent": 3}
        self.assertEqual(self.server.all_counters()["upstream_sent"], 3)

    def test_local(self) -> None:
        m = self.answer(query(b"Portal.Hotspot.lan"))
        self.assertEqual([r.payload.dottedQuad() for r in m.answers], ["10.89.0.1"])
        self.assertEqual(self.answer(query(b"portal.hotspot.lan", dns.AAAA)).answers, [])
        self.assertEqual(self.upstream.queries, [])

    def test_hosts_file(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# comment\n192.0.2.9 printer printer.lan\n::1 six\nbogus line\n")
        local = LocalNames()
        self.assertEqual(local.read_hosts(path), 2)
        self.assertEqual(local.answer(b"printer.lan", dns.A).answers[0].payload.dottedQuad(),
                         "192.0.2.9")
        self.assertEqual(len(local.answer(b"six", dns.AAAA).answers), 1)

    def test_malformed_dropped(self) -> None:
        for data in (b"", b"\x00" * 5, b"garbage" * 10):
            self.assertIsNone(self.server.handle(data, CLIENT))
        c = self.server.counters
        self.assertEqual(c["malformed"], 2)  # the third parses: a "response" of no question
        self.assertEqual(c["malformed"] + c["not_queries"] + c["not_one_question"], 3)
        self.assertEqual(c["queries"], 0)

    def test_not_queries_dropped(self) -> None:
        response = dns.Message(id=1, answer=1)
        response.queries = [dns.Query(b"x.test")]
        self.assertIsNone(self.server.handle(response.toStr(), CLIENT))
        notify = dns.Message(id=1, opCode=dns.OP_NOTIFY)
        notify.queries = [dns.Query(b"x.test")]
        self.assertIsNone(self.server.handle(notify.toStr(), CLIENT))
        two = dns.Message(id=1)
        two.queries = [dns.Query(b"x.test"), dns.Query(b"y.test")]
        self.assertIsNone(self.server.handle(two.toStr(), CLIENT))
        self.assertIsNone(self.server.handle(dns.Message(id=1).toStr(), CLIENT))
        self.assertEqual((self.server.counters["not_queries"],
                          self.server.counters["not_one_question"]), (2, 2))
        self.assertEqual(self.upstream.queries, [])

    def test_refused_before_login(self) -> None:
        """
        TXT from a client not logged in is refused and announced, never
        forwarded; a logged-in client's is forwarded.
        """
        events = []
        self.registry.watch("/dns/refused", events.append)
        suspects = []
        self.registry.watch("/dns/tunnel-suspect", suspects.append)
        for _ in range(3):
            self.assertEqual(self.answer(query(b"t.test", dns.TXT)).rCode, dns.EREFUSED)
        self.registry.eventual.flush_sync()
        self.assertEqual(events, [{"ip": CLIENT, "name": "t.test", "qtype": "TXT",
                                   "reason": "qtype", "suppressed": 0}])
        self.assertEqual(suspects, [{"ip": CLIENT, "count": 3, "reasons": {"qtype": 3}}])
        self.assertEqual(self.upstream.queries, [])
        self.authorized.add(OTHER)
        self.assertEqual(self.answer(query(b"t.test", dns.TXT), OTHER).rCode, dns.OK)
        self.assertEqual(self.upstream.queries, [(b"t.test", dns.TXT)])
        counters = self.server.all_counters()
        self.assertEqual(counters["refused_qtype"], 3)

    def test_rate_before_login_only(self) -> None:
        rcodes = [self.answer(query(b"x.test")).rCode for _ in range(6)]
        self.assertEqual(rcodes, [dns.OK] * 5 + [dns.EREFUSED])
        self.authorized.add(OTHER)
        rcodes = [self.answer(query(b"x.test"), OTHER).rCode for _ in range(20)]
        self.assertEqual(set(rcodes), {dns.OK})

    def test_rate_after_login(self) -> None:
        """
        With authorized_rate, a client logged in has a looser bucket of its
        own: past it, REFUSED (counted as rate), on the fast path (cached
        answers) as on the long one; the bucket refills with time.
        """
        self.server.authorized_rate = RateLimit(self.clock, rate=2.0, burst=10)
        self.authorized.add(OTHER)
        rcodes = [self.answer(query(b"x.test"), OTHER).rCode for _ in range(11)]
        self.assertEqual(rcodes, [dns.OK] * 10 + [dns.EREFUSED])
        self.assertEqual(len(self.upstream.queries), 1)  # the other 9 from the cache
        self.assertEqual(self.server.all_counters()["refused_rate"], 1)
        self.assertEqual(self.answer(query(b"x.test")).rCode, dns.OK)  # others' buckets
        self.clock.advance(1)
        rcodes = [self.answer(query(b"y.test"), OTHER).rCode for _ in range(3)]
        self.assertEqual(rcodes, [dns.OK] * 2 + [dns.EREFUSED])

    def test_answer_size_before_login(self) -> None:
        ttl = 60
        big = [dns.RRHeader(b"big.test", dns.A, dns.IN, ttl, dns.Record_A(f"192.0.2.{n}", ttl))
               for n in range(1, 30)]
        self.upstream.results[b"big.test"] = succeed((big, [], []))
        m = self.answer(query(b"big.test"), tcp=True)
        self.assertEqual(m.rCode, dns.EREFUSED)
        self.assertEqual(self.policy.counters["answer_size"], 1)
        self.authorized.add(OTHER)
        self.assertEqual(len(self.answer(query(b"big.test"), OTHER, tcp=True).answers), 29)

    def test_udp_truncated(self) -> None:
        ttl = 60
        big = [dns.RRHeader(b"big.test", dns.A, dns.IN, ttl, dns.Record_A(f"192.0.2.{n}", ttl))
               for n in range(1, 40)]
        self.upstream.results[b"big.test"] = succeed((big, [], []))
        self.authorized.add(OTHER)
        m = self.answer(query(b"big.test"), OTHER)
        self.assertEqual((m.trunc, m.answers), (1, []))

    def test_hook_answers_and_refuses(self) -> None:
        """
        A /dns/query listener answers or refuses; continuing reaches the
        resolver. Without a listener, no message is sent.
        """
        self.answer(query(b"x.test"))
        self.assertEqual(self.registry.mailbox("/dns/query").counters.messages, 0)

        def hook(message):
            if message["name"] == "blocked.test":
                return Stop({"refuse": "NXDOMAIN"})
            if message["name"] == "mine.test":
                return Stop({"answer": [IPv4Address("192.0.2.50")]})
            return None
        from netsuite.registry.interfaces import CONTINUE
        self.registry.listen("/dns/query", lambda m: hook(m) or CONTINUE)
        self.assertEqual(self.answer(query(b"blocked.test")).rCode, dns.ENAME)
        m = self.answer(query(b"mine.test"))
        self.assertEqual(m.answers[0].payload.dottedQuad(), "192.0.2.50")
        self.assertEqual(self.answer(query(b"y.test")).answers[0].payload.dottedQuad(),
                         "192.0.2.7")
        self.assertNotIn(b"blocked.test", [n for n, t in self.upstream.queries])

    def test_failing_hook_skipped(self) -> None:
        def broken(message):
            raise RuntimeError("broken hook")
        self.registry.listen("/dns/query", broken)
        self.assertEqual(self.answer(query(b"x.test")).rCode, dns.OK)
        self.flushLoggedErrors(RuntimeError)

    def test_fail_closed_hook_refuses(self) -> None:
        """
        A fail-closed hook (a deny-list) that fails: the query is refused,
        not forwarded.
        """
        def broken(message):
            raise RuntimeError("deny-list down")
        self.registry.listen("/dns/query", broken, fail_closed=True)
        self.assertEqual(self.answer(query(b"x.test"), OTHER).rCode, dns.EREFUSED)
        self.assertEqual(self.upstream.queries, [])
        self.flushLoggedErrors(RuntimeError)

    def test_answer_event(self) -> None:
        seen = []
        self.registry.watch("/dns/answer", seen.append)
        self.answer(query(b"x.test"))
        self.registry.eventual.flush_sync()
        self.assertEqual(seen, [{"ip": CLIENT, "name": "x.test", "qtype": "A", "rcode": 0,
                                 "answers": ["192.0.2.7"]}])

    def test_garden(self) -> None:
        """
        A garden name's A records go to /firewall/garden/add with their TTL,
        whoever asked; other names do not.
        """
        self.answer(query(b"www.garden.test"))
        self.answer(query(b"other.test"))
        self.clock.advance(0)
        self.assertEqual(self.garden_calls, [{"ips": [IPv4Address("192.0.2.7")],
                                              "seconds": 300}])

    def test_udp_protocol(self) -> None:
        from twisted.test.proto_helpers import FakeDatagramTransport
        protocol = DNSDatagram(self.server)
        protocol.makeConnection(FakeDatagramTransport())
        protocol.datagramReceived(query(b"x.test", id=3), (CLIENT, 5353))
        ((data, addr),) = protocol.transport.written
        self.assertEqual((parse(data).id, addr), (3, (CLIENT, 5353)))

    def test_tcp_protocol(self) -> None:
        from twisted.internet.address import IPv4Address as Address
        factory = DNSStreamFactory(self.server, max_connections=1, idle=5.0)
        protocol = factory.buildProtocol(Address("TCP", CLIENT, 4000))
        protocol.callLater = self.clock.callLater
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIsNone(factory.buildProtocol(Address("TCP", OTHER, 4000)))
        data = query(b"x.test", id=9)
        protocol.dataReceived(len(data).to_bytes(2, "big") + data)
        out = transport.value()
        self.assertEqual(parse(out[2:2 + int.from_bytes(out[:2], "big")]).id, 9)
        self.clock.advance(5)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(None)
        self.assertEqual(factory.open, 0)

    def test_tcp_paused_while_answers_wait(self) -> None:
        """
        A TCP connection is its transport's streaming producer: paused (the
        client does not read its answers), it answers none of the queries
        already read until resumed.
        """
        from twisted.internet.address import IPv4Address as Address
        self.answer(query(b"x.test"))  # cached: answered at once
        protocol = DNSStreamFactory(self.server).buildProtocol(Address("TCP", CLIENT, 4000))
        protocol.callLater = self.clock.callLater
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual((transport.producer, transport.streaming), (protocol, True))
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        data = query(b"x.test", id=9)
        protocol.dataReceived((len(data).to_bytes(2, "big") + data) * 3)
        self.assertEqual(transport.value(), b"")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        out, ids = transport.value(), []
        while out:
            size = int.from_bytes(out[:2], "big")
            ids.append(parse(out[2:2 + size]).id)
            out = out[2 + size:]
        self.assertEqual(ids, [9, 9, 9])
        protocol.connectionLost(None)


class WireCacheTests(ServerFixture, SynchronousTestCase):
    """
    The encoded replies of a second, sent again without a parse.
    """

    def warm(self, name=b"x.test"):
        self.answer(query(name))
        self.answer(query(name))  # from the cache: remembered on the wire

    def test_same_reply(self) -> None:
        self.warm()
        slow = self.server.handle(query(b"x.test", id=5), OTHER)
        self.server._wire.clear()
        self.server._wire_second = -1
        self.assertEqual(self.server.handle(query(b"x.test", id=5), OTHER), slow)

    def test_fast_hit(self) -> None:
        self.warm()
        before = dict(self.server.counters)
        m = dns.Message(id=77, recDes=0)
        m.queries = [dns.Query(b"X.TeSt", dns.A, dns.IN)]
        self.assertIsNotNone(self.server._fast(m.toStr(), OTHER, False))
        reply = parse(self.server.handle(m.toStr(), OTHER))
        self.assertEqual((reply.id, reply.recDes, reply.queries[0].name.name),
                         (77, 0, b"X.TeSt"))
        self.assertEqual(reply.answers[0].payload.dottedQuad(), "192.0.2.7")
        self.assertEqual(self.server.counters["cached"], before["cached"] + 2)
        self.assertEqual(len(self.upstream.queries), 1)

    def test_edns_query(self) -> None:
        self.warm()
        m = dns._EDNSMessage(id=78, ednsVersion=0, maxSize=1232)
        m.queries = [dns.Query(b"x.test", dns.A, dns.IN)]
        data = m.toStr()
        self.assertIsNotNone(self.server._question(data))
        self.assertEqual(parse(self.server.handle(data, OTHER)).id, 78)
        self.assertIsNone(self.server._question(data + b"\x00"))

    def test_limits_still_apply(self) -> None:
        """
        A client not logged in is still held to its rate, and the refusal
        counted once.
        """
        self.warm()
        rcodes = [parse(self.server.handle(query(b"x.test"), CLIENT)).rCode for _ in range(5)]
        self.assertEqual(rcodes, [dns.OK, dns.OK, dns.OK, dns.EREFUSED, dns.EREFUSED])
        self.assertEqual(self.policy.counters["rate"], 2)

    def test_hook_bypasses(self) -> None:
        self.warm()
        self.registry.listen("/dns/query", lambda m: Stop({"refuse": "NXDOMAIN"}))
        self.assertEqual(self.answer(query(b"x.test"), OTHER).rCode, dns.ENAME)

    def test_next_second(self) -> None:
        self.warm()
        self.clock.advance(10)
        self.assertEqual(self.answer(query(b"x.test"), OTHER).answers[0].ttl, 290)

    def test_garden_names_not_kept(self) -> None:
        self.warm(b"www.garden.test")
        self.assertEqual(self.server._wire, {})


class AuthorizedTests(SynchronousTestCase):
    def test_follows_firewall(self) -> None:
        registry, clock = registry_on_clock("dns")
        for path in ("/firewall/authorized", "/firewall/deauthorized"):
            registry.declare(path, kind="event")
        registry.declare("/firewall/clients")
        registry.listen("/firewall/clients", lambda m: Stop([{"ip": IPv4Address(CLIENT)}]))
        clients = AuthorizedClients(registry)
        self.assertTrue(clients.start())
        self.assertIn(CLIENT, clients)
        registry.send("/firewall/authorized", {"ip": IPv4Address(OTHER)})
        registry.send("/firewall/deauthorized", {"ip": IPv4Address(CLIENT)})
        registry.eventual.flush_sync()
        self.assertEqual(clients.ips, {OTHER})
        clients.stop()

    def test_no_firewall(self) -> None:
        registry, clock = registry_on_clock("dns")
        clients = AuthorizedClients(registry)
        self.assertFalse(clients.start())
        self.assertNotIn(CLIENT, clients)
