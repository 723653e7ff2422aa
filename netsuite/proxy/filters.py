# -*- test-case-name: tests.proxy.test_filters -*-
"""
Sans-IO filters: what a protocol module gives the proxy for one connection.

A protocol module (found by name, see L{netsuite.proxy.modules}) makes, for
each new connection, one L{Filter} per direction (client to server, server
to client). The two usually share a session object, so that the server
direction can tell which tagged command an answer belongs to. A filter is
fed the bytes of its direction as they arrive, in chunks of any size, and
returns a L{Step}: the bytes to pass on (unchanged, rewritten, or fewer:
held until more arrive), the events it saw, and whether to cut the
connection. Once a filter sets L{Filter.done}, it wants no more bytes: the
proxy passes its direction on untouched (and, when every filter of both
directions is done, relays the rest in the kernel).

Filters do no I/O and read no clock: the proxy feeds them and acts on the
steps, which keeps them testable by feeding transcripts split anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Protocol, Sequence, Tuple

__all__ = ["CLIENT", "SERVER", "Connection", "Event", "Step", "Filter", "MakeFilters", "Chain"]

CLIENT = "client"
"""The direction of bytes sent by the client (towards the server)."""
SERVER = "server"
"""The direction of bytes sent by the server (towards the client)."""


@dataclass(frozen=True)
class Connection:
    """
    What a protocol module is told of a new connection: the client's and
    the original destination's (host, port).
    """

    client: Tuple[str, int]
    server: Tuple[str, int]


@dataclass(frozen=True)
class Event:
    """
    Something a filter saw: C{name} (say C{"login"} or C{"not-protocol"})
    and plain values (str, int, bool) the proxy puts in its bus message.
    """

    name: str
    values: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """
    The result of feeding a filter: C{data} to pass on in this direction,
    C{events} seen, and C{cut} to close the connection both ways after
    C{data} is passed on.
    """

    data: bytes = b""
    events: List[Event] = field(default_factory=list)
    cut: bool = False


class Filter(Protocol):
    done: bool
    """True once the filter inspects no more of its direction."""

    def feed(self, data: bytes) -> Step:
        """The next bytes of this direction."""

    def end(self) -> Step:
        """
        This direction was closed (half-close): flush what is held. Called
        once, and only on a filter that is not done.
        """


MakeFilters = Callable[[Connection], Tuple[Filter, Filter]]
"""A protocol module: the (client to server, server to client) filters of a
new connection."""


class Chain:
    """
    The ordered filters of one direction: what the first passes on feeds
    the second, and so on. Filters that are done are passed over.
    """

    def __init__(self, filters: Sequence[Filter]) -> None:
        self.filters = list(filters)

    @property
    def done(self) -> bool:
        for f in self.filters:  # asked for each chunk: a loop, not all() of a generator
            if not f.done:
                return False
        return True

    def feed(self, data: bytes) -> Step:
        return self._run(data, final=False)

    def end(self) -> Step:
        return self._run(b"", final=True)

    def _run(self, data: bytes, final: bool) -> Step:
        events: List[Event] = []
        for f in self.filters:
            if f.done:
                continue  # passes its direction on untouched
            step = f.feed(data) if data else Step()
            if final:
                tail = f.end()
                step = Step(step.data + tail.data, step.events + tail.events,
                            step.cut or tail.cut)
            data = step.data
            events += step.events
            if step.cut:
                return Step(data, events, cut=True)
        return Step(data, events)
