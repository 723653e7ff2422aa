"""
The upstream client (L{netsuite.dns.upstream}) on a Clock and fake UDP
ports and TCP connections: no network.
"""

import os
import random

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import dns, error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dns.upstream import UpstreamClient, resolv_conf_servers

A, B = ("192.0.2.53", 53), ("192.0.2.54", 5353)
V6 = ("2001:db8::53", 53)


class FakePort:
    def __init__(self, number, protocol, interface=""):
        self.number = number
        self.protocol = protocol
        self.interface = interface
        self.written = []
        self.closed = False

    def write(self, data, address):
        self.written.append((data, address))

    def stopListening(self):
        self.closed = True


class FakeReactor(MemoryReactorClock):
    """MemoryReactorClock with UDP ports that record what they send."""

    def __init__(self):
        super().__init__()
        self.udp = []
        self.busy = set()

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if port in self.busy or interface in self.busy:
            raise CannotListenError(interface, port, "in use")
        fake = FakePort(port, protocol, interface)
        self.udp.append(fake)
        protocol.makeConnection(fake)
        return fake


def sent(port, index=-1):
    data, address = port.written[index]
    message = dns.Message()
    message.fromStr(data)
    return message, address


def reply(message, rcode=dns.OK, address="192.0.2.7", trunc=0, name=None, id=None):
    r = dns.Message(id=message.id if id is None else id, answer=1, rCode=rcode, trunc=trunc)
    r.queries = [dns.Query(name or message.queries[0].name.name, message.queries[0].type)]
    if rcode == dns.OK and not trunc:
        r.answers = [dns.RRHeader(r.queries[0].name.name, dns.A, dns.IN, 60,
                                  dns.Record_A(address, 60))]
    return r.toStr()


class UpstreamTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.client = UpstreamClient(self.reactor, [A, B], sockets=2, port_queries=3,
                                     port_seconds=60.0, max_pending=4,
                                     rng=random.Random(16))
        self.client.start()
        self.addCleanup(self.client.stop)
        self.results = []

    def ask(self, name=b"x.test", timeout=(1.0, 3.0)):
        d = self.client.query(dns.Query(name, dns.A), timeout=timeout)
        d.addBoth(self.results.append)
        return d

    def test_pool_random_ports(self):
        """The sockets are opened once, at start, each on a random port (not 0)."""
        self.assertEqual(len(self.reactor.udp), 2)
        ports = [p.number for p in self.reactor.udp]
        self.assertTrue(all(1024 <= n < 65536 for n in ports), ports)
        self.assertNotEqual(ports[0], ports[1])
        for p in self.reactor.udp:
            self.assertFalse(p.protocol.noisy)

    def test_port_in_use(self):
        """A random port in use is replaced by another."""
        reactor = FakeReactor()
        rng = random.Random(1)
        reactor.busy.add(random.Random(1).randrange(1024, 65536))
        UpstreamClient(reactor, [A], sockets=1, rng=rng).start()
        self.assertEqual(len(reactor.udp), 1)
        self.assertNotIn(reactor.udp[0].number, reactor.busy)

    def test_answer(self):
        self.ask()
        port = self.reactor.udp[0]
        message, address = sent(port)
        self.assertEqual(address, A)
        self.assertEqual(message.queries[0].name.name, b"x.test")
        self.assertEqual(message.recDes, 1)
        port.protocol.datagramReceived(reply(message), A)
        answers, authority, additional = self.results[0]
        self.assertEqual(answers[0].payload.dottedQuad(), "192.0.2.7")
        self.assertEqual(self.client.counters["answers"], 1)
        self.assertEqual(self.client.queries, set())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_random_ids(self):
        for i in range(6):
            self.ask(b"n%d.test" % i)
        ids = {sent(p, i)[0].id for p in self.reactor.udp[:2] for i in range(2)}
        self.assertEqual(len(ids), 4)

    def test_mismatches_dropped(self):
        """
        An answer from another address, with an unknown id, with another
        question, or malformed is dropped and counted; the query still
        takes the right one.
        """
        self.ask()
        port = self.reactor.udp[0]
        message, _ = sent(port)
        port.protocol.datagramReceived(reply(message, address="203.0.113.6"), B)
        port.protocol.datagramReceived(reply(message, address="203.0.113.6"), ("192.0.2.53", 54))
        port.protocol.datagramReceived(reply(message, id=(message.id + 1) % 65536), A)
        port.protocol.datagramReceived(reply(message, name=b"y.test"), A)
        port.protocol.datagramReceived(reply(message)[:14], A)  # no whole question
        port.protocol.datagramReceived(b"\x00", A)
        query = dns.Message(id=message.id)
        query.queries = message.queries
        port.protocol.datagramReceived(query.toStr(), A)  # not a response
        self.assertEqual(self.results, [])
        counters = self.client.counters
        self.assertEqual((counters["bad_source"], counters["unknown_id"],
                          counters["bad_question"], counters["malformed"]), (2, 1, 2, 2))
        port.protocol.datagramReceived(reply(message, name=b"X.TEST"), A)  # case is fine
        self.assertEqual(self.results[0][0][0].payload.dottedQuad(), "192.0.2.7")

    def test_timeout_next_server_then_failure(self):
        """Each server with 1 s, then each with 3 s; then DNSQueryTimeoutError."""
        self.ask()
        seen = []
        for seconds in (1, 1, 3, 3):
            self.assertEqual(self.client.counters["sent"], len(seen) + 1)
            seen.append(sent(self.last_port())[1])
            self.reactor.advance(seconds - 0.01)
            self.assertEqual(self.results, [])
            self.reactor.advance(0.01)
        self.assertEqual(seen, [A, B, A, B])
        self.results[0].trap(error.DNSQueryTimeoutError)
        self.assertEqual(self.client.counters["timeouts"], 4)
        self.assertEqual(self.client.queries, set())

    def last_port(self):
        """The port of the newest write (the client goes round its slots)."""
        order = self.client._next[False] - 1
        return self.client.slots[order].port

    def test_late_answer_dropped(self):
        self.ask(timeout=(1.0,))
        port = self.reactor.udp[0]
        message, _ = sent(port)
        self.reactor.advance(1)  # A
        self.reactor.advance(1)  # then B
        port.protocol.datagramReceived(reply(message), A)
        self.results[0].trap(error.DNSQueryTimeoutError)
        self.assertEqual(self.client.counters["unknown_id"], 1)

    def test_servfail_next_server(self):
        self.ask()
        port = self.reactor.udp[0]
        port.protocol.datagramReceived(reply(sent(port)[0], rcode=dns.ESERVER), A)
        self.assertEqual(self.results, [])
        port = self.reactor.udp[1]
        message, address = sent(port)
        self.assertEqual(address, B)
        port.protocol.datagramReceived(reply(message), B)
        self.assertEqual(self.results[0][0][0].payload.dottedQuad(), "192.0.2.7")

    def test_nxdomain(self):
        self.ask()
        port = self.reactor.udp[0]
        port.protocol.datagramReceived(reply(sent(port)[0], rcode=dns.ENAME), A)
        self.results[0].trap(error.DNSNameError)
        self.assertEqual(self.results[0].value.args[0].rCode, dns.ENAME)

    def test_truncated_tcp(self):
        """A truncated answer is asked again over TCP of the same server."""
        self.ask()
        port = self.reactor.udp[0]
        port.protocol.datagramReceived(reply(sent(port)[0], trunc=1), A)
        self.assertEqual(self.results, [])
        host, number, factory, timeout, _ = self.reactor.tcpClients[0]
        self.assertEqual((host, number), A)
        protocol = factory.buildProtocol(IPv4Address("TCP", *A))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.reactor.advance(0)  # ClientCreator hands the protocol over
        data = transport.value()
        asked = dns.Message()
        asked.fromStr(data[2:])
        self.assertEqual(asked.queries[0].name.name, b"x.test")
        answer = reply(asked)
        protocol.dataReceived(len(answer).to_bytes(2, "big") + answer)
        self.assertEqual(self.results[0][0][0].payload.dottedQuad(), "192.0.2.7")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.client.counters["tcp"], 1)

    def test_tcp_failure_next_server(self):
        self.ask()
        port = self.reactor.udp[0]
        port.protocol.datagramReceived(reply(sent(port)[0], trunc=1), A)
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.reactor.advance(0)
        self.assertEqual(self.client.counters["tcp_failures"], 1)
        self.assertEqual(sent(self.reactor.udp[1])[1], B)

    def test_port_rotation_by_queries(self):
        """After port_queries queries a socket is replaced; the old one closes once answered."""
        self.client.max_pending = 10
        for i in range(6):
            self.ask(b"n%d.test" % i)
        first = self.reactor.udp[0]
        self.assertEqual(len(first.written), 3)
        self.assertFalse(first.closed)
        self.assertEqual(len(self.reactor.udp), 2)
        self.ask(b"n6.test")  # slot 0 again: a fresh port
        self.assertEqual(len(self.reactor.udp), 3)
        self.assertEqual(len(first.written), 3)
        self.assertEqual(self.client.counters["port_replaced"], 1)
        self.assertFalse(first.closed)  # its three queries are still out
        for i in range(3):
            message, address = sent(first, i)
            first.protocol.datagramReceived(reply(message), address)
        self.assertTrue(first.closed)
        self.assertEqual(len([r for r in self.results if isinstance(r, tuple)]), 3)

    def test_port_rotation_by_time(self):
        self.ask()
        first = self.reactor.udp[0]
        first.protocol.datagramReceived(reply(sent(first)[0]), A)
        self.reactor.advance(60)
        self.ask()  # slot 1: also too old
        self.assertEqual(len(self.reactor.udp), 3)
        self.assertTrue(self.reactor.udp[1].closed)
        self.ask()
        self.assertTrue(first.closed)
        self.assertEqual(len(self.reactor.udp), 4)

    def test_pending_bound(self):
        """Over max_pending queries in flight: DNSServerError (SERVFAIL), counted."""
        for i in range(5):
            self.ask(b"n%d.test" % i)
        self.assertEqual(len(self.results), 1)
        self.results[0].trap(error.DNSServerError)
        self.assertEqual(self.client.counters["overloaded"], 1)
        self.assertEqual(self.client.counters["sent"], 4)

    def test_stop(self):
        self.ask()
        self.client.stop()
        self.results[0].trap(error.DNSQueryTimeoutError)
        self.assertTrue(all(p.closed for p in self.reactor.udp))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_send_error_next_server(self):
        def refuse(data, address):
            if address == A:
                raise OSError(101, "Network is unreachable")
            FakePort.write(port, data, address)
        port = self.reactor.udp[0]
        for p in self.reactor.udp:
            p.write = refuse
        self.ask()
        self.assertEqual(self.client.counters["send_errors"], 1)
        self.assertEqual(sent(port)[1], B)


