"""
L{netsuite.proxy.nfqueue}: the SYN table on a Clock, the SYN parser, and
the queue reader with a fake queue on a memory reactor.
"""

import socket
import struct
from collections import Counter
from typing import Any, List, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from netsuite.nfqueue import ISynSink
from netsuite.proxy.intercept import destination_for
from netsuite.proxy.nfqueue import COPY_RANGE, QueueReader, SynTable, parse_syn


def tcp4(src: str, sport: int, dst: str, dport: int, flags: int = 0x02,
         options: bytes = b"", fragment: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 64240, 0, 0)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(tcp), 1, fragment, 64, 6,
                         0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + options + tcp


def tcp6(src: str, sport: int, dst: str, dport: int, flags: int = 0x02,
         next_header: int = 6) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 64240, 0, 0)
    return (struct.pack("!IHBB", 6 << 28, len(tcp), next_header, 64)
            + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + tcp)


class ParseTests(SynchronousTestCase):
    def test_ipv4_syn(self) -> None:
        self.assertEqual(parse_syn(tcp4("10.89.0.11", 40000, "192.0.2.9", 143)),
                         (("10.89.0.11", 40000), ("192.0.2.9", 143)))

    def test_ipv4_options(self) -> None:
        packet = tcp4("10.89.0.11", 40000, "192.0.2.9", 143, options=b"\x01" * 8)
        self.assertEqual(parse_syn(packet), (("10.89.0.11", 40000), ("192.0.2.9", 143)))

    def test_ipv6_syn(self) -> None:
        self.assertEqual(parse_syn(tcp6("fd00::11", 40000, "2001:db8::9", 993)),
                         (("fd00::11", 40000), ("2001:db8::9", 993)))

    def test_within_copy_range(self) -> None:
        """The reader is given COPY_RANGE bytes: enough for the longest IPv4 header."""
        packet = tcp4("10.89.0.11", 1, "192.0.2.9", 143, options=b"\x01" * 40)
        self.assertLessEqual(60 + 14, COPY_RANGE)
        self.assertIsNotNone(parse_syn(packet[:COPY_RANGE]))

    def test_not_syns(self) -> None:
        for packet in [b"", b"\x45", tcp4("10.89.0.11", 1, "192.0.2.9", 143, flags=0x12),
                       tcp4("10.89.0.11", 1, "192.0.2.9", 143, flags=0x10),
                       tcp4("10.89.0.11", 1, "192.0.2.9", 143)[:33],
                       tcp4("10.89.0.11", 1, "192.0.2.9", 143, fragment=8),
                       tcp6("fd00::11", 1, "2001:db8::9", 993, next_header=0),
                       b"\x44" + tcp4("10.89.0.11", 1, "192.0.2.9", 143)[1:],
                       b"\x75" * 60]:
            self.assertIsNone(parse_syn(packet), packet)

    def test_udp(self) -> None:
        packet = bytearray(tcp4("10.89.0.11", 1, "192.0.2.9", 53))
        packet[9] = 17
        self.assertIsNone(parse_syn(bytes(packet)))


class Peer:
    def __init__(self, host: str, port: int) -> None:
        self.peer = IPv4Address("TCP", host, port)

    def getPeer(self) -> IPv4Address:
        return self.peer


class SynTableTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.table = SynTable(self.clock, max_entries=3, ttl=30.0)

    def test_record_take(self) -> None:
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.assertEqual(self.table.take(("10.89.0.11", 40000)), ("192.0.2.9", 143))
        self.assertIsNone(self.table.take(("10.89.0.11", 40000)), "given once")

    def test_by_port(self) -> None:
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.table.record(("10.89.0.11", 40001), ("192.0.2.10", 110))
        self.assertEqual(self.table.take(("10.89.0.11", 40001)), ("192.0.2.10", 110))
        self.assertEqual(self.table.take(("10.89.0.11", 40000)), ("192.0.2.9", 143))

    def test_expiry(self) -> None:
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.clock.advance(29)
        self.table.record(("10.89.0.12", 40000), ("192.0.2.9", 143))
        self.clock.advance(1)
        self.assertIsNone(self.table.take(("10.89.0.11", 40000)))
        self.assertEqual(self.table.take(("10.89.0.12", 40000)), ("192.0.2.9", 143))
        self.assertEqual(self.table.counters["syn_expired"], 1)

    def test_retransmitted_syn_renews(self) -> None:
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.clock.advance(20)
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.clock.advance(20)
        self.assertEqual(self.table.take(("10.89.0.11", 40000)), ("192.0.2.9", 143))
        self.assertEqual(len(self.table), 0)

    def test_bounded(self) -> None:
        for port in range(10):
            self.table.record(("10.89.0.11", 40000 + port), ("192.0.2.9", 143))
        self.assertEqual(len(self.table), 3)
        self.assertEqual(self.table.counters["syn_table_full"], 7)
        self.assertIsNone(self.table.take(("10.89.0.11", 40000)))
        self.assertEqual(self.table.take(("10.89.0.11", 40009)), ("192.0.2.9", 143))

    def test_destination(self) -> None:
        destination = destination_for("nfqueue", syn_table=self.table)
        self.table.record(("10.89.0.11", 40000), ("192.0.2.9", 143))
        self.assertEqual(destination(Peer("10.89.0.11", 40000)), ("192.0.2.9", 143))
        e = self.assertRaises(OSError, destination, Peer("10.89.0.11", 40000))
        self.assertIn("no queued SYN", str(e))
        self.assertEqual(self.table.counters["syn_missing"], 1)


