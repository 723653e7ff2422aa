# -*- test-case-name: tests.dhcp.test_frames -*-
"""
DHCP as Ethernet frames: what a UDP socket cannot show (the frame's source
MAC; other servers' replies to other clients).

 - L{parse_frame}: an Ethernet + IPv4 + UDP frame to a L{Frame} (pure; its
   only documented error is L{MalformedFrame}).
 - L{bpf_program}: the classic-BPF socket filter, written out instruction
   by instruction, so that only DHCP frames wake the reactor.
 - L{packet_socket} and L{FrameReader}: an C{AF_PACKET} socket on the
   interface (C{CAP_NET_RAW}) with that filter, read on the reactor a
   bounded batch at a time.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from ipaddress import IPv4Address
from typing import Any, Callable, List, Tuple

import attrs
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..registry.values import MAC

__all__ = ["Frame", "MalformedFrame", "parse_frame", "bpf_program", "DROP_ALL", "ACCEPT",
           "attach_filter", "packet_socket", "FrameReader", "ETH_P_IP", "PACKET_HOST",
           "PACKET_BROADCAST", "PACKET_MULTICAST", "PACKET_OTHERHOST", "PACKET_OUTGOING"]

_log = Logger()

ETH_P_IP = 0x0800
ETHERNET_HEADER = 14
UDP = 17
# sll_pkttype, the third item of an AF_PACKET recvfrom() address (linux/if_packet.h)
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST, PACKET_OUTGOING = range(5)
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 4 << 20
MAX_FRAME = 4096
"""Bytes read of one frame: a DHCP frame fits in 1514; a longer one is cut
and then refused as truncated."""


class MalformedFrame(ValueError):
    """
    Not an unfragmented Ethernet/IPv4/UDP frame whose lengths and IPv4
    header checksum are right.
    """


@attrs.frozen
class Frame:
    """
    One Ethernet frame carrying a UDP datagram; C{payload} is the UDP data
    (its length from the UDP header, the Ethernet padding cut off).
    """

    source_mac: MAC
    destination_mac: MAC
    source_ip: IPv4Address
    destination_ip: IPv4Address
    source_port: int
    destination_port: int
    payload: bytes


def _ipv4_checksum_ok(header: bytes) -> bool:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def parse_frame(data: bytes) -> Frame:
    """
    The frame in C{data}, as an C{AF_PACKET}/C{SOCK_RAW} socket reads it
    (Ethernet header first; the kernel has taken any VLAN tag off).

    The IPv4 header checksum is checked (RFC 791); the UDP checksum is not:
    a frame from a veth or an offloading card is seen here before its UDP
    checksum is filled in (CHECKSUM_PARTIAL), so a check would refuse good
    frames. The BOOTP payload is parsed strictly afterwards anyway.

    @raise MalformedFrame: anything else, or a fragment (RFC 791: the
        fragment offset or more-fragments flag set).
    """
    if len(data) < ETHERNET_HEADER + 20 + 8:
        raise MalformedFrame(f"{len(data)} bytes: shorter than Ethernet, IPv4 and UDP headers")
    ethertype = (data[12] << 8) | data[13]
    if ethertype != ETH_P_IP:
        raise MalformedFrame(f"EtherType {ethertype:#06x}, not IPv4")
    version, header_length = data[14] >> 4, (data[14] & 0x0F) * 4
    if version != 4 or header_length < 20:
        raise MalformedFrame(f"IP version {version}, header length {header_length}")
    total_length = (data[16] << 8) | data[17]
    if total_length < header_length + 8 or ETHERNET_HEADER + total_length > len(data):
        raise MalformedFrame(f"IPv4 total length {total_length} does not fit the frame "
                             f"({len(data)} bytes, header {header_length})")
    if ((data[20] << 8) | data[21]) & 0x3FFF:
        raise MalformedFrame("an IPv4 fragment")
    if data[23] != UDP:
        raise MalformedFrame(f"IP protocol {data[23]}, not UDP")
    ip_header = data[ETHERNET_HEADER:ETHERNET_HEADER + header_length]
    if not _ipv4_checksum_ok(ip_header):
        raise MalformedFrame("bad IPv4 header checksum")
    udp = data[ETHERNET_HEADER + header_length:ETHERNET_HEADER + total_length]
    source_port, destination_port, udp_length = struct.unpack("!HHH", udp[:6])
    if udp_length < 8 or udp_length > len(udp):
        raise MalformedFrame(f"UDP length {udp_length} does not fit the datagram "
                             f"({len(udp)} bytes)")
    return Frame(source_mac=MAC(data[6:12]), destination_mac=MAC(data[0:6]),
                 source_ip=IPv4Address(ip_header[12:16]),
                 destination_ip=IPv4Address(ip_header[16:20]), source_port=source_port,
                 destination_port=destination_port, payload=udp[8:udp_length])


# Classic BPF (linux/filter.h): each instruction is (code, jt, jf, k); a
# conditional jump goes jt or jf instructions past the next one. The
# program sees the frame from its Ethernet header; offsets are bytes.
LD_H_ABS, LD_B_ABS, LD_H_IND, LD_B_IND = 0x28, 0x30, 0x48, 0x50
LDX_B_MSH, JEQ_K, JSET_K, RET_K = 0xB1, 0x15, 0x45, 0x06
ACCEPT = 0xFFFF
"""A verdict: keep up to this many bytes of the frame."""
REJECT = 0

_REQUEST, _REPLY = 17, 18  # the indices of the two verdicts bpf_program sets
_FILTER: List[Tuple[int, int, int, int]] = [
    (LD_H_ABS, 0, 0, 12),        # 0  A = EtherType
    (JEQ_K, 0, 17, ETH_P_IP),    # 1  not IPv4: to 19, drop
    (LD_B_ABS, 0, 0, 23),        # 2  A = IPv4 protocol
    (JEQ_K, 0, 15, UDP),         # 3  not UDP: to 19, drop
    (LD_H_ABS, 0, 0, 20),        # 4  A = IPv4 flags and fragment offset
    (JSET_K, 13, 0, 0x3FFF),     # 5  a fragment (offset or more-fragments): to 19, drop
    (LDX_B_MSH, 0, 0, 14),       # 6  X = IPv4 header length, 4 * (byte 14 & 0xf)
    (LD_H_IND, 0, 0, 16),        # 7  A = UDP destination port (at 14 + X + 2)
    (JEQ_K, 0, 5, 67),           # 8  not to 67: to 14
    (LD_H_IND, 0, 0, 14),        # 9  A = UDP source port (at 14 + X)
    (JEQ_K, 6, 0, 68),           # 10 68 -> 67, a client's request: to 17
    (JEQ_K, 0, 7, 67),           # 11 neither 67 nor 68 -> 67: to 19, drop
    (LD_B_IND, 0, 0, 22),        # 12 67 -> 67 (a relay, or to one): A = BOOTP op (14 + X + 8)
    (JEQ_K, 3, 4, 1),            # 13 op 1 BOOTREQUEST: to 17; else to 18 (a reply to a relay)
    (JEQ_K, 0, 4, 68),           # 14 A still the destination port; not 68: to 19, drop
    (LD_H_IND, 0, 0, 14),        # 15 A = UDP source port
    (JEQ_K, 1, 2, 67),           # 16 67 -> 68, a server's reply: to 18; else to 19, drop
    (RET_K, 0, 0, REJECT),       # 17 a request: the verdict bpf_program sets
    (RET_K, 0, 0, REJECT),       # 18 a reply: the verdict bpf_program sets
    (RET_K, 0, 0, REJECT),       # 19 anything else: dropped in the kernel
]
DROP_ALL: List[Tuple[int, int, int, int]] = [(RET_K, 0, 0, REJECT)]
"""A filter for a socket that must hold its port and never queue a datagram."""


def bpf_program(requests: bool, replies: bool) -> List[Tuple[int, int, int, int]]:
    """
    The frame filter: IPv4/UDP, unfragmented, and either a request to a
    server (68 -> 67, or a relay's 67 -> 67 with BOOTP op 1), passed when
    C{requests}, or a server's reply (67 -> 68, or 67 -> 67 with another
    op, to a relay), passed when C{replies}. The instructions are fixed;
    only the two verdicts (17 and 18) differ.
    """
    program = list(_FILTER)
    program[_REQUEST] = (RET_K, 0, 0, ACCEPT if requests else REJECT)
    program[_REPLY] = (RET_K, 0, 0, ACCEPT if replies else REJECT)
    return program


def attach_filter(sock: socket.socket, program: List[Tuple[int, int, int, int]]) -> None:
    """
    Attach a classic-BPF C{program} to C{sock} (SO_ATTACH_FILTER, a
    C{struct sock_fprog}; the kernel copies the instructions).
    """
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(program), ctypes.addressof(buffer)))


def packet_socket(interface: str, program: List[Tuple[int, int, int, int]],
                  promiscuous: bool) -> Tuple[socket.socket, MAC]:
    """
    A non-blocking C{AF_PACKET} socket reading the IPv4 frames of
    C{interface} that C{program} passes, and the interface's MAC.

    The socket is made with protocol 0 (it receives nothing), given its
    filter, and only then bound to IPv4 on the interface, so no frame
    reaches it unfiltered. Bound to one protocol, not ETH_P_ALL, it does
    not see the frames this host sends. C{promiscuous} puts the interface
    in promiscuous mode while the socket is open (PACKET_MR_PROMISC,
    counted by the kernel and undone when the socket closes): a bridge
    then passes up the frames it forwards from port to port, such as
    another server's unicast OFFER to a client.

    @raise OSError: no C{CAP_NET_RAW} (EPERM), no such interface...
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_filter(sock, program)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((interface, ETH_P_IP))
        if promiscuous:
            membership = struct.pack("iHH8s", socket.if_nametoindex(interface),
                                     PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
        mac = MAC(sock.getsockname()[4][:6])
    except BaseException:
        sock.close()
        raise
    return sock, mac


@implementer(IReadDescriptor)
class FrameReader:
    """
    Reads C{sock} on the reactor and hands each frame, with its packet
    type (L{PACKET_HOST}...), to C{receive}: at most C{batch} frames per
    wake-up, so a flood cannot hold the reactor; the rest wait in the
    socket's buffer (which drops, in the kernel, what does not fit).
    A C{receive} that raises is logged; reading goes on.
    """

    def __init__(self, sock: socket.socket, receive: Callable[[bytes, int], None],
                 reactor: Any, batch: int = 64) -> None:
        self.sock = sock
        self.receive = receive
        self.reactor = reactor
        self.batch = batch
        self.frames = 0

    def start(self) -> None:
        self.reactor.addReader(self)

    def stop(self) -> None:
        self.reactor.removeReader(self)
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "dhcp-frames"

    def connectionLost(self, reason: Failure) -> None:
        self.sock.close()

    def doRead(self) -> None:
        for _ in range(self.batch):
            try:
                data, address = self.sock.recvfrom(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as e:  # the interface went down, say
                _log.warn("dhcp: reading frames failed: {error}", error=e)
                return
            self.frames += 1
            try:
                self.receive(data, address[2])
            except Exception:
                _log.failure("dhcp: a frame could not be handled")
