# -*- test-case-name: tests.proxy.test_relay -*-
"""
Relaying one intercepted connection through its filters.

L{netsuite.proxy.proxy.Proxy} is the factory of a proxy instance's
listening port. For each accepted connection (the client side) it finds the original destination,
connects out to it (the server side) and, in a L{Relay}, feeds what each
side sends through that direction's L{Chain} and writes what the chain
passes on to the other side:

  - back-pressure both ways: each side's transport is the other's
    streaming producer, so a side that does not read stops the reading of
    the other (Twisted pauses a producer when its consumer's buffer is
    full); the client is not read until the server side is connected;
  - half-close: a side's end of stream ends its chain (what a filter held
    is passed on) and half-closes the other side; both ended, both close;
  - bounds: what the filters of a direction hold (bytes fed less bytes
    passed on) is at most C{max_held}, or the connection is cut; a connect
    time-out, an idle time-out while inspecting and another after;
    C{max_connections} per instance; a close that does not finish in
    C{close_timeout} is aborted;
  - a step with C{cut} closes both sides (after its bytes are written);
  - watch before cutting in: a C{not-protocol} event (the server's first
    bytes are not the protocol the port promised) ends the other
    direction's filter of that module too, and the connection is relayed
    untouched;
  - once every filter of both directions is done, the rest is relayed in
    the kernel (L{netsuite.proxy.splice}), where the transports allow it.

Events go to the C{on_event} callback the service gives, with the tracked
connection they belong to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import protocol, tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import splice
from .filters import CLIENT, SERVER, Chain, Connection, Event, Filter, Step
from .track import CLOSING, CONNECTING, CUT_THROUGH, INSPECTING, RELAYING

if TYPE_CHECKING:
    from .proxy import Proxy

__all__ = ["Relay", "ClientSide", "ServerSide", "send", "OTHER"]

_log = Logger()

OTHER = {CLIENT: SERVER, SERVER: CLIENT}

def send(transport: Any, data: bytes) -> None:
    """
    C{transport.write(data)}, but a TCP transport whose buffer is empty
    sends it at once: Twisted would buffer it, watch the socket for writing
    and send it on the reactor's next turn (a turn and two C{epoll_ctl}
    calls per chunk relayed). What the socket does not take (or an error)
    is left to C{write}, which buffers it as usual, pausing the producer
    when full.
    """
    if (isinstance(transport, tcp.Connection) and transport.connected
            and not transport.disconnecting and not transport._writeDisconnecting
            and not transport._writeDisconnected and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer)):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            data = data[sent:]
    if data:
        transport.write(data)


@implementer(IHalfCloseableProtocol)
class _Side(protocol.Protocol):
    relay: Optional["Relay"] = None
    direction = CLIENT
    """The direction of the bytes this side receives."""

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.received(self.direction, data)

    def readConnectionLost(self) -> None:
        if self.relay is not None:
            self.relay.read_ended(self.direction)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.relay is not None:
            self.relay.side_lost(self.direction)


class ClientSide(_Side):
    factory: Proxy

    def connectionMade(self) -> None:
        self.transport.pauseProducing()  # nothing is read before the server side is up
        try:
            self.relay = Relay(self.factory, self)
        except OSError as e:
            self.factory.counters["no_destination"] += 1
            _log.info("proxy: no original destination for {peer}: {error}",
                      peer=self.transport.getPeer(), error=e)
            self.transport.loseConnection()
        except Exception:
            self.factory.counters["no_destination"] += 1
            _log.failure("proxy: finding the destination of {peer} failed",
                         peer=self.transport.getPeer())
            self.transport.loseConnection()


class ServerSide(_Side):
    direction = SERVER

    def connectionMade(self) -> None:
        assert self.relay is not None
        self.relay.server_connected(self)


class _Outward(protocol.ClientFactory):
    noisy = False  # no "Starting factory" log line per connection

    def __init__(self, relay: "Relay") -> None:
        self.relay = relay

    def buildProtocol(self, addr: object) -> ServerSide:
        side = ServerSide()
        side.relay = self.relay
        return side

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.relay.connect_failed(reason)


class _Finished:
    """Stands in a chain for a filter the relay ended (watch before cutting in)."""

    done = True

    def feed(self, data: bytes) -> Step:
        return Step(data)

    def end(self) -> Step:
        return Step()


class Relay:
    """One intercepted connection: its two sides, chains, timers and entry."""

    def __init__(self, proxy: Proxy, client: ClientSide) -> None:
        self.proxy = proxy
        self.clock = proxy.reactor
        self.settings = proxy.settings
        self.sides: Dict[str, Optional[_Side]] = {CLIENT: client, SERVER: None}
        peer = client.transport.getPeer()
        client_address = (peer.host, peer.port)
        server_address = proxy.destination(client.transport)
        self.connection = Connection(client_address, server_address)
        modules = list(proxy.select(self.connection))
        self.entry = proxy.table.add(client_address, server_address,
                                     [name for name, _ in modules])
        self.pairs: List[Tuple[Filter, Filter]] = []
        self.chains = {CLIENT: Chain([]), SERVER: Chain([])}
        self.held = {CLIENT: 0, SERVER: 0}
        self.ended: set = set()
        self.lost: set = set()
        self.closing = False
        self.cut_through: Optional[splice.CutThrough] = None
        self._timers: Dict[str, IDelayedCall] = {}
        self._cancel_connect: Callable[[], None] = lambda: None
        self._opened = False
        try:
            for name, make in modules:
                self.pairs.append(make(self.connection))
        except Exception:
            _log.failure("proxy: module failed on a new connection from {client}",
                         client=client_address)
            self.proxy.counters["filter_error"] += 1
            self.close(abort=True)
            return
        self.chains = {CLIENT: Chain([pair[0] for pair in self.pairs]),
                       SERVER: Chain([pair[1] for pair in self.pairs])}
        self._opened = True
        try:
            proxy.on_open(self.entry)
        except Exception:
            _log.failure("proxy: on_open callback failed")
        self._timers["connect"] = self.clock.callLater(
            self.settings.connect_timeout, self._connect_timed_out)
        self._timers["idle"] = self.clock.callLater(self.settings.inspect_idle, self._check_idle)
        if proxy.admit is None:
            self._connect_out()
            return
        try:
            verdict = proxy.admit(self.entry)
        except Exception:
            self._admit_failed(Failure())
            return
        if isinstance(verdict, Deferred):
            verdict.addCallbacks(self._admitted, self._admit_failed)
        else:  # an answer at once (no listener on the decision): no Deferred per connection
            self._admitted(verdict)

    def _admitted(self, allowed: object) -> None:
        if self.closing:
            return
        if allowed is True:
            self._connect_out()
        else:
            self.proxy.counters["refused"] += 1
            self.close(abort=True)

    def _admit_failed(self, reason: Failure) -> None:
        _log.failure("proxy: the admission of {client} failed", reason,
                     client=self.connection.client)
        self.proxy.counters["admit_failed"] += 1
        if not self.closing:
            self.close(abort=True)

    def _connect_out(self) -> None:
        self._cancel_connect = self.proxy.outbound(self.connection.server,
                                                   self.connection.client, _Outward(self))

    # the server side

    def server_connected(self, side: ServerSide) -> None:
        self._cancel("connect")
        if self.closing:
            side.transport.loseConnection()
            return
        self.sides[SERVER] = side
        client_t, server_t = self._transport(CLIENT), self._transport(SERVER)
        for transport in (client_t, server_t):
            # what a filter or the other side passes on goes out at once (no Nagle
            # wait on a command or an answer), as HAProxy does
            no_delay = getattr(transport, "setTcpNoDelay", None)
            if no_delay is not None:
                try:
                    no_delay(True)
                except OSError:
                    pass  # a socket already reset: its read or write finds out
        server_t.registerProducer(client_t, True)
        client_t.registerProducer(server_t, True)
        self.entry.state = INSPECTING
        self._touch()
        client_t.resumeProducing()
        self._maybe_done()

    def connect_failed(self, reason: Failure) -> None:
        self._cancel("connect")
        if self.closing:
            return
        self.proxy.counters["connect_failed"] += 1
        _log.info("proxy: cannot connect {client} to {server}: {reason}",
                  client=self.connection.client, server=self.connection.server,
                  reason=reason.getErrorMessage())
        self.close(abort=True)

    def _connect_timed_out(self) -> None:
        del self._timers["connect"]
        self.proxy.counters["connect_timeout"] += 1
        self.close(abort=True)  # gives up the attempt

    # bytes

    def received(self, direction: str, data: bytes) -> None:
        if self.closing:
            return
        self.entry.received[direction] += len(data)
        self._touch()
        chain = self.chains[direction]
        if chain.done:
            self._write(OTHER[direction], data)
            return
        try:
            step = chain.feed(data)
        except Exception:
            self._filter_failed(direction)
            return
        self.held[direction] += len(data) - len(step.data)
        self._act(direction, step)

    def read_ended(self, direction: str) -> None:
        """C{direction}'s sender half-closed: end its chain, half-close the other side."""
        if direction in self.ended or self.closing:
            return
        self.ended.add(direction)
        other = self.sides[OTHER[direction]]
        if other is not None and other.transport is not None:
            # it must not resume the reading of a side that has ended
            other.transport.unregisterProducer()
        chain = self.chains[direction]
        if not chain.done:
            try:
                step = chain.end()
            except Exception:
                self._filter_failed(direction)
                return
            if not self._act(direction, step):
                return
            self.held[direction] = 0
        if self.cut_through is not None:
            return  # it started with this direction ended: the splice half-closes
        if other is not None:
            other.transport.loseWriteConnection()
        if self.ended == {CLIENT, SERVER}:
            self.close()

    def _act(self, direction: str, step: Step) -> bool:
        """Pass on a step's bytes and events; False when the connection was closed."""
        self._write(OTHER[direction], step.data)
        for event in step.events:
            self._event(direction, event)
        if step.cut:
            self.proxy.counters["cut_by_filter"] += 1
            self.close()
            return False
        if self.chains[direction].done:
            self.held[direction] = 0
        elif self.held[direction] > self.settings.max_held:
            self.proxy.counters["cut_held"] += 1
            _log.info("proxy: filters of {direction} of {client} hold {held} bytes: cut",
                      direction=direction, client=self.connection.client,
                      held=self.held[direction])
            self.close(abort=True)
            return False
        self._maybe_done()
        return not self.closing

    def _event(self, direction: str, event: Event) -> None:
        if event.name == "not-protocol":
            self._watched(direction)
        try:
            self.proxy.on_event(self.entry, event)
        except Exception:
            _log.failure("proxy: event callback failed on {event}", event=event)

    def _watched(self, direction: str) -> None:
        """
        Watch before cutting in: a module's filter found that this is not its
        protocol, and is done; the module's filter of the other direction
        is ended (what it held is passed on) and inspects no more.
        """
        other = OTHER[direction]
        index = 0 if other == CLIENT else 1
        for pair in self.pairs:
            mine, theirs = pair[1 - index], pair[index]
            if not mine.done or theirs.done:
                continue
            chain = self.chains[other]
            if theirs not in chain.filters:
                continue
            try:
                tail = theirs.end()
            except Exception:
                tail = Step()
            chain.filters[chain.filters.index(theirs)] = _Finished()
            self._write(direction, tail.data)
            self.held[other] = 0

    def _write(self, to: str, data: bytes) -> None:
        side = self.sides[to]
        if data and side is not None and side.transport is not None:
            send(side.transport, data)

    def _filter_failed(self, direction: str) -> None:
        _log.failure("proxy: a filter of {direction} failed on {client}'s connection",
                     direction=direction, client=self.connection.client)
        self.proxy.counters["filter_error"] += 1
        self.close(abort=True)

    # done inspecting

    def _maybe_done(self) -> None:
        if self.closing or self.entry.state != INSPECTING:
            return
        if not (self.chains[CLIENT].done and self.chains[SERVER].done):
            return
        self.entry.state = RELAYING
        self._reschedule_idle()
        client_t, server_t = self._transport(CLIENT), self._transport(SERVER)
        if self.settings.cut_through and splice.possible(client_t, server_t):
            self.entry.state = CUT_THROUGH
            self.proxy.counters["cut_through"] += 1
            self.cut_through = splice.CutThrough(
                self.clock, client_t, server_t, ended=set(self.ended),
                on_bytes=self._spliced, on_done=self._splice_done)
            self.cut_through.start()

    def _spliced(self, direction: str, n: int) -> None:
        self.entry.received[direction] += n
        self._touch()

    def _splice_done(self, error: Optional[BaseException]) -> None:
        self.cut_through = None
        if error is not None:
            self.proxy.counters["splice_error"] += 1
        self.ended = {CLIENT, SERVER}
        self.close(abort=error is not None)

    # time-outs

    def _touch(self) -> None:
        self.entry.last = self.clock.seconds()

    def _idle_limit(self) -> float:
        if self.entry.state in (CONNECTING, INSPECTING):
            return self.settings.inspect_idle
        return self.settings.idle

    def _reschedule_idle(self) -> None:
        self._cancel("idle")
        due = self.entry.last + self._idle_limit() - self.clock.seconds()
        self._timers["idle"] = self.clock.callLater(max(due, 0), self._check_idle)

    def _check_idle(self) -> None:
        del self._timers["idle"]
        if self.clock.seconds() - self.entry.last >= self._idle_limit():
            self.proxy.counters["idle_timeout"] += 1
            self.close(abort=True)
        else:
            self._reschedule_idle()

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    # closing

    def _transport(self, direction: str):  # type: ignore[no-untyped-def]
        side = self.sides[direction]
        return side.transport if side is not None else None

    def close(self, abort: bool = False) -> None:
        """Close both sides: gently (after their buffers), or at once."""
        if self.cut_through is not None:
            cut, self.cut_through = self.cut_through, None
            cut.stop()
        if not self.closing:
            self.closing = True
            self.entry.state = CLOSING
            for name in ("connect", "idle"):
                self._cancel(name)
            if self.sides[SERVER] is None:
                self._cancel_connect()
            if not abort:
                self._timers["close"] = self.clock.callLater(self.settings.close_timeout,
                                                             self._close_timed_out)
        for direction in (CLIENT, SERVER):
            transport = self._transport(direction)
            if transport is None or direction in self.lost:
                continue
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()
        self._maybe_forget()

    def _close_timed_out(self) -> None:
        del self._timers["close"]
        self.proxy.counters["close_timeout"] += 1
        self.close(abort=True)

    def side_lost(self, direction: str) -> None:
        self.lost.add(direction)
        if not self.closing:
            # one side is gone (closed or reset): the other goes too, after its buffer
            self.close()
        self._maybe_forget()

    def _maybe_forget(self) -> None:
        gone = all(self.sides[d] is None or d in self.lost for d in (CLIENT, SERVER))
        if gone:
            self._cancel("close")
            self.proxy.table.remove(self.entry)
            if self._opened:
                self._opened = False
                try:
                    self.proxy.on_close(self.entry)
                except Exception:
                    _log.failure("proxy: on_close callback failed")