class FakePacket:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.verdict: Optional[str] = None

    def get_payload(self) -> bytes:
        return self.payload

    def accept(self) -> None:
        assert self.verdict is None
        self.verdict = "accept"

    def drop(self) -> None:
        assert self.verdict is None
        self.verdict = "drop"


class FakeQueue:
    """NetfilterQueue's calls: bind, get_fd, run(block=False), unbind."""

    def __init__(self) -> None:
        self.bound: Optional[Any] = None
        self.pending: List[FakePacket] = []
        self.fail: Optional[OSError] = None

    def bind(self, num: int, callback: Any, max_len: int, range: int) -> None:
        self.bound = (num, callback, max_len, range)

    def get_fd(self) -> int:
        return 42

    def run(self, block: bool = True) -> None:
        assert block is False
        if self.fail is not None:
            raise self.fail
        while self.pending:
            self.bound[1](self.pending.pop(0))  # type: ignore[index]

    def unbind(self) -> None:
        self.bound = None


class ReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.queue = FakeQueue()
        self.table = SynTable(self.reactor)
        self.reader = QueueReader(self.reactor, self.table, 7, make_queue=lambda: self.queue)

    def test_table_is_a_sink(self) -> None:
        verifyObject(ISynSink, self.table)

    def test_start_stop(self) -> None:
        self.assertFalse(self.reader.running)
        self.reader.start()
        self.assertEqual(self.queue.bound[0], 7)
        self.assertEqual(self.queue.bound[3], COPY_RANGE)
        self.assertEqual(self.reader.fileno(), 42)
        self.assertIn(self.reader, self.reactor.getReaders())
        self.reader.stop()
        self.assertNotIn(self.reader, self.reactor.getReaders())
        self.assertIsNone(self.queue.bound)
        self.reader.stop()  # twice is fine

    def test_syns_recorded_and_accepted(self) -> None:
        self.reader.start()
        packets = [FakePacket(tcp4("10.89.0.11", 40000 + i, "192.0.2.9", 143)) for i in range(3)]
        self.queue.pending += packets
        self.reader.doRead()
        self.assertEqual([p.verdict for p in packets], ["accept"] * 3)
        self.assertEqual(self.table.take(("10.89.0.11", 40002)), ("192.0.2.9", 143))
        self.assertEqual(self.table.counters["syn_recorded"], 3)

    def test_other_packets_dropped_and_counted(self) -> None:
        self.reader.start()
        packets = [FakePacket(b"junk"), FakePacket(tcp4("10.89.0.11", 1, "192.0.2.9", 143, 0x12))]
        self.queue.pending += packets
        self.reader.doRead()
        self.assertEqual([p.verdict for p in packets], ["drop", "drop"])
        self.assertEqual(self.table.counters["queue_dropped"], 2)
        self.assertEqual(len(self.table), 0)

    def test_sink_decides(self) -> None:
        """
        The sink's answer is the verdict; a sink that raises gets its SYN
        accepted (fail open), counted and logged; read_done follows each
        read.
        """
        @implementer(ISynSink)
        class Sink:
            counters: Counter = Counter()
            done = 0

            def syn(self, client: Any, server: Any, packet: Any) -> bool:
                if server[1] == 1:
                    raise ValueError("broken")
                return server[1] != 25

            def read_done(self) -> None:
                self.done += 1
                if self.done == 2:
                    raise RuntimeError("broken after the verdicts")

        sink = Sink()
        verifyObject(ISynSink, sink)
        reader = QueueReader(self.reactor, sink, 7, make_queue=lambda: self.queue)
        reader.start()
        packets = [FakePacket(tcp4("10.89.0.11", 40000, "192.0.2.9", port))
                   for port in (443, 25, 1)]
        self.queue.pending += packets
        reader.doRead()
        self.assertEqual([p.verdict for p in packets], ["accept", "drop", "accept"])
        self.assertEqual((sink.counters["sink_errors"], sink.done), (1, 1))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.queue.pending.append(FakePacket(tcp4("10.89.0.11", 40001, "192.0.2.9", 443)))
        reader.doRead()  # read_done raises: counted, logged, the reader goes on
        self.assertEqual((sink.counters["sink_errors"], sink.done), (2, 2))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(reader.running)

    def test_read_error_counted(self) -> None:
        self.reader.start()
        self.queue.fail = OSError(105, "recv failed")
        self.reader.doRead()
        self.assertEqual(self.table.counters["queue_errors"], 1)
        self.flushLoggedErrors()


class ProxyTests(SynchronousTestCase):
    """The proxy in nfqueue mode: the destination is the queued SYN's."""

    def setUp(self) -> None:
        from .test_relay import LINES, Harness
        self.table = SynTable(Clock())
        self.h = Harness(self, LINES, destination=destination_for("nfqueue",
                                                                  syn_table=self.table))

    def test_recorded(self) -> None:
        self.table.record(("10.0.0.5", 40000), ("192.0.2.77", 143))
        c, ct = self.h.accept(40000)
        self.assertEqual(self.h.outbound.calls[0][:2], (("192.0.2.77", 143), ("10.0.0.5", 40000)))
        self.assertFalse(ct.disconnecting)

    def test_not_recorded_closed_and_counted(self) -> None:
        """No reader (the SYN bypassed the queue): closed at once, nothing connected out."""
        self.table.record(("10.0.0.5", 40001), ("192.0.2.77", 143))
        c, ct = self.h.accept(40000)
        self.assertTrue(ct.disconnecting)
        self.assertEqual(self.h.outbound.calls, [])
        self.assertEqual(self.h.proxy.counters["no_destination"], 1)
        self.assertEqual(self.table.counters["syn_missing"], 1)
        self.assertEqual(self.h.proxy.connections(), [])
