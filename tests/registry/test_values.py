# -*- test-case-name: tests.registry.test_values -*-
"""
Tests for L{netsuite.registry.values}: typed values, their lossless encoding,
and the typing of command-line values.
"""

from __future__ import annotations

import math
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from netsuite.registry.values import (MAC, MAX_DEPTH, InvalidValue, check, check_message, decode,
                                      dumps, encode, guess, loads, to_plain)

# Golden typed encodings, as they travel on the bus (docs/bus-protocol.md).
STR_BYTES = '["str","h\u00e9llo \u2603"]'.encode("utf-8")
BYTES_BYTES = b'["bytes","/wCAQQ=="]'
INT_BYTES = b'["int","-12345678901234567890123"]'
FLOAT_BYTES = b'["float",0.1]'
NEGATIVE_ZERO_BYTES = b'["float",-0.0]'
NAN_BYTES = b'["float","nan"]'
INF_BYTES = b'["float","inf"]'
MINUS_INF_BYTES = b'["float","-inf"]'
TRUE_BYTES = b'["bool",true]'
NONE_BYTES = b'["none",null]'
IPV4_BYTES = b'["ipv4","10.0.0.1"]'
IPV6_BYTES = b'["ipv6","2001:db8::1"]'
MAC_BYTES = b'["mac","aa:bb:cc:dd:ee:0f"]'
LIST_BYTES = b'["list",[["int","1"],["bool",false],["list",[]]]]'
MESSAGE_BYTES = (b'["map",{"ip":["ipv4","10.0.0.1"],"mac":["mac","aa:bb:cc:dd:ee:0f"],'
                 b'"tags":["map",{"n":["int","7"]}]}]')

GOLDEN = [
    ("h\u00e9llo \u2603", STR_BYTES),
    (b"\xff\x00\x80A", BYTES_BYTES),
    (-12345678901234567890123, INT_BYTES),
    (0.1, FLOAT_BYTES),
    (-0.0, NEGATIVE_ZERO_BYTES),
    (float("inf"), INF_BYTES),
    (float("-inf"), MINUS_INF_BYTES),
    (True, TRUE_BYTES),
    (None, NONE_BYTES),
    (IPv4Address("10.0.0.1"), IPV4_BYTES),
    (IPv6Address("2001:db8::1"), IPV6_BYTES),
    (MAC("AA:BB:CC:DD:EE:0F"), MAC_BYTES),
    ([1, False, []], LIST_BYTES),
    ({"ip": IPv4Address("10.0.0.1"), "mac": MAC("aa:bb:cc:dd:ee:0f"), "tags": {"n": 7}},
     MESSAGE_BYTES),
]

# One of every kind of value, for round trips.
SAMPLES: list[Any] = [
    "", "plain", "h\u00e9llo \u2603 \U0001f600", "\x00nul and \"quotes\"\n",
    b"", b"ascii", b"\xff\xfe\x00\x80 not utf-8", bytes(range(256)),
    0, 1, -1, 2 ** 64, -(2 ** 200), 10 ** 100,
    0.0, -0.0, 0.1, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), 1.5,
    True, False,
    None,
    IPv4Address("0.0.0.0"), IPv4Address("192.168.1.254"),
    IPv6Address("::1"), IPv6Address("fe80::1:2ff:fe03:405"),
    MAC("00:11:22:33:44:55"),
    [], [1, "a", None], [[1, [2, [3]]], {"x": [b"\x00"]}],
    {}, {"a": {"b": {"c": [IPv4Address("10.0.0.1"), MAC("aa-bb-cc-dd-ee-ff")]}}},
    {"\u00e9t\u00e9": 1, "": True},
]


