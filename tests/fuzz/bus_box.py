# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{bus-box}: any bytes from a bus peer, in any reads
(L{tests.fuzz.common.split}), into the owner's L{BusServerProtocol}: the
box splitter (L{netsuite.bus.framing}, where L{MAX_BOX} and L{MAX_KEYS}
hold), AMP's argument parsing and the responders on a real registry. One
owner serves every input; each input is one connection, closed at its end.

Invariants: nothing logs a failure (an undeclared exception in a
responder is logged, answered C{BAD_REQUEST}: a bug to fix); what the
owner writes is a sequence of well-formed AMP boxes, each an answer or an
error to a question asked, or a question of the owner's; the splitter
never holds more than L{MAX_BOX} bytes of a box; once the connection is
gone, so are the listeners and watches it added.
"""

from __future__ import annotations

from typing import List

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from netsuite.bus.framing import MAX_BOX, MAX_KEYS

from .common import Crash, LogFailures, bounded, corpus_dir, split

NAME = "bus-box"
CORPUS = corpus_dir(NAME)


def read_boxes(raw: bytes) -> List[dict]:
    """
    The boxes in C{raw}; raise L{Crash} unless it is whole boxes of keys
    of 1 to 255 bytes and values of at most 65,535.
    """
    boxes: List[dict] = []
    box: dict = {}
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < 2:
            raise Crash(f"a length cut short at {offset}")
        length = int.from_bytes(raw[offset:offset + 2], "big")
        offset += 2
        if length == 0:
            if not box:
                raise Crash("an empty box")
            boxes.append(box)
            box = {}
            continue
        if length > 255:
            raise Crash(f"a key of {length} bytes")
        key = raw[offset:offset + length]
        offset += length
        if len(raw) - offset < 2:
            raise Crash(f"key {key!r} without its value")
        size = int.from_bytes(raw[offset:offset + 2], "big")
        offset += 2
        if len(raw) - offset < size:
            raise Crash(f"value of {key!r} cut short")
        box[key] = raw[offset:offset + size]
        offset += size
    if box:
        raise Crash(f"a box without its end: {box!r:.200}")
    return boxes


class Target:
    def __init__(self) -> None:
        from tests.bus.helpers import LEASE, Owner
        self.owner = Owner()
        self.lease = LEASE
        self.baseline = len(self.owner.listeners())
        self.logged = LogFailures()

    def check(self, data: bytes) -> None:
        protocol = self.owner.factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        try:
            for chunk in split(data):
                if transport.disconnecting:
                    break
                protocol.dataReceived(chunk)
                self.owner.registry.eventual.flush_sync()
                bounded("the splitter's box", protocol._size + len(protocol._pending),
                        MAX_BOX + 2 + 255)
                if protocol._box is not None and len(protocol._box) > MAX_KEYS:
                    raise Crash(f"a box of {len(protocol._box)} keys held")
        finally:
            protocol.connectionLost(Failure(ConnectionDone()))
            self.owner.registry.eventual.flush_sync()
            self.owner.reactor.advance(1)
        self.logged.raise_any()
        for box in read_boxes(transport.value()):
            if not (b"_answer" in box or b"_error" in box or b"_command" in box):
                raise Crash(f"a box that is no answer, error or command: {box!r:.200}")
        left = len(self.owner.listeners())
        if left != self.baseline:
            raise Crash(f"{left - self.baseline} listeners left by a closed connection")
        calls = self.owner.reactor.getDelayedCalls()
        if len(calls) > 16:
            raise Crash(f"{len(calls)} calls waiting on the clock")


_target = None


def check(data: bytes) -> None:
    global _target
    if _target is None:
        _target = Target()
    _target.check(data)
