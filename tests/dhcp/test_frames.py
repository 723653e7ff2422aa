"""
Tests for L{netsuite.dhcp.frames}: frames parsed (a golden frame from a
real client), the BPF program run by the kernel itself over frame bytes
(on an AF_UNIX datagram pair: socket filters apply there too, delivery is
synchronous and no privilege is needed), and the reader's bounds.
"""

import select
import socket
import struct
from ipaddress import IPv4Address

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.frames import (ACCEPT, DROP_ALL, PACKET_BROADCAST, FrameReader,
                                  MalformedFrame, attach_filter, bpf_program, parse_frame)
from netsuite.dhcp.packet import DISCOVER, Packet
from netsuite.dhcp.protocol import dhcp_socket
from netsuite.registry.values import MAC

# busybox udhcpc 1.35.0's DHCPDISCOVER as it reached br-lan in a lab
# (netsuite.lab, client c1; tcpdump -i br-lan -xx 'udp dst port 67').
GOLDEN_DISCOVER_FRAME = bytes.fromhex(
    "ffffffffffff024e1b4e000108004500014800000000401179a600000000ffff"
    "ffff004400430134ba6501010600fa43c9720000000000000000000000000000"
    "000000000000024e1b4e00010000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000063825363350101390202"
    "4037070103060c0f1c2a3c0c756468637020312e33352e303d0701024e1b4e00"
    "01ff0000000000000000000000000000000000000000")
CLIENT = MAC("02:4e:1b:4e:00:01")
SERVER_MAC = MAC("02:4e:00:00:00:fe")


def checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload, source_port=68, destination_port=67, source_mac=CLIENT.packed,
              destination_mac=b"\xff" * 6, source="0.0.0.0", destination="255.255.255.255",
              protocol=17, fragment=0, options=b"", ethertype=0x0800, version=4,
              udp_length=None, total_length=None, padding=b"", bad_checksum=False):
    """
    An Ethernet/IPv4/UDP frame as a client sends it (IP id 0, TTL 64, the
    UDP checksum over the pseudo-header, RFC 768).
    """
    length = 8 + len(payload) if udp_length is None else udp_length
    pseudo = (IPv4Address(source).packed + IPv4Address(destination).packed
              + struct.pack("!BBH", 0, protocol, 8 + len(payload)))
    unsummed = struct.pack("!HHHH", source_port, destination_port, length, 0) + payload
    udp_sum = checksum(pseudo + unsummed + b"\0" * (len(unsummed) % 2)) or 0xFFFF
    udp = unsummed[:6] + struct.pack("!H", udp_sum) + unsummed[8:]
    header_length = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | header_length // 4, 0,
                         header_length + len(udp) if total_length is None else total_length,
                         0, fragment, 64, protocol, 0, IPv4Address(source).packed,
                         IPv4Address(destination).packed) + options
    header = header[:10] + struct.pack("!H", checksum(header) ^ bad_checksum) + header[12:]
    return destination_mac + source_mac + struct.pack("!H", ethertype) + header + udp + padding


def discover(chaddr=CLIENT.packed, op=1):
    return Packet(op=op, xid=7, chaddr=chaddr, options=((53, bytes([DISCOVER])),)).to_bytes()


class ParseFrameTests(SynchronousTestCase):
    """
    L{parse_frame}.
    """

    def test_golden(self):
        """
        udhcpc's broadcast DISCOVER: the MACs, addresses and ports, and a
        payload (the UDP length's 300 bytes) that parses as its DISCOVER.
        """
        frame = parse_frame(GOLDEN_DISCOVER_FRAME)
        self.assertEqual((frame.source_mac, frame.destination_mac),
                         (CLIENT, MAC("ff:ff:ff:ff:ff:ff")))
        self.assertEqual((frame.source_ip, frame.destination_ip, frame.source_port,
                          frame.destination_port),
                         (IPv4Address(0), IPv4Address("255.255.255.255"), 68, 67))
        self.assertEqual(len(frame.payload), 300)
        packet = Packet.from_bytes(frame.payload)
        self.assertEqual((packet.message_type, packet.mac), (DISCOVER, CLIENT))

    def test_builder_matches_golden(self):
        """
        The tests' frame builder makes the golden frame from its payload, so
        the frames built below are what a client sends.
        """
        payload = parse_frame(GOLDEN_DISCOVER_FRAME).payload
        self.assertEqual(udp_frame(payload), GOLDEN_DISCOVER_FRAME)

    def test_padding_and_options(self):
        """
        Ethernet padding past the IPv4 total length is not payload; IPv4
        options move the UDP header.
        """
        frame = parse_frame(udp_frame(b"abc", options=b"\x01\x01\x01\x00", padding=b"\0" * 30))
        self.assertEqual((frame.payload, frame.destination_port), (b"abc", 67))

    def test_malformed(self):
        """
        Each kind of bad frame raises L{MalformedFrame}, never anything else.
        """
        frames = {
            "short": udp_frame(b"")[:41],
            "ARP": udp_frame(b"x" * 30, ethertype=0x0806),
            "IPv6": udp_frame(b"x", version=6),
            "header length": udp_frame(b"x")[:14] + b"\x44" + udp_frame(b"x")[15:],
            "total length past the frame": udp_frame(b"x", total_length=100),
            "total length under the headers": udp_frame(b"x", total_length=27),
            "more fragments": udp_frame(b"x", fragment=0x2000),
            "a later fragment": udp_frame(b"x", fragment=0x0010),
            "TCP": udp_frame(b"x", protocol=6),
            "checksum": udp_frame(b"x", bad_checksum=True),
            "UDP length past the datagram": udp_frame(b"x", udp_length=20),
            "UDP length under its header": udp_frame(b"x", udp_length=7),
        }
        for name, data in frames.items():
            with self.subTest(name):
                self.assertRaises(MalformedFrame, parse_frame, data)