class SameValueMixin:
    """
    Compare netsuite values by type as well as by value, since C{True == 1},
    C{0.0 == -0.0} and C{nan != nan}.
    """

    def assertSameValue(self, actual: Any, expected: Any) -> None:
        self.assertIs(type(actual), type(expected),  # type: ignore[attr-defined]
                      f"{actual!r} is not the same type as {expected!r}")
        if type(expected) is float:
            if math.isnan(expected):
                self.assertTrue(math.isnan(actual), f"{actual!r} is not nan")  # type: ignore[attr-defined]
            else:
                self.assertEqual(actual, expected)  # type: ignore[attr-defined]
                self.assertEqual(math.copysign(1.0, actual),  # type: ignore[attr-defined]
                                 math.copysign(1.0, expected), "sign of zero lost")
        elif type(expected) is list:
            self.assertEqual(len(actual), len(expected))  # type: ignore[attr-defined]
            for a, e in zip(actual, expected):
                self.assertSameValue(a, e)
        elif type(expected) is dict:
            self.assertEqual(sorted(actual), sorted(expected))  # type: ignore[attr-defined]
            for key in expected:
                self.assertSameValue(actual[key], expected[key])
        else:
            self.assertEqual(actual, expected)  # type: ignore[attr-defined]


class RoundTripTests(SameValueMixin, SynchronousTestCase):
    """
    Every value survives L{encode}/L{decode} and L{dumps}/L{loads} with its type.
    """

    def test_encodeDecode(self) -> None:
        """
        L{decode} of L{encode} gives back every sample, type included.
        """
        for value in SAMPLES:
            self.assertSameValue(decode(encode(value)), value)

    def test_dumpsLoads(self) -> None:
        """
        L{loads} of L{dumps} gives back every sample, type included.
        """
        for value in SAMPLES:
            self.assertSameValue(loads(dumps(value)), value)

    def test_nan(self) -> None:
        """
        A nan float travels as the string C{"nan"} and comes back as a nan float.
        """
        self.assertEqual(dumps(float("nan")), NAN_BYTES)
        result = loads(NAN_BYTES)
        self.assertIs(type(result), float)
        self.assertTrue(math.isnan(result))

    def test_boolIsNotInt(self) -> None:
        """
        C{True} and C{1} have different encodings and come back as C{bool}
        and C{int}.
        """
        self.assertEqual(encode(True), ["bool", True])
        self.assertEqual(encode(1), ["int", "1"])
        self.assertIs(loads(dumps(True)), True)
        self.assertIs(type(loads(dumps(1))), int)
        self.assertIs(type(loads(dumps(0))), int)
        self.assertIs(loads(dumps(False)), False)

    def test_tupleBecomesList(self) -> None:
        """
        A tuple is carried as a list.
        """
        self.assertEqual(encode((1, "a")), ["list", [["int", "1"], ["str", "a"]]])
        self.assertSameValue(loads(dumps((1, "a"))), [1, "a"])

    def test_dumpsIsStrictJSON(self) -> None:
        """
        L{dumps} never writes the non-standard JSON literals C{NaN} or C{Infinity}.
        """
        data = dumps([float("nan"), float("inf"), float("-inf")])
        self.assertNotIn(b"NaN", data)
        self.assertNotIn(b"Infinity", data)

    def test_intAsFloatPayload(self) -> None:
        """
        A float payload written as a JSON integer decodes to a float.
        """
        result = loads(b'["float",3]')
        self.assertIs(type(result), float)
        self.assertEqual(result, 3.0)


class GoldenTests(SameValueMixin, SynchronousTestCase):
    """
    L{dumps} writes the documented wire form, and L{loads} reads it.
    """

    def test_dumps(self) -> None:
        """
        Each value is written exactly as its golden encoding.
        """
        for value, golden in GOLDEN:
            self.assertEqual(dumps(value), golden)

    def test_loads(self) -> None:
        """
        Each golden encoding is read back as its value.
        """
        for value, golden in GOLDEN:
            self.assertSameValue(loads(golden), value)

    def test_encodePair(self) -> None:
        """
        L{encode} gives a JSON-ready C{[type, payload]} pair.
        """
        self.assertEqual(encode(IPv4Address("10.0.0.1")), ["ipv4", "10.0.0.1"])
        self.assertEqual(encode(b"\xff"), ["bytes", "/w=="])
        self.assertEqual(encode({"a": None}), ["map", {"a": ["none", None]}])


