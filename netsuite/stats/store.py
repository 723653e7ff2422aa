# -*- test-case-name: tests.stats.test_store -*-
"""
The store: each sample of the L{Traffic} model written to round-robin
files (RRDtool, L{netsuite.stats.layout}): one file per client, by MAC,
and one for the uplink. The kernel's raw counters go in as they are (the
files' data sources are DERIVE: rrdtool makes the rates, and a counter
that went back, a reset, is an unknown step, not a spike).

Every rrdtool call runs through a runner (one thread), one batch per
sample and never two batches at once: a sample that comes while a batch is
being written waits for the next batch, with the ones already waiting (a
file takes several values in one update); past C{max_waiting} samples the
oldest is dropped and counted. A file is created the first time its
client is seen; one already there (from an earlier run) is kept and
written on: a value not newer than the file's last update (a clock that
went back) is skipped and counted, not an error. A file that cannot be
written (a full disk, a broken file) is counted and logged once per run of
failures; the others are written.

Each file is of fixed size (L{layout.BYTES_PER_FILE} and a few KB of
header), whatever its history; a file not written for longer than its
longest archive (400 days) holds nothing any more and is removed by
L{Store.prune}, so the directory holds at most the devices seen in the
last 400 days.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from . import layout
from .model import Traffic, Usage

__all__ = ["Store", "StoreService", "KEEP_SECONDS"]

_log = Logger()

KEEP_SECONDS = max(kept for _, _, kept in layout.ARCHIVES)
"""How long a file's longest archive reaches back: older files are empty."""

Sample = Dict[str, List[Tuple[int, Tuple[int, ...]]]]
"""What one batch writes: file -> [(timestamp, values)], oldest first."""


def _rrdtool() -> Any:
    import rrdtool
    return rrdtool


