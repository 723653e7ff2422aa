# -*- test-case-name: tests.dhcp.test_options -*-
"""
Tests for L{netsuite.dhcp.options}: the option table and typed option values.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any, Dict

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.options import (OPTIONS, BadOption, decode_option, encode_option,
                                   option_code, option_name)
from netsuite.dhcp.packet import MalformedPacket, Packet

BOUNDED = settings(max_examples=300, deadline=None, database=None)

# RFC 3397 section 2: "eng.apple.com." and "marketing.apple.com.", the
# second ending in a pointer to "apple.com." at offset 4.
RFC3397_SEARCH_LIST = bytes.fromhex(
    "03656e67" "056170706c65" "03636f6d" "00"
    "096d61726b6574696e67" "c004")

# RFC 3397 section 2 again: the same list sent as three option 119
# instances of nine bytes each (RFC 3396), as options of a packet.
RFC3397_SPLIT_OPTIONS = (b"\x77\x09" + RFC3397_SEARCH_LIST[:9]
                         + b"\x77\x09" + RFC3397_SEARCH_LIST[9:18]
                         + b"\x77\x09" + RFC3397_SEARCH_LIST[18:])

# RFC 3442 section 2: subnet, width and destination descriptor.
RFC3442_DESCRIPTORS = [
    ("0.0.0.0/0", bytes([0])),
    ("10.0.0.0/8", bytes([8, 10])),
    ("10.0.0.0/24", bytes([24, 10, 0, 0])),
    ("10.17.0.0/16", bytes([16, 10, 17])),
    ("10.27.129.0/24", bytes([24, 10, 27, 129])),
    ("10.229.0.128/25", bytes([25, 10, 229, 0, 128])),
    ("10.198.122.47/32", bytes([32, 10, 198, 122, 47])),
]

# One golden value per kind: (code, value, bytes).
GOLDEN = [
    (1, IPv4Address("255.255.255.0"), b"\xff\xff\xff\x00"),
    (3, (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")), b"\n\x00\x00\x01\n\x00\x00\x02"),
    (2, -3600, b"\xff\xff\xf1\xf0"),
    (23, 64, b"\x40"),
    (26, 1500, b"\x05\xdc"),
    (51, 86400, b"\x00\x01\x51\x80"),
    (55, (1, 3, 6, 15, 119, 121), b"\x01\x03\x06\x0f\x77\x79"),
    (12, "h\u00f4te", b"h\xc3\xb4te"),
    (114, "https://portal.example/api", b"https://portal.example/api"),
    (61, b"\x01\x02\x03\x04\x05\x06\x07", b"\x01\x02\x03\x04\x05\x06\x07"),
    (80, True, b""),
    (82, ((1, b"eth0:vlan7"), (2, b"\xaa\xbb\xcc\xdd\xee\xff")),
     b"\x01\x0aeth0:vlan7\x02\x06\xaa\xbb\xcc\xdd\xee\xff"),
    (119, ("eng.apple.com", "marketing.apple.com"), RFC3397_SEARCH_LIST),
    (121, ((IPv4Network("10.0.0.0/8"), IPv4Address("192.0.2.1")),
           (IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.254"))),
     b"\x08\x0a\xc0\x00\x02\x01\x00\xc0\x00\x02\xfe"),
]


class OptionTableTests(SynchronousTestCase):
    """
    L{OPTIONS}, L{option_code} and L{option_name}.
    """

    def test_required(self) -> None:
        """
        The table knows the options netsuite serves and reads, with their kinds.
        """
        expected = {1: "ip", 3: "ips", 6: "ips", 12: "str", 15: "str", 26: "u16", 28: "ip",
                    42: "ips", 50: "ip", 51: "u32", 53: "u8", 54: "ip", 55: "u8s", 57: "u16",
                    58: "u32", 59: "u32", 60: "bytes", 61: "bytes", 81: "bytes",
                    82: "suboptions", 114: "str", 119: "domains", 121: "routes"}
        self.assertEqual({code: OPTIONS[code].kind for code in expected}, expected)

    def test_names(self) -> None:
        """
        Names map to codes and back, dashes counting as underscores.
        """
        self.assertEqual(option_code("routers"), 3)
        self.assertEqual(option_code("classless-static-routes"), 121)
        self.assertEqual(option_name(114), "captive_portal")
        for spec in OPTIONS.values():
            self.assertEqual(option_code(spec.name), spec.code)

    def test_unknown_name(self) -> None:
        """
        An unknown name is a L{KeyError}; an unknown code gets a made-up name.
        """
        self.assertRaises(KeyError, option_code, "no_such_option")
        self.assertEqual(option_name(224), "option_224")


class GoldenTests(SynchronousTestCase):
    """
    One value of every kind against its bytes.
    """

    def test_encode(self) -> None:
        """
        L{encode_option} gives the golden bytes.
        """
        for code, value, raw in GOLDEN:
            self.assertEqual(encode_option(code, value), raw, code)

    def test_decode(self) -> None:
        """
        L{decode_option} gives the golden value.
        """
        for code, value, raw in GOLDEN:
            self.assertEqual(decode_option(code, raw), value, code)

    def test_convenient_inputs(self) -> None:
        """
        Encoding takes addresses and networks as text, lists for tuples and
        text for bytes options.
        """
        self.assertEqual(encode_option(54, "192.0.2.1"), b"\xc0\x00\x02\x01")
        self.assertEqual(encode_option(6, ["192.0.2.1"]), b"\xc0\x00\x02\x01")
        self.assertEqual(encode_option(60, "MSFT 5.0"), b"MSFT 5.0")
        self.assertEqual(encode_option(121, [("10.0.0.0/8", "192.0.2.1")]),
                         b"\x08\x0a\xc0\x00\x02\x01")

    def test_trailing_nul(self) -> None:
        """
        Text options lose trailing NULs on decode (RFC 2132 section 2).
        """
        self.assertEqual(decode_option(12, b"laptop\x00"), "laptop")

    def test_unknown_code(self) -> None:
        """
        Unknown codes pass bytes through unchanged both ways.
        """
        self.assertEqual(decode_option(224, b"\x00\xffx"), b"\x00\xffx")
        self.assertEqual(encode_option(224, b"\x00\xffx"), b"\x00\xffx")


class RFC3442Tests(SynchronousTestCase):
    """
    Classless static routes, option 121, with RFC 3442's examples.
    """

    def test_descriptors(self) -> None:
        """
        Each destination of RFC 3442's table encodes as its width and
        significant octets, then the router.
        """
        router = IPv4Address("192.0.2.1")
        for network, descriptor in RFC3442_DESCRIPTORS:
            raw = descriptor + router.packed
            self.assertEqual(encode_option(121, [(network, router)]), raw, network)
            self.assertEqual(decode_option(121, raw), ((IPv4Network(network), router),))

    def test_all_routes(self) -> None:
        """
        The table's routes follow each other in one option.
        """
        router = b"\xc0\x00\x02\x01"
        raw = b"".join(descriptor + router for _, descriptor in RFC3442_DESCRIPTORS)
        routes = decode_option(121, raw)
        self.assertEqual([str(network) for network, _ in routes],
                         [network for network, _ in RFC3442_DESCRIPTORS])
        self.assertEqual(encode_option(121, routes), raw)

    def test_stray_bits(self) -> None:
        """
        Bits past the width in a significant octet are masked off.
        """
        self.assertEqual(decode_option(121, b"\x09\x0a\xff\xc0\x00\x02\x01"),
                         ((IPv4Network("10.128.0.0/9"), IPv4Address("192.0.2.1")),))

    def test_bad(self) -> None:
        """
        A width above 32, a truncated route or an empty option is refused.
        """
        for raw in (b"\x21" + b"\x0a" * 8, b"\x18\x0a\x00\x00\xc0\x00\x02", b""):
            self.assertRaises(BadOption, decode_option, 121, raw)

    def test_host_bits(self) -> None:
        """
        A destination with host bits set cannot be encoded.
        """
        self.assertRaises(BadOption, encode_option, 121, [("10.0.0.1/8", "192.0.2.1")])


class RFC3397Tests(SynchronousTestCase):
    """
    Domain search lists, option 119, with RFC 3397's example.
    """

    def test_encode_compresses(self) -> None:
        """
        A suffix seen before becomes a pointer, as in RFC 3397 section 2.
        """
        self.assertEqual(encode_option(119, ["eng.apple.com.", "marketing.apple.com."]),
                         RFC3397_SEARCH_LIST)

    def test_split_instances(self) -> None:
        """
        RFC 3397's three nine-byte instances concatenate before decoding.
        """
        packet = Packet.from_bytes(bytes(236) + b"\x63\x82\x53\x63" + RFC3397_SPLIT_OPTIONS)
        self.assertEqual(decode_option(119, packet.option(119) or b""),
                         ("eng.apple.com", "marketing.apple.com"))

    def test_whole_name_pointer(self) -> None:
        """
        A name repeated whole is a lone pointer; the root is one zero byte.
        """
        raw = encode_option(119, ["example.org", "example.org", ""])
        self.assertEqual(raw, b"\x07example\x03org\x00\xc0\x00\x00")
        self.assertEqual(decode_option(119, raw), ("example.org", "example.org", ""))

    def test_loops(self) -> None:
        """
        Pointers to themselves, forwards, or into a loop are refused.
        """
        for raw in (b"\xc0\x00", b"\x01a\xc0\x00", b"\xc0\x02\x01a\x00",
                    b"\x01a\x00\x01b\xc0\x05", b"\x01a\x00\x01b\xc0\x03"):
            self.assertRaises(BadOption, decode_option, 119, raw)

    def test_malformed(self) -> None:
        """
        Truncated labels and pointers, unknown label types, non-ASCII labels,
        labels with dots and names over 255 bytes are refused.
        """
        too_long = (b"\x3f" + b"a" * 63) * 4 + b"\x00"
        for raw in (b"\x05abc", b"\x03abc", b"\x01a\xc0", b"\x41a\x00", b"\x01\xe9\x00",
                    b"\x03a.b\x00", too_long):
            self.assertRaises(BadOption, decode_option, 119, raw)

    def test_bad_names(self) -> None:
        """
        Empty or long labels and non-ASCII names cannot be encoded.
        """
        for name in ("a..b", "a" * 64 + ".com", "caf\u00e9.example", ".".join(["a" * 63] * 4)):
            self.assertRaises(BadOption, encode_option, 119, [name])


class BadOptionTests(SynchronousTestCase):
    """
    Values that do not fit their kind.
    """

    def test_is_malformed_packet(self) -> None:
        """
        L{BadOption} is a L{MalformedPacket} and so a L{ValueError}.
        """
        self.assertTrue(issubclass(BadOption, MalformedPacket))
        self.assertTrue(issubclass(BadOption, ValueError))

    def test_decode_lengths(self) -> None:
        """
        Fixed-size kinds refuse other lengths; lists refuse partial items.
        """
        for code, raw in ((1, b"\x01\x02\x03"), (3, b""), (3, b"\x01\x02\x03\x04\x05"),
                          (26, b"\x05"), (51, b"\x00\x00\x00\x00\x00"), (53, b""),
                          (55, b""), (12, b""), (12, b"\x00"), (80, b"\x00"),
                          (82, b"\x01\x05abc"), (82, b"\x01")):
            self.assertRaises(BadOption, decode_option, code, raw)

    def test_encode_values(self) -> None:
        """
        Out-of-range numbers, wrong types and empty lists cannot be encoded.
        """
        for code, value in ((53, 256), (26, -1), (51, 2 ** 32), (51, "60"), (51, True),
                            (1, "10.0.0.300"), (1, b"\n\x00\x00\x01"), (3, []),
                            (55, [1, 256]), (55, "abc"), (12, ""), (12, "host\x00"),
                            (12, b"host"), (60, 5), (80, False), (82, [(1, b"x" * 256)]),
                            (82, [(256, b"")]), (119, "example.com"), (121, [])):
            self.assertRaises(BadOption, encode_option, code, value)


def _domain_names() -> st.SearchStrategy[str]:
    label = st.one_of(st.sampled_from(["com", "example", "a", "x-1", "Corp"]),
                      st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                            blacklist_characters="."),
                              min_size=1, max_size=63))
    return st.lists(label, max_size=4).map(".".join)


_ADDRESS = st.ip_addresses(v=4)
_KINDS: Dict[str, st.SearchStrategy[Any]] = {
    "ip": _ADDRESS,
    "ips": st.lists(_ADDRESS, min_size=1, max_size=16).map(tuple),
    "u8": st.integers(0, 0xFF),
    "u16": st.integers(0, 0xFFFF),
    "u32": st.integers(0, 0xFFFFFFFF),
    "i32": st.integers(-2 ** 31, 2 ** 31 - 1),
    "u8s": st.lists(st.integers(0, 0xFF), min_size=1, max_size=300).map(tuple),
    "str": st.text(min_size=1).filter(lambda text: not text.endswith("\x00")),
    "bytes": st.binary(max_size=600),
    "flag": st.just(True),
    "suboptions": st.lists(st.tuples(st.integers(0, 0xFF), st.binary(max_size=255)),
                           max_size=6).map(tuple),
    "domains": st.lists(_domain_names(), max_size=8).map(tuple),
    "routes": st.lists(st.tuples(
        st.builds(lambda address, width: IPv4Network((address, width), strict=False),
                  _ADDRESS, st.integers(0, 32)),
        _ADDRESS), min_size=1, max_size=8).map(tuple),
}


class PropertyTests(SynchronousTestCase):
    """
    Random values and bytes for every known option.
    """

    def test_every_kind_covered(self) -> None:
        """
        The strategies below cover every kind in the table.
        """
        self.assertEqual({spec.kind for spec in OPTIONS.values()}, set(_KINDS))

    @BOUNDED
    @given(st.data())
    def test_round_trip(self, data: st.DataObject) -> None:
        """
        Any value of an option's kind decodes to itself after encoding, also
        through a packet.
        """
        code = data.draw(st.sampled_from(sorted(OPTIONS)))
        value = data.draw(_KINDS[OPTIONS[code].kind])
        raw = encode_option(code, value)
        self.assertEqual(decode_option(code, raw), value)
        if code != 52:
            packet = Packet.from_bytes(Packet(options=[(code, raw)]).to_bytes(4000))
            self.assertEqual(decode_option(code, packet.option(code) or b""), value)

    @BOUNDED
    @given(st.sampled_from(sorted(OPTIONS) + [224]), st.binary(max_size=64))
    def test_random_bytes(self, code: int, raw: bytes) -> None:
        """
        Decoding any bytes raises nothing but L{BadOption}, and a decoded
        value survives encoding unchanged.
        """
        try:
            value = decode_option(code, raw)
        except BadOption:
            return
        self.assertEqual(decode_option(code, encode_option(code, value)), value)