class MalformedTests(SynchronousTestCase):
    """
    A malformed typed encoding raises L{InvalidValue} saying what is wrong.
    """

    def assertInvalid(self, encoded: Any, *fragments: str) -> InvalidValue:
        """
        C{decode(encoded)} raises L{InvalidValue} whose message holds every
        fragment.
        """
        error = self.assertRaises(InvalidValue, decode, encoded)
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    def test_unknownTag(self) -> None:
        """
        An unknown type tag is named.
        """
        self.assertInvalid(["complex", "1+2j"], "unknown value type 'complex'")

    def test_notAPair(self) -> None:
        """
        Anything but a two-element list with a str tag is refused.
        """
        for encoded in ("str", {"str": "x"}, ["str"], ["str", "a", "b"], [1, "x"], None):
            self.assertInvalid(encoded, "[type, payload] pair")

    def test_badBase64(self) -> None:
        """
        A bytes payload that is not base64 is refused, naming the type.
        """
        self.assertInvalid(["bytes", "not base64!"], "bad bytes payload")
        self.assertInvalid(["bytes", "abc"], "bad bytes payload")

    def test_nonASCIIBase64(self) -> None:
        """
        A bytes payload with non-ASCII characters is an L{InvalidValue}, not
        a bare C{ValueError}.
        """
        self.assertInvalid(["bytes", "\u00e9\u00e9\u00e9\u00e9"], "bad bytes payload")

    def test_nonDigitInt(self) -> None:
        """
        An int payload must be decimal digits: no floats, hex, spaces or
        non-ASCII digits.
        """
        for text in ("1.5", "0x10", " 1", "1_000", "", "+1", "\u0661\u0662"):
            self.assertInvalid(["int", text], "int payload must be decimal digits")

    def test_intPayloadNotString(self) -> None:
        """
        An int payload must be a JSON string (so JSON cannot round it).
        """
        self.assertInvalid(["int", 5], "int payload must be a JSON str")

    def test_hugeIntPayload(self) -> None:
        """
        An int payload too long to convert is an L{InvalidValue}.
        """
        self.assertInvalid(["int", "1" * 5000], "bad int payload")

    def test_hugeFloatPayload(self) -> None:
        """
        A float payload that is an integer too large for a float is an
        L{InvalidValue}.
        """
        self.assertInvalid(["float", 10 ** 400], "bad float payload")

    def test_wrongPayloadType(self) -> None:
        """
        Each tag checks the JSON type of its payload and names it.
        """
        self.assertInvalid(["str", 5], "str payload must be a JSON str, got 5")
        self.assertInvalid(["bool", 1], "bool payload must be a JSON bool")
        self.assertInvalid(["float", "1.5"], "float payload must be a JSON float")
        self.assertInvalid(["float", True], "float payload must be a JSON float")
        self.assertInvalid(["none", 0], "none payload must be null")
        self.assertInvalid(["bytes", 5], "bytes payload must be a JSON str")
        self.assertInvalid(["list", {}], "list payload must be a JSON list")
        self.assertInvalid(["map", []], "map payload must be a JSON dict")
        self.assertInvalid(["ipv4", 167772161], "ipv4 payload must be a JSON str")

    def test_badAddresses(self) -> None:
        """
        Malformed addresses are refused, and an address of the other family
        is not accepted under the wrong tag.
        """
        self.assertInvalid(["ipv4", "10.0.0.256"], "bad ipv4 payload")
        self.assertInvalid(["ipv4", "::1"], "bad ipv4 payload")
        self.assertInvalid(["ipv6", "10.0.0.1"], "bad ipv6 payload")
        self.assertInvalid(["mac", "aa:bb:cc"], "not a MAC address")

    def test_nestedError(self) -> None:
        """
        An error deep inside a list or map is raised as it is.
        """
        self.assertInvalid(["list", [["int", "1"], ["map", {"a": ["ipv4", "x"]}]]],
                           "bad ipv4 payload 'x'")

    def test_loadsNotJSON(self) -> None:
        """
        L{loads} of bytes that are not UTF-8 JSON raises L{InvalidValue}.
        """
        for data in (b"", b"[", b"\xff\xfe", b'["str",]'):
            error = self.assertRaises(InvalidValue, loads, data)
            self.assertIn("not UTF-8 JSON", str(error))

    def test_loadsNonList(self) -> None:
        """
        L{loads} of JSON that is not a typed pair raises L{InvalidValue}.
        """
        error = self.assertRaises(InvalidValue, loads, b'{"str":"x"}')
        self.assertIn("[type, payload] pair", str(error))
        self.assertRaises(InvalidValue, loads, b'"x"')


