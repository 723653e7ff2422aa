# -*- test-case-name: tests.test_testing -*-
"""
Fakes for tests and for hook-script authors: each stands in for an
outside system or a blocking piece and is run against the same contract
tests as the real one, so it cannot drift.

 - L{SyncRunner}: an L{netsuite.runner.IRunner} that runs each call at once;
   L{HeldRunner}: one whose calls wait until the test lets them run.
 - L{MemoryFirewall}, L{MemoryShaper}: the firewall adapter and the rate
   limiter, in memory.
 - L{MemoryDirectory}: an LDAP directory in memory.
 - L{registry_on_clock}: a real registry on a L{Clock}, for unit tests.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from .firewall.memory import MemoryFirewall, MemoryShaper
from .ldap.memory import MemoryDirectory
from .registry.registry import Registry
from .runner import IRunner, RunnerStopped

__all__ = ["SyncRunner", "HeldRunner", "MemoryFirewall", "MemoryShaper", "MemoryDirectory",
           "registry_on_clock"]


@implementer(IRunner)
class SyncRunner:
    """
    Runs each call at once in the caller's thread: its Deferred has fired
    when L{run} returns.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.calls = 0

    def run(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if self.stopped:
            return fail(RunnerStopped("the runner is stopped"))
        self.calls += 1
        try:
            return succeed(fn(*args))
        except Exception:
            return fail()

    def stop(self) -> None:
        self.stopped = True


@implementer(IRunner)
class HeldRunner:
    """
    A runner whose calls wait until the test lets them run (L{run_next}):
    for what a caller does while its blocking work is under way.

    @ivar calls: the calls not yet run: C{(deferred, fn, args)}.
    """

    def __init__(self) -> None:
        self.calls: List[Tuple["Deferred[Any]", Callable[..., Any], Tuple[Any, ...]]] = []
        self.stopped = False

    def run(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if self.stopped:
            return fail(RunnerStopped("the runner is stopped"))
        d: Deferred[Any] = Deferred()
        self.calls.append((d, fn, args))
        return d

    def run_next(self, fail_with: Any = None) -> None:
        """
        Run the oldest waiting call (or fail it with C{fail_with}).
        """
        d, fn, args = self.calls.pop(0)
        if fail_with is not None:
            d.errback(fail_with)
            return
        try:
            result = fn(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def stop(self) -> None:
        self.stopped = True


def registry_on_clock(name: str = "test", default_deadline: float = 2.0
                      ) -> Tuple[Registry, Clock]:
    """
    A real L{Registry} named C{name} whose deadlines run on a fresh
    L{Clock}: advance the clock to time listeners out; call
    C{registry.eventual.flush_sync()} to deliver what watchers are due.
    """
    clock = Clock()
    return Registry(name, clock, default_deadline=default_deadline), clock
