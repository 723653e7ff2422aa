"""
Tests for L{netsuite.dhcp.protocol}: datagrams to packets and replies to
where RFC 2131 section 4.1 sends them, with a fake server and socket.
"""

import errno
from ipaddress import IPv4Address

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.packet import ACK, DISCOVER, NAK, OFFER, REQUEST, Packet, PacketTooLarge
from netsuite.dhcp.protocol import DHCPProtocol, reply_destination
from netsuite.registry.values import MAC

MAC_A = MAC("02:4e:00:00:00:0a")
RELAY = IPv4Address("10.90.0.1")


def request(kind=DISCOVER, **fields):
    return Packet(op=1, xid=9, chaddr=MAC_A.packed, options=((53, bytes([kind])),), **fields)


def reply_to(packet, kind=OFFER, **fields):
    return Packet(op=2, xid=packet.xid, chaddr=packet.chaddr, giaddr=packet.giaddr,
                  yiaddr=IPv4Address("10.89.0.100"), options=((53, bytes([kind])),), **fields)


class FakeSocket:
    def __init__(self, error=None):
        self.sent = []
        self.data = []
        self.error = error

    def sendto(self, data, destination):
        if self.error is not None:
            raise self.error
        self.data.append(data)
        self.sent.append((Packet.from_bytes(data), destination))
        return len(data)


class FakePort:
    def __init__(self, sock):
        self.sock = sock

    def getHandle(self):
        return self.sock


class FakeServer:
    def __init__(self, answer=None):
        self.handled = []
        self.answer = answer

    def handle(self, packet):
        self.handled.append(packet)
        return self.answer(packet) if self.answer else None


