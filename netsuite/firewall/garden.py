# -*- test-case-name: tests.firewall.test_garden,tests.firewall.test_contract -*-
"""
The garden set's bookkeeping, in the reactor thread: which addresses are in
it until when, what a new add changes (clamped, never lowering a timeout,
bounded in entries). Shared by the kernel adapter, which writes what it
plans to the kernel set, and the in-memory one, whose simulated set it is.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["GardenBook", "MAX_PER_ADD"]

MAX_PER_ADD = 256
"""Addresses one add may carry (a DNS answer holds far fewer A records)."""

REFUSAL_LOG_INTERVAL = 60.0

_log = Logger()


def _addresses(ips: Any) -> List[ipaddress.IPv4Address]:
    if not isinstance(ips, (list, tuple)):
        raise ValueError("'ips' must be a list of IPv4 addresses")
    if len(ips) > MAX_PER_ADD:
        raise ValueError(f"at most {MAX_PER_ADD} addresses per garden add, not {len(ips)}")
    try:
        return [ipaddress.IPv4Address(ip) for ip in ips]
    except (ValueError, TypeError) as e:
        raise ValueError(f"not an IPv4 address in 'ips': {e}") from None


def _seconds(seconds: Any) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise ValueError(f"'seconds' must be an int, not {seconds!r}")
    return seconds


class GardenBook:
    """
    @param lan_network: addresses in it are never garden entries (they are
        clients, not destinations on the internet); nor are loopback,
        multicast, link-local, reserved or unspecified ones. They are
        skipped, not errors: a resolver relays what the names resolve to.
    @ivar ends: ip -> the clock time its entry expires.
    @ivar refused: addresses refused because the set was full, in all.
    """

    def __init__(self, clock: IReactorTime, lan_network: ipaddress.IPv4Network,
                 min_ttl: int = 60, max_ttl: int = 86400, max_entries: int = 4096) -> None:
        if not 0 < min_ttl <= max_ttl:
            raise ValueError(f"garden_min_ttl ({min_ttl}) must be from 1 to garden_max_ttl "
                             f"({max_ttl})")
        self.clock = clock
        self.lan_network = lan_network
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self.ends: Dict[ipaddress.IPv4Address, float] = {}
        self.refused = 0
        self._unlogged = 0
        self._logged_at: Optional[float] = None

    def _usable(self, ip: ipaddress.IPv4Address) -> bool:
        return not (ip in self.lan_network or ip.is_loopback or ip.is_multicast
                    or ip.is_link_local or ip.is_reserved or ip.is_unspecified)

    def expire(self) -> None:
        now = self.clock.seconds()
        for ip in [ip for ip, end in self.ends.items() if end <= now]:
            del self.ends[ip]

    def plan(self, ips: Any, seconds: Any) -> Tuple[List[Tuple[ipaddress.IPv4Address, int]], int]:
        """
        Take C{ips} into the book for C{seconds} (clamped to [min_ttl,
        max_ttl]). Returns what to write to the kernel, C{[(ip, seconds)]}
        (new entries and raised timeouts), and how many addresses are in
        the garden for at least C{seconds} from now on (those refused
        because the set is full, and unusable ones, are not).
        C{ValueError}, before anything changes, for bad input.
        """
        addresses = _addresses(ips)
        seconds = min(max(_seconds(seconds), self.min_ttl), self.max_ttl)
        now = self.clock.seconds()
        end = now + seconds
        writes = []
        accepted = 0
        for ip in dict.fromkeys(addresses):
            if not self._usable(ip):
                continue
            current = self.ends.get(ip, 0.0)
            if current <= now and len(self.ends) >= self.max_entries:
                self.expire()  # only when full: an add costs O(len(ips))
                if len(self.ends) >= self.max_entries:
                    self._refuse()
                    continue
            accepted += 1
            if current >= end:
                continue  # never lowered
            self.ends[ip] = end
            writes.append((ip, seconds))
        return writes, accepted

    def _refuse(self) -> None:
        self.refused += 1
        self._unlogged += 1
        now = self.clock.seconds()
        if self._logged_at is None or now - self._logged_at >= REFUSAL_LOG_INTERVAL:
            _log.warn("the garden set is full ({max} entries): refused {n} addresses "
                      "(in all {total}; logged at most once a minute)",
                      max=self.max_entries, n=self._unlogged, total=self.refused)
            self._logged_at = now
            self._unlogged = 0

    def left(self) -> Dict[ipaddress.IPv4Address, int]:
        """
        ip -> whole seconds left, for every entry.
        """
        self.expire()
        now = self.clock.seconds()
        return {ip: int(end - now) for ip, end in self.ends.items()}

    def clear(self) -> int:
        n = len(self.left())
        self.ends.clear()
        return n

    def adopt(self, left: Dict[ipaddress.IPv4Address, int]) -> None:
        """
        Take the entries found in the kernel (ip -> seconds left).
        """
        now = self.clock.seconds()
        self.ends = {ip: now + seconds for ip, seconds in left.items() if seconds > 0}
