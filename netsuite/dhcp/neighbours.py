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
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Any, Optional

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
    Writes neighbour entries on C{interface} through C{runner} (one thread).

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

    def learn(self, address: str, mac: MAC) -> "Deferred[None]":
        """
        Put C{address} at C{mac} in the table; fires once it is there.
        """
        if self.refused:
            return fail(NeighboursRefused("no CAP_NET_ADMIN to write neighbour entries"))
        if self.waiting >= self.most_waiting:
            return fail(NeighboursBusy(f"{self.waiting} neighbour entries already waiting"))
        self.waiting += 1
        d = self.runner.run(self._set, arp_request(self.interface, address, mac))
        return d.addBoth(self._done)

    def _done(self, result: Any) -> Any:
        self.waiting -= 1
        if isinstance(result, Failure) and result.check(PermissionError):
            self.refused = True
            return fail(NeighboursRefused(
                f"no CAP_NET_ADMIN to write neighbour entries ({result.value})"))
        return result

    def _set(self, request: bytes) -> None:
        """
        In the worker thread: the ioctl, on a socket of its own.
        """
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._ioctl(self._socket.fileno(), SIOCSARP, request)

    def close(self) -> "Deferred[None]":
        """
        Close the socket, after the entries already waiting (which stay in
        the table, to age out).
        """
        if self._socket is None and not self.waiting:  # none opened: no thread to wake
            return succeed(None)
        return self.runner.run(self._close)

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
