# -*- test-case-name: tests.stats.test_model -*-
"""
What the sampler knows of the traffic, in memory: each authorized
client's totals, rates and usage today, and the uplink's. Pure: it is fed
the kernel's readings and a time, and reads nothing itself.

The kernel's counters start again from zero when the firewall restarts or
a client is authorized again, so a reading lower than the last one is a
reset: the new reading is all traffic since, and the totals kept here never
go back.
"""

from __future__ import annotations

import datetime
import heapq
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = ["Totals", "Usage", "Traffic", "ZERO"]


@dataclass(frozen=True)
class Totals:
    """Bytes and packets each way (up: from the client)."""

    bytes_up: int = 0
    bytes_down: int = 0
    packets_up: int = 0
    packets_down: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(self.bytes_up + other.bytes_up, self.bytes_down + other.bytes_down,
                      self.packets_up + other.packets_up,
                      self.packets_down + other.packets_down)

    def since(self, earlier: "Totals") -> "Totals":
        """
        What was counted after C{earlier}, counter by counter; a counter
        lower than before was reset and counts from zero.
        """
        return Totals(*(now - then if now >= then else now
                        for now, then in zip(self.values(), earlier.values())))

    def values(self) -> Tuple[int, int, int, int]:
        """In L{netsuite.stats.layout.DATA_SOURCES} order."""
        return (self.bytes_up, self.bytes_down, self.packets_up, self.packets_down)

    def as_dict(self) -> Dict[str, int]:
        return {"bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "packets_up": self.packets_up, "packets_down": self.packets_down}


ZERO = Totals()


@dataclass
class Usage:
    """
    One client (or the uplink, C{ip} "uplink"): its totals since netsuite
    first saw it (resets corrected), its usage today (local time), its
    rates over the last interval (bytes per second) and the time of its
    last reading.
    """

    ip: str
    mac: str
    total: Totals = ZERO
    today: Totals = ZERO
    day: str = ""
    rate_up: float = 0.0
    rate_down: float = 0.0
    sampled: float = 0.0
    raw: Totals = field(default=ZERO, repr=False)
    """The kernel's last reading, which the next one is compared with."""

    def as_dict(self) -> Dict[str, object]:
        return {"ip": self.ip, "mac": self.mac, "total": self.total.as_dict(),
                "today": self.today.as_dict(), "day": self.day,
                "rate_up": round(self.rate_up, 1), "rate_down": round(self.rate_down, 1),
                "sampled": self.sampled}


def _day(when: float) -> str:
    return datetime.datetime.fromtimestamp(when).date().isoformat()


Reading = Tuple[str, Totals]
"""A client's kernel reading: (MAC, counters)."""


class Traffic:
    """
    The clients by IP address and the uplink, updated by L{update} (the
    sampler's readings); C{subscribe} callbacks are called after each
    update with the time and the clients updated.
    """

    def __init__(self) -> None:
        self.clients: Dict[str, Usage] = {}
        self.uplink = Usage("uplink", "")
        self.samples = 0
        self._subscribers: List[Callable[[float, List[Usage]], None]] = []

    def update(self, now: float, clients: Mapping[str, Reading],
               uplink: Optional[Totals] = None) -> List[Usage]:
        """
        Take one reading of every authorized client (C{ip -> (mac,
        counters)}) and, if known, the uplink's. A client missing from
        C{clients} is no longer authorized and is forgotten (its series
        stays on disk); a client whose MAC changed starts again.
        """
        updated = []
        for ip in set(self.clients) - set(clients):
            del self.clients[ip]
        for ip, (mac, raw) in clients.items():
            usage = self.clients.get(ip)
            if usage is None or usage.mac != mac:
                usage = self.clients[ip] = Usage(ip, mac)
                first = True
            else:
                first = False
            self._advance(usage, now, raw, first)
            updated.append(usage)
        if uplink is not None:
            self._advance(self.uplink, now, uplink, self.uplink.sampled == 0.0)
        self.samples += 1
        for callback in list(self._subscribers):
            callback(now, updated)
        return updated

    @staticmethod
    def _advance(usage: Usage, now: float, raw: Totals, first: bool) -> None:
        # A new client's first reading is all its traffic (its counters
        # started at its authorization), so it counts, but gives no rate.
        delta = raw if first else raw.since(usage.raw)
        elapsed = now - usage.sampled
        if not first and elapsed > 0:
            usage.rate_up = delta.bytes_up / elapsed
            usage.rate_down = delta.bytes_down / elapsed
        else:
            usage.rate_up = usage.rate_down = 0.0
        day = _day(now)
        if day != usage.day:
            usage.day, usage.today = day, ZERO
        usage.total += delta
        usage.today += delta
        usage.raw = raw
        usage.sampled = now

    def subscribe(self, callback: Callable[[float, List[Usage]], None]) -> Callable[[], None]:
        """Call C{callback(now, updated)} after each update; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def by_mac(self, mac: str) -> Optional[Usage]:
        for usage in self.clients.values():
            if usage.mac == mac:
                return usage
        return None

    def top(self, n: int, key: str = "today") -> List[Usage]:
        """
        The C{n} clients that moved the most bytes (up and down) C{today}
        or in C{total}, or with the highest C{rate}.
        """
        def size(u: Usage) -> float:
            if key == "rate":
                return u.rate_up + u.rate_down
            t = u.today if key == "today" else u.total
            return t.bytes_up + t.bytes_down
        return heapq.nlargest(n, self.clients.values(), key=size)

    def all(self) -> Iterable[Usage]:
        return self.clients.values()
