# -*- test-case-name: tests.registry.test_values -*-
"""
Typed values: what a mailbox message may carry, and their lossless encoding.

A message is a map of tags (str) to values. A value is one of: str, bytes,
int, float, bool, None, L{ipaddress.IPv4Address}, L{ipaddress.IPv6Address},
L{MAC}, a list of values, or a map (dict with str keys) of values.

The typed encoding turns a value into JSON that keeps every type: each value
becomes a two-element array C{[type, payload]} (see docs/bus-protocol.md).
This module is pure: no I/O.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
from typing import Any, Callable, Dict, List, Union

__all__ = [
    "MAC",
    "InvalidValue",
    "Value",
    "Message",
    "check",
    "check_message",
    "encode",
    "decode",
    "dumps",
    "loads",
    "to_plain",
    "guess",
]


class InvalidValue(ValueError):
    """
    A value is not one netsuite can carry, or a typed encoding is malformed.
    """


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-]?)(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}\Z")


class MAC:
    """
    An Ethernet (EUI-48) address, immutable and hashable.

    Accepts C{aa:bb:cc:dd:ee:ff}, C{aa-bb-...}, C{aabbccddeeff} or 6 bytes;
    prints as lower-case colon-separated hex.
    """

    __slots__ = ("packed",)
    packed: bytes

    def __init__(self, address: Union[str, bytes, "MAC"]) -> None:
        if isinstance(address, MAC):
            packed = address.packed
        elif isinstance(address, bytes):
            if len(address) != 6:
                raise InvalidValue(f"a MAC address is 6 bytes, got {len(address)}")
            packed = address
        elif isinstance(address, str) and _MAC_RE.match(address):
            packed = bytes.fromhex(address.replace(":", "").replace("-", ""))
        else:
            raise InvalidValue(f"not a MAC address: {address!r}")
        object.__setattr__(self, "packed", packed)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MAC is immutable")

    def __str__(self) -> str:
        return self.packed.hex(":")

    def __repr__(self) -> str:
        return f"MAC('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MAC):
            return self.packed == other.packed
        return NotImplemented

    def __hash__(self) -> int:
        return hash((MAC, self.packed))


Value = Any
"""A netsuite value (see the module docstring); checked at run time by L{check}."""

Message = Dict[str, Value]

_SCALARS = frozenset((str, bytes, int, float, bool, type(None), ipaddress.IPv4Address,
                      ipaddress.IPv6Address, MAC))


def check(value: Value, where: str = "value") -> None:
    """
    Raise L{InvalidValue} naming the offending place if C{value} is not a
    netsuite value.
    """
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            check(item, f"{where}[{i}]")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidValue(f"{where}: map keys must be str, got {key!r}")
            check(item, f"{where}[{key!r}]")
        return
    raise InvalidValue(f"{where}: {kind.__name__} is not a netsuite value ({value!r})")


def check_message(message: object) -> Message:
    """
    Check that C{message} is a map of tags to values; return it.
    """
    if type(message) is not dict:
        raise InvalidValue(f"a message is a map of tags to values, got {type(message).__name__}")
    for key, item in message.items():  # the common flat message, without recursion
        if type(key) is not str or type(item) not in _SCALARS:
            check(message, "message")
            break
    return message  # type: ignore[return-value]


def _encode_float(value: float) -> Union[float, str]:
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _encode_int(value: int) -> List[Any]:
    try:
        return ["int", str(value)]
    except ValueError as e:
        raise InvalidValue(f"int too large to encode: {e}") from None


def _encode_map(value: Dict[Any, Value]) -> List[Any]:
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            raise InvalidValue(f"map keys must be str, got {key!r}")
        out[key] = encode(item)
    return ["map", out]


_ENCODERS: Dict[type, Callable[[Any], List[Any]]] = {
    str: lambda value: ["str", value],
    bool: lambda value: ["bool", value],
    int: _encode_int,
    float: lambda value: ["float", _encode_float(value)],
    type(None): lambda value: ["none", None],
    bytes: lambda value: ["bytes", base64.b64encode(value).decode("ascii")],
    ipaddress.IPv4Address: lambda value: ["ipv4", str(value)],
    ipaddress.IPv6Address: lambda value: ["ipv6", str(value)],
    MAC: lambda value: ["mac", str(value)],
    list: lambda value: ["list", [encode(item) for item in value]],
    tuple: lambda value: ["list", [encode(item) for item in value]],
    dict: _encode_map,
}


def encode(value: Value) -> List[Any]:
    """
    The typed encoding of a value: a JSON-ready C{[type, payload]} pair.
    """
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        raise InvalidValue(f"{type(value).__name__} is not a netsuite value ({value!r})")
    return encoder(value)


def _expect(payload: Any, kind: type, tag: str) -> Any:
    if type(payload) is not kind:
        raise InvalidValue(f"{tag} payload must be a JSON {kind.__name__}, got {payload!r}")
    return payload


def _decode_int(payload: Any) -> int:
    text = _expect(payload, str, "int")
    if not _DECIMAL_RE.fullmatch(text):
        raise InvalidValue(f"int payload must be decimal digits, got {text!r}")
    return int(text)


def _decode_float(payload: Any) -> float:
    if payload in ("nan", "inf", "-inf"):
        return float(payload)
    if type(payload) is int:
        return float(payload)
    return _expect(payload, float, "float")  # type: ignore[no-any-return]


def _decode_none(payload: Any) -> None:
    if payload is not None:
        raise InvalidValue(f"none payload must be null, got {payload!r}")


_IPV4_SEEN: Dict[str, ipaddress.IPv4Address] = {}


def _decode_ipv4(payload: Any) -> ipaddress.IPv4Address:
    """
    The address; the few a process sees again and again (a relay, a
    server) are parsed once: an address object is immutable.
    """
    text = _expect(payload, str, "ipv4")
    address = _IPV4_SEEN.get(text)
    if address is None:
        address = ipaddress.IPv4Address(text)
        if len(_IPV4_SEEN) >= 4096:
            _IPV4_SEEN.clear()
        _IPV4_SEEN[text] = address
    return address


_DECIMAL_RE = re.compile(r"-?[0-9]+")
_DECODERS: Dict[str, Callable[[Any], Value]] = {
    "str": lambda payload: _expect(payload, str, "str"),
    "bool": lambda payload: _expect(payload, bool, "bool"),
    "int": _decode_int,
    "float": _decode_float,
    "none": _decode_none,
    "bytes": lambda payload: base64.b64decode(_expect(payload, str, "bytes"), validate=True),
    "ipv4": _decode_ipv4,
    "ipv6": lambda payload: ipaddress.IPv6Address(_expect(payload, str, "ipv6")),
    "mac": lambda payload: MAC(_expect(payload, str, "mac")),
}

MAX_DEPTH = 32
"""How deeply lists and maps may nest in a decoded value: deeper input is
refused (L{InvalidValue}) long before Python's recursion limit."""


