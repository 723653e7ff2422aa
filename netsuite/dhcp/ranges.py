# -*- test-case-name: tests.dhcp.test_pool -*-
"""
A subnet as configured, and its range as the pool keeps it: a
C{bytearray} with one byte per address saying what that address is
(free, bound, reserved, excluded), so that finding a free one is a
C{bytearray.find} (a C{memchr}) and 65,536 addresses cost 64 KiB.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple, Union

import attr

from ..registry.values import MAC

__all__ = ["Subnet", "AddressRange", "NEW", "OLD", "USED", "RESERVED", "EXCLUDED"]

# What each byte of a range says about its address.
NEW = 0       # free, never leased (or its quarantine is over): handed out first
OLD = 1       # free, last leased by a client who may come back for it
USED = 2      # bound, offered or quarantined
RESERVED = 3  # only for the client it is reserved for
EXCLUDED = 4  # the server's, the router's, a DNS server's

_NEW = bytes([NEW])
_OLD = bytes([OLD])


@attr.s(frozen=True, auto_attribs=True, kw_only=True)
class Subnet:
    """
    One subnet and the range of addresses the server leases in it.

    A packet belongs to the subnet whose C{network} holds its C{giaddr}
    when relayed, else the address of the interface it came in on.

    @ivar name: names the subnet in leases and in the configuration.
    @ivar server: the server identifier (option 54): the server's own
        address on this subnet when it is attached, else the address the
        relays forward to.
    @ivar first: the first address of the dynamic range.
    @ivar last: the last address of the dynamic range.
    @ivar options: further options to send, by option code.
    @ivar reservations: addresses for given clients, by MAC or client
        key. A reserved address may lie outside the dynamic range, not
        outside the network.
    @ivar interface: the interface that serves this subnet, if directly
        attached.
    """

    name: str
    network: IPv4Network
    first: IPv4Address
    last: IPv4Address
    server: IPv4Address
    router: Optional[IPv4Address] = None
    dns: Tuple[IPv4Address, ...] = ()
    lease_time: float = 3600.0
    options: Mapping[int, Any] = attr.Factory(dict)
    reservations: Mapping[Union[MAC, bytes], IPv4Address] = attr.Factory(dict)
    interface: Optional[str] = None

    def __attrs_post_init__(self) -> None:
        hosts = (self.network.network_address, self.network.broadcast_address)
        # A relayed subnet's clients reach the server at its own address,
        # which is on another network: only an attached subnet's must be here.
        own = [("server", self.server)] if self.interface else []
        for what, ip in [("first", self.first), ("last", self.last)] + own + [
                             (f"reservation {key!r}", ip)
                             for key, ip in self.reservations.items()]:
            if ip not in self.network or ip in hosts:
                raise ValueError(f"subnet {self.name}: {what} {ip} is not a host of {self.network}")
        if self.first > self.last:
            raise ValueError(f"subnet {self.name}: range {self.first}-{self.last} is empty")

    def excluded(self) -> FrozenSet[int]:
        """
        The addresses never leased here: network, broadcast, our own, the
        router's and the DNS servers'.
        """
        ips = [self.network.network_address, self.network.broadcast_address,
               self.server, *self.dns]
        if self.router is not None:
            ips.append(self.router)
        return frozenset(int(ip) for ip in ips)


class AddressRange:
    """
    One subnet's addresses, a byte each (L{NEW}, L{OLD}, L{USED}...).
    """

    def __init__(self, subnet: Subnet) -> None:
        self.subnet = subnet
        self.base = int(subnet.first)
        self.marks = bytearray(int(subnet.last) - self.base + 1)
        self.network = (int(subnet.network.network_address),
                        int(subnet.network.broadcast_address))
        # The lowest offset that may hold each free mark: find() starts there.
        self.lowest = {NEW: 0, OLD: 0}
        self.exhausted = False
        self.excluded = subnet.excluded()
        # Quarantined addresses (declined, not yet back): bounded by Pool.
        self.declined: Set[int] = set()
        self.reserved: Dict[int, List[Union[MAC, bytes]]] = {}
        for key, address in subnet.reservations.items():
            self.reserved.setdefault(int(address), []).append(key)
        for ip in self.excluded:
            self._force(ip, EXCLUDED)
        for ip in self.reserved:
            if ip not in self.excluded:
                self._force(ip, RESERVED)

    def _force(self, ip: int, mark: int) -> None:
        if 0 <= ip - self.base < len(self.marks):
            self.marks[ip - self.base] = mark

    def in_range(self, ip: int) -> bool:
        return 0 <= ip - self.base < len(self.marks)

    def mark(self, ip: int, mark: int) -> None:
        """
        Set the mark of C{ip}, unless it is reserved, excluded or outside
        the range, which it stays.
        """
        offset = ip - self.base
        if 0 <= offset < len(self.marks) and self.marks[offset] < RESERVED:
            self.marks[offset] = mark
            if mark in self.lowest and offset < self.lowest[mark]:
                self.lowest[mark] = offset

    def find(self) -> Optional[int]:
        """
        The lowest free address never leased, else the lowest that was.
        """
        for mark, wanted in ((NEW, _NEW), (OLD, _OLD)):
            offset = self.marks.find(wanted, self.lowest[mark])
            if offset >= 0:
                self.lowest[mark] = offset
                return self.base + offset
            self.lowest[mark] = len(self.marks)
        return None

    def free_count(self) -> int:
        return self.marks.count(_NEW) + self.marks.count(_OLD)
