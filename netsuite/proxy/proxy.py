# -*- test-case-name: tests.proxy.test_relay -*-
"""
A proxy instance: L{Proxy} is the factory of its listening port(s), with
its settings (L{ProxySettings}), its modules, how it finds an accepted
connection's original destination and connects out to it, its table of
live connections and its counters. Each accepted connection is relayed
by a L{netsuite.proxy.relay.Relay}.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime

from .filters import Connection, Event, MakeFilters
from .relay import ClientSide
from .track import ConnectionTable, Tracked

__all__ = ["ProxySettings", "Proxy", "Address", "Destination", "Modules", "Outbound"]

Address = Tuple[str, int]
Destination = Callable[[object], Address]
"""The original destination of an accepted connection, from its transport
(see L{netsuite.proxy.intercept}); raises C{OSError} when there is none."""
Modules = Union[Sequence[Tuple[str, MakeFilters]],
                Callable[[Connection], Sequence[Tuple[str, MakeFilters]]]]
"""An instance's modules, or a function choosing them for a connection."""
Outbound = Callable[[Address, Address, protocol.ClientFactory], Callable[[], None]]
"""Connect out: C{(server, client, factory)}, returns a function that gives
up the attempt. The factory's C{clientConnectionFailed} hears of failures."""


@dataclass(frozen=True)
class ProxySettings:
    connect_timeout: float = 10.0
    inspect_idle: float = 120.0
    """Idle time-out while some filter still inspects."""
    idle: float = 1800.0
    """Idle time-out once every filter is done (IMAP IDLE re-issues every 29 min)."""
    max_held: int = 65536
    """Bytes the filters of one direction may hold before the connection is cut."""
    max_connections: int = 1000
    close_timeout: float = 10.0
    """A closing connection whose peers do not take its last bytes is aborted then."""
    cut_through: bool = True
    """Relay in the kernel once every filter is done (where the transports allow)."""


class Proxy(protocol.ServerFactory):
    """
    One proxy instance: the factory of its listening port(s).

    @param modules: (name, module) in chain order; or a function of the
        L{Connection} giving them (one listener for several ports: TPROXY
        sends every diverted port to one).
    @param destination: the original destination of an accepted connection.
    @param outbound: how to connect out to it.
    @param on_event: called with (tracked connection, event) for each event.
    @param on_open: called with each new tracked connection (its original
        destination known), before the connection out is made.
    @param on_close: called with each tracked connection once it is gone
        (both sides closed), if C{on_open} heard of it.
    @param admit: if given, asked about each new tracked connection before
        the connection out is made: True (or a Deferred firing True) lets it
        through; False, a failure, or no answer within C{connect_timeout}
        closes it (counted C{refused}, C{admit_failed}, C{connect_timeout}).
    """

    def __init__(self, reactor: IReactorTime, modules: Modules,
                 destination: Destination, outbound: Outbound,
                 settings: ProxySettings = ProxySettings(),
                 on_event: Callable[[Tracked, Event], None] = lambda entry, event: None,
                 on_open: Callable[[Tracked], None] = lambda entry: None,
                 admit: Optional[Callable[[Tracked], Any]] = None,
                 on_close: Callable[[Tracked], None] = lambda entry: None) -> None:
        self.reactor = reactor
        self.on_open = on_open
        self.on_close = on_close
        self.admit = admit
        if callable(modules):
            self.select = modules
        else:
            fixed = list(modules)
            self.select = lambda conn: fixed
        self.destination = destination
        self.outbound = outbound
        self.settings = settings
        self.on_event = on_event
        self.table = ConnectionTable(reactor)
        self.counters: "Counter[str]" = Counter()

    def buildProtocol(self, addr: object) -> Optional[protocol.Protocol]:
        if len(self.table) >= self.settings.max_connections:
            self.counters["refused_full"] += 1
            return None  # Twisted closes the accepted connection
        side = ClientSide()
        side.factory = self
        return side

    def connections(self) -> List[Dict[str, object]]:
        """The live connections, as plain dicts (C{/mailproxy/connections})."""
        return self.table.describe()  # type: ignore[return-value]
