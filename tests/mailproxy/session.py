# -*- test-case-name: tests.mailproxy.test_imap -*-
"""
Transcripts of mail sessions, and feeding them to a protocol module's
filters the way a relay would: both directions interleaved in the order
the bytes crossed, each chunk split anywhere.

A transcript file (C{transcripts/*.txt}, written by C{record.py}) has one
chunk a line: C{C: } (client to server) or C{S: } (server to client) and
the bytes with Python's escapes (C{\\r\\n}, C{\\\\}, C{\\xNN}); lines
starting with C{#} are comments (the provenance).
"""

from __future__ import annotations

import codecs
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from netsuite.proxy.filters import CLIENT, SERVER, Connection, Event, MakeFilters

Chunk = Tuple[str, bytes]
"""(CLIENT or SERVER, the bytes one read gave)."""

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transcripts")
CONNECTION = Connection(("192.0.2.10", 50123), ("198.51.100.1", 143))
_MARK = {CLIENT: "C: ", SERVER: "S: "}


def dumps(chunks: Iterable[Chunk], comments: Sequence[str] = ()) -> str:
    lines = [f"# {c}" for c in comments]
    for direction, data in chunks:
        lines.append(_MARK[direction] + codecs.escape_encode(data)[0].decode("ascii"))
    return "\n".join(lines) + "\n"


def loads(text: str) -> List[Chunk]:
    chunks = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        mark, body = line[:3], line[3:]
        direction = {v: k for k, v in _MARK.items()}[mark]
        chunks.append((direction, codecs.escape_decode(body.encode("ascii"))[0]))
    return chunks


def load(name: str) -> List[Chunk]:
    with open(os.path.join(HERE, name)) as f:
        return loads(f.read())


def play(make: MakeFilters, chunks: Iterable[Chunk], connection: Connection = CONNECTION,
         watch: Optional[Callable[[Any, Any], None]] = None) -> Tuple[List[Event], Any, Any]:
    """
    Feed C{chunks} to a new connection's filters as a relay would: a
    direction's bytes go to its filter until it is done, and must come out
    unchanged. Return the events and the (client, server) filters.
    C{watch(client, server)} is called after each feed.
    """
    client, server = make(connection)
    events: List[Event] = []
    for direction, data in chunks:
        f = client if direction == CLIENT else server
        if f.done:
            continue
        step = f.feed(data)
        if step.data != data:
            raise AssertionError(f"{direction} bytes changed: {data!r} -> {step.data!r}")
        events += step.events
        if watch is not None:
            watch(client, server)
        if step.cut:
            events.append(Event("cut"))
            break
    return events, client, server


def split(chunks: Sequence[Chunk], index: int, at: int) -> List[Chunk]:
    """C{chunks} with chunk C{index} split in two at byte C{at}."""
    direction, data = chunks[index]
    return (list(chunks[:index]) + [(direction, data[:at]), (direction, data[at:])]
            + list(chunks[index + 1:]))


def every_split(chunks: Sequence[Chunk]) -> Iterable[List[Chunk]]:
    """C{chunks} as read whole, byte by byte, and split at every boundary of every chunk."""
    yield list(chunks)
    yield [(d, data[i:i + 1]) for d, data in chunks for i in range(len(data))]
    for index, (_, data) in enumerate(chunks):
        for at in range(1, len(data)):
            yield split(chunks, index, at)


def values(events: Iterable[Event]) -> List[Tuple[str, Dict[str, Any]]]:
    return [(e.name, e.values) for e in events]


def literal(data: bytes, plus: bool = False) -> bytes:
    """C{data} as an IMAP literal: C{{n}} (or C{{n+}}), CRLF, the bytes."""
    return b"{%d%s}\r\n" % (len(data), b"+" if plus else b"") + data


class TranscriptTests:
    """
    A mixin for C{SynchronousTestCase}: C{check} plays a transcript split
    at every byte boundary, and with the splits hypothesis draws, and
    asserts the same events every time, no password anywhere.
    """

    make: MakeFilters
    secrets: Sequence[bytes] = ()

    def check(self, chunks: Sequence[Chunk], expected: Sequence[Tuple[str, Dict[str, Any]]],
              make: Any = None, secrets: Sequence[bytes] = ()) -> None:
        make = make or type(self).make
        hidden = tuple(secrets) + tuple(self.secrets)

        def watch(client: Any, server: Any) -> None:
            self.assertNoSecret([], client, server, hidden)

        for variant in every_split(chunks):
            events, client, server = play(make, variant, watch=watch)
            self.assertEqual(values(events), list(expected), variant)  # type: ignore
            self.assertNoSecret(events, client, server, hidden)

    def assertNoSecret(self, events: Sequence[Event], client: Any, server: Any,
                       secrets: Sequence[bytes]) -> None:
        session = getattr(client, "session", None)
        shown = [repr(client), repr(server), repr(session)]
        shown += [repr(v) for v in vars(session).values()] if session is not None else []
        shown += [repr(e) for e in events] + [str(v) for e in events for v in e.values.values()]
        for secret in secrets:
            for text in shown:
                if secret.decode("latin-1") in text:
                    self.fail(f"{secret!r} shown in {text!r}")  # type: ignore
