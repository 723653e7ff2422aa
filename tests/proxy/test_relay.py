"""
L{netsuite.proxy.relay}: one intercepted connection through its filters,
on string transports and a clock.
"""

import socket
from typing import Any, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet import tcp
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.filters import Event
from netsuite.proxy.intercept import fixed_destination
from netsuite.proxy.modules import find, relay
from netsuite.proxy.proxy import Proxy, ProxySettings
from netsuite.proxy.relay import send
from netsuite.proxy.track import CLOSING, CONNECTING, INSPECTING, RELAYING, Tracked


SETTINGS = ProxySettings(connect_timeout=5, inspect_idle=60, idle=600, max_held=100,
                         max_connections=3, close_timeout=10)


class Transport(StringTransport):
    """A string transport that can half-close, as TCP's can."""

    def __init__(self, peer: Optional[IPv4Address] = None) -> None:
        super().__init__(peerAddress=peer)
        self.write_closed = False
        self.no_delay = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


class FakeOutbound:
    def __init__(self) -> None:
        self.calls: List[Tuple[Any, Any, Any]] = []
        self.cancelled = 0

    def __call__(self, server: Any, client: Any, factory: Any) -> Any:
        self.calls.append((server, client, factory))
        return self.cancel

    def cancel(self) -> None:
        self.cancelled += 1


class Harness:
    def __init__(self, test: SynchronousTestCase, *modules: str,
                 settings: ProxySettings = SETTINGS, destination: Any = None,
                 select: Any = None, admit: Any = None) -> None:
        self.reactor = MemoryReactorClock()
        self.outbound = FakeOutbound()
        self.events: List[Tuple[Tracked, Event]] = []
        self.proxy = Proxy(self.reactor, select or [(m, find(m)) for m in modules],
                           destination or fixed_destination("192.0.2.9", 143), self.outbound,
                           settings, on_event=lambda entry, event: self.events.append((entry, event)),
                           admit=admit)

    def accept(self, port: int = 40000) -> Tuple[Any, Transport]:
        peer = IPv4Address("TCP", "10.0.0.5", port)
        side = self.proxy.buildProtocol(peer)
        transport = Transport(peer)
        side.makeConnection(transport)
        return side, transport

    def connect(self) -> Tuple[Any, Transport]:
        factory = self.outbound.calls[-1][2]
        side = factory.buildProtocol(None)
        transport = Transport()
        side.makeConnection(transport)
        return side, transport

    def both(self, port: int = 40000) -> Tuple[Any, Transport, Any, Transport]:
        c, ct = self.accept(port)
        s, st = self.connect()
        return c, ct, s, st

    def names(self) -> List[str]:
        return [event.name for _, event in self.events]


LINES = "tests.proxy.fakemodules:lines"


