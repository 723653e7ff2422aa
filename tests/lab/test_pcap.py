"""
Tests for netsuite.lab.pcap: the UDP datagrams of a tcpdump capture (no root needed).
"""

import ipaddress
import struct

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab.pcap import PcapError, udp_datagrams

# Captured with tcpdump 4.99.3 (libpcap 1.10.3, Debian 12): "netsuite" sent
# from 127.0.0.1:40068 to 127.0.0.1:40067, as
#   tcpdump -i lo -U -w eth.pcap -c 1 udp dst port 40067
ETHERNET_CAPTURE = bytes.fromhex(
    "d4c3b2a102000400000000000000000000000400010000007242116b3f860c0032000000"
    "32000000000000000000000000000000080045000024ef38400040114d8e7f0000017f00"
    "00019c849c830010fe236e65747375697465")
# The same datagram, as  tcpdump -i any -y LINUX_SLL -U -w sll.pcap -c 1 ...
COOKED_CAPTURE = bytes.fromhex(
    "d4c3b2a102000400000000000000000000000400710000007242116b3d860c0034000000"
    "340000000000030400060000000000000000080045000024ef38400040114d8e7f000001"
    "7f0000019c849c830010fe236e65747375697465")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


class UdpDatagramsTests(SynchronousTestCase):
    def test_ethernet(self):
        """
        A datagram of an Ethernet capture: addresses, ports, payload and
        the kernel's time stamp.
        """
        [found] = udp_datagrams(ETHERNET_CAPTURE)
        self.assertEqual((found.src, found.sport, found.dst, found.dport, found.payload),
                         (LOOPBACK, 40068, LOOPBACK, 40067, b"netsuite"))
        self.assertAlmostEqual(found.time, 0x6B114272 + 0x0C863F / 1e6, places=5)

    def test_cooked(self):
        """A Linux cooked capture (tcpdump -i any) gives the same datagram."""
        [found] = udp_datagrams(COOKED_CAPTURE)
        self.assertEqual((found.sport, found.dport, found.payload), (40068, 40067, b"netsuite"))

    def test_cut_short(self):
        """
        A last record cut short (tcpdump killed while writing) ends the
        reading; the records before it are read.
        """
        data = ETHERNET_CAPTURE + ETHERNET_CAPTURE[24:] + ETHERNET_CAPTURE[24:60]
        self.assertEqual(len(list(udp_datagrams(data))), 2)

    def test_not_udp_skipped(self):
        """A frame that is not IPv4 UDP (here: protocol changed to TCP) is skipped."""
        frame = bytearray(ETHERNET_CAPTURE)
        frame[24 + 16 + 14 + 9] = 6
        self.assertEqual(list(udp_datagrams(bytes(frame))), [])

    def test_fragment_skipped(self):
        """A fragment (more-fragments flag set) is not read as a datagram."""
        frame = bytearray(ETHERNET_CAPTURE)
        struct.pack_into("!H", frame, 24 + 16 + 14 + 6, 0x2000)
        self.assertEqual(list(udp_datagrams(bytes(frame))), [])

    def test_not_pcap(self):
        """Anything but a classic pcap file of Ethernet or cooked frames is refused."""
        self.assertRaises(PcapError, list, udp_datagrams(b"\x0a\x0d\x0d\x0a" + bytes(40)))
        self.assertRaises(PcapError, list, udp_datagrams(b""))
        raw = bytearray(ETHERNET_CAPTURE)
        raw[20] = 101  # LINKTYPE_RAW
        self.assertRaises(PcapError, list, udp_datagrams(bytes(raw)))
