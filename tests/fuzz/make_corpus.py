"""
Writes the fuzz corpus, tests/fuzz/corpus/TARGET/NAME, from real inputs:

 - DHCP: the udhcpc and dhclient packets captured in tests.dhcp.test_packet
   (their provenance is there), and requests built with the codec;
 - HTTP: request heads that curl 7.88 and Chromium sent to a socket on
   127.0.0.1 (C{--capture}, run once; the heads kept are in
   corpus/portal-front/curl-* and chromium-*), and forms built by hand
   as the portal's own pages post them;
 - the bus: the bytes a L{BusClient} (what netsuite-hook and every peer
   use) wrote to an owner for a send, a listen, a watch and a describe.

    python -m tests.fuzz.make_corpus [--capture]

Stream inputs start with the byte that chooses the reads
(L{tests.fuzz.common.split}): each seed is written whole (0x00) and in
small reads (0x9b), and for the forms also over TLS (bit 6).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
from ipaddress import IPv4Address
from typing import Dict, List

from .common import corpus_dir

CAPTURED = ("curl-", "chromium-")


def write(target: str, seeds: Dict[str, bytes]) -> None:
    where = corpus_dir(target)
    os.makedirs(where, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(where, name), "wb") as f:
            f.write(data)


def dhcp() -> None:
    from netsuite.dhcp.packet import Packet
    from tests.dhcp import test_packet
    from tests.dhcp.test_packet import CAPTURES
    names = ["udhcpc-discover", "udhcpc-hostname-discover", "dhclient-discover",
             "udhcpc-request", "udhcpc-release", "dhclient-request", "dhclient-release"]
    seeds = dict(zip(names, CAPTURES))
    for n, data in enumerate(test_packet._SEEDS[len(CAPTURES):]):
        seeds[f"codec-{n}"] = data
    write("dhcp-packet", seeds)
    mac = bytes.fromhex("024e0000000a")
    server = IPv4Address("10.89.0.1").packed

    def request(kind: int, **fields: object) -> bytes:
        options = [(53, bytes([kind]))] + list(fields.pop("options", []))  # type: ignore
        return Packet(op=1, xid=7, chaddr=mac, options=options, **fields).to_bytes()

    built = {
        "discover": request(1, options=[(55, bytes([1, 3, 6, 114])), (12, b"phone")]),
        "select": request(3, options=[(54, server), (50, IPv4Address("10.89.0.100").packed)]),
        "init-reboot": request(3, options=[(50, IPv4Address("10.89.0.101").packed)]),
        "renew": request(3, ciaddr=IPv4Address("10.89.0.100")),
        "decline": request(4, options=[(54, server), (50, IPv4Address("10.89.0.100").packed)]),
        "release": request(7, ciaddr=IPv4Address("10.89.0.100"), options=[(54, server)]),
        "inform": request(8, ciaddr=IPv4Address("10.89.0.100")),
        "relayed": request(1, giaddr=IPv4Address("10.90.0.1"), options=[(82, b"\x01\x03eth")]),
        "big": request(1, options=[(57, b"\x05\xdc"), (61, b"\x01" + mac), (82, b"x" * 250)]),
    }
    seeds = {}
    for source, prefix in (("client", 0), ("relay", 1)):
        for name, data in list(zip(names, CAPTURES)) + list(built.items()):
            seeds[f"{source}-{name}"] = bytes([prefix]) + data
    write("dhcp-server", seeds)


def capture() -> Dict[str, bytes]:
    """
    The request heads curl and Chromium send, read from a socket on
    127.0.0.1 (each gets a 307 and the connection closed).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    heads: List[bytes] = []

    def serve() -> None:
        listener.settimeout(30)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            conn.close()
            if data:
                heads.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    runs = {
        "curl-get": ["curl", "-s", "-o", "/dev/null", f"{url}/generate_204"],
        "curl-head": ["curl", "-s", "-I", "-o", "/dev/null", f"{url}/"],
        "curl-http10": ["curl", "-s", "-0", "-o", "/dev/null", f"{url}/index.html?a=1"],
        "curl-post": ["curl", "-s", "-o", "/dev/null", "-d", "accept=1&url=http%3A%2F%2Fx",
                      f"{url}/login"],
        "chromium-get": ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                         "--dump-dom", f"{url}/some/page?x=1"],
    }
    found = {}
    for name, argv in runs.items():
        before = len(heads)
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        if len(heads) > before:
            found[name] = heads[before]
    listener.close()
    return found