class BoundTests(SynchronousTestCase):
    """
    L{loads} refuses, with L{InvalidValue}, what it could not carry on:
    nesting past L{MAX_DEPTH} and strings with a lone surrogate.
    """

    def nested(self, depth: int) -> bytes:
        return b'["list",[' * depth + b'["none",null]' + b"]]" * depth

    def test_depthLimit(self) -> None:
        """
        Lists nested L{MAX_DEPTH} deep decode; one more level is refused.
        """
        value = loads(self.nested(MAX_DEPTH))
        for _ in range(MAX_DEPTH):
            [value] = value
        self.assertIsNone(value)
        error = self.assertRaises(InvalidValue, loads, self.nested(MAX_DEPTH + 1))
        self.assertIn(f"nest more than {MAX_DEPTH} deep", str(error))
        maps = b'["map",{"a":' * (MAX_DEPTH + 1) + b'["none",null]' + b"}]" * (MAX_DEPTH + 1)
        self.assertRaises(InvalidValue, loads, maps)

    def test_deepJSON(self) -> None:
        """
        JSON nested deeper than Python can parse is an L{InvalidValue}, not
        a C{RecursionError}.
        """
        for data in (self.nested(100000), b"[" * 100000 + b"]" * 100000):
            error = self.assertRaises(InvalidValue, loads, data)
            self.assertIn("nest", str(error))

    def test_loneSurrogate(self) -> None:
        """
        A string, or a map key, holding a lone surrogate (written as a JSON
        escape) is refused: it could never be encoded again.
        """
        for data in (b'["str","\\ud800"]', b'["map",{"\\uDC00":["none",null]}]',
                     b'["list",[["str","a\\udfffb"]]]'):
            error = self.assertRaises(InvalidValue, loads, data)
            self.assertIn("lone surrogate", str(error))

    def test_utf16(self) -> None:
        """
        JSON in UTF-16 or UTF-32 (which json.loads of bytes takes) is
        refused, so a lone surrogate cannot get past the check in it
        (found by tests.fuzz.bus_values).
        """
        for encoding in ("utf-16", "utf-16-le", "utf-32"):
            for text in ('["str","\\ud800"]', '["str","a"]'):
                self.assertRaises(InvalidValue, loads, text.encode(encoding))
        # json.loads decodes bytes with surrogatepass: an encoded surrogate
        # (no escape in sight) got past the check too
        self.assertRaises(InvalidValue, loads, b'["str","\xed\xa0\x80"]')

    def test_surrogatePair(self) -> None:
        """
        An escaped surrogate pair is one character, and is accepted.
        """
        self.assertEqual(loads(b'["str","\\ud83d\\ude00"]'), "\U0001f600")
        self.assertEqual(loads(b'["str","\\u00e9"]'), "\u00e9")


