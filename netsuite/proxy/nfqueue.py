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

The reader copies at most L{COPY_RANGE} bytes of each packet (the IP and
TCP headers' start) and decides every packet it is given: a SYN it can
read is recorded and accepted; anything else is dropped and counted.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter, OrderedDict
from typing import Any, Callable, Optional, Tuple

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["SynTable", "parse_syn", "QueueReader", "COPY_RANGE", "can_give_verdicts"]

_log = Logger()

Address = Tuple[str, int]

COPY_RANGE = 80
"""Bytes of each queued packet copied to the reader: an IPv4 header with
options (at most 60) or an IPv6 header (40), and the TCP header's first
14 bytes (ports and flags)."""

TCP = 6
SYN, ACK = 0x02, 0x10


def parse_syn(packet: bytes) -> Optional[Tuple[Address, Address]]:
    """
    (client, original destination) of a TCP SYN (not SYN-ACK) in an IPv4
    or IPv6 packet; C{None} for anything else (IPv6 extension headers
    included).
    """
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4:
        start = (packet[0] & 0x0F) * 4
        if start < 20 or len(packet) < start + 14 or packet[9] != TCP:
            return None
        if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
            return None  # a fragment past the first: no TCP header
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
    elif version == 6:
        start = 40
        if len(packet) < start + 14 or packet[6] != TCP:
            return None
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    else:
        return None
    sport, dport = struct.unpack_from("!HH", packet, start)
    flags = packet[start + 13]
    if flags & (SYN | ACK) != SYN:
        return None
    return (src, sport), (dst, dport)


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


def can_give_verdicts(status: str = "/proc/self/status") -> bool:
    """
    Whether this process may give verdicts: the kernel takes nfnetlink
    messages only from a sender with CAP_NET_ADMIN, and libnetfilter_queue
    ignores a refused verdict (the packet would wait in the queue).
    """
    from ..capabilities import parse_status
    with open(status) as f:
        return "CAP_NET_ADMIN" in parse_status(f.read()).effective


def _netfilterqueue() -> Any:
    from netfilterqueue import NetfilterQueue  # built from source: scripts/setup.sh
    return NetfilterQueue()


@implementer(IReadDescriptor)
class QueueReader:
    """
    Reads queue C{num} on the reactor: C{fileno()} is the queue's netlink
    socket, C{doRead()} handles every pending packet (C{run(block=False)}).

    @param make_queue: makes the (unbound) C{NetfilterQueue}; a fake in
        the unit tests.
    @param max_len: packets the kernel holds for the reader at most (then
        it drops them, or with bypass lets them pass).
    """

    def __init__(self, reactor: Any, table: SynTable, num: int, max_len: int = 1024,
                 make_queue: Callable[[], Any] = _netfilterqueue) -> None:
        self.reactor = reactor
        self.table = table
        self.num = num
        self.max_len = max_len
        self.make_queue = make_queue
        self.queue: Any = None
        self.fd = -1
        self.counters = table.counters

    def start(self) -> None:
        """Bind the queue (needs CAP_NET_ADMIN) and start reading it."""
        queue = self.make_queue()
        queue.bind(self.num, self._packet, max_len=self.max_len, range=COPY_RANGE)
        self.queue = queue
        self.fd = queue.get_fd()
        self.reactor.addReader(self)

    def stop(self) -> None:
        if self.queue is None:
            return
        self.reactor.removeReader(self)
        queue, self.queue = self.queue, None
        queue.unbind()

    @property
    def running(self) -> bool:
        return self.queue is not None

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "nfqueue"

    def doRead(self) -> None:
        try:
            self.queue.run(block=False)
        except OSError as e:
            self.counters["queue_errors"] += 1
            _log.warn("nfqueue: reading queue {num} failed: {error}", num=self.num, error=e)

    def connectionLost(self, reason: Failure) -> None:
        _log.error("nfqueue: queue {num} lost: {reason}", num=self.num,
                   reason=reason.getErrorMessage())
        self.queue = None

    def _packet(self, packet: Any) -> None:
        try:
            found = parse_syn(packet.get_payload())
        except Exception:
            found = None
        if found is None:
            self.counters["queue_dropped"] += 1
            packet.drop()
            return
        self.table.record(*found)
        packet.accept()
