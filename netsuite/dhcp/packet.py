# -*- test-case-name: tests.dhcp.test_packet -*-
"""
DHCPv4 messages (RFC 2131) as immutable values, and their wire format.

L{Packet.from_bytes} and L{Packet.to_bytes} are pure: no I/O. Options are a
tuple of C{(code, bytes)} pairs in wire order, each code once. Parsing
concatenates repeated instances of a code (RFC 3396) and reads the C{file}
and C{sname} fields when option 52 says they hold options (RFC 2131 section
4.1); encoding splits long values into 255-byte pieces and overloads those
fields only when the options would not fit otherwise. Option 52 is therefore
a wire detail and never appears in L{Packet.options}. Typed option values
live in L{netsuite.dhcp.options}.
"""

from __future__ import annotations

import enum
import struct
from ipaddress import IPv4Address
from typing import Any, Dict, Iterable, List, Optional, Tuple

import attrs

from netsuite.registry.values import MAC

__all__ = [
    "Packet", "as_address", "MalformedPacket", "PacketTooLarge", "MessageType",
    "BOOTREQUEST", "BOOTREPLY", "MAGIC_COOKIE", "BOOTP_MIN_SIZE", "DHCP_MIN_MAX_SIZE",
    "IP_UDP_OVERHEAD",
    "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM",
]


class MalformedPacket(ValueError):
    """
    Bytes are not a well-formed BOOTP/DHCP message: the only error
    L{Packet.from_bytes} raises.
    """


class PacketTooLarge(ValueError):
    """
    The options do not fit in the size asked of L{Packet.to_bytes}, even with
    option overload.
    """


class MessageType(enum.IntEnum):
    """
    DHCP message types (option 53, RFC 2132 section 9.6).
    """

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


DISCOVER = MessageType.DISCOVER
OFFER = MessageType.OFFER
REQUEST = MessageType.REQUEST
DECLINE = MessageType.DECLINE
ACK = MessageType.ACK
NAK = MessageType.NAK
RELEASE = MessageType.RELEASE
INFORM = MessageType.INFORM

_MESSAGE_TYPES = {kind.value: kind for kind in MessageType}

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTP_MIN_SIZE = 300
"""RFC 1542 section 2.1: relays may drop BOOTP messages shorter than this."""
DHCP_MIN_MAX_SIZE = 576
"""RFC 2131 section 2: every client accepts IP datagrams of this size."""
IP_UDP_OVERHEAD = 28
"""IPv4 and UDP headers: option 57 and L{DHCP_MIN_MAX_SIZE} count them."""

PAD = 0
END = 255
OVERLOAD = 52
_OVERLOAD_FILE = 1
_OVERLOAD_SNAME = 2

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_FIXED_SIZE = _HEADER.size + len(MAGIC_COOKIE)  # 240
_ZERO = IPv4Address(0)


def _range(top: int) -> Any:
    return attrs.validators.and_(attrs.validators.instance_of(int),
                                 attrs.validators.ge(0), attrs.validators.le(top))


def _padded(size: int) -> Any:
    """
    A converter and validator pair for a fixed-size field: shorter bytes are
    padded with zeros, longer ones refused.
    """

    def convert(value: bytes) -> bytes:
        return bytes(value).ljust(size, b"\x00")

    def check(instance: object, attribute: "attrs.Attribute[bytes]", value: bytes) -> None:
        if len(value) != size:
            raise ValueError(f"{attribute.name} holds at most {size} bytes, got {len(value)}")

    return attrs.field(default=b"\x00" * size, converter=convert, validator=check)


def as_address(value: Any) -> IPv4Address:
    """
    C{value} as an L{IPv4Address} (one is returned as it is: the stdlib
    would re-parse it from its text).
    """
    return value if type(value) is IPv4Address else IPv4Address(value)


def _options(pairs: Iterable[Tuple[int, bytes]]) -> Tuple[Tuple[int, bytes], ...]:
    return tuple((code, bytes(value)) for code, value in pairs)


def _check_options(instance: object, attribute: object,
                   pairs: Tuple[Tuple[int, bytes], ...]) -> None:
    seen = set()
    for code, _ in pairs:
        if not isinstance(code, int) or not 0 < code < END or code == OVERLOAD:
            raise ValueError(f"not an option code a packet can carry: {code!r}")
        if code in seen:
            raise ValueError(f"option {code} given twice")
        seen.add(code)


