# -*- test-case-name: tests.mailproxy.test_tls -*-
"""
The TLS heuristic for IMAPS and POP3S (ports 993 and 995), off by
default: a protocol module for L{netsuite.proxy.filters}, pure (no I/O,
no clock).

TLS hides the login, so nothing here sees one. L{tls_login} reads the
records' headers both ways (RFC 8446 section 5.1, RFC 5246 section 6.2)
and the client's ClientHello, whose C{server_name} extension (RFC 6066
section 3) names the server the client meant. Once both sides sent
application data (type 23: in TLS 1.3 the server's encrypted handshake
and the client's Finished are records of that type, so this is "the
handshake is under way and the server answered", not proof of a login),
it emits C{tls-session} with the server name and the bytes so far, and
both filters are done.

The decision needs a clock, which filters do not read: the service that
enabled the heuristic waits N seconds after C{tls-session}, and if the
connection is still open and exchanged data meanwhile (its connection
tracking has bytes each way and idle time), it emits L{inferred_login}:
a login event with C{"evidence": "inferred"}. A server whose first bytes
are no TLS record, or a client whose first bytes are no ClientHello, is
no TLS: C{not-protocol}, both filters done. A TLS alert before the
session started ends the watch with no event.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Mapping, Optional, Tuple

from netsuite.proxy.filters import CLIENT, SERVER, Connection, Event, Step

from ._lines import Side, printable

__all__ = ["tls_login", "TlsSession", "inferred_login", "server_name", "MAX_HELLO"]

HANDSHAKE, APPLICATION_DATA, ALERT, CHANGE_CIPHER_SPEC = 22, 23, 21, 20
CLIENT_HELLO = 1
MAX_HELLO = 64 * 1024
"""The most bytes of ClientHello kept (a larger one is read as having no name)."""

PROTOCOLS = {993: "imap", 995: "pop3"}


def server_name(hello: bytes) -> Optional[str]:
    """
    The host name of a ClientHello's C{server_name} extension, given the
    handshake message (its 4-byte header first); C{None} if it has none
    or is malformed.
    """
    try:
        if hello[0] != CLIENT_HELLO:
            return None
        body = hello[4:4 + int.from_bytes(hello[1:4], "big")]
        i = 2 + 32
        i += 1 + body[i]  # session id
        i += 2 + int.from_bytes(body[i:i + 2], "big")  # cipher suites
        i += 1 + body[i]  # compression methods
        end = min(len(body), i + 2 + int.from_bytes(body[i:i + 2], "big"))
        i += 2
        while i + 4 <= end:
            kind, size = struct.unpack("!HH", body[i:i + 4])
            data = body[i + 4:i + 4 + size]
            i += 4 + size
            if kind != 0:
                continue
            j = 2
            while j + 3 <= len(data):
                name_type, length = data[j], int.from_bytes(data[j + 1:j + 3], "big")
                name = data[j + 3:j + 3 + length]
                if name_type == 0 and len(name) == length and name:
                    return name.decode("ascii", "replace")[:255]
                j += 3 + length
            return None
    except IndexError:
        return None
    return None


class _Records:
    """Reads one direction's TLS record headers, keeping handshake bytes if asked."""

    def __init__(self, keep: int) -> None:
        self.header = b""
        self.left = 0  # payload bytes of the current record still to come
        self.kind: Optional[int] = None
        self.kinds: List[int] = []
        self.handshake = bytearray()
        self.keep = keep
        self.bytes = 0
        self.valid = True

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        i, n = 0, len(data)
        while i < n and self.valid:
            if self.left:
                take = min(self.left, n - i)
                if self.kind == HANDSHAKE and len(self.handshake) < self.keep:
                    self.handshake += data[i:i + min(take, self.keep - len(self.handshake))]
                self.left -= take
                i += take
                continue
            need = 5 - len(self.header)
            self.header += data[i:i + need]
            i += need
            if len(self.header) < 5:
                break
            kind, major, length = self.header[0], self.header[1], \
                int.from_bytes(self.header[3:5], "big")
            self.header = b""
            if kind not in (HANDSHAKE, APPLICATION_DATA, ALERT, CHANGE_CIPHER_SPEC) \
                    or major != 3 or length > 16384 + 2048:
                self.valid = False
                break
            self.kind = kind
            if len(self.kinds) < 16:
                self.kinds.append(kind)
            self.left = length


class TlsSession:
    """The watch of one TLS connection, shared by its two filters."""

    def __init__(self, conn: Connection) -> None:
        self.protocol = PROTOCOLS.get(conn.server[1], "tls")
        self.done = False
        self.server_name: Optional[str] = None
        self._client = _Records(MAX_HELLO)
        self._server = _Records(0)
        self._first: Dict[str, bytes] = {CLIENT: b"", SERVER: b""}

    def __repr__(self) -> str:
        return (f"<TlsSession {self.protocol} done={self.done} "
                f"server_name={self.server_name!r}>")

    def feed_client(self, data: bytes) -> Step:
        return self._feed(self._client, CLIENT, data)

    def feed_server(self, data: bytes) -> Step:
        return self._feed(self._server, SERVER, data)

    def _feed(self, records: _Records, direction: str, data: bytes) -> Step:
        if self.done:
            return Step(data)
        if len(self._first[direction]) < 32:
            self._first[direction] += data[:32 - len(self._first[direction])]
        records.feed(data)
        events: List[Event] = []
        first = self._first[direction]
        if not records.valid or (records.kinds and records.kinds[0] != HANDSHAKE
                                 and not (direction == SERVER and records.kinds[0] == ALERT)):
            events.append(Event("not-protocol", {"protocol": self.protocol,
                                                 "first": printable(first)}))
            self.done = True
            return Step(data, events)
        hello = self._client.handshake
        if self.server_name is None and len(hello) >= 4 and \
                len(hello) >= 4 + int.from_bytes(hello[1:4], "big"):
            self.server_name = server_name(bytes(hello)) or ""
            self._client.handshake = bytearray()
            self._client.keep = 0
        if ALERT in self._server.kinds and APPLICATION_DATA not in self._server.kinds:
            self.done = True  # refused, or failed, before any session
        elif (APPLICATION_DATA in self._client.kinds and APPLICATION_DATA in self._server.kinds):
            events.append(Event("tls-session", {
                "protocol": self.protocol, "server_name": self.server_name or "",
                "client_bytes": self._client.bytes, "server_bytes": self._server.bytes}))
            self.done = True
        return Step(data, events)


def tls_login(conn: Connection) -> Tuple[Side, Side]:
    """
    The (client to server, server to client) filters of a new IMAPS or
    POP3S connection, sharing one L{TlsSession}.
    """
    session = TlsSession(conn)
    return Side(session, CLIENT), Side(session, SERVER)


def inferred_login(session: Mapping[str, Any]) -> Event:
    """
    The login the service infers from a C{tls-session} event's values once
    the session stayed open and busy long enough.
    """
    return Event("login", {"protocol": session["protocol"], "user": "", "outcome": "success",
                           "evidence": "inferred", "server_name": session["server_name"]})
