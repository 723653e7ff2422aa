# -*- test-case-name: tests.lab.test_pcap -*-
"""
The UDP datagrams of a capture file (classic pcap, as C{tcpdump -w}
writes it), so that a lab test can ask what really went over a link: the
DHCP ACKs a server sent before it was killed, for example.

Pure: bytes in, datagrams out. Only IPv4 over Ethernet (link type 1) or
Linux cooked capture (113); other frames are skipped. A record cut short
at the end of the file (tcpdump killed mid-write) ends the reading.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Iterator, NamedTuple

__all__ = ["Datagram", "PcapError", "udp_datagrams"]

_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
          b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
_ETHERNET, _LINUX_SLL = 1, 113
_IPV4, _UDP = 0x0800, 17


class PcapError(ValueError):
    """Not a classic pcap file, or one of a link type not read here."""


class Datagram(NamedTuple):
    time: float  # seconds since the epoch, when the kernel saw it
    src: ipaddress.IPv4Address
    sport: int
    dst: ipaddress.IPv4Address
    dport: int
    payload: bytes


def udp_datagrams(data: bytes) -> Iterator[Datagram]:
    """
    Every IPv4 UDP datagram in the capture C{data}, in capture order
    (unfragmented ones only; a snap length shorter than the frame cuts
    the payload).

    @raise PcapError: C{data} is not a classic pcap file of Ethernet or
        Linux cooked frames.
    """
    if len(data) < 24 or data[:4] not in _MAGIC:
        raise PcapError("not a classic pcap file")
    order, unit = _MAGIC[data[:4]]
    link = struct.unpack(order + "I", data[20:24])[0]
    if link not in (_ETHERNET, _LINUX_SLL):
        raise PcapError(f"link type {link} is not read here (Ethernet or Linux cooked only)")
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset + record.size <= len(data):
        seconds, fraction, kept, _ = record.unpack_from(data, offset)
        offset += record.size
        frame = data[offset:offset + kept]
        if len(frame) < kept:
            return  # cut short: the writer was killed
        offset += kept
        found = _udp(frame, link, seconds + fraction * unit)
        if found is not None:
            yield found


def _udp(frame: bytes, link: int, when: float) -> "Datagram | None":
    if link == _ETHERNET:
        head, kind_at = 14, 12
    else:
        head, kind_at = 16, 14
    if len(frame) < head + 20:
        return None
    ethertype = struct.unpack_from("!H", frame, kind_at)[0]
    if ethertype == 0x8100 and link == _ETHERNET:  # one VLAN tag
        head, ethertype = 18, struct.unpack_from("!H", frame, 16)[0]
    ip = frame[head:]
    if ethertype != _IPV4 or len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 0x0F) * 4
    flags_fragment = struct.unpack_from("!H", ip, 6)[0]
    if ip[9] != _UDP or flags_fragment & 0x3FFF or len(ip) < ihl + 8:
        return None  # not UDP, or a fragment
    total = struct.unpack_from("!H", ip, 2)[0]
    sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
    end = min(len(ip), total, ihl + length)
    return Datagram(when, ipaddress.IPv4Address(ip[12:16]), sport,
                    ipaddress.IPv4Address(ip[16:20]), dport, bytes(ip[ihl + 8:end]))