class CheckTests(SynchronousTestCase):
    """
    L{check} and L{check_message} refuse what netsuite cannot carry, naming
    the place.
    """

    def test_accepts(self) -> None:
        """
        Every sample is a netsuite value.
        """
        for value in SAMPLES:
            check(value)

    def test_set(self) -> None:
        """
        A set is refused, with its place in the message.
        """
        error = self.assertRaises(InvalidValue, check, {"a": [1, {2}]}, "message")
        self.assertIn("message['a'][1]", str(error))
        self.assertIn("set is not a netsuite value", str(error))

    def test_object(self) -> None:
        """
        An arbitrary object is refused, naming its type.
        """
        error = self.assertRaises(InvalidValue, check, [object()], "result")
        self.assertIn("result[0]: object is not a netsuite value", str(error))

    def test_nonStrKey(self) -> None:
        """
        A map key that is not a str is refused, naming the key.
        """
        error = self.assertRaises(InvalidValue, check, {"a": {1: "x"}}, "tags")
        self.assertIn("tags['a']: map keys must be str, got 1", str(error))

    def test_subclassRefused(self) -> None:
        """
        Subclasses of the value types are refused, since they would not
        come back as themselves.
        """

        class Name(str):
            pass

        self.assertRaises(InvalidValue, check, Name("x"))

    def test_encodeRefuses(self) -> None:
        """
        L{encode} refuses what L{check} refuses.
        """
        self.assertRaises(InvalidValue, encode, {1, 2})
        self.assertRaises(InvalidValue, encode, {1: "x"})
        self.assertRaises(InvalidValue, dumps, [object()])

    def test_checkMessage(self) -> None:
        """
        A message is a map; anything else is refused, naming its type.
        """
        message = {"ip": IPv4Address("10.0.0.1")}
        self.assertIs(check_message(message), message)
        error = self.assertRaises(InvalidValue, check_message, [1])
        self.assertIn("got list", str(error))
        error = self.assertRaises(InvalidValue, check_message, {"a": {1.5}})
        self.assertIn("message['a']", str(error))


class MACTests(SynchronousTestCase):
    """
    L{MAC} parses the usual forms and compares by address.
    """

    def test_forms(self) -> None:
        """
        Colons, dashes, no separator, any case, 6 bytes or another L{MAC}
        give the same address, printed lower-case with colons.
        """
        forms = ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabbccddeeff",
                 b"\xaa\xbb\xcc\xdd\xee\xff", MAC("aa:bb:cc:dd:ee:ff")]
        for form in forms:
            mac = MAC(form)  # type: ignore[arg-type]
            self.assertEqual(str(mac), "aa:bb:cc:dd:ee:ff")
            self.assertEqual(mac.packed, b"\xaa\xbb\xcc\xdd\xee\xff")
        self.assertEqual(repr(MAC("aabbccddeeff")), "MAC('aa:bb:cc:dd:ee:ff')")

    def test_invalid(self) -> None:
        """
        Mixed separators, wrong lengths, non-hex digits and other types are
        refused.
        """
        for bad in ("aa:bb-cc:dd:ee:ff", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00",
                    "gg:bb:cc:dd:ee:ff", "aabb.ccdd.eeff", "", b"\x00" * 5, 42):
            self.assertRaises(InvalidValue, MAC, bad)

    def test_equalityAndHash(self) -> None:
        """
        Equal addresses are equal and hash alike, whatever their spelling;
        a MAC is not equal to its string.
        """
        a = MAC("aa:bb:cc:dd:ee:ff")
        b = MAC("AABBCCDDEEFF")
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertEqual(len({a, b}), 1)
        self.assertNotEqual(a, MAC("aa:bb:cc:dd:ee:fe"))
        self.assertNotEqual(a, "aa:bb:cc:dd:ee:ff")
        self.assertNotEqual(a, b"\xaa\xbb\xcc\xdd\xee\xff")

    def test_immutable(self) -> None:
        """
        A MAC cannot be changed.
        """
        mac = MAC("aa:bb:cc:dd:ee:ff")
        self.assertRaises(AttributeError, setattr, mac, "packed", b"\x00" * 6)
        self.assertEqual(str(mac), "aa:bb:cc:dd:ee:ff")