class IPv6UpstreamTests(SynchronousTestCase):
    """An IPv6 upstream is asked from a pool of IPv6 sockets of its own."""

    def setUp(self):
        self.reactor = FakeReactor()
        self.client = UpstreamClient(self.reactor, [V6, A], sockets=2, rng=random.Random(6))
        self.client.start()
        self.addCleanup(self.client.stop)
        self.results = []

    def ask(self):
        d = self.client.query(dns.Query(b"x.test", dns.A), timeout=(1.0,))
        d.addBoth(self.results.append)

    def test_ipv6_pool_opened_when_first_asked(self):
        self.assertEqual([p.interface for p in self.reactor.udp], ["", ""])
        self.ask()
        self.assertEqual([p.interface for p in self.reactor.udp], ["", "", "::", "::"])
        port = self.reactor.udp[2]
        message, address = sent(port)
        self.assertEqual(address, V6)
        # An IPv6 socket gives (host, port, flow info, scope id).
        port.protocol.datagramReceived(reply(message), ("2001:db8::54", 53, 0, 0))
        self.assertEqual(self.client.counters["bad_source"], 1)
        port.protocol.datagramReceived(reply(message), V6 + (0, 0))
        self.assertEqual(self.results[0][0][0].payload.dottedQuad(), "192.0.2.7")
        self.client.stop()
        self.assertTrue(all(p.closed for p in self.reactor.udp))

    def test_no_ipv6_here_next_server(self):
        """No IPv6 socket can be opened: counted, and the IPv4 upstream is asked."""
        self.reactor.busy.add("::")
        self.ask()
        self.assertEqual(self.client.counters["send_errors"], 1)
        self.assertEqual(sent(self.reactor.udp[0])[1], A)


class ResolvConfTests(SynchronousTestCase):
    def test_servers(self):
        text = ("search lan\nnameserver 192.0.2.1\nnameserver ::1\nnameserver  10.0.0.1 \n"
                "nameserver fe80::1%eth0\nnameserver 2001:DB8::1\n#x\nnameserver bogus\n")
        self.assertEqual(resolv_conf_servers(text), [("192.0.2.1", 53), ("::1", 53),
                                                     ("10.0.0.1", 53), ("2001:db8::1", 53)])
        self.assertEqual(resolv_conf_servers(""), [("127.0.0.1", 53)])

    def test_read_and_reread(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("nameserver 192.0.2.1\n")
        reactor = FakeReactor()
        client = UpstreamClient(reactor, [], path, sockets=1)
        client.start()
        self.addCleanup(client.stop)
        self.assertEqual(client.servers, [("192.0.2.1", 53)])
        with open(path, "w") as f:
            f.write("nameserver 192.0.2.2\n")
        os.utime(path, (1, 1))
        reactor.advance(60)
        self.assertEqual(client.servers, [("192.0.2.2", 53)])
