# -*- test-case-name: tests.dhcp.test_packet -*-
"""
Tests for L{netsuite.dhcp.packet}: DHCPv4 messages and their wire format.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import List, Tuple

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.packet import (ACK, DISCOVER, INFORM, MAGIC_COOKIE, RELEASE, REQUEST,
                                  MalformedPacket, MessageType, Packet, PacketTooLarge)
from netsuite.registry.values import MAC

BOUNDED = settings(max_examples=300, deadline=None, database=None)

# Golden DHCPDISCOVERs from real clients, captured by tests/dhcp/capture_clients.py
# (run as root on Debian 12, kernel 6.18): two network namespaces joined by a
# veth pair; in one, a UDP socket bound to 0.0.0.0:67 with SO_BROADCAST and
# SO_BINDTODEVICE records what arrives; in the other, each client runs once:
#
#   timeout 10 udhcpc -i IF -n -q -t 2 -T 1 -s /bin/true
#   timeout 10 udhcpc -i IF -n -q -t 2 -T 1 -s /bin/true \
#       -x hostname:capture-host -V netsuite-capture
#   timeout 5 dhclient -1 -v -sf /bin/true -lf LEASES -pf PID IF
#
# udhcpc is "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)"; dhclient is
# "isc-dhclient-4.4.3-P1" with Debian's stock /etc/dhcp/dhclient.conf, which
# sends the host name ("vm" here). The client's MAC was d2:a4:7f:3f:79:cd.
# Each is the first packet its client sent; all three are 300 bytes.
CLIENT_MAC = MAC("d2:a4:7f:3f:79:cd")

UDHCPC_DISCOVER = bytes.fromhex(
    "01010600fbf43b6c0000000000000000000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501013902024037070103060c0f1c2a3c0c756468637020"
    "312e33352e303d0701d2a47f3f79cdff0000000000000000000000000000000000000000")

UDHCPC_HOSTNAME_DISCOVER = bytes.fromhex(
    "01010600027ddd760000000000000000000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501013902024037070103060c0f1c2a0c0c636170747572"
    "652d686f73743c106e657473756974652d636170747572653d0701d2a47f3f79cdff0000")

DHCLIENT_DISCOVER = bytes.fromhex(
    "010106001125e7310000000000000000000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501010c02766d370d011c02030f06770c2c2f1a792aff00"
    "000000000000000000000000000000000000000000000000000000000000000000000000")

# Golden DHCPREQUESTs (selecting state, after an OFFER) and DHCPRELEASEs from
# the same clients and the same client MAC, captured by
# "tests/dhcp/capture_clients.py --exchange" (same machine and versions as
# above): busybox udhcpd 1.35.0 serves 192.0.2.100-199 from 192.0.2.1 in the
# server namespace, and an AF_PACKET socket on its veth records the UDP
# payload of every datagram to port 67 as it came off the wire. The clients'
# script only puts the leased address on the interface and takes it off:
#
#   udhcpc -i IF -f -n -R -t 5 -T 2 -s SCRIPT     (SIGTERM once bound: -R releases)
#   timeout 20 dhclient -1 -v -sf SCRIPT -lf LEASES -pf PID IF
#   timeout 20 dhclient -r -v -sf SCRIPT -lf LEASES -pf PID IF
#
# Each is the first of its type its client sent; all four are 300 bytes. The
# lease was 192.0.2.153. The REQUESTs were broadcast, the RELEASEs unicast to
# the server from the leased address; udhcpc's RELEASE has a new xid.
SERVER = IPv4Address("192.0.2.1")
LEASED = IPv4Address("192.0.2.153")

UDHCPC_REQUEST = bytes.fromhex(
    "01010600bf489a1e0002000000000000000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501033204c00002993604c0000201390202403707010306"
    "0c0f1c2a3c0c756468637020312e33352e303d0701d2a47f3f79cdff0000000000000000")

UDHCPC_RELEASE = bytes.fromhex(
    "0101060045a7617500020000c0000299000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501073604c00002013d0701d2a47f3f79cdff0000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000")

DHCLIENT_REQUEST = bytes.fromhex(
    "010106002aeffb260000000000000000000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501033604c00002013204c00002990c02766d370d011c02"
    "030f06770c2c2f1a792aff00000000000000000000000000000000000000000000000000")

DHCLIENT_RELEASE = bytes.fromhex(
    "01010600df7b787200000000c0000299000000000000000000000000d2a47f3f79cd00000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000638253633501073604c00002010c02766dff00000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000")

CAPTURES = [UDHCPC_DISCOVER, UDHCPC_HOSTNAME_DISCOVER, DHCLIENT_DISCOVER,
            UDHCPC_REQUEST, UDHCPC_RELEASE, DHCLIENT_REQUEST, DHCLIENT_RELEASE]


def message(options: bytes, sname: bytes = bytes(64), file: bytes = bytes(128)) -> bytes:
    """A request with these options and C{sname} and C{file} fields."""
    return (bytes([1, 1, 6, 0]) + bytes(40) + sname.ljust(64, b"\0") + file.ljust(128, b"\0")
            + MAGIC_COOKIE + options)


class CapturedClientTests(SynchronousTestCase):
    """
    DHCPDISCOVERs, DHCPREQUESTs and DHCPRELEASEs captured from real clients.
    """

    def test_udhcpc(self) -> None:
        """
        busybox udhcpc asks for seven options, says it takes 576 bytes, names
        its vendor class and sends a client id of type 1 and its MAC.
        """
        packet = Packet.from_bytes(UDHCPC_DISCOVER)
        self.assertEqual(packet.message_type, DISCOVER)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual(packet.xid, 0xFBF43B6C)
        self.assertEqual(packet.parameter_request_list, (1, 3, 6, 12, 15, 28, 42))
        self.assertEqual(packet.max_message_size, 576)
        self.assertEqual(packet.option(60), b"udhcp 1.35.0")
        self.assertEqual(packet.client_id, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual(packet.client_key, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual((packet.hostname, packet.broadcast), (None, False))
        self.assertEqual([code for code, _ in packet.options], [53, 57, 55, 60, 61])

    def test_udhcpc_hostname(self) -> None:
        """
        udhcpc's C{-x hostname:} and C{-V} become options 12 and 60.
        """
        packet = Packet.from_bytes(UDHCPC_HOSTNAME_DISCOVER)
        self.assertEqual(packet.message_type, DISCOVER)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual(packet.hostname, "capture-host")
        self.assertEqual(packet.option(60), b"netsuite-capture")
        self.assertEqual(packet.client_id, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual([code for code, _ in packet.options], [53, 57, 55, 12, 60, 61])

    def test_dhclient(self) -> None:
        """
        ISC dhclient sends its host name and thirteen requested options, but
        neither a client id nor a maximum size, so the lease key falls back
        to the hardware type and address.
        """
        packet = Packet.from_bytes(DHCLIENT_DISCOVER)
        self.assertEqual(packet.message_type, DISCOVER)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual(packet.hostname, "vm")
        self.assertEqual(packet.parameter_request_list,
                         (1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42))
        self.assertIsNone(packet.client_id)
        self.assertIsNone(packet.max_message_size)
        self.assertEqual(packet.client_key, b"\x01" + CLIENT_MAC.packed)

    def test_udhcpc_request(self) -> None:
        """
        udhcpc's REQUEST in selecting state names the offered address (50)
        and the server (54) with ciaddr still zero, counts two seconds since
        it started, and repeats its DISCOVER's other options.
        """
        packet = Packet.from_bytes(UDHCPC_REQUEST)
        self.assertEqual(packet.message_type, REQUEST)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual(packet.chaddr, CLIENT_MAC.packed + bytes(10))
        self.assertEqual((packet.xid, packet.secs, packet.flags), (0xBF489A1E, 2, 0))
        self.assertEqual(packet.ciaddr, IPv4Address(0))
        self.assertEqual((packet.requested_ip, packet.server_id), (LEASED, SERVER))
        self.assertEqual(packet.client_id, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual(packet.parameter_request_list, (1, 3, 6, 12, 15, 28, 42))
        self.assertEqual(packet.max_message_size, 576)
        self.assertEqual((packet.hostname, packet.broadcast), (None, False))
        self.assertEqual([code for code, _ in packet.options], [53, 50, 54, 57, 55, 60, 61])

    def test_udhcpc_release(self) -> None:
        """
        udhcpc's RELEASE carries the address in ciaddr, the server and its
        client id, and nothing else.
        """
        packet = Packet.from_bytes(UDHCPC_RELEASE)
        self.assertEqual(packet.message_type, RELEASE)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual((packet.xid, packet.secs, packet.flags), (0x45A76175, 2, 0))
        self.assertEqual(packet.ciaddr, LEASED)
        self.assertEqual((packet.yiaddr, packet.siaddr, packet.giaddr), (IPv4Address(0),) * 3)
        self.assertEqual((packet.requested_ip, packet.server_id), (None, SERVER))
        self.assertEqual(packet.client_id, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual(packet.client_key, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual([code for code, _ in packet.options], [53, 54, 61])

    def test_dhclient_request(self) -> None:
        """
        dhclient's REQUEST in selecting state puts the server before the
        requested address, then its host name and its DISCOVER's list; still
        no client id.
        """
        packet = Packet.from_bytes(DHCLIENT_REQUEST)
        self.assertEqual(packet.message_type, REQUEST)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual((packet.xid, packet.secs, packet.flags), (0x2AEFFB26, 0, 0))
        self.assertEqual(packet.ciaddr, IPv4Address(0))
        self.assertEqual((packet.requested_ip, packet.server_id), (LEASED, SERVER))
        self.assertEqual(packet.hostname, "vm")
        self.assertEqual(packet.parameter_request_list,
                         (1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42))
        self.assertIsNone(packet.client_id)
        self.assertEqual(packet.client_key, b"\x01" + CLIENT_MAC.packed)
        self.assertEqual([code for code, _ in packet.options], [53, 54, 50, 12, 55])

    def test_dhclient_release(self) -> None:
        """
        dhclient's RELEASE carries the address in ciaddr, the server and its
        host name.
        """
        packet = Packet.from_bytes(DHCLIENT_RELEASE)
        self.assertEqual(packet.message_type, RELEASE)
        self.assertEqual(packet.mac, CLIENT_MAC)
        self.assertEqual((packet.xid, packet.secs, packet.flags), (0xDF7B7872, 0, 0))
        self.assertEqual(packet.ciaddr, LEASED)
        self.assertEqual((packet.requested_ip, packet.server_id), (None, SERVER))
        self.assertEqual(packet.hostname, "vm")
        self.assertIsNone(packet.client_id)
        self.assertEqual([code for code, _ in packet.options], [53, 54, 12])

    def test_round_trip(self) -> None:
        """
        Re-encoding a capture gives it back byte for byte, and so a packet
        that parses equal.
        """
        for data in CAPTURES:
            packet = Packet.from_bytes(data)
            self.assertEqual(packet.to_bytes(), data)
            self.assertEqual(Packet.from_bytes(packet.to_bytes()), packet)


class ParseTests(SynchronousTestCase):
    """
    L{Packet.from_bytes}.
    """

    def test_header(self) -> None:
        """
        Header fields land in their attributes.
        """
        data = (bytes([2, 6, 6, 3]) + b"\x01\x02\x03\x04" + b"\x00\x05\x80\x00"
                + bytes([10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 10, 0, 0, 4])
                + b"\xaa" * 6 + bytes(10) + b"srv".ljust(64, b"\0") + b"boot".ljust(128, b"\0")
                + MAGIC_COOKIE + b"\xff")
        packet = Packet.from_bytes(data)
        self.assertEqual(attrs.astuple(packet, recurse=False)[:11],
                         (2, 6, 6, 3, 0x01020304, 5, 0x8000, IPv4Address("10.0.0.1"),
                          IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3"),
                          IPv4Address("10.0.0.4")))
        self.assertEqual(packet.chaddr, b"\xaa" * 6 + bytes(10))
        self.assertEqual(packet.sname.rstrip(b"\0"), b"srv")
        self.assertEqual(packet.file.rstrip(b"\0"), b"boot")
        self.assertTrue(packet.broadcast)
        self.assertIsNone(packet.mac)
        self.assertEqual(packet.client_key, b"\x06" + b"\xaa" * 6)
        self.assertEqual(packet.options, ())

    def test_malformed(self) -> None:
        """
        Short messages, bad cookies, truncated options, long hardware
        addresses, bad option 52 values and option 52 pointing at fields
        that do not hold options raise L{MalformedPacket}.
        """
        cases = [
            b"",
            message(b"")[:239],
            message(b"\xff")[:236] + b"\x63\x82\x53\x64\xff",
            message(b"\x35\x02\x01"),
            message(b"\x35"),
            message(b"\x00\x00\x0c"),
            b"\x01\x01\x11" + message(b"\xff")[3:],
            message(b"\x34\x01\x04\xff"),
            message(b"\x34\x02\x01\x01\xff"),
            message(b"\x34\x00\xff"),
            message(b"\x34\x01\x01\xff", file=b"\x0c\xffnot an option list".ljust(128, b"\1")),
            message(b"\x34\x01\x02\xff", sname=b"\x0c\x40".ljust(64, b"x")),
        ]
        for data in cases:
            self.assertRaises(MalformedPacket, Packet.from_bytes, data)

    def test_pad_and_end(self) -> None:
        """
        Pads are skipped; what follows the end option is ignored, and a
        message may stop without one.
        """
        packet = Packet.from_bytes(message(b"\x00\x00\x35\x01\x03\x00\xff\x0c\x05junk"))
        self.assertEqual(packet.options, ((53, b"\x03"),))
        self.assertEqual(Packet.from_bytes(message(b"\x35\x01\x03")).options,
                         ((53, b"\x03"),))

    def test_concatenation(self) -> None:
        """
        Repeated instances of a code concatenate in order, at the place of
        the first (RFC 3396).
        """
        packet = Packet.from_bytes(message(b"\x0c\x02ab\x35\x01\x01\x0c\x00\x0c\x01c\xff"))
        self.assertEqual(packet.options, ((12, b"abc"), (53, b"\x01")))

    def test_overload(self) -> None:
        """
        Option 52 adds the options in C{file}, then in C{sname}, concatenating
        across fields; those fields then read as zeros and option 52 is gone.
        """
        options = b"\x35\x01\x05\x34\x01\x03\x0c\x01a\xff"
        file = b"\x0c\x01b\x36\x04\x0a\x00\x00\x01\xff"
        packet = Packet.from_bytes(message(options, sname=b"\x0c\x01c\x0f\x03lan\xff", file=file))
        self.assertEqual(packet.options, ((53, b"\x05"), (12, b"abc"),
                                          (54, b"\x0a\x00\x00\x01"), (15, b"lan")))
        self.assertEqual((packet.sname, packet.file), (bytes(64), bytes(128)))
        self.assertEqual(packet.message_type, ACK)
        self.assertEqual(packet.server_id, IPv4Address("10.0.0.1"))

    def test_overload_one_field(self) -> None:
        """
        Option 52 of 2 reads C{sname} only and leaves C{file} alone; option
        52 inside an overloaded field is ignored.
        """
        file = b"pxelinux.0".ljust(128, b"\0")
        packet = Packet.from_bytes(message(b"\x34\x01\x02\xff", sname=b"\x0f\x01x\x34\x01\x01",
                                           file=file))
        self.assertEqual(packet.options, ((15, b"x"),))
        self.assertEqual(packet.file, file)


class BuildTests(SynchronousTestCase):
    """
    L{Packet.to_bytes}.
    """

    def test_minimal(self) -> None:
        """
        A message has the header, the magic cookie, the end option, and zeros
        up to 300 bytes.
        """
        data = Packet(xid=7, chaddr=CLIENT_MAC.packed, options=[(53, b"\x01")]).to_bytes()
        self.assertEqual(len(data), 300)
        self.assertEqual(data[:8], b"\x01\x01\x06\x00\x00\x00\x00\x07")
        self.assertEqual(data[28:44], CLIENT_MAC.packed + bytes(10))
        self.assertEqual(data[236:244], MAGIC_COOKIE + b"\x35\x01\x01\xff")
        self.assertEqual(data[244:], bytes(56))

    def test_long_option(self) -> None:
        """
        A value over 255 bytes goes out as several instances (RFC 3396), and
        an empty one as a zero length.
        """
        data = Packet(options=[(43, b"x" * 600), (80, b"")]).to_bytes(1500)
        self.assertEqual(data[240:], b"\x2b\xff" + b"x" * 255 + b"\x2b\xff" + b"x" * 255
                         + b"\x2b\x5a" + b"x" * 90 + b"\x50\x00\xff")
        self.assertEqual(Packet.from_bytes(data).options, ((43, b"x" * 600), (80, b"")))

    def test_fits(self) -> None:
        """
        Options that fill a 576-byte datagram exactly (a 548-byte message)
        need no overload; C{max_size} counts the IP and UDP headers.
        """
        packet = Packet(options=[(43, b"x" * 255), (44, b"y" * (548 - 240 - 257 - 3))])
        data = packet.to_bytes()
        self.assertEqual(len(data), 548)
        self.assertEqual(data[108:236], bytes(128))

    def test_overload_file(self) -> None:
        """
        Options that do not fit spill into C{file}, announced by option 52 of 1.
        """
        packet = Packet(options=[(43, b"x" * 300), (15, b"d" * 40)])
        data = packet.to_bytes()
        self.assertEqual(len(data), 240 + 3 + 304 + 1)
        self.assertEqual(data[240:243], b"\x34\x01\x01")
        self.assertEqual(data[108:155], b"\x0f\x28" + b"d" * 40 + b"\xff" + bytes(4))
        self.assertEqual(data[44:108], bytes(64))
        self.assertEqual(Packet.from_bytes(data), packet)

    def test_overload_both(self) -> None:
        """
        When C{file} is not enough, C{sname} takes the rest: option 52 of 3.
        """
        packet = Packet(options=[(43, b"x" * 300), (44, b"y" * 100), (15, b"d" * 40)])
        data = packet.to_bytes()
        self.assertEqual(data[240:243], b"\x34\x01\x03")
        self.assertEqual(data[44:87], b"\x0f\x28" + b"d" * 40 + b"\xff")
        self.assertEqual(Packet.from_bytes(data), packet)

    def test_overload_sname_only(self) -> None:
        """
        A C{file} in use is left alone; C{sname} alone is option 52 of 2.
        """
        packet = Packet(file=b"pxelinux.0", options=[(43, b"x" * 300), (15, b"d" * 40)])
        data = packet.to_bytes()
        self.assertEqual(data[240:243], b"\x34\x01\x02")
        self.assertEqual(data[108:118], b"pxelinux.0")
        self.assertEqual(Packet.from_bytes(data), packet)

    def test_too_large(self) -> None:
        """
        Options that do not fit even with overload, or that need fields in
        use, raise L{PacketTooLarge}.
        """
        self.assertRaises(PacketTooLarge, Packet(options=[(43, b"x" * 600)]).to_bytes)
        self.assertRaises(PacketTooLarge, Packet(sname=b"s", file=b"f",
                                                 options=[(43, b"x" * 400)]).to_bytes)
        self.assertTrue(issubclass(PacketTooLarge, ValueError))

    def test_max_size_floor(self) -> None:
        """
        A C{max_size} that leaves less than the BOOTP minimum of 300 bytes
        for the message is a mistake.
        """
        self.assertRaises(ValueError, Packet().to_bytes, 327)
        self.assertEqual(len(Packet().to_bytes(328)), 300)


class PacketTests(SynchronousTestCase):
    """
    L{Packet}'s fields, helpers and properties.
    """

    def test_defaults(self) -> None:
        """
        A new packet is an Ethernet BOOTREQUEST with zero addresses and
        fields. Short byte fields are padded, addresses may be text, options
        any iterable of pairs.
        """
        self.assertEqual(Packet(), Packet(op=1, htype=1, hlen=6, giaddr=IPv4Address(0),
                                          chaddr=bytes(16), sname=bytes(64), file=bytes(128)))
        packet = Packet(chaddr=b"\x01\x02", ciaddr="10.0.0.9", options=iter([(53, b"\x01")]))
        self.assertEqual((packet.chaddr, packet.ciaddr, packet.options),
                         (b"\x01\x02" + bytes(14), IPv4Address("10.0.0.9"), ((53, b"\x01"),)))

    def test_invalid(self) -> None:
        """
        Oversized fields, out-of-range numbers, wire-only codes and repeated
        codes are refused.
        """
        for changes in ({"chaddr": bytes(17)}, {"sname": bytes(65)}, {"hlen": 17},
                        {"op": 256}, {"xid": -1}, {"secs": 65536}, {"options": [(0, b"")]},
                        {"options": [(52, b"\x01")]}, {"options": [(255, b"")]},
                        {"options": [(1, b""), (1, b"")]}):
            self.assertRaises(ValueError, Packet, **changes)

    def test_immutable(self) -> None:
        """
        Packets cannot be changed; C{replace} makes a changed copy.
        """
        packet = Packet()
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, packet, "xid", 1)
        self.assertEqual(packet.replace(xid=1, yiaddr="10.0.0.5"),
                         Packet(xid=1, yiaddr=IPv4Address("10.0.0.5")))
        self.assertEqual(packet.xid, 0)

    def test_with_options(self) -> None:
        """
        C{with_options} replaces values in place, appends new codes and
        removes codes set to L{None}.
        """
        packet = Packet(options=[(53, b"\x01"), (12, b"a"), (61, b"\x01x")])
        changed = packet.with_options([(12, b"b"), (50, b"\n\0\0\1"), (61, None)])
        self.assertEqual(changed.options, ((53, b"\x01"), (12, b"b"), (50, b"\n\0\0\1")))
        self.assertEqual(changed.option(61), None)
        self.assertEqual(packet.option(61), b"\x01x")

    def test_message_type(self) -> None:
        """
        Option 53 reads as a named L{MessageType}, an int beyond INFORM, or
        L{None} when absent or malformed.
        """
        self.assertEqual(Packet(options=[(53, b"\x08")]).message_type, INFORM)
        self.assertEqual(MessageType(8).name, "INFORM")
        self.assertEqual(Packet(options=[(53, b"\x0d")]).message_type, 13)
        self.assertIsNone(Packet().message_type)
        self.assertIsNone(Packet(options=[(53, b"\x01\x01")]).message_type)
        self.assertEqual([int(t) for t in MessageType], list(range(1, 9)))

    def test_client_key(self) -> None:
        """
        The lease key is option 61 when it has at least two bytes, else the
        hardware type and address.
        """
        mac = CLIENT_MAC.packed
        self.assertEqual(Packet(chaddr=mac, options=[(61, b"\x00id")]).client_key, b"\x00id")
        self.assertEqual(Packet(chaddr=mac).client_key, b"\x01" + mac)
        self.assertEqual(Packet(chaddr=mac, options=[(61, b"\x01")]).client_key, b"\x01" + mac)
        self.assertEqual(Packet(htype=32, hlen=0, chaddr=mac).client_key, b"\x20")

    def test_typed(self) -> None:
        """
        Options 50 and 54 read as addresses, 57 as an int and 55 as a tuple;
        L{None} (or an empty tuple) when absent or of the wrong size.
        """
        packet = Packet(options=[(50, b"\n\0\0\x07"), (54, b"\n\0\0"), (57, b"\x05\xdc"),
                                 (55, b"\x01\x79")])
        self.assertEqual((packet.requested_ip, packet.server_id, packet.max_message_size,
                          packet.parameter_request_list),
                         (IPv4Address("10.0.0.7"), None, 1500, (1, 121)))
        bare = Packet(options=[(57, b"\x05")])
        self.assertEqual((bare.requested_ip, bare.server_id, bare.max_message_size,
                          bare.parameter_request_list), (None, None, None, ()))

    def test_hostname_and_mac(self) -> None:
        """
        Option 12 loses trailing NULs and has undecodable bytes replaced.
        Only Ethernet packets with six-byte addresses have a MAC.
        """
        self.assertEqual(Packet(options=[(12, b"pc\xff\x00")]).hostname, "pc\ufffd")
        self.assertEqual(Packet(chaddr=CLIENT_MAC.packed).mac, CLIENT_MAC)
        self.assertIsNone(Packet(htype=6).mac)
        self.assertIsNone(Packet(hlen=16).mac)


def _mutate(data: bytes, how: str, where: int, extra: bytes) -> bytes:
    """Flip a bit, cut, insert or append at C{where}."""
    where %= len(data) + 1
    if how == "flip" and where < len(data):
        return data[:where] + bytes([data[where] ^ (1 << (extra[0] % 8 if extra else 0))]) \
            + data[where + 1:]
    if how == "truncate":
        return data[:where]
    if how == "insert":
        return data[:where] + extra + data[where:]
    return data + extra


_OPTIONS = st.lists(st.tuples(st.integers(1, 254).filter(lambda code: code != 52),
                              st.binary(max_size=300)),
                    max_size=8, unique_by=lambda pair: pair[0])
_PACKETS = st.builds(
    Packet, op=st.integers(0, 255), htype=st.integers(0, 255), hlen=st.integers(0, 16),
    hops=st.integers(0, 255), xid=st.integers(0, 2 ** 32 - 1), secs=st.integers(0, 65535),
    flags=st.integers(0, 65535), ciaddr=st.ip_addresses(v=4), giaddr=st.ip_addresses(v=4),
    chaddr=st.binary(max_size=16), sname=st.one_of(st.just(b""), st.binary(max_size=64)),
    file=st.one_of(st.just(b""), st.binary(max_size=128)), options=_OPTIONS)

_SEEDS: List[bytes] = CAPTURES + [
    message(b"\x35\x01\x05\x34\x01\x03\x0c\x01a\xff",
            sname=b"\x0c\x01c\x0f\x03lan\xff", file=b"\x0c\x01b\x36\x04\x0a\x00\x00\x01\xff"),
    Packet(options=[(43, b"x" * 300), (44, b"y" * 100), (15, b"d" * 40)]).to_bytes(),
]


class PropertyTests(SynchronousTestCase):
    """
    Random and mutated bytes, and random packets.
    """

    def assert_reencodes(self, data: bytes) -> None:
        """
        If C{data} parses, the packet re-encodes to bytes that parse equal;
        otherwise parsing raises L{MalformedPacket} and nothing else.
        """
        try:
            packet = Packet.from_bytes(data)
        except MalformedPacket:
            return
        self.assertEqual(Packet.from_bytes(packet.to_bytes(max(576, len(data) + 28))), packet)

    @BOUNDED
    @given(st.binary(max_size=700), st.binary(max_size=400))
    def test_random_bytes(self, data: bytes, options: bytes) -> None:
        """
        Random bytes, and random options after a valid header, also where
        option 52 sends parsing to the fields, parse or raise
        L{MalformedPacket}.
        """
        self.assert_reencodes(data)
        self.assert_reencodes(message(options))
        self.assert_reencodes(message(b"\x34\x01\x03\xff", sname=options[:64],
                                      file=options[64:192]))

    @BOUNDED
    @given(st.sampled_from(_SEEDS),
           st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "extend"]),
                              st.integers(0, 700), st.binary(max_size=8)),
                    min_size=1, max_size=4))
    def test_mutations(self, seed: bytes, mutations: List[Tuple[str, int, bytes]]) -> None:
        """
        Valid messages with bits flipped, cut short or extended parse or
        raise L{MalformedPacket}.
        """
        data = seed
        for how, where, extra in mutations:
            data = _mutate(data, how, where, extra)
        self.assert_reencodes(data)

    @settings(BOUNDED, max_examples=150)
    @given(_PACKETS, st.sampled_from([328, 576, 1500]))
    def test_packets(self, packet: Packet, max_size: int) -> None:
        """
        Any packet encodes within C{max_size}, with option overload if need
        be, and parses back equal; or it raises L{PacketTooLarge}.
        """
        try:
            data = packet.to_bytes(max_size)
        except PacketTooLarge:
            return
        self.assertTrue(300 <= len(data) <= max_size - 28)
        self.assertEqual(Packet.from_bytes(data), packet)
