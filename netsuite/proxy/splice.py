# -*- test-case-name: tests.proxy.test_splice -*-
"""
Cut-through: relaying the rest of a connection in the kernel.

Once every filter of both directions is done, a connection's bytes need no
Python: each direction is moved socket -> pipe -> socket with
C{os.splice}, which copies no byte through user space. L{CutThrough}
takes the two sockets over from their Twisted transports:

  1. stop the transports reading, drop their producer links, and wait
     until each has written what it still buffered (the order of bytes);
  2. register, on the reactor, one descriptor of its own per socket (the
     reactor keeps one selectable per file descriptor): readable -> splice
     what came in towards the other socket; writable -> finish moving what
     waits in the pipe;
  3. C{EAGAIN} writing -> stop reading that direction and wait until the
     other socket is writable; end of stream -> C{shutdown(SHUT_WR)} on
     the other; both directions ended -> hand back (C{on_done(None)}),
     and the relay closes both transports; an error (a reset) ->
     C{on_done(error)}, and the relay aborts both.

C{SPLICE_F_MORE} is not used: on a pipe -> socket splice it holds back
small writes (~200 ms, see KERNEL-FACTS.md). Each direction splices at
most C{ROUNDS} chunks per wake-up, so that one busy connection does not
starve the others.

It relies on two things of Twisted's TCP transport that are not public:
C{dataBuffer}, C{offset} and C{_tempDataLen} (what it has yet to write);
L{possible} checks they are there and cut-through is skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Callable, List, Optional, Set

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from .filters import CLIENT, SERVER

__all__ = ["possible", "unsent", "CutThrough", "CHUNK", "ROUNDS"]

CHUNK = 65536
"""Bytes asked of one socket -> pipe splice (a default pipe holds 64 KiB)."""
ROUNDS = 8
"""Chunks one direction moves per wake-up."""
FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

_READ, _WRITE, _DONE = "read", "write", "done"


def possible(*transports: Any) -> bool:
    """Whether these transports can be cut through (plain TCP, this Python)."""
    return hasattr(os, "splice") and all(
        t is not None and hasattr(t, "getHandle") and hasattr(t, "stopReading")
        and hasattr(t, "dataBuffer") and hasattr(t, "_tempDataLen") for t in transports)


def unsent(transport: Any) -> int:
    """Bytes a Twisted TCP transport has buffered and not yet written."""
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


class _Drained:
    """A pull producer: Twisted calls it when the transport's buffer is empty."""

    def __init__(self, transport: Any, then: Callable[[], None]) -> None:
        self.transport = transport
        self.then = then
        self.waiting = True
        transport.registerProducer(self, False)  # calls resumeProducing at once

    def resumeProducing(self) -> None:
        if self.waiting and unsent(self.transport) == 0:
            self.cancel()
            self.then()

    def cancel(self) -> None:
        if self.waiting:
            self.waiting = False
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        self.waiting = False


@implementer(IReadDescriptor, IWriteDescriptor)
class _End:
    """One socket, as the reactor sees it while it is cut through."""

    def __init__(self, cut: "CutThrough", sock: socket.socket, name: str) -> None:
        self.cut = cut
        self.sock = sock
        self.fd = sock.fileno()
        self.name = name

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        self.cut._run(self.cut._out_of[self.name])

    def doWrite(self) -> None:
        self.cut._run(self.cut._into[self.name])

    def connectionLost(self, reason: Failure) -> None:
        self.cut._finish(reason.value)

    def logPrefix(self) -> str:
        return f"splice-{self.name}"


