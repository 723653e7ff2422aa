# -*- test-case-name: tests.proxy.test_nfqueue -*-
"""
The C{nfqueue} interception mode (the MetaNet paper's method): the
firewall queues the SYN of each connection it diverts (C{NFQUEUE}, in
mangle PREROUTING, ahead of the nat table's C{REDIRECT} to the proxy, so
that the SYN still carries the destination the client chose); a
L{QueueReader} on the reactor reads the queued SYNs, records (client
address, client port) -> original destination in a L{SynTable} and
accepts them. The connection then reaches the proxy's plain listener
through the REDIRECT, and L{SynTable.destination} (the proxy's
C{destination}) takes its destination from the table.

No record (the reader is not running and the queue let the SYN pass,
C{--queue-bypass}; or the record expired or was pushed out of a full
table): C{OSError}, and the proxy closes the connection at once (counted
C{no_destination}). There is no fall back to C{SO_ORIGINAL_DST}: in this
mode the queue's record is the proof that the firewall diverted the
connection (see C{docs/mailproxy.md}, "What fails how").

The reader (L{netsuite.nfqueue}, shared with the stats service's
extrusion detectors) copies at most L{COPY_RANGE} bytes of each packet
(the IP and TCP headers' start) and decides every packet it is given: a
SYN it can read is recorded (L{SynTable.syn}) and accepted; anything else
is dropped and counted.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Optional, Tuple

from zope.interface import implementer

from ..nfqueue import COPY_RANGE, ISynSink, QueueReader, can_give_verdicts, parse_syn

__all__ = ["SynTable", "parse_syn", "QueueReader", "COPY_RANGE", "can_give_verdicts"]

Address = Tuple[str, int]


@implementer(ISynSink)
class SynTable:
    """
    (client address, client port) -> original destination, as the queue
    reader recorded them: at most C{max_entries} (a new record pushes the
    oldest out, counted C{syn_table_full}), each kept C{ttl} seconds
    (C{syn_expired}). L{take} gives a record once.
    """

    def __init__(self, clock: Any, max_entries: int = 4096, ttl: float = 30.0) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.ttl = ttl
        self.entries: "OrderedDict[Address, Tuple[Address, float]]" = OrderedDict()
        self.counters: "Counter[str]" = Counter()

    def __len__(self) -> int:
        return len(self.entries)

    def _expire(self) -> None:
        now = self.clock.seconds()
        while self.entries:
            client, (server, when) = next(iter(self.entries.items()))
            if when + self.ttl > now:
                break
            del self.entries[client]
            self.counters["syn_expired"] += 1

    def record(self, client: Address, server: Address) -> None:
        self._expire()
        self.entries.pop(client, None)  # a retransmitted SYN (or a reused port): the latest
        while len(self.entries) >= self.max_entries:
            self.entries.popitem(last=False)
            self.counters["syn_table_full"] += 1
        self.entries[client] = (server, self.clock.seconds())
        self.counters["syn_recorded"] += 1

    def syn(self, client: Address, server: Address, packet: Any) -> bool:
        """L{ISynSink}: record the SYN and accept it."""
        self.record(client, server)
        return True

    def read_done(self) -> None:
        pass

    def take(self, client: Address) -> Optional[Address]:
        """The destination recorded for C{client}, forgotten; None if none."""
        self._expire()
        found = self.entries.pop(client, None)
        return None if found is None else found[0]

    def destination(self, transport: Any) -> Address:
        """
        The proxy's C{destination} (L{netsuite.proxy.proxy.Destination}):
        the record of the accepted connection's peer.

        @raise OSError: when there is none.
        """
        peer = transport.getPeer()
        found = self.take((peer.host, peer.port))
        if found is None:
            self.counters["syn_missing"] += 1
            raise OSError(f"no queued SYN recorded for {peer.host} port {peer.port}")
        return found


