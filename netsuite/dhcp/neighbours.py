# -*- test-case-name: tests.dhcp.test_neighbours -*-
"""
The neighbour (ARP) entry a unicast reply to a client without an address
needs (RFC 2131 section 4.1).

The reply goes to yiaddr at the client's MAC, but the kernel cannot find
that MAC by ARP: the client answers for no address yet. So the server
writes the pair into the interface's neighbour table first, as dnsmasq
does: C{SIOCSARP} with C{ATF_COM}, which the kernel stores as a STALE
entry that it ages out and collects like any other. The table is keyed by
address, so a later client offered the same address replaces the entry:
clients spoofing MACs leave at most one entry per address of the subnet.

One ioctl costs about 4 microseconds here (pyroute2's C{neigh("replace")}
about 260, more than the rest of an exchange), but it takes the
namespace's RTNL lock, which any other netlink writer may hold: it runs in
a worker thread of its own (one, so in order), never on the reactor's.
Entries asked for while the thread writes go together in its next call,
so under load the handoffs to it cost little (a handoff per reply cut the
server's OFFERs per second by about a third; batched, unicast and
broadcast replies go out about as fast).
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ..registry.values import MAC
from ..runner import IRunner

__all__ = ["KernelNeighbours", "NeighboursBusy", "NeighboursRefused", "arp_request"]

SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1
_ARPREQ = struct.Struct("=HH4s8sH14si16s16s")
"""struct arpreq: arp_pa (sockaddr_in), arp_ha (sockaddr), arp_flags,
arp_netmask, arp_dev."""


def arp_request(interface: str, address: str, mac: MAC) -> bytes:
    """
    The C{struct arpreq} of C{SIOCSARP} for C{address} at C{mac} on
    C{interface} (pure).
    """
    return _ARPREQ.pack(socket.AF_INET, 0, socket.inet_aton(address), b"", ARPHRD_ETHER,
                        mac.packed, ATF_COM, b"", interface.encode())


class NeighboursBusy(RuntimeError):
    """
    Too many entries are waiting to be written: the reply is broadcast.
    """


class NeighboursRefused(RuntimeError):
    """
    The kernel refused the entry for want of CAP_NET_ADMIN: every reply is
    broadcast from then on.
    """


class KernelNeighbours:
    """
    Writes neighbour entries on C{interface} through C{runner} (one
    thread): those asked for while a batch is being written go together in
    the next (one handoff to the thread for all of them, as
    L{netsuite.runner.GroupCommit} does for commits).

    @param most_waiting: entries waiting at most; past that L{learn} fails
        at once with L{NeighboursBusy} (a flood of DISCOVERs from new MACs
        queues no more than this).
    @param ioctl: C{fcntl.ioctl}, or a fake.
    """

    def __init__(self, interface: str, runner: IRunner, most_waiting: int = 256,
                 ioctl: Any = fcntl.ioctl) -> None:
        self.interface = interface
        self.runner = runner
        self.most_waiting = most_waiting
        self.waiting = 0
        self.refused = False
        self._ioctl = ioctl
        self._socket: Optional[socket.socket] = None
        self._queued: List[Tuple[bytes, "Deferred[None]"]] = []
        self._busy = False

    def learn(self, address: str, mac: MAC) -> "Deferred[None]":
        """
        Put C{address} at C{mac} in the table; fires once it is there.
        """
        if self.refused:
            return fail(NeighboursRefused("no CAP_NET_ADMIN to write neighbour entries"))
        if self.waiting >= self.most_waiting:
            return fail(NeighboursBusy(f"{self.waiting} neighbour entries already waiting"))
        d: "Deferred[None]" = Deferred()
        self._queued.append((arp_request(self.interface, address, mac), d))
        self.waiting += 1
        self._flush()
        return d

    def _flush(self) -> None:
        if self._busy or not self._queued:
            return
        batch, self._queued = self._queued, []
        self._busy = True
        self.runner.run(self._set, [request for request, _ in batch]).addBoth(
            self._written, batch)

    def _set(self, requests: List[bytes]) -> List[Optional[OSError]]:
        """
        In the worker thread: one ioctl per entry, on a socket of its own;
        what each raised, or None.
        """
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        errors: List[Optional[OSError]] = []
        for request in requests:
            try:
                self._ioctl(self._socket.fileno(), SIOCSARP, request)
            except OSError as e:
                errors.append(e)
            else:
                errors.append(None)
        return errors

    def _written(self, result: Any, batch: List[Tuple[bytes, "Deferred[None]"]]) -> None:
        self._busy = False
        self.waiting -= len(batch)
        errors = [result] * len(batch) if isinstance(result, Failure) else result
        for (_, d), error in zip(batch, errors):
            if error is None:
                d.callback(None)
            elif isinstance(error, PermissionError):
                self.refused = True
                d.errback(NeighboursRefused(
                    f"no CAP_NET_ADMIN to write neighbour entries ({error})"))
            else:
                d.errback(error)
        self._flush()

    def close(self) -> "Deferred[None]":
        """
        Close the socket, after the entries already handed to the thread
        (which stay in the table, to age out).
        """
        if self._socket is None and not self._busy:  # none opened: no thread to wake
            return succeed(None)
        return self.runner.run(self._close)

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