class FilterTests(SynchronousTestCase):
    """
    L{bpf_program}, run by the kernel.
    """

    def passes(self, program, data):
        """
        Whether the kernel's run of C{program} over C{data} keeps it.
        """
        sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        self.addCleanup(receiver.close)
        attach_filter(receiver, program)
        receiver.setblocking(False)
        sender.send(data)
        try:
            return receiver.recv(4096) == data
        except BlockingIOError:
            return False

    def test_well_formed(self):
        """
        Every jump lands inside the program and it ends in a return, as the
        kernel's checker requires (it refuses the filter otherwise).
        """
        for requests in (False, True):
            for replies in (False, True):
                program = bpf_program(requests, replies)
                self.assertEqual(program[-1][0], 0x06)
                for pc, (code, jt, jf, _) in enumerate(program):
                    if code & 0x07 == 0x05:
                        self.assertLess(pc + 1 + max(jt, jf), len(program))

    def test_verdicts(self):
        """
        Requests (68 -> 67, a relay's 67 -> 67 with op 1) and replies
        (67 -> 68, 67 -> 67 with op 2) pass when asked for; nothing else.
        """
        request = udp_frame(discover())
        relayed = udp_frame(discover(), source_port=67)
        reply = udp_frame(discover(op=2), source_port=67, destination_port=68)
        to_relay = udp_frame(discover(op=2), source_port=67, destination_port=67)
        with_options = udp_frame(discover(), options=b"\x01" * 8)
        cases = [(request, True, False), (relayed, True, False), (with_options, True, False),
                 (GOLDEN_DISCOVER_FRAME, True, False), (reply, False, True),
                 (to_relay, False, True)]
        for data, is_request, is_reply in cases:
            for requests in (False, True):
                for replies in (False, True):
                    with self.subTest(data=data[:42].hex(), requests=requests, replies=replies):
                        self.assertEqual(self.passes(bpf_program(requests, replies), data),
                                         (is_request and requests) or (is_reply and replies))

    def test_dropped(self):
        """
        Frames that are not DHCP never pass, whatever is asked for.
        """
        program = bpf_program(True, True)
        for name, data in {
                "DNS": udp_frame(b"x" * 300, source_port=5353, destination_port=53),
                "to 68 from elsewhere": udp_frame(b"x" * 300, source_port=1000,
                                                  destination_port=68),
                "to 67 from elsewhere": udp_frame(b"x" * 300, source_port=1000),
                "TCP to 67": udp_frame(b"x" * 300, protocol=6),
                "a fragment": udp_frame(discover(), fragment=0x2000),
                "ARP": udp_frame(b"x" * 300, ethertype=0x0806)}.items():
            with self.subTest(name):
                self.assertFalse(self.passes(program, data))

    def test_drop_all(self):
        """
        L{DROP_ALL} drops even a DHCP request.
        """
        self.assertFalse(self.passes(DROP_ALL, GOLDEN_DISCOVER_FRAME))

    def test_accept_keeps_a_frame(self):
        """
        The accepting verdict keeps more than any Ethernet frame.
        """
        self.assertGreaterEqual(ACCEPT, 1518)

    def test_silent_udp_socket(self):
        """
        L{dhcp_socket} with C{silent} queues nothing; without it, it does.
        (Loopback delivers a datagram before sendto returns: a poll of
        zero, no waiting, tells.)
        """
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        for silent in (True, False):
            sock = dhcp_socket("lo", 0, "127.0.0.1", silent=silent)
            self.addCleanup(sock.close)
            sender.sendto(b"x", sock.getsockname())
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            self.assertEqual(bool(poller.poll(0)), not silent)


class FakeSocket:
    def __init__(self, frames, error=None):
        self.frames = list(frames)
        self.error = error
        self.closed = False

    def fileno(self):
        return 99

    def recvfrom(self, size):
        if self.frames:
            return self.frames.pop(0), ("br-lan", 0x0800, PACKET_BROADCAST, 1, b"")
        raise self.error or BlockingIOError()

    def close(self):
        self.closed = True


class FakeReactor:
    def __init__(self):
        self.readers = []

    def addReader(self, reader):
        self.readers.append(reader)

    def removeReader(self, reader):
        self.readers.remove(reader)


class FrameReaderTests(SynchronousTestCase):
    """
    L{FrameReader}.
    """

    def test_batch(self):
        """
        One wake-up reads at most C{batch} frames; the next reads the rest.
        """
        seen = []
        reactor = FakeReactor()
        reader = FrameReader(FakeSocket([b"%d" % i for i in range(100)]),
                             lambda data, kind: seen.append((data, kind)), reactor, batch=64)
        reader.start()
        self.assertEqual(reactor.readers, [reader])
        reader.doRead()
        self.assertEqual(len(seen), 64)
        reader.doRead()
        self.assertEqual((len(seen), seen[-1]), (100, (b"99", PACKET_BROADCAST)))
        reader.stop()
        self.assertEqual(reactor.readers, [])
        self.assertTrue(reader.sock.closed)

    def test_errors(self):
        """
        A receiver that raises is logged and the next frame read; a socket
        error is warned about and ends the wake-up.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        seen = []

        def receive(data, kind):
            seen.append(data)
            if data == b"bad":
                raise ValueError("bad")
        reader = FrameReader(FakeSocket([b"bad", b"good"], error=OSError(100, "down")),
                             receive, FakeReactor())
        reader.doRead()
        self.assertEqual(seen, [b"bad", b"good"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(any(e["log_level"] == LogLevel.warn and "down" in str(e.get("error"))
                            for e in events))