class Store:
    """
    @param directory: where the files are (L{layout.client_file}, L{layout.uplink_file}).
    @param step: the files' step (the sampling interval).
    @param runner: where the rrdtool calls run (one thread: calls in order).
    @param max_waiting: samples waiting while a batch is written; more drop the oldest.

    @ivar counters: batches (written), errors (files that failed in them),
        created (files), stale (values not newer than their file's last
        update, skipped), dropped (samples dropped while the disk was
        behind), seconds (spent writing, in all), last_batch_seconds,
        pruned (old files removed).
    """

    def __init__(self, directory: str, step: int, runner: Any, max_waiting: int = 3,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.step = step
        self.runner = runner
        self.max_waiting = max_waiting
        self.timer = timer
        self.counters: Dict[str, Any] = dict.fromkeys(
            ("batches", "errors", "created", "stale", "dropped", "pruned"), 0)
        self.counters.update(seconds=0.0, last_batch_seconds=0.0)
        self._waiting: List[Sample] = []
        self._busy = False
        self._idle: List[Deferred[None]] = []
        # file -> its last update's time (read from the file the first time)
        self._last: Dict[str, int] = {}
        self._failing = False
        self._create_args = layout.create_args(step)

    def subscribe(self, traffic: Traffic) -> Callable[[], None]:
        """Write each of C{traffic}'s samples; returns the unsubscribe."""
        def sampled(now: float, updated: List[Usage]) -> None:
            uplink = traffic.uplink if traffic.uplink.sampled == now else None
            self.add(now, updated, uplink)
        return traffic.subscribe(sampled)

    def add(self, now: float, clients: List[Usage], uplink: Optional[Usage] = None) -> None:
        """Queue one sample (the clients' and the uplink's raw counters) and write."""
        when = int(round(now))
        sample: Sample = {}
        for usage in clients:
            try:
                path = layout.client_file(self.directory, usage.mac)
            except ValueError:
                continue
            # Two addresses of one device (a renumbering within a sample):
            # the file takes the first, rrdtool takes one value a second.
            sample.setdefault(path, [(when, usage.raw.values())])
        if uplink is not None:
            sample[layout.uplink_file(self.directory)] = [(when, uplink.raw.values())]
        if len(self._waiting) >= self.max_waiting:
            self._waiting.pop(0)
            self.counters["dropped"] += 1
        self._waiting.append(sample)
        self._start()

    def flush(self) -> "Deferred[None]":
        """
        Write what waits, unless a batch is being written (then it goes in
        the next); fires once nothing waits and nothing is being written.
        """
        self._start()
        if not self._busy and not self._waiting:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    def _start(self) -> None:
        if self._busy or not self._waiting:
            return
        batch: Sample = {}
        for sample in self._waiting:
            for path, values in sample.items():
                batch.setdefault(path, []).extend(values)
        self._waiting = []
        self._busy = True

        def next_batch(_: Any) -> None:
            self._busy = False
            self._start()
            if not self._busy:
                idle, self._idle = self._idle, []
                for waiter in idle:
                    waiter.callback(None)
        self.runner.run(self._write, batch).addCallbacks(
            self._written, self._failed).addBoth(next_batch)

    # blocking: runs in the runner's thread

    def _write(self, batch: Sample) -> Tuple[float, int, int, int, List[str]]:
        rrdtool = _rrdtool()
        started = self.timer()
        created = stale = 0
        failures: List[str] = []
        for path, values in batch.items():
            try:
                last = self._last.get(path)
                if last is None:
                    last = self._open(rrdtool, path, values[0][0])
                    if last is None:
                        created += 1
                        last = values[0][0] - 1
                fresh = [(t, v) for t, v in values if t > last]
                stale += len(values) - len(fresh)
                if fresh:
                    rrdtool.update(path, *(f"{t}:" + ":".join(map(str, v)) for t, v in fresh))
                    last = fresh[-1][0]
                self._last[path] = last
            except (rrdtool.OperationalError, OSError) as e:
                # Read it again next time (it may have been replaced).
                self._last.pop(path, None)
                failures.append(f"{os.path.basename(path)}: {e}")
        return self.timer() - started, created, stale, len(failures), failures[:3]

    def _open(self, rrdtool: Any, path: str, first: int) -> Optional[int]:
        """The last update of the file at C{path}, or None: created now."""
        if os.path.exists(path):
            return int(rrdtool.last(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rrdtool.create(path, "--start", str(first - 1), "--step", str(self.step),
                       *self._create_args)
        return None

    def prune(self, now: float) -> "Deferred[int]":
        """
        Remove the client files not written for L{KEEP_SECONDS} (all their
        rows are past); fires with how many.
        """
        def removed(n: int) -> int:
            self.counters["pruned"] += n
            return n
        return self.runner.run(self._prune, now - KEEP_SECONDS).addCallback(removed)

    def _prune(self, before: float) -> int:
        directory = os.path.join(self.directory, "clients")
        n = 0
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return 0
        for name in names:
            path = os.path.join(directory, name)
            try:
                if name.endswith(".rrd") and os.stat(path).st_mtime < before:
                    os.unlink(path)
                    self._last.pop(path, None)
                    n += 1
            except FileNotFoundError:
                pass
        return n

    # back on the reactor

    def _written(self, result: Tuple[float, int, int, int, List[str]]) -> None:
        seconds, created, stale, errors, failures = result
        self.counters["batches"] += 1
        self.counters["seconds"] += seconds
        self.counters["last_batch_seconds"] = round(seconds, 6)
        self.counters["created"] += created
        self.counters["stale"] += stale
        self.counters["errors"] += errors
        if errors and not self._failing:
            self._failing = True
            _log.error("stats: could not write {n} round-robin files: {some} (further "
                       "failures are counted, not logged, until a batch is whole)",
                       n=errors, some="; ".join(failures))
        elif not errors and self._failing:
            self._failing = False
            _log.info("stats: the round-robin files are written again")

    def _failed(self, failure: Any) -> None:
        self.counters["errors"] += 1
        if not self._failing:
            self._failing = True
            _log.error("stats: a batch of round-robin writes failed: {error}",
                       error=f"{failure.type.__name__}: {failure.getErrorMessage()}")


class StoreService(Service):
    """
    Runs a L{Store}: prunes its old files a minute after start and then
    once a day; at stop waits for the writes under way and the samples
    waiting.
    """

    def __init__(self, store: Store, clock: Any, first_prune: float = 60.0) -> None:
        self.store = store
        self.clock = clock
        self.first_prune = first_prune
        self._pruning: Optional[LoopingCall] = None
        self._first: Any = None

    def startService(self) -> None:
        Service.startService(self)
        self._pruning = LoopingCall(self._prune)
        self._pruning.clock = self.clock
        self._first = self.clock.callLater(self.first_prune, self._pruning.start, 86400)

    def _prune(self) -> None:
        def pruned(n: int) -> None:
            if n:
                _log.info("stats: removed {n} round-robin files not written for {days} days",
                          n=n, days=KEEP_SECONDS // 86400)
        maybeDeferred(self.store.prune, self.clock.seconds()).addCallbacks(
            pruned, lambda f: _log.failure("stats: pruning the round-robin files failed", f))

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        if self._first is not None and self._first.active():
            self._first.cancel()
        if self._pruning is not None and self._pruning.running:
            self._pruning.stop()
        return self.store.flush()