class _Pump:
    """One direction: C{src} -> pipe -> C{dst}."""

    def __init__(self, direction: str, src: _End, dst: _End, ended: bool,
                 on_bytes: Callable[[str, int], None]) -> None:
        self.direction = direction
        self.src, self.dst = src, dst
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pending = 0
        self.eof = ended
        self.done = False
        self.on_bytes = on_bytes

    def run(self) -> str:
        """Move what can be moved now; what to wait for next."""
        for _ in range(ROUNDS):
            if self.pending:
                try:
                    n = os.splice(self.r, self.dst.fd, self.pending, flags=FLAGS)
                except BlockingIOError:
                    return _WRITE
                self.pending -= n
                if self.pending:
                    continue
            if self.eof:
                try:
                    self.dst.sock.shutdown(socket.SHUT_WR)
                except OSError as e:
                    if e.errno != errno.ENOTCONN:
                        raise
                self.done = True
                return _DONE
            try:
                n = os.splice(self.src.fd, self.w, CHUNK, flags=FLAGS)
            except BlockingIOError:
                return _READ
            if n == 0:
                self.eof = True
                continue
            self.pending = n
            self.on_bytes(self.direction, n)
        return _WRITE if self.pending else _READ

    def close(self) -> None:
        for fd in (self.r, self.w):
            os.close(fd)


class CutThrough:
    """
    Take over the sockets of two Twisted TCP transports and relay between
    them with C{os.splice} until both directions end.

    @param ended: the directions (C{CLIENT}, C{SERVER}) whose sender has
        already half-closed.
    @param on_bytes: C{(direction, n)} for each chunk moved.
    @param on_done: called once, with None when both directions ended, or
        the error that stopped it; not called after L{stop}.
    """

    def __init__(self, reactor: Any, client: Any, server: Any, ended: Set[str],
                 on_bytes: Callable[[str, int], None],
                 on_done: Callable[[Optional[BaseException]], None]) -> None:
        self.reactor = reactor
        self.transports = {CLIENT: client, SERVER: server}
        self.ended = set(ended)
        self.on_bytes = on_bytes
        self.on_done = on_done
        self.stopped = False
        self._drains: List[_Drained] = []
        self._ends: List[_End] = []
        self._pumps: List[_Pump] = []
        self._out_of: dict = {}
        self._into: dict = {}

    def start(self) -> None:
        for transport in self.transports.values():
            transport.stopReading()
            transport.unregisterProducer()
        for transport in self.transports.values():
            if unsent(transport):
                self._drains.append(_Drained(transport, self._drained))
        self._drained()

    def _drained(self) -> None:
        if self.stopped or any(d.waiting for d in self._drains):
            return
        # not from inside a transport's doWrite
        self.reactor.callLater(0, self._begin)

    def _begin(self) -> None:
        if self.stopped or self._pumps:
            return
        ends = {d: _End(self, t.getHandle(), d) for d, t in self.transports.items()}
        self._ends = list(ends.values())
        try:
            for direction, other in ((CLIENT, SERVER), (SERVER, CLIENT)):
                pump = _Pump(direction, ends[direction], ends[other], direction in self.ended,
                             self.on_bytes)
                self._pumps.append(pump)
                self._out_of[direction] = pump
                self._into[other] = pump
        except OSError as e:  # out of file descriptors for the pipes
            self._finish(e)
            return
        for pump in list(self._pumps):
            self._run(pump)

    def _run(self, pump: _Pump) -> None:
        if self.stopped or pump.done:
            return
        try:
            wait = pump.run()
        except OSError as e:
            self._finish(e)
            return
        if wait == _READ:
            self.reactor.removeWriter(pump.dst)
            self.reactor.addReader(pump.src)
        elif wait == _WRITE:
            self.reactor.removeReader(pump.src)
            self.reactor.addWriter(pump.dst)
        else:
            self.reactor.removeReader(pump.src)
            self.reactor.removeWriter(pump.dst)
            if all(p.done for p in self._pumps):
                self._finish(None)

    def _finish(self, error: Optional[BaseException]) -> None:
        if self.stopped:
            return
        self.stop()
        self.on_done(error)

    def stop(self) -> None:
        """Give the sockets back to their transports (which then close them)."""
        if self.stopped:
            return
        self.stopped = True
        for drain in self._drains:
            drain.cancel()
        for end in self._ends:
            self.reactor.removeReader(end)
            self.reactor.removeWriter(end)
        for pump in self._pumps:
            pump.close()