def portal() -> None:
    where = corpus_dir("portal-front")
    captured = {}
    if os.path.isdir(where):
        for name in os.listdir(where):
            if name.startswith(CAPTURED) and not name.endswith("-split"):
                with open(os.path.join(where, name), "rb") as f:
                    captured[name] = f.read()[1:]
    if "--capture" in sys.argv:
        captured.update(capture())
    heads = dict(captured)
    heads.update({
        "plain-get": b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "head-10": b"HEAD / HTTP/1.0\r\nHost: a.example\r\n\r\n",
        "pipelined": b"GET /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\n"
                     b"Host: b.example\r\nConnection: close\r\n\r\n",
        "probe": b"GET /hotspot-detect.html HTTP/1.1\r\nHost: captive.apple.com\r\n\r\n",
        "absolute": b"GET http://x.example/p?q HTTP/1.1\r\nHost: x.example\r\n\r\n",
        "bad-target": b"GET http://[x/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "body": b"POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc",
        "chunked": b"POST /x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n",
        "no-host": b"GET / HTTP/1.1\r\n\r\n",
        "too-large": b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    })
    write("portal-front", {**{name: b"\x00" + data for name, data in heads.items()},
                           **{name + "-split": b"\x9b" + data for name, data in heads.items()}})
    host = b"Host: 10.89.0.1:5280\r\n"
    token = b"A" * 32
    from netsuite.portal.resource import CSRF_COOKIE
    cookie = b"Cookie: " + CSRF_COOKIE + b"=" + token + b"\r\n"
    auth = b"Authorization: Basic " + base64.b64encode(b"op:s3cret") + b"\r\n"
    form = b"Content-Type: application/x-www-form-urlencoded\r\n"

    def post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
        return (b"POST " + path + b" HTTP/1.1\r\n" + host + form + extra
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    forms = {
        "login-page": b"GET /login?url=http%3A%2F%2Fexample.com%2F HTTP/1.1\r\n" + host + b"\r\n",
        "login": post(b"/login", b"csrf=" + token + b"&accept=1&url=http%3A%2F%2Fexample.com",
                      cookie),
        "login-no-csrf": post(b"/login", b"accept=1"),
        "logout": post(b"/logout", b"csrf=" + token, cookie),
        "status": b"GET /status HTTP/1.1\r\n" + host + b"\r\n",
        "api": b"GET /api HTTP/1.1\r\n" + host + b"Accept: application/captive+json\r\n\r\n",
        "root": b"GET / HTTP/1.1\r\n" + host + b"\r\n",
        "static": b"GET /static/logo.png HTTP/1.1\r\n" + host + b"\r\n",
        "operator": b"GET /operator HTTP/1.1\r\n" + host + auth + b"\r\n",
        "operator-bad": b"GET /operator HTTP/1.1\r\n" + host
                        + b"Authorization: Basic !!!!\r\n\r\n",
        "kick": post(b"/operator/kick", b"csrf=" + token + b"&ip=10.89.0.11", auth + cookie),
        "kick-bad": post(b"/operator/kick", b"csrf=" + token + b"&ip=10.89.0.300",
                         auth + cookie),
        "login-then-status": post(b"/login", b"csrf=" + token + b"&accept=1", cookie)
                             + b"GET /status HTTP/1.1\r\n" + host + b"\r\n",
    }
    seeds = {}
    for name, data in forms.items():
        seeds[name] = b"\x00" + data
        seeds[name + "-tls"] = b"\x40" + data
        seeds[name + "-split"] = b"\x9b" + data
    write("portal-forms", seeds)


def bus() -> None:
    from twisted.internet.testing import StringTransport
    from netsuite.registry import CONTINUE
    from netsuite.registry.values import MAC
    from tests.bus.helpers import LEASE, SEEN, Owner

    owner = Owner()
    client = owner.client()
    _, factory, _, _ = owner.reactor.unixClients[-1]
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    seeds = {}

    def record(name: str) -> None:
        seeds[name] = b"\x00" + transport.value()
        seeds[name + "-split"] = b"\x9b" + transport.value()
        transport.clear()

    record("greeting")
    client.send(LEASE, {"mac": MAC("02:4e:00:00:00:0a"), "ip": IPv4Address("10.89.0.5"),
                        "n": 3, "x": 1.5, "raw": b"\x00\xff", "list": [None, True, "t"]})
    record("send")
    client.send(LEASE, {"blob": bytes(range(256)) * 400})
    record("send-chunked")
    client.listen(LEASE, lambda message: CONTINUE, tags={"hook": "fuzz"}, first=True)
    record("listen")
    client.watch(SEEN, lambda message: None)
    record("watch")
    client.describe("/dhcp")
    record("describe")
    write("bus-box", {name: data for name, data in seeds.items() if len(data) > 1})
    values = {
        "message": b'["map",{"mac":["mac","02:4e:00:00:00:0a"],"ip":["ipv4","10.89.0.5"],'
                   b'"n":["int","3"],"x":["float",1.5],"raw":["bytes","AP8="],'
                   b'"l":["list",[["none",null],["bool",true],["str","t"]]]}]',
        "ipv6": b'["ipv6","fe80::1%eth0"]',
        "nan": b'["list",[["float","nan"],["float","-inf"],["float",1]]]',
        "unicode": '["str","caf\u00e9 \\u00e9 \\ud83d\\ude00"]'.encode("utf-8"),
        "surrogate": b'["str","\\ud800"]',
        "deep": b'["list",' * 33 + b'["none",null]' + b"]" * 33,
        "bigint": b'["int","' + b"9" * 5000 + b'"]',
        "found-utf16-surrogate": '["str","\\ud800"]'.encode("utf-16"),
        "found-utf8-encoded-surrogate": b'["str","\xed\xa0\x80"]',
    }
    write("bus-values", values)


if __name__ == "__main__":
    dhcp()
    portal()
    bus()