class ProtocolTests(SynchronousTestCase):
    def make(self, answer=None, error=None):
        self.server = FakeServer(answer)
        self.socket = FakeSocket(error)
        protocol = DHCPProtocol(self.server)
        protocol.transport = FakePort(self.socket)
        return protocol

    def test_malformed_counted(self):
        """
        Bytes that do not parse are dropped and counted; the server never
        sees them.
        """
        protocol = self.make()
        for data in (b"", b"\x01" * 10, request().to_bytes()[:-70] + b"\x35\x40"):
            protocol.datagramReceived(data, ("10.89.0.5", 68))
        self.assertEqual((protocol.received, protocol.malformed), (3, 3))
        self.assertEqual(self.server.handled, [])

    def test_not_a_request_ignored(self):
        """
        A BOOTREPLY, or a request without a message type (BOOTP), is ignored.
        """
        protocol = self.make()
        protocol.datagramReceived(reply_to(request()).to_bytes(), ("10.89.0.5", 68))
        protocol.datagramReceived(Packet(op=1).to_bytes(), ("10.89.0.5", 68))
        self.assertEqual(protocol.ignored, 2)

    def test_reply_sent(self):
        """
        A reply, at once or later (a Deferred), goes out once.
        """
        later = Deferred()
        answers = iter([lambda p: reply_to(p), lambda p: later])
        protocol = self.make(lambda p: next(answers)(p))
        protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        protocol.datagramReceived(request(REQUEST).to_bytes(), ("0.0.0.0", 68))
        self.assertEqual(len(self.socket.sent), 1)
        later.callback(reply_to(request(REQUEST), ACK))
        self.assertEqual([p.message_type for p, _ in self.socket.sent], [OFFER, ACK])
        self.assertEqual(protocol.sent, 2)

    def test_relayed_nak_broadcast(self):
        """
        A NAK through a relay goes to the relay, with the broadcast bit set
        (RFC 2131 section 4.3.2).
        """
        protocol = self.make(lambda p: succeed(reply_to(p, NAK)))
        protocol.datagramReceived(request(REQUEST, giaddr=RELAY).to_bytes(), ("10.90.0.1", 67))
        [(packet, destination)] = self.socket.sent
        self.assertEqual(destination, ("10.90.0.1", 67))
        self.assertTrue(packet.broadcast)

    def test_destinations(self):
        """
        To the relay; a NAK to everyone; to ciaddr when the client has an
        address; else broadcast.
        """
        cases = [(request(giaddr=RELAY), OFFER, ("10.90.0.1", 67)),
                 (request(REQUEST), NAK, ("255.255.255.255", 68)),
                 (request(REQUEST, ciaddr=IPv4Address("10.89.0.7")), ACK, ("10.89.0.7", 68)),
                 (request(), OFFER, ("255.255.255.255", 68))]
        for packet, kind, expected in cases:
            self.assertEqual(reply_destination(packet, reply_to(packet, kind)), expected)

    def test_handler_fails(self):
        """
        A request whose handling raises, at once or later, is logged and
        gets no answer; the next one is served.
        """
        failing = Deferred()
        answers = iter([ZeroDivisionError, failing, None])

        def answer(packet):
            result = next(answers)
            if result is ZeroDivisionError:
                raise ZeroDivisionError()
            return result if result is not None else reply_to(packet)
        protocol = self.make(answer)
        for _ in range(3):
            protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        failing.errback(ValueError("late"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError, ValueError)), 2)
        self.assertEqual(len(self.socket.sent), 1)

    def test_send_error_counted(self):
        """
        A reply the socket refuses is counted and logged, not raised.
        """
        protocol = self.make(lambda p: reply_to(p),
                             error=BlockingIOError(errno.EAGAIN, "full"))
        protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        self.assertEqual((protocol.sent, protocol.unsent), (0, 1))

    def test_max_message_size(self):
        """
        A reply fits the client's option 57, clamped to 576..1500 bytes:
        without it (or with a value that is not two bytes) 576; below
        576, 576; above 1500, 1500. Options that do not fit overflow into
        the file and sname fields.
        """
        medium = ((43, b"x" * 350),)  # 598 bytes plain, 504 overloaded in 576
        large = tuple((code, b"x" * 100) for code in range(60, 73))  # 1570 plain

        def answer(packet):
            options = large if packet.xid == 2 else medium
            return reply_to(packet).with_options(options)
        protocol = self.make(answer)
        cases = [(None, 1, 576), (b"\x05\xdc\x00", 1, 576), ((400).to_bytes(2, "big"), 1, 576),
                 ((1000).to_bytes(2, "big"), 1, 1000), ((9000).to_bytes(2, "big"), 2, 1500)]
        for size, xid, expected in cases:
            options = ((53, bytes([DISCOVER])),) + (((57, size),) if size else ())
            packet = Packet(op=1, xid=xid, chaddr=MAC_A.packed, options=options)
            protocol.datagramReceived(packet.to_bytes(), ("0.0.0.0", 68))
            self.assertEqual(self.socket.data[-1], answer(packet).to_bytes(expected), size)
            self.assertLessEqual(len(self.socket.data[-1]), expected - 28)
        self.assertEqual([len(data) for data in self.socket.data], [504, 504, 504, 598, 1471])
        self.assertEqual(self.socket.sent[-1][0], answer(packet))

    def test_reply_too_large(self):
        """
        A reply that does not fit even 1500 bytes is counted and logged as
        unsent, not raised out of the protocol; the next one is sent.
        """
        huge = tuple((code, b"x" * 250) for code in range(60, 70))
        answers = iter([lambda p: reply_to(p).with_options(huge), lambda p: succeed(
            reply_to(p).with_options(huge)), reply_to])
        protocol = self.make(lambda p: next(answers)(p))
        request57 = Packet(op=1, xid=9, chaddr=MAC_A.packed,
                           options=((53, bytes([DISCOVER])), (57, b"\x05\xdc")))
        self.assertRaises(PacketTooLarge, reply_to(request57).with_options(huge).to_bytes, 1500)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(3):
            protocol.datagramReceived(request57.to_bytes(), ("0.0.0.0", 68))
        self.assertEqual((protocol.sent, protocol.unsent, protocol.too_large), (1, 2, 2))
        self.assertEqual(self.flushLoggedErrors(), [])
        warned = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warned), 1)  # the first; a client could cause them all
        self.assertEqual(warned[0]["n"], 1)
