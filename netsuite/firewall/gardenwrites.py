# -*- test-case-name: tests.firewall.test_contract -*-
"""
The kernel firewall's garden writes: what L{netsuite.firewall.garden.GardenBook}
plans, batched into the garden set (one netlink send for the adds of many
callers, L{netsuite.runner.GroupCommit}), retried when the kernel refuses
them, dropped when the garden is flushed or the firewall stops.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict

from twisted.internet.defer import Deferred, fail, succeed

from ..runner import GroupCommit, IRunner
from .garden import GardenBook
from .interfaces import FirewallError
from .kernelsets import KernelSets

__all__ = ["GardenWrites"]

Writes = Dict[ipaddress.IPv4Address, int]


class GardenWrites:
    """
    @param sets: gives the firewall's L{KernelSets} (called at each write:
        the firewall's, whatever it is by then).
    """

    def __init__(self, book: GardenBook, sets: Callable[[], KernelSets], runner: IRunner,
                 clock: Any) -> None:
        self.book = book
        self._sets = sets
        self._run = runner.run
        # ip -> seconds: writes waiting for the next batch
        self.pending: Writes = {}
        self._writes = GroupCommit(self._take, self._write, runner, what="garden entries",
                                   give_back=self._give_back, clock=clock)

    def add(self, ips: Any, seconds: Any) -> "Deferred[int]":
        """How many of C{ips} are in the garden for C{seconds}, once written."""
        try:
            writes, accepted = self.book.plan(ips, seconds)
        except ValueError:
            return fail()
        if not writes:
            return succeed(accepted)
        for ip, left in writes:
            self.pending[ip] = max(left, self.pending.get(ip, 0))

        def written(ok: bool) -> int:
            if not ok:
                raise FirewallError("the kernel refused the garden entries (logged); "
                                    "they are tried again")
            return accepted
        return self._writes.durable().addCallback(written)

    def expected(self) -> Writes:
        """What the set must hold: entries not about to expire nor waiting for their batch."""
        return {ip: left for ip, left in self.book.left().items()
                if left > 2 and ip not in self.pending}

    def flush(self) -> "Deferred[int]":
        """Empty the garden (the book and the set); how many entries it had."""
        self.pending.clear()
        n = self.book.clear()
        return self._run(lambda: self._sets().flush_garden()).addCallback(lambda _: n)

    def drop(self) -> None:
        """A stop: nothing waits or is retried any more."""
        self._writes.cancel_retry()
        self.pending.clear()
        self.book.clear()

    def _take(self) -> Writes:
        writes, self.pending = self.pending, {}
        return writes

    def _give_back(self, writes: Writes) -> None:
        for ip, seconds in writes.items():
            if ip in self.book.ends:  # not flushed since
                self.pending.setdefault(ip, seconds)

    def _write(self, writes: Writes, durable: bool) -> None:
        self._sets().add_garden(sorted(writes.items()))
