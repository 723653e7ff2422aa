# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Hypothesis strategies for the short campaigns: inputs with the structure
each target reads (DHCP option TLVs, HTTP heads and forms, AMP boxes,
typed-value JSON), so that a few hundred examples reach past the first
check, beside plain bytes and mutated corpus seeds.
"""

from __future__ import annotations

import base64
import json
from typing import Any, List

from hypothesis import strategies as st

from netsuite.dhcp.packet import MAGIC_COOKIE
from netsuite.registry.values import dumps

SELECTOR = st.integers(0, 255)
"""The first byte of a stream input: how it is cut into reads."""


def _tlvs(draw: Any) -> bytes:
    options = draw(st.lists(st.tuples(
        st.sampled_from([1, 3, 12, 43, 50, 51, 52, 53, 54, 55, 57, 61, 81, 82, 114, 0, 255])
        | st.integers(0, 255),
        st.binary(max_size=40)), max_size=8))
    out = b"".join(bytes([code, len(value)]) + value if code not in (0, 255)
                   else bytes([code]) for code, value in options)
    if draw(st.booleans()):
        out = bytes([53, 1, draw(st.integers(0, 10))]) + out
    if draw(st.booleans()):
        out += b"\xff"
    return out


@st.composite
def dhcp_datagrams(draw: Any) -> bytes:
    """
    A BOOTP header with fields from a few telling values, the magic cookie
    (mostly) and option TLVs, also in C{sname} and C{file}.
    """
    op = draw(st.sampled_from([1, 2, 0, 3]))
    htype, hlen = draw(st.sampled_from([(1, 6), (1, 16), (6, 6), (1, 0), (1, 17), (0, 0)]))
    address = st.sampled_from([bytes(4), bytes([10, 89, 0, 100]), bytes([10, 90, 0, 1]),
                               bytes([10, 89, 0, 1]), b"\xff\xff\xff\xff", bytes([10, 89, 0, 5])])
    header = (bytes([op, htype, hlen, draw(st.integers(0, 255))])
              + draw(st.binary(min_size=4, max_size=4))
              + draw(st.binary(min_size=4, max_size=4))
              + draw(address) + draw(address) + draw(address) + draw(address)
              + draw(st.binary(min_size=16, max_size=16)))
    sname = _tlvs(draw)[:64].ljust(64, b"\x00") if draw(st.booleans()) else bytes(64)
    file = _tlvs(draw)[:128].ljust(128, b"\x00") if draw(st.booleans()) else bytes(128)
    cookie = MAGIC_COOKIE if draw(st.integers(0, 9)) else draw(st.binary(min_size=4,
                                                                           max_size=4))
    body = header + sname + file + cookie + _tlvs(draw)
    return body[:draw(st.integers(0, len(body)))] if draw(st.integers(0, 9)) == 0 else body


_TOKEN = "A" * 32
_HOSTS = ["10.89.0.1:5280", "example.com", "captive.apple.com", "", "10.89.0.1:5280\x00",
          "[::1]", "a" * 300, "xn--bcher-kva.example"]
_PATHS = ["/", "/login", "/logout", "/status", "/api", "/operator", "/operator/kick",
          "/static/logo.png", "/static/../x", "/generate_204", "/hotspot-detect.html",
          "http://example.com/a?b", "//x", "*", "http://[x/", "/%00", "/a?url=%ff"]
_FIELDS = ["csrf", "accept", "url", "ip", "username", "password", "code", "x"]
_VALUES = st.sampled_from([_TOKEN, "1", "10.89.0.11", "10.89.0.300", "20.89.0.11",
                           "http://example.com/", "javascript:alert(1)", "", "\x00",
                           "\u00e9", "a" * 5000]) | st.text(max_size=20)


def _header_value(draw: Any) -> bytes:
    return draw(st.sampled_from([b"", b"close", b"keep-alive", b"0", b"5", b"-1",
                                 b"chunked", b"100-continue", b"application/x-www-form-urlencoded",
                                 b"multipart/form-data; boundary=x", b"a\x0cb", b"\x85",
                                 b"Basic b3A6czNjcmV0", b"Basic !!"])
                | st.binary(max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v))


@st.composite
def http_requests(draw: Any) -> bytes:
    """
    One to three requests: a method, a target and a version from telling
    values, headers (Host, Connection, Content-Length, Transfer-Encoding,
    Cookie, Authorization, Content-Type, others), a form body.
    """
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"get", b""]))
        target = draw(st.sampled_from(_PATHS) | st.text(max_size=20)).encode("utf-8")
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 x"]))
        headers: List[bytes] = []
        host = draw(st.sampled_from(_HOSTS + [None]))
        if host is not None:
            headers.append(b"Host: " + host.encode("utf-8"))
        for name in draw(st.lists(st.sampled_from(
                [b"Connection", b"Content-Length", b"Transfer-Encoding", b"Expect", b"Upgrade",
                 b"Content-Type", b"Authorization", b"Cookie", b"Host", b"X-A", b" Host",
                 b"Host "]), max_size=4)):
            if name == b"Cookie":
                headers.append(b"Cookie: ns_portal_csrf=" + _TOKEN.encode())
            else:
                headers.append(name + b": " + _header_value(draw))
        body = b""
        if method == b"POST":
            fields = draw(st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=5))
            body = "&".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "replace")
            if draw(st.booleans()):
                headers.append(b"Content-Type: application/x-www-form-urlencoded")
                headers.append(b"Content-Length: %d" % len(body))
        out += method + b" " + target + b" " + version + b"\r\n" + b"".join(
            h + b"\r\n" for h in headers) + b"\r\n" + body
    return bytes([draw(SELECTOR)]) + out


_KEYS = [b"_ask", b"_command", b"_answer", b"_error", b"_error_code", b"_error_description",
         b"mailbox", b"message", b"message.2", b"listener", b"first", b"deadline", b"tags",
         b"remember_by", b"fail_closed", b"watch", b"prefix", b"verdict", b"result", b"id"]
_COMMANDS = [b"Send", b"AddListener", b"RemoveListener", b"Watch", b"Unwatch", b"Describe",
             b"CallListener", b"Notify", b"Bogus"]


@st.composite
def amp_streams(draw: Any) -> bytes:
    """
    Boxes of keys from the bus's commands and values that mostly parse,
    serialized with lengths that are, now and then, wrong.
    """
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        box = {}
        for key in draw(st.lists(st.sampled_from(_KEYS) | st.binary(min_size=1, max_size=8),
                                 max_size=8, unique=True)):
            if key == b"_command":
                box[key] = draw(st.sampled_from(_COMMANDS))
            elif key in (b"message", b"tags", b"remember_by", b"result"):
                box[key] = draw(typed_json())
            elif key in (b"first", b"fail_closed"):
                box[key] = draw(st.sampled_from([b"True", b"False", b"maybe"]))
            elif key == b"deadline":
                box[key] = draw(st.sampled_from([b"1.0", b"nan", b"-1", b"x", b"1e400"]))
            elif key == b"mailbox":
                box[key] = draw(st.sampled_from([b"/dhcp/lease", b"/dhcp/seen", b"/x", b"",
                                                 b"\xff"]))
            else:
                box[key] = draw(st.binary(max_size=8))
        for key, value in box.items():
            out += len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value
        out += b"\x00\x00"
    if draw(st.integers(0, 9)) == 0:
        out = out[:draw(st.integers(0, len(out)))]
    return bytes([draw(SELECTOR)]) + out


_SCALARS = (st.text(max_size=10) | st.binary(max_size=10) | st.integers() | st.floats()
            | st.booleans() | st.none() | st.ip_addresses())
VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)


def _raw(draw: Any, depth: int = 0) -> Any:
    """
    A typed encoding that may be wrong anywhere: tags, payload types,
    surrogates, nesting past the depth limit.
    """
    tag = draw(st.sampled_from(["str", "bytes", "int", "float", "bool", "none", "ipv4", "ipv6",
                                "mac", "list", "map", "other"]))
    if tag == "list" and depth < 40:
        return [tag, [_raw(draw, depth + 1) for _ in range(draw(st.integers(0, 2)))]]
    if tag == "map" and depth < 40:
        return [tag, {draw(st.text(max_size=3)): _raw(draw, depth + 1)
                      for _ in range(draw(st.integers(0, 2)))}]
    payload = draw(st.sampled_from(["\ud800", "a\udc00b", "nan", "-inf", "1e400", "00", "-0",
                                    "10.0.0.300", "fe80::1%eth0", "02:4e:00:00:00:0a",
                                    base64.b64encode(b"x").decode(), "====", None, True, 1,
                                    1.5, [], {}]) | st.text(max_size=6))
    return [tag, payload]


@st.composite
def typed_json(draw: Any) -> bytes:
    """
    Typed-value JSON: of a real value, or of a possibly wrong encoding, in
    UTF-8 (mostly) or another encoding, and now and then deeply nested.
    """
    kind = draw(st.integers(0, 9))
    if kind < 4:
        return dumps(draw(VALUES))
    if kind == 9:
        depth = draw(st.integers(30, 40))
        return b'["list",[' * depth + b'["none",null]' + b"]]" * depth
    text = json.dumps(_raw(draw), ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "utf-32", "latin-1"]))
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
