"""
Tests for L{netsuite.dhcp.protocol}: datagrams to packets and replies to
where RFC 2131 section 4.1 sends them, with a fake server and socket.
"""

import errno
import os
import socket
from ipaddress import IPv4Address

import attrs

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.neighbours import SIOCSARP, KernelNeighbours, NeighboursBusy, arp_request
from netsuite.dhcp.packet import (ACK, DISCOVER, INFORM, NAK, OFFER, REQUEST, Packet,
                                  PacketTooLarge)
from netsuite.dhcp.pool import Pool
from netsuite.dhcp.protocol import DHCPProtocol, PortTaken, dhcp_socket, reply_destination
from netsuite.dhcp.server import DHCPServer
from netsuite.registry import Registry
from netsuite.registry.values import MAC
from netsuite.testing import HeldRunner, SyncRunner

from .test_neighbours import FakeIoctl
from .test_server import LAN

MAC_A = MAC("02:4e:00:00:00:0a")
RELAY = IPv4Address("10.90.0.1")


def request(kind=DISCOVER, chaddr=MAC_A.packed, **fields):
    return Packet(op=1, xid=9, chaddr=chaddr, options=((53, bytes([kind])),), **fields)


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


class FakeNeighbours:
    """
    Records each entry asked for, with the Deferred the test fires.
    """

    def __init__(self):
        self.calls = []

    def learn(self, address, mac):
        d = Deferred()
        self.calls.append((address, mac, d))
        return d


class FakeServer:
    def __init__(self, answer=None):
        self.handled = []
        self.sources = []
        self.answer = answer

    def handle(self, packet, source=None):
        self.handled.append(packet)
        self.sources.append(source)
        return self.answer(packet) if self.answer else None