@attrs.frozen
class Packet:
    """
    One BOOTP/DHCP message (RFC 2131 section 2, figure 1).

    Byte fields shorter than their size are padded with zeros. C{sname} and
    C{file} hold zeros when the parsed message used them for options.

    @ivar options: C{(code, value)} pairs in wire order; codes 0, 52 and 255
        are wire details and never appear here.
    """

    op: int = attrs.field(default=BOOTREQUEST, validator=_range(0xFF))
    htype: int = attrs.field(default=1, validator=_range(0xFF))
    hlen: int = attrs.field(default=6, validator=_range(16))
    hops: int = attrs.field(default=0, validator=_range(0xFF))
    xid: int = attrs.field(default=0, validator=_range(0xFFFFFFFF))
    secs: int = attrs.field(default=0, validator=_range(0xFFFF))
    flags: int = attrs.field(default=0, validator=_range(0xFFFF))
    ciaddr: IPv4Address = attrs.field(default=_ZERO, converter=as_address)
    yiaddr: IPv4Address = attrs.field(default=_ZERO, converter=as_address)
    siaddr: IPv4Address = attrs.field(default=_ZERO, converter=as_address)
    giaddr: IPv4Address = attrs.field(default=_ZERO, converter=as_address)
    chaddr: bytes = _padded(16)
    sname: bytes = _padded(64)
    file: bytes = _padded(128)
    options: Tuple[Tuple[int, bytes], ...] = attrs.field(
        default=(), converter=_options, validator=_check_options)
    # The options by code, made on the first lookup (a request's are looked
    # up a score of times): not a field of the value.
    _by_code: Optional[Dict[int, bytes]] = attrs.field(
        default=None, init=False, eq=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Packet":
        """
        Parse one message.

        @raise MalformedPacket: for a short message, a bad magic cookie, a
            truncated option, a bad option 52 or fields holding garbage.
        """
        if len(data) < _FIXED_SIZE:
            raise MalformedPacket(f"{len(data)} bytes is shorter than a BOOTP header")
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
         chaddr, sname, file) = _HEADER.unpack_from(data)
        if data[_HEADER.size:_FIXED_SIZE] != MAGIC_COOKIE:
            raise MalformedPacket(f"bad magic cookie {data[_HEADER.size:_FIXED_SIZE].hex()}")
        if hlen > 16:
            raise MalformedPacket(f"hardware address length {hlen} exceeds 16")
        found = _read(data[_FIXED_SIZE:], "options")
        merged = _merge(found)
        overload = merged.pop(OVERLOAD, None)
        if overload is not None:
            if len(overload) != 1 or overload[0] not in (1, 2, 3):
                raise MalformedPacket(f"bad option overload value {overload.hex()}")
            # RFC 2131 section 4.1: options, then file, then sname.
            if overload[0] & _OVERLOAD_FILE:
                found += _read(file, "file")
                file = b""
            if overload[0] & _OVERLOAD_SNAME:
                found += _read(sname, "sname")
                sname = b""
            merged = _merge([(code, value) for code, value in found if code != OVERLOAD])
        # Everything is in shape already: the struct fixes each field's
        # range and size, _merge leaves each code once.
        return cls.trusted(op, htype, hlen, hops, xid, secs, flags,
                           _address(ciaddr), _address(yiaddr), _address(siaddr),
                           _address(giaddr), chaddr, sname.ljust(64, b"\x00"),
                           file.ljust(128, b"\x00"), tuple(merged.items()))

    @classmethod
    def trusted(cls, op: int, htype: int, hlen: int, hops: int, xid: int, secs: int,
                flags: int, ciaddr: IPv4Address, yiaddr: IPv4Address, siaddr: IPv4Address,
                giaddr: IPv4Address, chaddr: bytes, sname: bytes, file: bytes,
                options: Tuple[Tuple[int, bytes], ...]) -> "Packet":
        """
        A packet from values already in shape, without the converters and
        validators (which cost more than the rest of a reply): byte fields
        at their full size, addresses as L{IPv4Address}es, options a tuple
        of C{(code, bytes)} with each code once. For the parser and the
        server's replies; anything else uses the checked constructor.
        """
        packet = object.__new__(cls)
        _set(packet, "op", op)
        _set(packet, "htype", htype)
        _set(packet, "hlen", hlen)
        _set(packet, "hops", hops)
        _set(packet, "xid", xid)
        _set(packet, "secs", secs)
        _set(packet, "flags", flags)
        _set(packet, "ciaddr", ciaddr)
        _set(packet, "yiaddr", yiaddr)
        _set(packet, "siaddr", siaddr)
        _set(packet, "giaddr", giaddr)
        _set(packet, "chaddr", chaddr)
        _set(packet, "sname", sname)
        _set(packet, "file", file)
        _set(packet, "options", options)
        _set(packet, "_by_code", None)
        return packet

    def to_bytes(self, max_size: int = DHCP_MIN_MAX_SIZE) -> bytes:
        """
        Encode this message to fit an IP datagram of C{max_size} bytes, so in
        at most C{max_size - 28} bytes, padded to at least L{BOOTP_MIN_SIZE};
        overload C{file} and then C{sname} (when they hold only zeros) if the
        options do not fit otherwise.

        @param max_size: the client's option 57, which counts the IP and UDP
            headers as dnsmasq and ISC dhcpd read it, or 576 (RFC 2131
            section 2); at least 328.
        @raise PacketTooLarge: when the options do not fit.
        """
        if max_size < BOOTP_MIN_SIZE + IP_UDP_OVERHEAD:
            raise ValueError(f"max_size {max_size} leaves less than {BOOTP_MIN_SIZE} bytes")
        try:
            pieces = [bytes((code, len(value))) + value for code, value in self.options]
        except ValueError:  # a value longer than 255 bytes: several instances
            pieces = [piece for code, value in self.options for piece in _pieces(code, value)]
        room = max_size - IP_UDP_OVERHEAD - _FIXED_SIZE - 1  # the end option
        sname, file = self.sname, self.file
        if sum(map(len, pieces)) <= room:
            body = b"".join(pieces)
        else:
            spare = []
            if not any(file):
                spare.append((_OVERLOAD_FILE, 127))
            if not any(sname):
                spare.append((_OVERLOAD_SNAME, 63))
            fields = _pack(pieces, [room - 3] + [size for _, size in spare])
            if fields is None:
                raise PacketTooLarge(f"options overflow a {max_size}-byte datagram")
            used = sum(bit for (bit, _), field in zip(spare, fields[1:]) if field)
            body = bytes([OVERLOAD, 1, used]) + fields[0]
            for (bit, size), field in zip(spare, fields[1:]):
                if used & bit:
                    field = (field + bytes([END])).ljust(size + 1, b"\x00")
                    if bit == _OVERLOAD_FILE:
                        file = field
                    else:
                        sname = field
        header = _HEADER.pack(
            self.op, self.htype, self.hlen, self.hops, self.xid, self.secs, self.flags,
            self.ciaddr.packed, self.yiaddr.packed, self.siaddr.packed, self.giaddr.packed,
            self.chaddr, sname, file)
        message = header + MAGIC_COOKIE + body + bytes([END])
        return message.ljust(BOOTP_MIN_SIZE, b"\x00")

    def option(self, code: int) -> Optional[bytes]:
        """
        The value of option C{code}, or L{None} when absent.
        """
        by_code = self._by_code
        if by_code is None:
            by_code = dict(self.options)
            _set(self, "_by_code", by_code)
        return by_code.get(code)

    def replace(self, **changes: Any) -> "Packet":
        """
        A copy with some fields changed (L{attrs.evolve}).
        """
        return attrs.evolve(self, **changes)

    def with_options(self, pairs: Iterable[Tuple[int, Optional[bytes]]]) -> "Packet":
        """
        A copy with options set: a code already present keeps its place and
        takes the new value, a new code goes last, and a value of L{None}
        removes the option.
        """
        merged: Dict[int, Optional[bytes]] = dict(self.options)
        merged.update(pairs)
        return attrs.evolve(self, options=[(code, value) for code, value in merged.items()
                                           if value is not None])

    @property
    def message_type(self) -> Optional[int]:
        """
        Option 53 as a L{MessageType} (or a plain int for types beyond
        INFORM); L{None} when absent or not one byte, as for BOOTP.
        """
        value = self.option(53)
        if value is None or len(value) != 1:
            return None
        return _MESSAGE_TYPES.get(value[0], value[0])

    @property
    def mac(self) -> Optional[MAC]:
        """
        The client's Ethernet address; L{None} for other hardware types.
        """
        if self.htype == 1 and self.hlen == 6:
            return MAC(self.chaddr[:6])
        return None

    @property
    def client_id(self) -> Optional[bytes]:
        """
        Option 61 as sent, or L{None}.
        """
        return self.option(61)

    @property
    def client_key(self) -> bytes:
        """
        The identity to key leases on (RFC 2131 section 4.2): option 61 when
        it has the two bytes RFC 2132 requires, else the hardware type
        followed by the hardware address, as option 61 would carry it.
        """
        client_id = self.option(61)
        if client_id is not None and len(client_id) >= 2:
            return client_id
        return bytes([self.htype]) + self.chaddr[:self.hlen]

    @property
    def requested_ip(self) -> Optional[IPv4Address]:
        """
        Option 50, or L{None} when absent or not four bytes.
        """
        return self._address(50)

    @property
    def server_id(self) -> Optional[IPv4Address]:
        """
        Option 54, or L{None} when absent or not four bytes.
        """
        return self._address(54)

    @property
    def parameter_request_list(self) -> Tuple[int, ...]:
        """
        Option 55 as a tuple of codes; empty when absent.
        """
        return tuple(self.option(55) or b"")

    @property
    def max_message_size(self) -> Optional[int]:
        """
        Option 57, or L{None} when absent or not two bytes.
        """
        value = self.option(57)
        if value is None or len(value) != 2:
            return None
        return int.from_bytes(value, "big")

    @property
    def hostname(self) -> Optional[str]:
        """
        Option 12 as text, undecodable bytes replaced and trailing NULs
        dropped (RFC 2132 section 2); L{None} when absent.
        """
        value = self.option(12)
        if value is None:
            return None
        return value.rstrip(b"\x00").decode("utf-8", errors="replace")

    @property
    def broadcast(self) -> bool:
        """
        Whether the client asked for broadcast replies (RFC 2131 section 4.1).
        """
        return bool(self.flags & 0x8000)

    def _address(self, code: int) -> Optional[IPv4Address]:
        value = self.option(code)
        if value is None or len(value) != 4:
            return None
        return IPv4Address(value)