class ConnectTests(SynchronousTestCase):
    def test_client_waits_for_the_server_side(self) -> None:
        """
        Nothing is read from the client before the server side is up; then
        each side's transport is the other's streaming producer.
        """
        h = Harness(self, LINES)
        c, ct = h.accept()
        self.assertEqual(ct.producerState, "paused")
        self.assertEqual(h.outbound.calls[0][:2], (("192.0.2.9", 143), ("10.0.0.5", 40000)))
        self.assertEqual(h.proxy.connections()[0]["state"], CONNECTING)
        s, st = h.connect()
        self.assertEqual(ct.producerState, "producing")
        self.assertIs(st.producer, ct)
        self.assertIs(ct.producer, st)
        self.assertTrue(st.streaming and ct.streaming)
        self.assertEqual(h.proxy.connections()[0]["state"], INSPECTING)

    def test_no_delay(self) -> None:
        """Both sides send without Nagle's wait, once connected."""
        h = Harness(self, LINES)
        c, ct = h.accept()
        self.assertFalse(ct.no_delay)
        s, st = h.connect()
        self.assertTrue(ct.no_delay and st.no_delay)

    def test_back_pressure_both_ways(self) -> None:
        """
        A side whose write buffer is full (Twisted pauses its producer)
        stops the reading of the other side, and resumes it when drained.
        """
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        st.producer.pauseProducing()  # the server does not read
        self.assertEqual(ct.producerState, "paused")
        st.producer.resumeProducing()
        self.assertEqual(ct.producerState, "producing")
        ct.producer.pauseProducing()  # the client does not read
        self.assertEqual(st.producerState, "paused")

    def test_connect_timeout(self) -> None:
        h = Harness(self, LINES)
        c, ct = h.accept()
        h.reactor.advance(4.9)
        self.assertFalse(ct.disconnecting)
        h.reactor.advance(0.2)
        self.assertEqual(h.outbound.cancelled, 1)
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.proxy.counters["connect_timeout"], 1)
        c.connectionLost(Failure(Exception()))
        self.assertEqual(h.proxy.connections(), [])

    def test_connect_failed(self) -> None:
        h = Harness(self, LINES)
        c, ct = h.accept()
        h.outbound.calls[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.proxy.counters["connect_failed"], 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_no_destination(self) -> None:
        """REDIRECT without an original destination (OSError 92): closed, counted."""
        def none(transport: Any) -> Any:
            raise OSError(92, "Protocol not available")
        h = Harness(self, LINES, destination=none)
        c, ct = h.accept()
        self.assertTrue(ct.disconnecting)
        self.assertEqual(h.proxy.counters["no_destination"], 1)
        self.assertEqual(h.outbound.calls, [])

    def test_max_connections(self) -> None:
        h = Harness(self, LINES)
        for port in (1, 2, 3):
            h.accept(port)
        self.assertIsNone(h.proxy.buildProtocol(IPv4Address("TCP", "10.0.0.5", 4)))
        self.assertEqual(h.proxy.counters["refused_full"], 1)


class AdmitTests(SynchronousTestCase):
    def test_admitted_later(self) -> None:
        asked: List[Deferred] = []
        h = Harness(self, LINES, admit=lambda entry: asked.append(Deferred()) or asked[-1])
        c, ct = h.accept()
        self.assertEqual(len(asked), 1)
        self.assertEqual(h.outbound.calls, [])  # not before the answer
        asked[0].callback(True)
        self.assertEqual(len(h.outbound.calls), 1)
        s, st = h.connect()
        self.assertEqual(ct.producerState, "producing")

    def test_refused(self) -> None:
        h = Harness(self, LINES, admit=lambda entry: entry.server[1] != 143)
        c, ct = h.accept()
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.outbound.calls, [])
        self.assertEqual(h.proxy.counters["refused"], 1)

    def test_admission_fails(self) -> None:
        h = Harness(self, LINES, admit=lambda entry: fail(ValueError("hook")))
        c, ct = h.accept()
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.proxy.counters["admit_failed"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_admission_raises(self) -> None:
        """An admit that raises (no Deferred) is a failed admission too."""
        def admit(entry: Tracked) -> bool:
            raise ValueError("hook")
        h = Harness(self, LINES, admit=admit)
        c, ct = h.accept()
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.outbound.calls, [])
        self.assertEqual(h.proxy.counters["admit_failed"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_no_answer(self) -> None:
        h = Harness(self, LINES, admit=lambda entry: Deferred())
        c, ct = h.accept()
        h.reactor.advance(5)
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.proxy.counters["connect_timeout"], 1)


class SelectTests(SynchronousTestCase):
    def test_modules_by_destination_port(self) -> None:
        """One listener, several ports: the modules are chosen per connection."""
        by_port = {143: [(LINES, find(LINES))]}
        h = Harness(self, select=lambda conn: by_port.get(conn.server[1], [("relay", relay)]),
                    destination=lambda transport: ("192.0.2.9", transport.getPeer().port))
        h.accept(143)
        h.accept(25)
        self.assertEqual([e["modules"] for e in h.proxy.connections()], [[LINES], ["relay"]])


class FilterTests(SynchronousTestCase):
    def test_filters_run_and_events_are_delivered(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        s.dataReceived(b"* OK hello\r\n")
        self.assertEqual(ct.value(), b"* OK hello\r\n")
        c.dataReceived(b"a1 login ")
        self.assertEqual(st.value(), b"")  # held: no whole line yet
        c.dataReceived(b"joe\nnext")
        self.assertEqual(st.value(), b"A1 LOGIN JOE\n")
        self.assertEqual(h.names(), ["greeting", "line"])
        entry, event = h.events[1]
        self.assertEqual(event.values, {"text": "a1 login joe"})
        self.assertEqual(entry.client, ("10.0.0.5", 40000))
        self.assertEqual(entry.server, ("192.0.2.9", 143))
        listed = h.proxy.connections()[0]
        self.assertEqual((listed["from_client"], listed["from_server"]), (17, 12))
        self.assertEqual(listed["client"], "10.0.0.5:40000")
        self.assertEqual(listed["modules"], [LINES])

    def test_done_filters_relay_untouched(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        s.dataReceived(b"* OK\n")
        c.dataReceived(b"done\nrest, as it is\n")
        self.assertEqual(st.value(), b"DONE\nrest, as it is\n")
        self.assertEqual(h.proxy.connections()[0]["state"], RELAYING)
        c.dataReceived(b"lower\n")
        self.assertTrue(st.value().endswith(b"lower\n"))

    def test_relay_module_relays_from_the_start(self) -> None:
        h = Harness(self, "relay")
        c, ct, s, st = h.both()
        self.assertIs(find("relay"), relay)
        self.assertEqual(h.proxy.connections()[0]["state"], RELAYING)
        c.dataReceived(b"anything")
        s.dataReceived(b"back")
        self.assertEqual((st.value(), ct.value()), (b"anything", b"back"))

    def test_cut(self) -> None:
        """A step with cut: its bytes are passed on, then both sides close."""
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        c.dataReceived(b"ok\nbad\n")
        self.assertEqual(st.value(), b"OK\n\n")
        self.assertTrue(ct.disconnecting and st.disconnecting)
        self.assertFalse(ct.disconnected)  # gently: after their buffers
        self.assertEqual(h.proxy.counters["cut_by_filter"], 1)
        self.assertEqual(h.proxy.connections()[0]["state"], CLOSING)
        c.dataReceived(b"more\n")
        self.assertEqual(st.value(), b"OK\n\n")

    def test_close_times_out(self) -> None:
        """A cut connection whose peers do not take its last bytes is aborted."""
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        c.dataReceived(b"bad\n")
        h.reactor.advance(10)
        self.assertTrue(ct.disconnected and st.disconnected)
        self.assertEqual(h.proxy.counters["close_timeout"], 1)
        c.connectionLost(Failure(Exception()))
        s.connectionLost(Failure(Exception()))
        self.assertEqual(h.proxy.connections(), [])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_held_bytes_are_bounded(self) -> None:
        h = Harness(self, "tests.proxy.fakemodules:hoarder")
        c, ct, s, st = h.both()
        c.dataReceived(b"x" * 100)
        self.assertFalse(ct.disconnecting)
        c.dataReceived(b"x")
        self.assertTrue(ct.disconnected and st.disconnected)
        self.assertEqual(h.proxy.counters["cut_held"], 1)

    def test_a_line_longer_than_the_bound(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        for _ in range(20):
            c.dataReceived(b"y" * 10)
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.proxy.counters["cut_held"], 1)

    def test_filter_failure(self) -> None:
        """A filter that raises: logged, counted, connection aborted; no crash."""
        h = Harness(self, "tests.proxy.fakemodules:broken")
        c, ct, s, st = h.both()
        c.dataReceived(b"x")
        self.assertTrue(ct.disconnected and st.disconnected)
        self.assertEqual(h.proxy.counters["filter_error"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_event_callback_failure(self) -> None:
        h = Harness(self, LINES)
        h.proxy.on_event = lambda entry, event: 1 / 0
        c, ct, s, st = h.both()
        c.dataReceived(b"x\n")
        self.assertEqual(st.value(), b"X\n")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class WatchTests(SynchronousTestCase):
    def test_not_the_protocol(self) -> None:
        """
        The server's first bytes are not the promised greeting: the module
        stops inspecting both ways (what the client's filter held is passed
        on) and the rest is relayed untouched.
        """
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        c.dataReceived(b"early ")
        self.assertEqual(st.value(), b"")
        s.dataReceived(b"SSH-2.0-OpenSSH\r\n")
        self.assertEqual(ct.value(), b"SSH-2.0-OpenSSH\r\n")
        self.assertEqual(st.value(), b"early ")
        self.assertEqual(h.names(), ["not-protocol"])
        self.assertEqual(h.proxy.connections()[0]["state"], RELAYING)
        c.dataReceived(b"bytes\nbad\n")
        s.dataReceived(b"more")
        self.assertEqual(st.value(), b"early bytes\nbad\n")
        self.assertEqual(ct.value(), b"SSH-2.0-OpenSSH\r\nmore")
        self.assertFalse(ct.disconnecting)


class HalfCloseTests(SynchronousTestCase):
    def test_client_half_closes_first(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        c.dataReceived(b"partial")
        c.readConnectionLost()
        # the chain was ended: its held bytes are flushed, then the half-close
        self.assertEqual(st.value(), b"partial")
        self.assertTrue(st.write_closed)
        self.assertIsNone(st.producer)  # nobody resumes the ended client's reading
        self.assertEqual(h.names(), ["end"])
        self.assertFalse(ct.disconnecting)
        s.dataReceived(b"* OK answer\n")
        self.assertEqual(ct.value(), b"* OK answer\n")
        s.readConnectionLost()
        self.assertTrue(ct.write_closed)
        self.assertTrue(ct.disconnecting and st.disconnecting)
        c.connectionLost(Failure(Exception()))
        s.connectionLost(Failure(Exception()))
        self.assertEqual(h.proxy.connections(), [])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_end_twice_is_once(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        c.readConnectionLost()
        c.readConnectionLost()
        self.assertEqual(h.names(), ["end"])

    def test_one_side_lost_closes_the_other(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        s.connectionLost(Failure(Exception()))
        self.assertTrue(ct.disconnecting)
        self.assertFalse(ct.disconnected)
        self.assertEqual(len(h.proxy.connections()), 1)
        c.connectionLost(Failure(Exception()))
        self.assertEqual(h.proxy.connections(), [])

    def test_client_gone_while_connecting(self) -> None:
        h = Harness(self, LINES)
        c, ct = h.accept()
        c.connectionLost(Failure(Exception()))
        self.assertEqual(h.outbound.cancelled, 1)
        self.assertEqual(h.proxy.connections(), [])
        # a connection made anyway is closed at once
        s, st = h.connect()
        self.assertTrue(st.disconnecting)


class IdleTests(SynchronousTestCase):
    def test_idle_while_inspecting(self) -> None:
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        h.reactor.advance(40)
        c.dataReceived(b"x\n")
        h.reactor.advance(40)  # 80 s old, idle 40 s
        self.assertFalse(ct.disconnecting)
        self.assertEqual(h.proxy.connections()[0]["idle"], 40)
        self.assertEqual(h.proxy.connections()[0]["age"], 80)
        h.reactor.advance(20)
        self.assertTrue(ct.disconnected and st.disconnected)
        self.assertEqual(h.proxy.counters["idle_timeout"], 1)

    def test_idle_once_relaying(self) -> None:
        """Once every filter is done, the longer idle time-out applies."""
        h = Harness(self, LINES)
        c, ct, s, st = h.both()
        s.dataReceived(b"* OK\n")
        c.dataReceived(b"done\n")
        h.reactor.advance(599)
        self.assertFalse(ct.disconnecting)
        h.reactor.advance(1)
        self.assertTrue(ct.disconnected)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(h.proxy.counters["idle_timeout"], 1)


class OnCloseTests(SynchronousTestCase):
    def test_on_close_once(self) -> None:
        """on_close hears of each opened connection once, when both sides are gone."""
        h = Harness(self, LINES)
        closed: List[Tracked] = []
        h.proxy.on_close = closed.append
        c, ct, s, st = h.both()
        ct.loseConnection()
        c.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(closed, [])
        s.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([e.id for e in closed], [1])
        c.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(closed), 1)

    def test_not_opened_not_closed(self) -> None:
        def none(transport: Any) -> Any:
            raise OSError(92, "Protocol not available")
        h = Harness(self, LINES, destination=none)
        closed: List[Tracked] = []
        h.proxy.on_close = closed.append
        c, ct = h.accept()
        c.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(closed, [])


class SendTests(SynchronousTestCase):
    """
    L{send}: a chunk for a TCP transport with nothing buffered goes out at
    once; otherwise it is buffered behind what is, in order.
    """

    def transport(self) -> Tuple[tcp.Connection, socket.socket, MemoryReactor]:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        theirs.settimeout(5)
        reactor = MemoryReactor()
        transport = tcp.Connection(ours, Protocol(), reactor)
        transport.connected = True
        return transport, theirs, reactor

    def test_sent_at_once(self) -> None:
        transport, theirs, reactor = self.transport()
        send(transport, b"a chunk")
        self.assertEqual(theirs.recv(100), b"a chunk")
        self.assertEqual((transport._tempDataLen, reactor.getWriters()), (0, []))

    def test_behind_what_is_buffered(self) -> None:
        transport, theirs, reactor = self.transport()
        transport.write(b"first ")
        send(transport, b"second")
        self.assertEqual(transport._tempDataLen, 12)  # nothing sent before the buffer
        self.assertEqual(reactor.getWriters(), [transport])
        transport.doWrite()
        self.assertEqual(theirs.recv(100), b"first second")

    def test_not_after_close(self) -> None:
        """A transport closing (or half-closed) gets what Twisted's write does."""
        transport, theirs, reactor = self.transport()
        transport.loseWriteConnection()
        send(transport, b"late")
        self.assertEqual(transport._tempDataLen, 4)  # buffered, written before the shutdown

    def test_string_transport(self) -> None:
        """Any other transport: its write."""
        transport = StringTransport()
        send(transport, b"x")
        self.assertEqual(transport.value(), b"x")
