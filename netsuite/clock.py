# -*- test-case-name: tests.test_clock -*-
"""
Steps of the wall clock under a running process.

Twisted's reactor keeps time with C{time.time()}: a C{callLater(5, f)}
means "at wall time now + 5" (Twisted issue #2424). When the wall clock is
stepped (NTP's first sync on a box without a real-time clock, an operator's
C{date -s}), every timer moves with it: stepped back an hour, no timer
fires for an hour (sweeps, deadlines, retries); stepped forward, every
timer fires at once, and every lease and session that ends within the
step ends at once.

L{ClockWatch} notices a step by comparing the wall clock with the
monotonic one (which no step moves), and undoes its effect on what runs
here: it moves every pending timer by the step (C{DelayedCall.delay}), so
that each fires after the time it was asked for, and tells its observers
(the lease store, the portal's sessions), which move their absolute
times by the step, so that a lease or a session keeps the duration it was
given. Absolute times stay wall-clock times (what the lease file and the
operator see), in the wall clock's new reckoning.

A thread of its own looks every C{interval} seconds (a stepped-back clock
stops every timer, so a timer cannot be the one to look); code about to
rely on absolute times (the lease sweep) calls L{ClockWatch.check} first.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable, List, Optional

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["ClockWatch", "ClockWatchService", "clock_watch"]

_log = Logger()

_watches: "weakref.WeakKeyDictionary[Any, ClockWatch]" = weakref.WeakKeyDictionary()


class ClockWatch:
    """
    Notices steps of the wall clock and moves timers and observers with
    them.

    @param clock: the reactor (or a L{twisted.internet.task.Clock}) whose
        pending calls are moved.
    @param wall: the wall clock (C{time.time}).
    @param monotonic: the clock no step moves (C{time.monotonic}).
    @param tolerance: seconds of difference taken as drift, not a step.
    """

    def __init__(self, clock: Any, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 tolerance: float = 1.0) -> None:
        self._clock = clock
        self._wall = wall
        self._monotonic = monotonic
        self.tolerance = tolerance
        self._offset = wall() - monotonic()
        self._observers: List[Callable[[float], None]] = []
        self.steps = 0

    def observe(self, observer: Callable[[float], None]) -> Callable[[], None]:
        """
        Call C{observer(seconds)} after each step (on the reactor thread),
        with how far the wall clock moved (negative: back). Returns what
        removes it.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def check(self) -> float:
        """
        On the reactor thread: if the wall clock stepped since the last
        look, move the pending timers and tell the observers. Returns the
        step in seconds (0.0 if none).
        """
        offset = self._wall() - self._monotonic()
        step = offset - self._offset
        if abs(step) < self.tolerance:
            return 0.0
        self._offset = offset
        self.steps += 1
        moved = 0
        for call in self._clock.getDelayedCalls():
            if call.active():
                call.delay(step)
                moved += 1
        _log.warn("the wall clock stepped {step:+.1f} s; moved {n} timers and the lease and "
                  "session times with it", step=step, n=moved)
        for observer in list(self._observers):
            try:
                observer(step)
            except Exception:
                _log.failure("a clock step observer failed")
        return step


def clock_watch(clock: Any, **options: Any) -> ClockWatch:
    """
    The one L{ClockWatch} of C{clock} (made on first use, with C{options}).
    """
    watch = _watches.get(clock)
    if watch is None:
        watch = _watches[clock] = ClockWatch(clock, **options)
    return watch


class ClockWatchService(Service):
    """
    Looks for steps every C{interval} seconds, from a daemon thread of its
    own, while running; the looking itself (L{ClockWatch.check}) runs on
    the reactor thread.
    """

    def __init__(self, reactor: Any, interval: float = 1.0) -> None:
        self.reactor = reactor
        self.interval = interval
        self._stopping: Optional[threading.Event] = None

    def startService(self) -> None:
        super().startService()
        watch = clock_watch(self.reactor)
        stopping = self._stopping = threading.Event()

        def look() -> None:
            while not stopping.wait(self.interval):  # waits on the monotonic clock
                self.reactor.callFromThread(watch.check)
        threading.Thread(target=look, name="netsuite-clockwatch", daemon=True).start()

    def stopService(self) -> Any:
        if self._stopping is not None:
            self._stopping.set()
            self._stopping = None
        return super().stopService()