def decode(encoded: Any, depth: int = 0) -> Value:
    """
    The value a typed encoding stands for; L{InvalidValue} if it is
    malformed or nests lists and maps more than L{MAX_DEPTH} deep.
    """
    if type(encoded) is not list or len(encoded) != 2 or type(encoded[0]) is not str:
        raise InvalidValue(f"a typed value is a [type, payload] pair, got {encoded!r:.80}")
    tag, payload = encoded
    if tag == "list" or tag == "map":
        if depth >= MAX_DEPTH:
            raise InvalidValue(f"lists and maps nest more than {MAX_DEPTH} deep")
        if tag == "list":
            return [decode(item, depth + 1) for item in _expect(payload, list, "list")]
        return {key: decode(item, depth + 1)
                for key, item in _expect(payload, dict, "map").items()}
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise InvalidValue(f"unknown value type {tag!r:.80}")
    try:
        return decoder(payload)
    except InvalidValue:
        raise
    except (ValueError, OverflowError) as e:
        # binascii.Error and AddressValueError are ValueErrors; so are
        # non-ASCII base64 text and ints past sys.get_int_max_str_digits().
        raise InvalidValue(f"bad {tag} payload {payload!r:.80}: {e}") from None


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            check_circular=False)
"""One encoder: json.dumps with options builds a new one per call. What it
encodes is L{encode}'s fresh tree, which holds no cycle."""


def dumps(value: Value) -> bytes:
    """
    The typed encoding of C{value} as compact UTF-8 JSON.
    """
    return _ENCODER.encode(encode(value)).encode("utf-8")


def loads(data: bytes) -> Value:
    """
    Parse UTF-8 JSON holding a typed encoding; L{InvalidValue} on any error,
    including JSON nested too deeply to parse and strings that cannot be
    encoded back (a lone surrogate, which JSON can write as C{\\ud800}).
    """
    try:
        # Decoded here: json.loads of bytes would also take UTF-16 and
        # UTF-32, which may hold lone surrogates past the check below.
        text = data.decode("utf-8")
        encoded = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidValue(f"not UTF-8 JSON: {e}") from None
    except RecursionError:
        raise InvalidValue(f"JSON nested too deeply (lists and maps nest at most "
                           f"{MAX_DEPTH} deep)") from None
    value = decode(encoded)
    # A surrogate can only come from a \u escape: UTF-8 input has none.
    if "\\u" in text:
        try:
            _ENCODER.encode(encoded).encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidValue(f"a string holds a lone surrogate: {e}") from None
    return value


def to_plain(value: Value) -> Any:
    """
    A plain-JSON rendering for people and shell scripts (lossy: addresses
    become strings, bytes become base64 text, non-finite floats strings).
    """
    kind = type(value)
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    if kind in (ipaddress.IPv4Address, ipaddress.IPv6Address, MAC):
        return str(value)
    if kind is float:
        return _encode_float(value)
    if kind is list or kind is tuple:
        return [to_plain(item) for item in value]
    if kind is dict:
        return {key: to_plain(item) for key, item in value.items()}
    return value


_INT_RE = re.compile(r"^[-+]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\Z|^[-+]?[0-9]+[eE][-+]?[0-9]+\Z")

_CASTS = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda text: {"true": True, "false": False}[text.lower()],
    "none": lambda text: None,
    "bytes": bytes.fromhex,
    "ip": ipaddress.ip_address,
    "ipv4": ipaddress.IPv4Address,
    "ipv6": ipaddress.IPv6Address,
    "mac": MAC,
}


def guess(text: str, kind: str = "") -> Value:
    """
    Type a value given on a command line.

    With C{kind} (one of str, int, float, bool, none, bytes (hex), ip, ipv4,
    ipv6, mac) the text is converted to that type. Without it: integers,
    decimal floats, true/false, null/none, IP and MAC addresses are
    recognised; anything else stays a string.
    """
    if kind:
        if kind not in _CASTS:
            raise InvalidValue(f"unknown type {kind!r}; use one of {', '.join(_CASTS)}")
        try:
            return _CASTS[kind](text)
        except (KeyError, ValueError) as e:
            raise InvalidValue(f"{text!r} is not a valid {kind}: {e}") from None
    if _INT_RE.match(text):
        return int(text)
    if _FLOAT_RE.match(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if _MAC_RE.match(text) and (":" in text or "-" in text):
        return MAC(text)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return text
