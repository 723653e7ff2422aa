# -*- test-case-name: tests.mailproxy.test_lines -*-
"""
What the IMAP and POP3 watchers share: a bounded line reader that passes
every byte on as it arrives and keeps only the partial line it is in, the
greeting check made before cutting in, and the event values (the user
name decoded and bounded, a printable prefix of foreign bytes).

Nothing here keeps or shows a password: a reader's partial line may hold
one for a moment, so no object here has a repr that shows its buffers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable, List, Optional, Protocol, Sequence, Tuple

from netsuite.proxy.filters import CLIENT, SERVER, Event, Step

__all__ = ["MAX_LINE", "MAX_USER", "LineReader", "Greeting", "user_text", "b64",
           "printable", "login_event", "not_protocol", "too_long", "WatchedSession", "Side"]

MAX_LINE = 64 * 1024
"""The longest command or response line (outside a literal) a watcher
holds; a longer one cuts the connection (L{Event} C{"too-long"})."""

MAX_USER = 256
"""Characters of a user name kept in an event (longer ones are cut)."""


def user_text(raw: bytes) -> str:
    """A user name as an event carries it: UTF-8 (bad bytes replaced), bounded."""
    return raw.decode("utf-8", "replace")[:MAX_USER]


def b64(text: bytes) -> Optional[bytes]:
    """Strict base64 (RFC 4648), C{None} when C{text} is not."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def printable(data: bytes, limit: int = 32) -> str:
    """The first C{limit} bytes of C{data}, each non-printable one as C{.}."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data[:limit])


def login_event(protocol: str, user: str, outcome: str) -> Event:
    """A login seen in the clear: C{outcome} is success, failure or in-use."""
    return Event("login", {"protocol": protocol, "user": user, "outcome": outcome,
                           "evidence": "seen"})


class LineReader:
    """
    Cuts one direction's bytes into lines (ending in LF, usually CRLF) and
    skips the literals the caller announces (C{skip}), holding at most
    C{max_line} bytes of a partial line.

    C{on_line(line)} gets each line without its line end; C{on_literal(data)}
    gets the bytes of a literal the caller asked to keep (C{skip(n,
    keep=True)}), bounded by C{max_line} too. Both may call L{skip}.
    """

    def __init__(self, on_line: Callable[[bytes], None], max_line: int = MAX_LINE,
                 on_literal: Optional[Callable[[bytes], None]] = None) -> None:
        self._on_line = on_line
        self._on_literal = on_literal
        self._max_line = max_line
        self._partial = bytearray()
        self._literal = 0
        self._kept: Optional[bytearray] = None
        self.stopped = False
        """Set by the caller to ignore the rest of a chunk (done, or cut)."""

    def __repr__(self) -> str:
        return (f"<LineReader partial={len(self._partial)} bytes, "
                f"literal left={self._literal}>")

    @property
    def in_literal(self) -> bool:
        return self._literal > 0 or self._kept is not None

    def skip(self, count: int, keep: bool = False) -> bool:
        """
        The next C{count} bytes are a literal: not lines. With C{keep}, they
        are given to C{on_literal} once all arrived (a literal longer than
        C{max_line} cannot be kept: return C{False}, nothing is skipped).
        """
        if keep and count > self._max_line:
            return False
        self._literal = count
        self._kept = bytearray() if keep else None
        if keep and count == 0:
            self._finish_literal()
        return True

    def cancel_literal(self) -> None:
        """The literal announced will not come (the peer refused it)."""
        self._literal = 0
        self._kept = None

    def feed(self, data: bytes) -> bool:
        """
        Read C{data}; C{False} when a line grew past C{max_line} (the rest
        of C{data} is then not read, and the partial line is dropped).
        """
        i, n = 0, len(data)
        while i < n and not self.stopped:
            if self._literal:
                take = min(self._literal, n - i)
                if self._kept is not None:
                    self._kept += data[i:i + take]
                self._literal -= take
                i += take
                if not self._literal and self._kept is not None:
                    self._finish_literal()
                continue
            end = data.find(b"\n", i)
            if end < 0:
                if len(self._partial) + n - i > self._max_line:
                    self._partial = bytearray()
                    return False
                self._partial += data[i:]
                break
            if len(self._partial) + end - i > self._max_line:
                self._partial = bytearray()
                return False
            if self._partial:
                line = bytes(self._partial) + data[i:end]
                self._partial = bytearray()
            else:
                line = data[i:end]
            i = end + 1
            self._on_line(line[:-1] if line.endswith(b"\r") else line)
        return True

    def _finish_literal(self) -> None:
        kept, self._kept = self._kept, None
        if self._on_literal is not None and kept is not None:
            self._on_literal(bytes(kept))


class Greeting:
    """
    Watch before cutting in: decides from the server's first bytes whether
    it speaks the protocol (one of C{prefixes}, compared without case).
    """

    def __init__(self, prefixes: Sequence[bytes]) -> None:
        self._prefixes = [p.upper() for p in prefixes]
        self._first = b""
        self.decided: Optional[bool] = None

    def feed(self, data: bytes) -> Optional[bool]:
        """C{True} or C{False} once decided, C{None} while more bytes are needed."""
        if self.decided is None:
            self._first = (self._first + data)[:32]
            head = self._first.upper()
            if any(head.startswith(p) for p in self._prefixes):
                self.decided = True
            elif not any(p.startswith(head) for p in self._prefixes):
                self.decided = False
        return self.decided

    @property
    def first(self) -> bytes:
        return self._first


def not_protocol(protocol: str, first: bytes) -> Event:
    """The server's first bytes (C{first}) were not a C{protocol} greeting."""
    return Event("not-protocol", {"protocol": protocol, "first": printable(first)})


