# -*- test-case-name: tests.fuzz -*-
"""
What the fuzz harnesses share: the campaign's rules (a harness's C{check}
raises L{Crash} or lets an unexpected exception out when it finds a bug),
the log failures a run must not leave, chunking a byte stream the way a
socket might, and a reader of HTTP responses.

A harness module (C{tests.fuzz.dhcp_packet} and its siblings) exports:

 - C{NAME}: the target's name for C{scripts/fuzz.py --target};
 - C{check(data)}: feed one input; returns normally, or raises;
 - C{CORPUS}: the directory of seed inputs (C{tests/fuzz/corpus/NAME}).

Inputs of the stream targets start with one byte that chooses how the rest
is cut into reads (L{split}), so that every engine (hypothesis, atheris, the
mutator of C{scripts/fuzz.py}) explores the cuts as it explores the bytes.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any, Dict, Iterator, List, Tuple

from twisted.logger import globalLogPublisher

__all__ = ["Crash", "LogFailures", "split", "corpus", "corpus_dir", "read_responses", "bounded",
           "mutate", "MAX_LEN"]

_HERE = os.path.dirname(os.path.abspath(__file__))


class Crash(AssertionError):
    """
    An invariant of a target does not hold for one input.
    """


def corpus_dir(name: str) -> str:
    return os.path.join(_HERE, "corpus", name)


def corpus(name: str) -> List[Tuple[str, bytes]]:
    """
    The seed inputs of target C{name}, as (file name, bytes), by name.
    """
    found = []
    where = corpus_dir(name)
    for entry in sorted(os.listdir(where)):
        with open(os.path.join(where, entry), "rb") as f:
            found.append((entry, f.read()))
    return found


def split(data: bytes) -> Iterator[bytes]:
    """
    The reads a stream of C{data[1:]} arrives in, chosen by C{data[0]}:
    0-127 all at once, 128-255 in pieces of 1 to 8 bytes, cycling through
    sizes the low bits choose (a head split across reads at every place).
    """
    if not data:
        return
    selector, body = data[0], data[1:]
    if selector < 128:
        if body:
            yield body
        return
    sizes = [1 + ((selector >> shift) & 7) for shift in (0, 3)] + [64]
    offset = 0
    turn = 0
    while offset < len(body):
        size = sizes[turn % len(sizes)]
        yield body[offset:offset + size]
        offset += size
        turn += 1


class LogFailures:
    """
    Collects the log events that carry a failure (C{log.failure}, an
    unhandled error in a Deferred) while it is installed: each is a bug
    when the input came from a stranger.
    """

    def __init__(self) -> None:
        self.failures: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: Dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            self.failures.append(event)

    def raise_any(self) -> None:
        """
        Raise L{Crash} naming the first failure logged, and forget them.
        """
        if self.failures:
            event = self.failures[0]
            self.failures = []
            failure = event["log_failure"]
            raise Crash(f"logged a failure: {event.get('log_format')}: "
                        f"{failure.getTraceback()}")

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)


_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n]*\Z")
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: ?[^\r\n]*\Z")


def read_responses(raw: bytes) -> List[Tuple[int, Dict[bytes, bytes]]]:
    """
    The (status, headers) of each HTTP/1.x response in C{raw}, an output
    stream; raise L{Crash} if it is not a sequence of well-formed responses
    (a status line, headers, a body framed by Content-Length or chunks or
    the connection's end). A body C{Content-Length} announces may be absent
    when the next response, or the end, comes right after the head (a
    HEAD's).
    """
    found: List[Tuple[int, Dict[bytes, bytes]]] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise Crash(f"response head without its end: {raw[:200]!r}")
        lines = head.split(b"\r\n")
        status = _STATUS.match(lines[0])
        if status is None:
            raise Crash(f"bad status line {lines[0][:200]!r}")
        headers: Dict[bytes, bytes] = {}
        for line in lines[1:]:
            if _HEADER.match(line) is None:
                raise Crash(f"bad header line {line[:200]!r}")
            name, _, value = line.partition(b":")
            name = name.lower()
            if name in headers and name in (b"content-length", b"transfer-encoding"):
                raise Crash(f"{name!r} twice in {head[:400]!r}")
            headers[name] = value.strip()
        found.append((int(status.group(1)), headers))
        if headers.get(b"transfer-encoding") == b"chunked":
            raw = _after_chunks(rest)
        elif b"content-length" in headers:
            length = headers[b"content-length"]
            if not length.isdigit():
                raise Crash(f"bad Content-Length {length!r}")
            if (not rest or rest.startswith(b"HTTP/1.")) and int(length) > 0:
                raw = rest  # the answer to a HEAD
            elif len(rest) < int(length):
                raise Crash(f"body shorter than its Content-Length {length!r}")
            else:
                raw = rest[int(length):]
        else:
            raw = b""  # the body runs to the connection's end
    return found


def _after_chunks(raw: bytes) -> bytes:
    while True:
        size_line, sep, raw = raw.partition(b"\r\n")
        if not sep:
            raise Crash("chunked body cut short")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise Crash(f"bad chunk size {size_line[:80]!r}") from None
        if size == 0:
            if not raw.startswith(b"\r\n"):
                raise Crash("chunked body without its last CRLF")
            return raw[2:]
        if raw[size:size + 2] != b"\r\n":
            raise Crash("chunk without its CRLF")
        raw = raw[size + 2:]


def bounded(what: str, size: int, limit: int) -> None:
    """
    Raise L{Crash} if C{size} bytes of C{what} exceed C{limit}.
    """
    if size > limit:
        raise Crash(f"{what} holds {size} bytes, over {limit}")


MAX_LEN = 16384
"""The longest input a campaign makes."""


def mutate(rng: random.Random, seeds: List[bytes]) -> bytes:
    """
    A seed changed 1 to 8 times.
    """
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        how = rng.randrange(8)
        where = rng.randrange(len(data) + 1)
        if how == 0 and data:  # flip a bit
            where %= len(data)
            data[where] ^= 1 << rng.randrange(8)
        elif how == 1 and data:  # an interesting byte
            data[where % len(data)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x20,
                                                  0x3A, 0x22, 0x5C, rng.randrange(256)))
        elif how == 2:  # insert random bytes
            data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif how == 3:  # cut
            del data[where:where + rng.randint(1, 64)]
        elif how == 4:  # repeat a piece
            piece = data[where:where + rng.randint(1, 64)]
            data[where:where] = piece * rng.randint(1, 64)
        elif how == 5:  # splice another seed in
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            data[where:] = other[start:]
        elif how == 6 and data:  # the chunk selector
            data[0] = rng.randrange(256)
        else:  # truncate
            del data[where:]
    return bytes(data[:MAX_LEN])
