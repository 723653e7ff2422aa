# -*- test-case-name: tests.mailproxy.test_tls -*-
"""
Tests for L{netsuite.mailproxy.tls}: the TLS heuristic's watch, fed real
TLS 1.2 and 1.3 sessions made in memory by Python's C{ssl} (memory BIOs,
Twisted's test certificate), split at every byte boundary.
"""

from __future__ import annotations

import os
import ssl
from typing import List, Optional

import twisted.test
from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.tls import inferred_login, server_name, tls_login
from netsuite.proxy.filters import CLIENT, SERVER, Connection

from .session import Chunk, every_split, play, values

CERTIFICATE = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
IMAPS = Connection(("192.0.2.10", 50123), ("198.51.100.1", 993))


def session(version: ssl.TLSVersion, name: Optional[str] = "imap.example.test",
            server_minimum: Optional[ssl.TLSVersion] = None) -> List[Chunk]:
    """
    The chunks of a TLS session in memory: the handshake, then an IMAP
    greeting and a LOGIN inside it; or, if the server refuses the client's
    version, the ClientHello and the server's alert.
    """
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(CERTIFICATE)
    if server_minimum is not None:
        server_context.minimum_version = server_minimum
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client_context.maximum_version = version
    pipes = {d: (ssl.MemoryBIO(), ssl.MemoryBIO()) for d in (CLIENT, SERVER)}  # (in, out)
    client = client_context.wrap_bio(*pipes[CLIENT], server_hostname=name)
    server = server_context.wrap_bio(*pipes[SERVER], server_side=True)
    chunks: List[Chunk] = []

    def move() -> None:
        for direction, peer in ((CLIENT, SERVER), (SERVER, CLIENT)):
            data = pipes[direction][1].read()
            if data:
                chunks.append((direction, data))
                pipes[peer][0].write(data)

    for _ in range(10):
        for end in (client, server):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                move()
                return chunks
        move()
    server.write(b"* OK ready\r\n")
    move()
    client.read()
    client.write(b"a1 LOGIN alice secret\r\n")
    move()
    server.read()
    server.write(b"a1 OK Logged in\r\n")
    move()
    return chunks


def tls_session(chunks: List[Chunk], name: str) -> object:
    return ("tls-session", {"protocol": "imap", "server_name": name,
                            "client_bytes": sum(len(d) for w, d in chunks if w == CLIENT),
                            "server_bytes": sum(len(d) for w, d in chunks if w == SERVER)})


class TlsTests(SynchronousTestCase):
    def check(self, chunks: List[Chunk], name: str) -> None:
        for variant in every_split(chunks):
            events, client, server = play(tls_login, variant, IMAPS)
            self.assertEqual(len(events), 1, variant)
            name_, found = values(events)[0]
            self.assertEqual((name_, found["protocol"], found["server_name"]),
                             ("tls-session", "imap", name))
            self.assertTrue(client.done and server.done)

    def test_tls13(self) -> None:
        """A TLS 1.3 session: its server name, once both sides sent application data."""
        self.check(session(ssl.TLSVersion.TLSv1_3), "imap.example.test")

    def test_tls12(self) -> None:
        """A TLS 1.2 session likewise."""
        self.check(session(ssl.TLSVersion.TLSv1_2), "imap.example.test")

    def test_no_server_name(self) -> None:
        """A ClientHello without server_name: an empty name."""
        self.check(session(ssl.TLSVersion.TLSv1_3, name=None), "")

    def test_bytes(self) -> None:
        """The event counts the bytes each way up to the record that decided."""
        chunks = session(ssl.TLSVersion.TLSv1_2)
        events, _, _ = play(tls_login, chunks, IMAPS)
        seen = []
        for direction, data in chunks:
            seen.append((direction, data))
            if values(events)[0] == tls_session(seen, "imap.example.test"):
                break
        else:
            self.fail(f"no prefix of the session has the counts of {events!r}")

    def test_alert(self) -> None:
        """The server refuses the handshake (an alert): done, no event."""
        chunks = session(ssl.TLSVersion.TLSv1_2, server_minimum=ssl.TLSVersion.TLSv1_3)
        self.assertEqual([d for d, _ in chunks], [CLIENT, SERVER])
        events, client, server = play(tls_login, chunks, IMAPS)
        self.assertEqual(events, [])
        self.assertTrue(client.done and server.done)

    def test_not_tls(self) -> None:
        """Clear IMAP on the TLS port: not-protocol, both done."""
        for chunks in ([(SERVER, b"* OK IMAP4rev1 ready\r\n")],
                       [(CLIENT, b"a1 LOGIN alice secret\r\n")]):
            events, client, server = play(tls_login, chunks, IMAPS)
            self.assertEqual(values(events)[0][0], "not-protocol")
            self.assertTrue(client.done and server.done)

    def test_server_name_malformed(self) -> None:
        """Truncated or odd ClientHellos have no name, and raise nothing."""
        hello = session(ssl.TLSVersion.TLSv1_3)[0][1][5:]
        self.assertEqual(server_name(hello), "imap.example.test")
        for end in range(len(hello)):
            self.assertIn(server_name(hello[:end]), (None, "imap.example.test"))
        self.assertIsNone(server_name(b"\x02" + hello[1:]))

    def test_inferred_login(self) -> None:
        """The login the service infers says so, and names the server."""
        self.assertEqual(values([inferred_login({"protocol": "imap", "server_name": "x.test",
                                                 "client_bytes": 1, "server_bytes": 2})]),
                         [("login", {"protocol": "imap", "user": "", "outcome": "success",
                                     "evidence": "inferred", "server_name": "x.test"})])