class GuessTests(SameValueMixin, SynchronousTestCase):
    """
    L{guess} types values given on a command line.
    """

    def test_numbers(self) -> None:
        """
        Integers and decimal floats become int and float.
        """
        self.assertSameValue(guess("42"), 42)
        self.assertSameValue(guess("-7"), -7)
        self.assertSameValue(guess("+7"), 7)
        self.assertSameValue(guess("123456789012345678901234567890"),
                             123456789012345678901234567890)
        self.assertSameValue(guess("1.5"), 1.5)
        self.assertSameValue(guess("-.5"), -0.5)
        self.assertSameValue(guess("2."), 2.0)
        self.assertSameValue(guess("1e3"), 1000.0)
        self.assertSameValue(guess("1.5E-3"), 0.0015)

    def test_words(self) -> None:
        """
        true/false and null/none, in any case, become bool and None.
        """
        self.assertSameValue(guess("true"), True)
        self.assertSameValue(guess("FALSE"), False)
        self.assertSameValue(guess("null"), None)
        self.assertSameValue(guess("None"), None)

    def test_addresses(self) -> None:
        """
        IPv4, IPv6 and MAC addresses with separators are recognised.
        """
        self.assertSameValue(guess("10.0.0.1"), IPv4Address("10.0.0.1"))
        self.assertSameValue(guess("fe80::1"), IPv6Address("fe80::1"))
        self.assertSameValue(guess("AA:BB:CC:DD:EE:FF"), MAC("aa:bb:cc:dd:ee:ff"))
        self.assertSameValue(guess("aa-bb-cc-dd-ee-ff"), MAC("aa:bb:cc:dd:ee:ff"))

    def test_strings(self) -> None:
        """
        Anything else stays a string: a MAC without separators, hex, nan,
        version numbers, the empty string.
        """
        for text in ("aabbccddeeff", "0x10", "nan", "inf", "1.2.3", "", "hello",
                     "1_000", "10.0.0.256"):
            self.assertSameValue(guess(text), text)

    def test_forcedKind(self) -> None:
        """
        With C{kind} the text is converted to that type.
        """
        self.assertSameValue(guess("42", "str"), "42")
        self.assertSameValue(guess("true", "str"), "true")
        self.assertSameValue(guess("3", "float"), 3.0)
        self.assertSameValue(guess("True", "bool"), True)
        self.assertSameValue(guess("anything", "none"), None)
        self.assertSameValue(guess("ff00", "bytes"), b"\xff\x00")
        self.assertSameValue(guess("::1", "ip"), IPv6Address("::1"))
        self.assertSameValue(guess("10.0.0.1", "ipv4"), IPv4Address("10.0.0.1"))
        self.assertSameValue(guess("aabbccddeeff", "mac"), MAC("aa:bb:cc:dd:ee:ff"))

    def test_forcedKindInvalid(self) -> None:
        """
        Text that is not of the forced kind, or an unknown kind, raises
        L{InvalidValue} naming both.
        """
        for text, kind in (("x", "int"), ("1.5", "int"), ("yes", "bool"), ("zz", "bytes"),
                           ("::1", "ipv4"), ("nope", "mac"), ("x", "ip")):
            error = self.assertRaises(InvalidValue, guess, text, kind)
            self.assertIn(f"{text!r} is not a valid {kind}", str(error))
        error = self.assertRaises(InvalidValue, guess, "1", "complex")
        self.assertIn("unknown type 'complex'", str(error))


class ToPlainTests(SynchronousTestCase):
    """
    L{to_plain} renders values as plain JSON for people.
    """

    def test_plain(self) -> None:
        """
        Addresses become strings, bytes base64, non-finite floats strings;
        the rest is unchanged.
        """
        value = {"ip": IPv4Address("10.0.0.1"), "mac": MAC("aabbccddeeff"),
                 "raw": b"\xff", "x": [float("inf"), 1, None, "s", True]}
        self.assertEqual(to_plain(value), {"ip": "10.0.0.1", "mac": "aa:bb:cc:dd:ee:ff",
                                           "raw": "/w==", "x": ["inf", 1, None, "s", True]})


class HugeIntTests(SynchronousTestCase):
    """
    Ints longer than Python will convert to text are refused cleanly.
    """

    def test_encodeHugeInt(self) -> None:
        """
        L{encode} of an int past C{sys.get_int_max_str_digits()} raises
        L{InvalidValue}, not a bare C{ValueError}.
        """
        error = self.assertRaises(InvalidValue, encode, {"n": 10 ** 5000})
        self.assertIn("int too large to encode", str(error))
