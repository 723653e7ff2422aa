# -*- test-case-name: tests.proxy.test_nfqueue -*-
"""
Reading the SYNs the firewall queues (C{NFQUEUE}), with the NetfilterQueue
package, on the reactor: shared by the mail proxy's nfqueue mode
(L{netsuite.proxy.nfqueue}) and the stats service's extrusion detectors
(L{netsuite.stats.guard}).

A L{QueueReader} reads one queue: C{fileno()} is the queue's netlink
socket, C{doRead()} handles every pending packet (C{run(block=False)}),
so reading never blocks the reactor. It copies at most L{COPY_RANGE}
bytes of each packet (the IP and TCP headers' start), parses it
(L{parse_syn}) and gives its sink the SYN; the sink's answer is the
verdict, given at once (a packet is never held longer than that).
Anything that is not a SYN it can read is dropped and counted
(C{queue_dropped}).
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, Optional, Tuple

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

__all__ = ["parse_syn", "QueueReader", "ISynSink", "COPY_RANGE", "can_give_verdicts"]

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


def can_give_verdicts(status: str = "/proc/self/status") -> bool:
    """
    Whether this process may give verdicts: the kernel takes nfnetlink
    messages only from a sender with CAP_NET_ADMIN, and libnetfilter_queue
    ignores a refused verdict (the packet would wait in the queue).
    """
    from .capabilities import parse_status
    with open(status) as f:
        return "CAP_NET_ADMIN" in parse_status(f.read()).effective


def _netfilterqueue() -> Any:
    from netfilterqueue import NetfilterQueue  # built from source: scripts/setup.sh
    return NetfilterQueue()


class ISynSink(Interface):
    """What a L{QueueReader} gives the SYNs it reads to."""

    counters = Attribute("a mapping of counts (C{collections.Counter}); the reader adds "
                         "C{queue_dropped}, C{queue_errors} and C{sink_errors} to it")

    def syn(client: Address, server: Address, packet: Any) -> bool:
        """
        A SYN from C{client} to C{server} (C{packet}: NetfilterQueue's, for
        C{get_hw()}): True to accept it, False to drop it. Called on the
        reactor, before the verdict: keep it short.
        """

    def read_done() -> None:
        """The reader handled every pending packet (their verdicts are given)."""


@implementer(IReadDescriptor)
class QueueReader:
    """
    Reads queue C{num} on the reactor: C{fileno()} is the queue's netlink
    socket, C{doRead()} handles every pending packet (C{run(block=False)})
    and gives each SYN to C{table} (an L{ISynSink}), whose answer is the
    verdict.

    @param make_queue: makes the (unbound) C{NetfilterQueue}; a fake in
        the unit tests.
    @param max_len: packets the kernel holds for the reader at most (then
        it drops them, or with bypass lets them pass).
    """

    def __init__(self, reactor: Any, table: Any, num: int, max_len: int = 1024,
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
        try:
            self.table.read_done()
        except Exception:
            # raised out of doRead, it would end the reader (connectionLost)
            self.counters["sink_errors"] += 1
            _log.failure("nfqueue: queue {num}'s sink failed", num=self.num)

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
        try:
            accept = self.table.syn(found[0], found[1], packet)
        except Exception:
            # fail open: forwarding must not depend on the sink's health
            self.counters["sink_errors"] += 1
            _log.failure("nfqueue: queue {num}'s sink failed", num=self.num)
            accept = True
        if accept:
            packet.accept()
        else:
            packet.drop()