class ProtocolTests(SynchronousTestCase):
    def make(self, answer=None, error=None, neighbours=None):
        self.server = FakeServer(answer)
        self.socket = FakeSocket(error)
        protocol = DHCPProtocol(self.server, neighbours)
        protocol.transport = FakePort(self.socket)
        return protocol

    def test_source_to_server(self):
        """
        The server is told where each request came from (its source
        address as text): it serves relayed requests from listed relays
        only.
        """
        protocol = self.make()
        protocol.datagramReceived(request(giaddr=RELAY).to_bytes(), ("10.90.0.254", 67))
        self.assertEqual(self.server.sources, ["10.90.0.254"])

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
        RFC 2131 section 4.1: to the relay's port 67 (whatever the flag);
        a NAK to everyone; to ciaddr when the client has an address
        (RENEWING, REBINDING, INFORM: whatever the flag); to everyone when
        the broadcast flag is set; else to the client's MAC at yiaddr,
        which needs a neighbour entry. A hardware address that is not a
        unicast Ethernet MAC gets a broadcast.
        """
        client = IPv4Address("10.89.0.7")
        cases = [(request(giaddr=RELAY), OFFER, ("10.90.0.1", 67, None)),
                 (request(giaddr=RELAY, flags=0x8000), OFFER, ("10.90.0.1", 67, None)),
                 (request(REQUEST, giaddr=RELAY), NAK, ("10.90.0.1", 67, None)),
                 (request(REQUEST), NAK, ("255.255.255.255", 68, None)),
                 (request(REQUEST, ciaddr=client), NAK, ("255.255.255.255", 68, None)),
                 (request(REQUEST, ciaddr=client), ACK, ("10.89.0.7", 68, None)),
                 (request(REQUEST, ciaddr=client, flags=0x8000), ACK, ("10.89.0.7", 68, None)),
                 (request(INFORM, ciaddr=client), ACK, ("10.89.0.7", 68, None)),
                 (request(flags=0x8000), OFFER, ("255.255.255.255", 68, None)),
                 (request(REQUEST, flags=0x8000), ACK, ("255.255.255.255", 68, None)),
                 (request(), OFFER, ("10.89.0.100", 68, MAC_A)),
                 (request(REQUEST), ACK, ("10.89.0.100", 68, MAC_A)),
                 (request(htype=6), OFFER, ("255.255.255.255", 68, None)),
                 (request(hlen=16), OFFER, ("255.255.255.255", 68, None)),
                 (request(chaddr=b"\xff" * 6), OFFER, ("255.255.255.255", 68, None)),
                 (request(chaddr=b"\x01\x00\x5e\x00\x00\x01"), OFFER,
                  ("255.255.255.255", 68, None)),
                 (request(chaddr=bytes(6)), OFFER, ("255.255.255.255", 68, None))]
        for packet, kind, expected in cases:
            self.assertEqual(reply_destination(packet, reply_to(packet, kind)), expected,
                             (packet, kind))
        nothing = reply_to(request(), ACK).replace(yiaddr=IPv4Address(0))
        self.assertEqual(reply_destination(request(), nothing), ("255.255.255.255", 68, None))

    def test_unicast_after_neighbour(self):
        """
        A reply to the client's MAC goes out once its neighbour entry is
        written, to yiaddr; a broadcast or relayed one needs none and goes
        at once.
        """
        neighbours = FakeNeighbours()
        protocol = self.make(lambda p: reply_to(p), neighbours=neighbours)
        protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        self.assertEqual(self.socket.sent, [])
        protocol.datagramReceived(request(flags=0x8000).to_bytes(), ("0.0.0.0", 68))
        protocol.datagramReceived(request(giaddr=RELAY).to_bytes(), ("10.90.0.1", 67))
        self.assertEqual([d for _, d in self.socket.sent],
                         [("255.255.255.255", 68), ("10.90.0.1", 67)])
        [(address, mac, d)] = neighbours.calls
        self.assertEqual((address, mac), ("10.89.0.100", MAC_A))
        d.callback(None)
        self.assertEqual(self.socket.sent[-1][1], ("10.89.0.100", 68))
        self.assertEqual(self.socket.sent[-1][0], reply_to(request()))
        self.assertEqual((protocol.sent, protocol.unicast, protocol.broadcast_instead), (3, 1, 0))

    def test_broadcast_instead(self):
        """
        When the entry cannot be written (refused, too many waiting, the
        interface gone) the reply is broadcast, counted; the first and
        every thousandth are warned about.
        """
        neighbours = FakeNeighbours()
        protocol = self.make(lambda p: reply_to(p), neighbours=neighbours)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(3):
            protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        for _, _, d in neighbours.calls:
            d.errback(NeighboursBusy("256 neighbour entries already waiting"))
        self.assertEqual([d for _, d in self.socket.sent], [("255.255.255.255", 68)] * 3)
        self.assertEqual((protocol.sent, protocol.unicast, protocol.broadcast_instead), (3, 0, 3))
        warned = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warned), 1)
        self.assertIn("256 neighbour entries", warned[0]["error"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_without_neighbours(self):
        """
        Without a neighbour writer, a reply that would go to the client's
        MAC is broadcast.
        """
        protocol = self.make(lambda p: reply_to(p))
        protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        self.assertEqual([d for _, d in self.socket.sent], [("255.255.255.255", 68)])

    def test_stopped_while_writing(self):
        """
        A port stopped while the entry is written sends nothing, and
        nothing fails.
        """
        neighbours = FakeNeighbours()
        protocol = self.make(lambda p: reply_to(p), neighbours=neighbours)
        protocol.datagramReceived(request().to_bytes(), ("0.0.0.0", 68))
        protocol.transport = None
        neighbours.calls[0][2].callback(None)
        self.assertEqual((self.socket.sent, protocol.sent, protocol.unicast), ([], 0, 0))

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


class DeliveryTests(SynchronousTestCase):
    """
    The server, the protocol and the kernel neighbour writer together
    (a fake ioctl; the writer's runner inline or held): where each reply
    of a DORA goes.
    """

    def setUp(self):
        lan = attrs.evolve(LAN, last=IPv4Address("10.89.0.199"))
        clock = Clock()
        self.store = LeaseStore(":memory:")
        self.server = DHCPServer(Registry("dhcp", clock), SyncRunner(), clock, lan)
        self.server.start(Pool([lan], self.store, clock))
        self.addCleanup(self.server.stop)
        self.ioctl = FakeIoctl()
        self.runner = SyncRunner()
        self.neighbours = KernelNeighbours("br-lan", self.runner, ioctl=self.ioctl)
        self.protocol = DHCPProtocol(self.server, self.neighbours)
        self.socket = FakeSocket()
        self.protocol.transport = FakePort(self.socket)

    def dora(self, flags=0, mac=MAC_A):
        discover = Packet(op=1, xid=1, flags=flags, chaddr=mac.packed,
                          options=((53, bytes([DISCOVER])),))
        self.protocol.datagramReceived(discover.to_bytes(), ("0.0.0.0", 68))
        offer = self.socket.sent[-1][0]
        self.protocol.datagramReceived(Packet(
            op=1, xid=2, flags=flags, chaddr=mac.packed, options=(
                (53, bytes([REQUEST])), (54, b"\x0a\x59\x00\x01"),
                (50, offer.yiaddr.packed))).to_bytes(), ("0.0.0.0", 68))
        return [(packet.message_type, destination) for packet, destination in self.socket.sent]

    def test_flag_clear(self):
        """
        With the broadcast flag clear, the OFFER and the ACK go to the
        offered address, each after its neighbour entry (that address at
        the client's MAC) is written.
        """
        self.assertEqual(self.dora(), [(OFFER, ("10.89.0.100", 68)), (ACK, ("10.89.0.100", 68))])
        entry = arp_request("br-lan", "10.89.0.100", MAC_A)
        self.assertEqual(self.ioctl.calls, [(SIOCSARP, entry)] * 2)
        self.assertEqual(self.protocol.unicast, 2)

    def test_flag_set(self):
        """
        With the broadcast flag set, both are broadcast; no entry is
        written.
        """
        self.assertEqual(self.dora(0x8000), [(OFFER, ("255.255.255.255", 68)),
                                             (ACK, ("255.255.255.255", 68))])
        self.assertEqual((self.ioctl.calls, self.runner.calls), ([], 0))

    def test_renew(self):
        """
        A renewal (ciaddr) is answered at ciaddr, with no entry: the client
        answers ARP for its address.
        """
        self.dora()
        renew = Packet(op=1, xid=3, ciaddr=IPv4Address("10.89.0.100"), chaddr=MAC_A.packed,
                       options=((53, bytes([REQUEST])),))
        self.protocol.datagramReceived(renew.to_bytes(), ("10.89.0.100", 68))
        self.assertEqual(self.socket.sent[-1][1], ("10.89.0.100", 68))
        self.assertEqual(len(self.ioctl.calls), 2)

    def test_flood_bounded(self):
        """
        DISCOVERs from many new MACs while the worker thread is stuck queue
        no more than C{most_waiting} entries; the others are answered by
        broadcast at once.
        """
        self.neighbours.runner = held = HeldRunner()
        self.neighbours.most_waiting = 4
        for n in range(10):
            mac = MAC(bytes([2, 0, 0, 0, 1, n]))
            self.protocol.datagramReceived(Packet(
                op=1, xid=n, chaddr=mac.packed, options=((53, bytes([DISCOVER])),)
            ).to_bytes(), ("0.0.0.0", 68))
        self.assertEqual((self.neighbours.waiting, self.protocol.broadcast_instead), (4, 6))
        self.assertEqual({d for _, d in self.socket.sent}, {("255.255.255.255", 68)})
        while held.calls:
            held.run_next()
        self.assertEqual(self.neighbours.waiting, 0)
        self.assertEqual([d for _, d in self.socket.sent[6:]],
                         [(f"10.89.0.{100 + n}", 68) for n in range(4)])
        self.flushLoggedErrors()


class SocketTests(SynchronousTestCase):
    """
    L{dhcp_socket} refuses a port another server holds on its interface.
    """

    def setUp(self):
        if os.getuid() != 0:
            raise SkipTest("SO_BINDTODEVICE needs root (CAP_NET_RAW)")

    def free_port(self):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        return port

    def test_taken_on_every_interface(self):
        """
        Another server bound to the port on every interface (as dnsmasq
        binds 0.0.0.0:67, with SO_REUSEADDR) makes the start fail with a
        message saying so, rather than both servers answering.
        """
        port = self.free_port()
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(other.close)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("0.0.0.0", port))
        error = self.assertRaises(PortTaken, dhcp_socket, "lo", port)
        self.assertIn(f"UDP port {port} on lo is taken: another DHCP server", str(error))

    def test_taken_on_this_interface(self):
        """
        One bound to this very interface is refused too; once it is gone
        the port is ours.
        """
        port = self.free_port()
        first = dhcp_socket("lo", port)
        self.assertRaises(PortTaken, dhcp_socket, "lo", port)
        first.close()
        dhcp_socket("lo", port).close()
