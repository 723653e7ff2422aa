# -*- test-case-name: tests.dhcp.test_pool -*-
"""
Address pools: which address a client gets (RFC 2131 section 4.3.1), and
the lease transitions that follow (offer, bind, release, decline, expiry).

Each subnet's range is an L{AddressRange} (one byte per address, built
from the store at start-up; L{netsuite.dhcp.ranges}); everything else is
a lookup in the L{LeaseStore}'s memory. Nothing scans the leases per packet, and 65,536
addresses cost 64 KiB.

Build the pool in the store's thread (the store reads its file there);
after that the pool only reads and changes memory, and whoever owns the
store commits its queued writes (see L{LeaseStore.take_writes}).
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address
from typing import Deque, Dict, List, Optional, Sequence, Tuple

import attr
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..registry.values import MAC
from .leases import Lease, LeaseStore
from .ranges import NEW, OLD, USED, AddressRange, Subnet

__all__ = ["Subnet", "Pool"]

_log = Logger()

class Pool:
    """
    Allocates addresses in several subnets over one L{LeaseStore}.

    @param subnets: the subnets, with distinct names.
    @param store: the leases; the pool's state is rebuilt from it here.
    @param clock: the time source.
    @param offer_hold: seconds an offered address stays kept for its client.
    @param quarantine: seconds a declined address stays out of use.
    @param declines_per_client: how many addresses one client may have
        quarantined in C{quarantine} seconds; its further DECLINEs are
        refused.
    @param decline_fraction: the most of a subnet's range quarantined at
        once (at least one address); DECLINEs beyond it are refused.

    A refused DECLINE does not quarantine: the offer or lease declined is
    let go, so the address is free again (L{refused_declines} counts them).
    A client can no longer empty the pool by declining every address it is
    offered under made-up MACs.
    """

    def __init__(self, subnets: Sequence[Subnet], store: LeaseStore, clock: IReactorTime,
                 offer_hold: float = 60.0, quarantine: float = 3600.0,
                 declines_per_client: int = 3, decline_fraction: float = 0.1) -> None:
        self.store = store
        self.clock = clock
        self.offer_hold = offer_hold
        self.quarantine = quarantine
        self.declines_per_client = declines_per_client
        self.decline_fraction = decline_fraction
        self.refused_declines = 0
        # client key -> (end of its window, declines accepted in it)
        self._declines: Dict[bytes, Tuple[float, int]] = {}
        self.subnets: Dict[str, Subnet] = {}
        self._ranges: Dict[str, AddressRange] = {}
        self._holds: Deque[Tuple[float, int, bytes]] = deque()
        self._subnet_of: Dict[IPv4Address, Optional[Subnet]] = {}
        for subnet in subnets:
            if subnet.name in self.subnets:
                raise ValueError(f"two subnets are named {subnet.name!r}")
            self.subnets[subnet.name] = subnet
            rng = self._ranges[subnet.name] = AddressRange(subnet)
            for ip, state in store.rows(subnet.name):
                rng.mark(ip, OLD if state in ("released", "expired") else USED)
                if state == "declined":
                    rng.declined.add(ip)
        for offer in store.offers():
            self._hold(offer)
        # The clients in a window are at most the quarantines of one window.
        self._declines_bound = 2 * sum(max(1, int(len(rng.marks) * decline_fraction))
                                       for rng in self._ranges.values()) + 1024

    def subnet_for(self, address: IPv4Address) -> Optional[Subnet]:
        """
        The subnet that C{address} (a giaddr, or the receiving interface's
        address) selects, if any.
        """
        found = self._subnet_of.get(address)
        if found is None:
            found = next((subnet for subnet in self.subnets.values()
                          if address in subnet.network), None)
            if len(self._subnet_of) < 4096:  # relays and interfaces: a handful
                self._subnet_of[address] = found
        return found

    def free_count(self, subnet: Optional[str] = None) -> int:
        """
        How many addresses could go to a new client now, in one subnet or
        in all.
        """
        self._sweep_offers(self.clock.seconds())
        names = self._ranges if subnet is None else [subnet]
        return sum(self._ranges[name].free_count() for name in names)

    # Who may have an address.

    def _reserved_ip(self, rng: AddressRange, client_key: bytes, mac: Optional[MAC]) -> Optional[int]:
        ip = rng.subnet.reservations.get(client_key)
        if ip is None and mac is not None:
            ip = rng.subnet.reservations.get(mac)
        return None if ip is None else int(ip)

    def _usable(self, rng: AddressRange, ip: int, client_key: bytes, mac: Optional[MAC],
                now: float, assigned: bool = False) -> bool:
        """
        Whether C{ip} may go to this client now: in the range or reserved
        for it, not excluded, not reserved for, bound to or offered to
        someone else, and not quarantined.

        @param assigned: the address was chosen for the client by a hook
            (a directory, say): anywhere in the network will do.
        """
        if ip in rng.excluded or not rng.network[0] <= ip <= rng.network[1]:
            return False
        keys = rng.reserved.get(ip)
        if keys is not None:
            if client_key not in keys and (mac is None or mac not in keys):
                return False
        elif not rng.in_range(ip) and not assigned:
            # Outside the range: only an address already given to this
            # client (by a hook, at its offer) may be bound or renewed.
            lease = self.store.at(ip)
            return (lease is not None and lease.client_key == client_key
                    and (lease.state == "bound"
                         or (lease.state == "offered" and lease.expires > now)))
        lease = self.store.at(ip)
        if lease is None or lease.state in ("released", "expired"):
            return True
        if lease.state in ("declined", "offered"):
            return lease.expires <= now or (
                lease.state == "offered" and lease.client_key == client_key)
        return lease.client_key == client_key

    def _remark(self, ip: IPv4Address) -> None:
        """
        Set the mark of C{ip} from what the store now holds for it.
        """
        address = int(ip)
        for rng in self._ranges.values():
            if rng.network[0] <= address <= rng.network[1]:
                lease = self.store.at(address)
                if lease is None:
                    rng.mark(address, NEW)
                else:
                    rng.mark(address, OLD if lease.state in ("released", "expired") else USED)
                if lease is not None and lease.state == "declined":
                    rng.declined.add(address)
                else:
                    rng.declined.discard(address)
                return

    # Transitions.

    def allocate(self, subnet: str, client_key: bytes, mac: Optional[MAC] = None,
                 requested: Optional[IPv4Address] = None) -> Optional[IPv4Address]:
        """
        Choose an address for a DISCOVER, without holding it.

        In order: the client's reservation; its current or previous
        address; the address it asked for (option 50); a never-leased free
        address; a free address that someone else had.

        @return: the address, or L{None} when the subnet is exhausted
            (logged when it becomes so).
        """
        now = self.clock.seconds()
        self._sweep_offers(now)
        rng = self._ranges[subnet]
        reserved = self._reserved_ip(rng, client_key, mac)
        if reserved is not None and self._usable(rng, reserved, client_key, mac, now):
            return IPv4Address(reserved)
        lease = self.store.get_by_client(client_key, subnet)
        if lease is not None and self._usable(rng, int(lease.ip), client_key, mac, now):
            return lease.ip
        if requested is not None and self._usable(rng, int(requested), client_key, mac, now):
            return requested
        ip = self._find_free(rng, client_key, mac, now)
        if ip is None:
            self.expire()
            ip = self._find_free(rng, client_key, mac, now)
        if ip is None:
            if not rng.exhausted:
                rng.exhausted = True
                _log.warn("DHCP pool {subnet} exhausted: no address for client {client}",
                          subnet=subnet, client=client_key.hex())
            return None
        if rng.exhausted:
            rng.exhausted = False
            _log.info("DHCP pool {subnet} has free addresses again", subnet=subnet)
        return IPv4Address(ip)

    def _find_free(self, rng: AddressRange, client_key: bytes, mac: Optional[MAC],
                   now: float) -> Optional[int]:
        while True:
            ip = rng.find()
            if ip is None or self._usable(rng, ip, client_key, mac, now):
                return ip
            # The marks disagree with the store; the store wins.
            _log.warn("DHCP pool {subnet}: {ip} was marked free but is not",
                      subnet=rng.subnet.name, ip=str(IPv4Address(ip)))
            rng.mark(ip, USED)

    def hold_offer(self, subnet: str, ip: IPv4Address, client_key: bytes,
                   mac: Optional[MAC] = None, hostname: Optional[str] = None,
                   assigned: bool = False) -> Optional[Lease]:
        """
        Keep C{ip} for this client for C{offer_hold} seconds (in memory
        only), replacing the client's previous offer.

        @return: the offer; the client's bound lease if C{ip} is already
            bound to it; or L{None} if C{ip} may not go to it.
        """
        now = self.clock.seconds()
        self._sweep_offers(now)
        rng = self._ranges[subnet]
        if not self._usable(rng, int(ip), client_key, mac, now, assigned):
            return None
        return self._hold_offer(subnet, ip, client_key, mac, hostname, now)

    def offer(self, subnet: str, client_key: bytes, mac: Optional[MAC] = None,
              requested: Optional[IPv4Address] = None,
              hostname: Optional[str] = None) -> Optional[Lease]:
        """
        L{allocate} and L{hold_offer} in one step (the address the pool
        chose needs no second check).

        @return: as L{hold_offer}; L{None} when the subnet is exhausted.
        """
        ip = self.allocate(subnet, client_key, mac, requested)
        if ip is None:
            return None
        return self._hold_offer(subnet, ip, client_key, mac, hostname, self.clock.seconds())

    def _hold_offer(self, subnet: str, ip: IPv4Address, client_key: bytes,
                    mac: Optional[MAC], hostname: Optional[str], now: float) -> Optional[Lease]:
        current = self.store.get_by_ip(ip)
        if current is not None and current.state == "bound":
            return current
        self._drop_offer_of(subnet, client_key)
        offer = Lease(ip=ip, client_key=client_key, mac=mac, state="offered",
                      expires=now + self.offer_hold, hostname=hostname, subnet=subnet)
        self.store.put(offer, durable=False)
        self._hold(offer)
        return offer

    def _hold(self, offer: Lease) -> None:
        rng = self._ranges.get(offer.subnet)
        if rng is not None:
            rng.mark(int(offer.ip), USED)
            rng.declined.discard(int(offer.ip))  # a quarantine over, offered again
            self._holds.append((offer.expires, int(offer.ip), offer.client_key))

    def _drop_offer_of(self, subnet: str, client_key: bytes) -> None:
        offer = self.store.get_by_client(client_key, subnet)
        if offer is not None and offer.state == "offered":
            self.store.discard_offer(offer.ip)
            self._remark(offer.ip)

    def shift(self, seconds: float) -> None:
        """
        The wall clock stepped by C{seconds}: move every lease, offer and
        offer hold with it (each keeps the time it had left).
        """
        self.store.shift(seconds)
        self._holds = type(self._holds)((expires + seconds, ip, key)
                                        for expires, ip, key in self._holds)

    def _sweep_offers(self, now: float) -> None:
        """
        Let go of the offers whose hold is over; the holds run in time
        order, so this costs nothing when none is.
        """
        while self._holds and self._holds[0][0] <= now:
            expires, ip, client_key = self._holds.popleft()
            offer = self.store.get_by_ip(IPv4Address(ip))
            if (offer is not None and offer.state == "offered"
                    and offer.client_key == client_key and offer.expires == expires):
                self.store.discard_offer(offer.ip)
                self._remark(offer.ip)

    def bind(self, subnet: str, ip: IPv4Address, client_key: bytes,
             mac: Optional[MAC] = None, hostname: Optional[str] = None) -> Optional[Lease]:
        """
        Bind C{ip} to the client for the subnet's lease time. The lease is
        durable once the store has committed it (a write-through store
        does before this returns); the server ACKs after that.

        @return: the bound lease, or L{None} if C{ip} may not go to this
            client (the server NAKs).
        """
        now = self.clock.seconds()
        self._sweep_offers(now)
        rng = self._ranges.get(subnet)
        if rng is None or not self._usable(rng, int(ip), client_key, mac, now):
            return None
        self._drop_offer_of(subnet, client_key)
        writes: List[Lease] = []
        previous = self.store.get_by_client(client_key, subnet)
        if previous is not None and previous.state == "bound" and previous.ip != ip:
            writes.append(attr.evolve(previous, state="released"))
        lease = Lease(ip=ip, client_key=client_key, mac=mac, state="bound",
                      expires=now + rng.subnet.lease_time, hostname=hostname, subnet=subnet)
        writes.append(lease)
        self.store.put_many(writes, durable=True)
        for written in writes:
            self._remark(written.ip)
        return lease

    def release(self, ip: IPv4Address, client_key: bytes) -> Optional[Lease]:
        """
        The client gives C{ip} back (DHCPRELEASE). It stays the client's
        previous address, used for others only after never-leased ones.

        @return: the released lease, or L{None} if C{ip} was not the
            client's.
        """
        self._sweep_offers(self.clock.seconds())
        lease = self.store.get_by_ip(ip)
        if (lease is None or lease.client_key != client_key
                or lease.state not in ("bound", "offered")):
            return None
        if lease.state == "offered":
            self.store.discard_offer(ip)
            released: Optional[Lease] = attr.evolve(lease, state="released")
        else:
            released = self.store.release(ip)
        self._remark(ip)
        return released

    def decline(self, ip: IPv4Address, client_key: bytes) -> Optional[Lease]:
        """
        The client found C{ip} in use (DHCPDECLINE): nobody gets it for
        C{quarantine} seconds.

        @return: the quarantine record, or L{None} if C{ip} was not the
            client's to decline, or the decline was refused (see L{Pool}).
        """
        now = self.clock.seconds()
        self._sweep_offers(now)
        lease = self.store.get_by_ip(ip)
        if (lease is None or lease.client_key != client_key
                or lease.state not in ("bound", "offered")):
            return None
        if not self._may_decline(lease, now):
            self.refused_declines += 1
            log = _log.warn if self.refused_declines % 1000 == 1 else _log.debug
            log("refused a DECLINE of {ip}: too many quarantined by this client or in subnet "
                "{subnet} ({n} refused so far)", ip=str(ip), subnet=lease.subnet,
                n=self.refused_declines)
            self.release(ip, client_key)
            return None
        declined = attr.evolve(lease, state="declined", expires=now + self.quarantine)
        self.store.put(declined, durable=False)
        self._remark(ip)
        return declined

    def _may_decline(self, lease: Lease, now: float) -> bool:
        """
        Whether the client's DECLINE of C{lease} may quarantine it (within
        both bounds); counts it if so.
        """
        rng = self._ranges.get(lease.subnet)
        if rng is None:
            return False
        if len(rng.declined) >= max(1, int(len(rng.marks) * self.decline_fraction)):
            return False
        ends, count = self._declines.get(lease.client_key, (0.0, 0))
        if ends <= now:
            ends, count = now + self.quarantine, 0
        if count >= self.declines_per_client:
            return False
        if len(self._declines) > self._declines_bound:  # mostly windows over: forget them
            self._declines = {key: window for key, window in self._declines.items()
                              if window[0] > now}
        self._declines[lease.client_key] = (ends, count + 1)
        return True

    def expire(self, limit: int = 1000) -> List[Lease]:
        """
        End the bound leases whose time is over and the quarantines that
        are, at most C{limit} of them, read from the store's expiry index;
        and let go of offers held too long. Call it periodically.

        @return: the leases that ended, now in state C{"expired"}.
        """
        now = self.clock.seconds()
        self._sweep_offers(now)
        due = self.store.expired(now, limit)
        ended = [attr.evolve(lease, state="expired") for lease in due
                 if lease.state == "bound"]
        self.store.put_many(ended, durable=False)
        self.store.remove([lease.ip for lease in due if lease.state == "declined"])
        for lease in due:
            self._remark(lease.ip)
        return ended