_set = object.__setattr__
_ZERO_PACKED = bytes(4)


def _address(packed: bytes) -> IPv4Address:
    return _ZERO if packed == _ZERO_PACKED else IPv4Address(packed)


def _read(area: bytes, where: str) -> List[Tuple[int, bytes]]:
    """
    The options in one area, up to its end option or its last byte.
    """
    found = []
    i = 0
    while i < len(area):
        code = area[i]
        if code == END:
            break
        if code == PAD:
            i += 1
            continue
        if i + 1 >= len(area):
            raise MalformedPacket(f"option {code} in {where} has no length")
        length = area[i + 1]
        if i + 2 + length > len(area):
            raise MalformedPacket(f"option {code} in {where} is truncated")
        found.append((code, area[i + 2:i + 2 + length]))
        i += 2 + length
    return found


def _merge(found: Iterable[Tuple[int, bytes]]) -> Dict[int, bytes]:
    """
    Concatenate repeated instances of a code (RFC 3396), keeping first places.
    """
    merged: Dict[int, bytes] = {}
    for code, value in found:
        if code in merged:
            merged[code] += value
        else:
            merged[code] = value
    return merged


def _pieces(code: int, value: bytes) -> List[bytes]:
    """
    One option on the wire: several instances when longer than 255 bytes.
    """
    if len(value) <= 255:
        return [bytes((code, len(value))) + value]
    return [bytes([code, len(value[i:i + 255])]) + value[i:i + 255]
            for i in range(0, len(value), 255)]


def _pack(pieces: List[bytes], sizes: List[int]) -> Optional[List[bytes]]:
    """
    Fill areas of the given sizes with the pieces, in order, never skipping
    back, so that concatenation on parse restores every value; L{None} when
    they do not fit.
    """
    fields: List[bytes] = [b"" for _ in sizes]
    area = 0
    for piece in pieces:
        while area < len(sizes) and len(fields[area]) + len(piece) > sizes[area]:
            area += 1
        if area == len(sizes):
            return None
        fields[area] += piece
    return fields