def too_long(protocol: str, direction: str) -> Event:
    return Event("too-long", {"protocol": protocol, "direction": direction})


class _Session(Protocol):
    done: bool

    def feed_client(self, data: bytes) -> Step: ...

    def feed_server(self, data: bytes) -> Step: ...


class WatchedSession:
    """
    What an IMAP and a POP3 session share: a line reader per direction
    (calling C{_client_line} and C{_server_line}), the greeting check, the
    events gathered during one feed, and the end of inspection
    (C{_finish}: both directions passed on untouched from then on).
    """

    protocol = ""
    greetings: Sequence[bytes] = ()

    def __init__(self, max_failures: int, max_line: int = MAX_LINE,
                 client_literal: Optional[Callable[[bytes], None]] = None) -> None:
        self.max_failures = max_failures
        self.failures = 0
        self.done = False
        self._events: List[Event] = []
        self._greeting = Greeting(self.greetings)
        self._client = LineReader(self._client_line, max_line, client_literal)
        self._server = LineReader(self._server_line, max_line)

    def _client_line(self, line: bytes) -> None:
        raise NotImplementedError

    def _server_line(self, line: bytes) -> None:
        raise NotImplementedError

    def feed_client(self, data: bytes) -> Step:
        return self._feed(self._client, CLIENT, data)

    def feed_server(self, data: bytes) -> Step:
        if self._greeting.decided is None and not self.done:
            if self._greeting.feed(data) is False:
                self._finish()
                return Step(data, [not_protocol(self.protocol, self._greeting.first)])
        return self._feed(self._server, SERVER, data)

    def _feed(self, reader: LineReader, direction: str, data: bytes) -> Step:
        if self.done:
            return Step(data)
        ok = reader.feed(data)
        events, self._events = self._events, []
        if not ok:
            self._finish()
            return Step(data, events + [too_long(self.protocol, direction)], cut=True)
        return Step(data, events)

    def _finish(self) -> None:
        self.done = True
        self._client.stopped = self._server.stopped = True

    def _login(self, user: str, outcome: str) -> None:
        """
        The server's answer to a login: its event; a success ends the
        inspection, and so does the C{max_failures}th failure.
        """
        self._events.append(login_event(self.protocol, user, outcome))
        if outcome == "success":
            self._finish()
        elif outcome == "failure":
            self.failures += 1
            if self.failures >= self.max_failures:
                self._finish()

    def sides(self) -> Tuple["Side", "Side"]:
        """The (client to server, server to client) filters of this session."""
        return Side(self, CLIENT), Side(self, SERVER)


class Side:
    """
    One direction's L{netsuite.proxy.filters.Filter}: feeds the session the
    two directions share, and is done when it is.
    """

    def __init__(self, session: _Session, direction: str) -> None:
        self.session = session
        self.direction = direction
        self._feed = session.feed_client if direction == CLIENT else session.feed_server

    def __repr__(self) -> str:
        return f"<{self.direction} filter of {self.session!r}>"

    @property
    def done(self) -> bool:
        return self.session.done

    @done.setter
    def done(self, value: bool) -> None:
        """Set by the proxy (say, to stop inspecting): both directions stop."""
        self.session.done = value

    def feed(self, data: bytes) -> Step:
        return self._feed(data)

    def end(self) -> Step:
        return Step()  # nothing is ever held
