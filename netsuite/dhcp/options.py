# -*- test-case-name: tests.dhcp.test_options -*-
"""
Typed DHCP option values: which option holds what, and how it is encoded.

L{OPTIONS} maps known codes to a name and a kind; L{encode_option} and
L{decode_option} turn values into option bytes and back. Values are whole:
RFC 3396 concatenation and splitting happen in L{netsuite.dhcp.packet}.
Unknown codes pass through as bytes. This module is pure: no I/O.

Kinds and their Python values:
  - C{ip}: L{IPv4Address}; C{ips}: a non-empty tuple of them
  - C{u8}, C{u16}, C{u32}, C{i32}: L{int}; C{u8s}: a non-empty tuple of ints
  - C{str}: non-empty L{str}, UTF-8 on the wire, trailing NULs dropped on decode
  - C{bytes}: L{bytes} (encode also takes L{str}, as UTF-8)
  - C{flag}: L{True}, an empty option (RFC 4039 rapid commit)
  - C{suboptions}: a tuple of C{(subcode, bytes)} (RFC 3046 relay agent)
  - C{domains}: a tuple of domain names, compressed (RFC 3397)
  - C{routes}: a non-empty tuple of C{(IPv4Network, IPv4Address)} (RFC 3442)
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Callable, Dict, List, Mapping, Tuple

import attrs

from netsuite.dhcp.packet import MalformedPacket

__all__ = ["BadOption", "OptionSpec", "OPTIONS", "encode_option", "decode_option",
           "option_code", "option_name", "SUBNET_MASK", "ROUTERS", "DNS_SERVERS", "HOST_NAME",
           "DOMAIN_NAME", "LEASE_TIME", "SERVER_ID", "RENEWAL_TIME", "REBINDING_TIME",
           "CAPTIVE_PORTAL"]


class BadOption(MalformedPacket):
    """
    An option value does not fit its kind, on decode or on encode.

    A L{MalformedPacket} (so a L{ValueError}), so one C{except} covers a
    received packet and the options read from it.
    """


@attrs.frozen
class OptionSpec:
    """
    What one option code holds.

    @ivar kind: a key of the module docstring's kind list.
    """

    code: int
    name: str
    kind: str


_TABLE = [
    (1, "subnet_mask", "ip"),
    (2, "time_offset", "i32"),
    (3, "routers", "ips"),
    (4, "time_servers", "ips"),
    (6, "dns_servers", "ips"),
    (12, "host_name", "str"),
    (15, "domain_name", "str"),
    (23, "default_ttl", "u8"),
    (26, "interface_mtu", "u16"),
    (28, "broadcast_address", "ip"),
    (42, "ntp_servers", "ips"),
    (43, "vendor_specific", "bytes"),
    (44, "netbios_name_servers", "ips"),
    (46, "netbios_node_type", "u8"),
    (47, "netbios_scope", "str"),
    (50, "requested_address", "ip"),
    (51, "lease_time", "u32"),
    (52, "option_overload", "u8"),
    (53, "message_type", "u8"),
    (54, "server_id", "ip"),
    (55, "parameter_request_list", "u8s"),
    (56, "message", "str"),
    (57, "max_message_size", "u16"),
    (58, "renewal_time", "u32"),
    (59, "rebinding_time", "u32"),
    (60, "vendor_class", "bytes"),
    (61, "client_id", "bytes"),
    (66, "tftp_server", "str"),
    (67, "bootfile", "str"),
    (80, "rapid_commit", "flag"),
    (81, "client_fqdn", "bytes"),
    (82, "relay_agent_information", "suboptions"),
    (108, "ipv6_only_preferred", "u32"),
    (114, "captive_portal", "str"),
    (118, "subnet_selection", "ip"),
    (119, "domain_search", "domains"),
    (121, "classless_static_routes", "routes"),
    (252, "wpad", "str"),
]

OPTIONS: Mapping[int, OptionSpec] = {code: OptionSpec(code, name, kind)
                                     for code, name, kind in _TABLE}
"""Known options by code."""

_BY_NAME = {spec.name: spec.code for spec in OPTIONS.values()}

RELAY_CIRCUIT_ID = 1
RELAY_REMOTE_ID = 2

# The codes the server fills in itself.
SUBNET_MASK, ROUTERS, DNS_SERVERS, HOST_NAME, DOMAIN_NAME = 1, 3, 6, 12, 15
LEASE_TIME, SERVER_ID, RENEWAL_TIME, REBINDING_TIME = 51, 54, 58, 59
CAPTIVE_PORTAL = 114

_UNKNOWN_PREFIX = "option_"


def option_code(name: str) -> int:
    """
    The code of a known option, or of C{option_N} (what L{option_name}
    calls a code it does not know); dashes count as underscores.

    @raise KeyError: for an unknown name.
    """
    name = name.replace("-", "_")
    code = _BY_NAME.get(name)
    if code is not None:
        return code
    number = name[len(_UNKNOWN_PREFIX):] if name.startswith(_UNKNOWN_PREFIX) else ""
    if number.isdigit() and 0 < int(number) < 255 and str(int(number)) == number:
        return int(number)
    raise KeyError(f"unknown DHCP option name {name!r}")


def option_name(code: int) -> str:
    """
    The name of an option: its table name, or C{option_N} when unknown.
    """
    spec = OPTIONS.get(code)
    return spec.name if spec else f"{_UNKNOWN_PREFIX}{code}"


def encode_option(code: int, value: Any) -> bytes:
    """
    The bytes of option C{code} holding C{value}; bytes for unknown codes.

    @raise BadOption: when C{value} does not fit the option's kind.
    """
    spec = OPTIONS.get(code)
    kind = spec.kind if spec else "bytes"
    try:
        return _ENCODERS[kind](value)
    except BadOption as e:
        raise BadOption(f"option {code} ({option_name(code)}): {e}") from None
    except (TypeError, ValueError, struct.error) as e:
        raise BadOption(f"option {code} ({option_name(code)}): bad value {value!r}: {e}") \
            from None


def decode_option(code: int, raw: bytes) -> Any:
    """
    The value in option C{code}'s bytes; the bytes themselves for unknown
    codes.

    @raise BadOption: when C{raw} does not hold a value of the option's kind.
    """
    spec = OPTIONS.get(code)
    if spec is None:
        return bytes(raw)
    try:
        return _DECODERS[spec.kind](bytes(raw))
    except BadOption as e:
        raise BadOption(f"option {code} ({spec.name}): {e}") from None


# Encoders and decoders by kind. Decoders raise only BadOption.

def _length(raw: bytes, size: int) -> bytes:
    if len(raw) != size:
        raise BadOption(f"expected {size} bytes, got {len(raw)}")
    return raw


def _multiple(raw: bytes, size: int) -> bytes:
    if not raw or len(raw) % size:
        raise BadOption(f"expected a non-empty multiple of {size} bytes, got {len(raw)}")
    return raw


def _ipv4(value: Any) -> IPv4Address:
    if type(value) is IPv4Address:  # the stdlib would re-parse it from its str
        return value
    if isinstance(value, (bytes, bytearray)):
        raise BadOption(f"not an IPv4 address: {value!r}")
    return IPv4Address(value)


def _encode_ips(value: Any) -> bytes:
    items = list(value)
    if not items:
        raise BadOption("expected at least one address")
    return b"".join(_ipv4(item).packed for item in items)


def _decode_ips(raw: bytes) -> Tuple[IPv4Address, ...]:
    _multiple(raw, 4)
    return tuple(IPv4Address(raw[i:i + 4]) for i in range(0, len(raw), 4))


def _integer(fmt: str) -> Tuple[Callable[[Any], bytes], Callable[[bytes], int]]:
    codec = struct.Struct(fmt)

    def encode(value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadOption(f"expected an int, got {value!r}")
        return codec.pack(value)

    def decode(raw: bytes) -> int:
        return int(codec.unpack(_length(raw, codec.size))[0])

    return encode, decode


def _encode_u8s(value: Any) -> bytes:
    items = [] if isinstance(value, (str, bytes)) else list(value)
    if not items:
        raise BadOption(f"expected a non-empty sequence of ints, got {value!r}")
    return bytes(items)


def _decode_u8s(raw: bytes) -> Tuple[int, ...]:
    return tuple(_multiple(raw, 1))


def _encode_str(value: Any) -> bytes:
    if not isinstance(value, str) or not value or value.endswith("\x00"):
        raise BadOption(f"expected a non-empty str without trailing NUL, got {value!r}")
    return value.encode("utf-8")


def _decode_str(raw: bytes) -> str:
    text = raw.rstrip(b"\x00")
    if not text:
        raise BadOption("empty text")
    return text.decode("utf-8", errors="replace")


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise BadOption(f"expected bytes, got {value!r}")
    return bytes(value)


def _encode_flag(value: Any) -> bytes:
    if value is not True:
        raise BadOption(f"a flag option holds True, got {value!r}")
    return b""


def _decode_flag(raw: bytes) -> bool:
    _length(raw, 0)
    return True


def _encode_suboptions(value: Any) -> bytes:
    out = b""
    for subcode, data in value:
        data = _encode_bytes(data)
        if not 0 <= subcode <= 255 or len(data) > 255:
            raise BadOption(f"bad sub-option {subcode!r} of {len(data)} bytes")
        out += bytes([subcode, len(data)]) + data
    return out


def _decode_suboptions(raw: bytes) -> Tuple[Tuple[int, bytes], ...]:
    found: List[Tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        if i + 2 > len(raw) or i + 2 + raw[i + 1] > len(raw):
            raise BadOption(f"sub-option {raw[i]} is truncated")
        found.append((raw[i], raw[i + 2:i + 2 + raw[i + 1]]))
        i += 2 + raw[i + 1]
    return tuple(found)


def _labels(name: Any) -> Tuple[str, ...]:
    if not isinstance(name, str):
        raise BadOption(f"expected a domain name, got {name!r}")
    name = name[:-1] if name.endswith(".") else name
    labels = tuple(name.split(".")) if name else ()
    for label in labels:
        if not 0 < len(label.encode("ascii")) < 64:
            raise BadOption(f"bad label {label!r} in {name!r}")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise BadOption(f"domain name longer than 255 bytes: {name!r}")
    return labels


def _encode_domains(value: Any) -> bytes:
    """
    RFC 1035 section 4.1.4 names, each suffix seen before replaced by a
    pointer to it. Offsets count from the start of the option data (RFC 3397
    section 2).
    """
    if isinstance(value, str):
        raise BadOption("expected a sequence of domain names, got a str")
    out = b""
    seen: Dict[Tuple[str, ...], int] = {}
    for name in value:
        labels = _labels(name)
        for i in range(len(labels)):
            suffix = labels[i:]
            if suffix in seen:
                out += struct.pack("!H", 0xC000 | seen[suffix])
                break
            if len(out) < 0x4000:
                seen[suffix] = len(out)
            out += bytes([len(labels[i])]) + labels[i].encode("ascii")
        else:
            out += b"\x00"
    return out


def _decode_domains(raw: bytes) -> Tuple[str, ...]:
    names = []
    i = 0
    while i < len(raw):
        name, i = _read_name(raw, i)
        names.append(name)
    return tuple(names)


def _read_name(raw: bytes, start: int) -> Tuple[str, int]:
    """
    The name at C{start} and the offset after it. A pointer must point before
    the start of the labels it ends, so each jump goes strictly backwards and
    a loop cannot occur.
    """
    labels: List[str] = []
    size = 1
    i, segment, after = start, start, None
    while True:
        if i >= len(raw):
            raise BadOption("domain name runs past the option")
        length = raw[i]
        if length & 0xC0 == 0xC0:
            if i + 1 >= len(raw):
                raise BadOption("truncated compression pointer")
            target = ((length & 0x3F) << 8) | raw[i + 1]
            if target >= segment:
                raise BadOption(f"compression pointer at {i} does not point backwards")
            if after is None:
                after = i + 2
            i = segment = target
        elif length & 0xC0:
            raise BadOption(f"unknown label type {length:#x}")
        elif length == 0:
            return ".".join(labels), (i + 1 if after is None else after)
        else:
            label = raw[i + 1:i + 1 + length]
            if len(label) != length:
                raise BadOption("truncated label")
            try:
                text = label.decode("ascii")
            except UnicodeDecodeError:
                raise BadOption(f"label is not ASCII: {label!r}") from None
            if "." in text:
                raise BadOption(f"label holds a dot: {text!r}")
            size += length + 1
            if size > 255:
                raise BadOption("domain name longer than 255 bytes")
            labels.append(text)
            i += 1 + length


def _encode_routes(value: Any) -> bytes:
    """
    RFC 3442: the prefix width, the significant octets of the destination,
    then the router.
    """
    out = b""
    for destination, router in value:
        network = IPv4Network(destination)
        out += (bytes([network.prefixlen])
                + network.network_address.packed[:(network.prefixlen + 7) // 8]
                + _ipv4(router).packed)
    if not out:
        raise BadOption("expected at least one route")
    return out


def _decode_routes(raw: bytes) -> Tuple[Tuple[IPv4Network, IPv4Address], ...]:
    if not raw:
        raise BadOption("expected at least one route")
    routes = []
    i = 0
    while i < len(raw):
        width = raw[i]
        if width > 32:
            raise BadOption(f"prefix width {width} exceeds 32")
        octets = (width + 7) // 8
        if i + 1 + octets + 4 > len(raw):
            raise BadOption("truncated route")
        destination = raw[i + 1:i + 1 + octets].ljust(4, b"\x00")
        network = IPv4Network((destination, width), strict=False)
        routes.append((network, IPv4Address(raw[i + 1 + octets:i + 5 + octets])))
        i += 5 + octets
    return tuple(routes)


_U8, _U16, _U32, _I32 = _integer("!B"), _integer("!H"), _integer("!I"), _integer("!i")

_ENCODERS: Dict[str, Callable[[Any], bytes]] = {
    "ip": lambda value: _ipv4(value).packed,
    "ips": _encode_ips,
    "u8": _U8[0], "u16": _U16[0], "u32": _U32[0], "i32": _I32[0],
    "u8s": _encode_u8s,
    "str": _encode_str,
    "bytes": _encode_bytes,
    "flag": _encode_flag,
    "suboptions": _encode_suboptions,
    "domains": _encode_domains,
    "routes": _encode_routes,
}

_DECODERS: Dict[str, Callable[[bytes], Any]] = {
    "ip": lambda raw: IPv4Address(_length(raw, 4)),
    "ips": _decode_ips,
    "u8": _U8[1], "u16": _U16[1], "u32": _U32[1], "i32": _I32[1],
    "u8s": _decode_u8s,
    "str": _decode_str,
    "bytes": bytes,
    "flag": _decode_flag,
    "suboptions": _decode_suboptions,
    "domains": _decode_domains,
    "routes": _decode_routes,
}
