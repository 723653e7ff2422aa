"""
Protocol modules for the proxy's tests (found by dotted path, as an
operator's own module would be).
"""

from typing import Tuple

from netsuite.proxy.filters import Connection, Event, Step

LOADED = True


class Lines:
    """
    Client direction: passes whole lines on, upper-cased, holding a partial
    one; an event per line; done after a line C{DONE}.
    """

    def __init__(self) -> None:
        self.done = False
        self.held = b""
        self.ended = 0

    def feed(self, data: bytes) -> Step:
        self.held += data
        out, events = b"", []
        while b"\n" in self.held and not self.done:
            line, self.held = self.held.split(b"\n", 1)
            out += line.upper() + b"\n"
            events.append(Event("line", {"text": line.decode("ascii", "replace")}))
            if line == b"done":
                self.done = True
        if self.done:
            out, self.held = out + self.held, b""
        if b"BAD" in out:
            return Step(out.replace(b"BAD", b""), events, cut=True)
        return Step(out, events)

    def end(self) -> Step:
        self.ended += 1
        held, self.held = self.held, b""
        return Step(held, [Event("end")])


class Greeting:
    """
    Server direction: watch before cutting in. The first line must start
    with C{* OK}, or it is C{not-protocol} (and done); done after the
    greeting either way.
    """

    def __init__(self) -> None:
        self.done = False
        self.held = b""

    def feed(self, data: bytes) -> Step:
        self.held += data
        if not self.held.startswith(b"* OK"[:len(self.held)]):
            self.done = True
            out, self.held = self.held, b""
            return Step(out, [Event("not-protocol")])
        if b"\n" not in self.held:
            return Step()
        self.done = True
        out, self.held = self.held, b""
        return Step(out, [Event("greeting")])

    def end(self) -> Step:
        held, self.held = self.held, b""
        return Step(held)


def lines(conn: Connection) -> Tuple[Lines, Greeting]:
    return Lines(), Greeting()


class Hoarder:
    """Holds everything it is fed."""

    done = False

    def feed(self, data: bytes) -> Step:
        return Step()

    def end(self) -> Step:
        return Step()


def hoarder(conn: Connection) -> Tuple[Hoarder, Greeting]:
    return Hoarder(), Greeting()


class Broken:
    done = False

    def feed(self, data: bytes) -> Step:
        raise ValueError("a filter bug")

    def end(self) -> Step:
        raise ValueError("a filter bug")


def broken(conn: Connection) -> Tuple[Broken, Greeting]:
    return Broken(), Greeting()


not_callable = 42


class Counted:
    """Passes bytes on unchanged; done once C{after} bytes went by (0: never)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.seen = 0
        self.done = False

    def feed(self, data: bytes) -> Step:
        self.seen += len(data)
        self.done = bool(self.after) and self.seen >= self.after
        return Step(data)

    def end(self) -> Step:
        return Step()


def midway(conn: Connection) -> Tuple[Counted, Counted]:
    """Inspects the first 100,000 bytes up and 5,000 down, then is done."""
    return Counted(100_000), Counted(5_000)


def watching(conn: Connection) -> Tuple[Counted, Counted]:
    """Passes everything and is never done (no cut-through)."""
    return Counted(0), Counted(0)


class UntilEnd(Counted):
    """Passes bytes on, never done until its direction ends."""

    def end(self) -> Step:
        self.done = True
        return Step()


def until_end(conn: Connection) -> Tuple[UntilEnd, Counted]:
    """The client direction inspected to its end, the server's not at all."""
    server = Counted(1)
    server.done = True
    return UntilEnd(0), server
