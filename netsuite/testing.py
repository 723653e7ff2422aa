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
 - L{MemoryCapabilities}: a thread's credentials, by the kernel's rules
   (L{netsuite.privileges.ICapabilityCalls}).
"""

from __future__ import annotations

import errno
from typing import Any, Callable, List, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from .capabilities import NUMBERS, ProcessPrivileges, names
from .firewall.memory import MemoryFirewall, MemoryShaper
from .ldap.memory import MemoryDirectory
from .privileges import ICapabilityCalls
from .registry.registry import Registry
from .runner import IRunner, RunnerStopped

__all__ = ["SyncRunner", "HeldRunner", "MemoryFirewall", "MemoryShaper", "MemoryDirectory",
           "registry_on_clock", "MemoryCapabilities"]


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


_EVERY = (1 << (max(NUMBERS.values()) + 1)) - 1


@implementer(ICapabilityCalls)
class MemoryCapabilities:
    """
    One thread's uid and capability sets, changed by the rules of
    capabilities(7): a root thread starts with every capability; L{switch}
    (what twistd's C{setuid} does) clears the effective and ambient sets,
    and the permitted set too unless C{PR_SET_KEEPCAPS} is on; C{capset}
    refuses more than is permitted; dropping from the bounding set needs
    C{CAP_SETPCAP} in effect. C{calls} records what was called, in order.
    """

    def __init__(self, uid: int = 0, threads: int = 1) -> None:
        root = _EVERY if uid == 0 else 0
        self.uid = uid
        self.gid = uid
        self.keep = False
        self.effective = self.permitted = root
        self.inheritable = self.ambient = 0
        self.bounding = _EVERY
        self.no_new_privs = False
        self.thread_count = threads
        self.calls: List[str] = []

    def switch(self, uid: int, gid: int) -> None:
        """Become C{uid}/C{gid}, as C{setgid} and C{setuid} do."""
        self.calls.append(f"switch {uid}")
        if self.uid == 0 and uid != 0:
            self.effective = self.ambient = 0
            if not self.keep:
                self.permitted = 0
        self.uid, self.gid = uid, gid

    def euid(self) -> int:
        return self.uid

    def set_keep_capabilities(self, keep: bool) -> None:
        self.calls.append(f"keep {keep}")
        self.keep = keep

    def capabilities(self) -> Tuple[int, int, int]:
        return self.effective, self.permitted, self.inheritable

    def set_capabilities(self, effective: int, permitted: int, inheritable: int) -> None:
        self.calls.append(f"capset {effective:#x} {permitted:#x} {inheritable:#x}")
        if (permitted & ~self.permitted or effective & ~permitted
                or inheritable & ~(self.inheritable | self.permitted)):
            raise OSError(errno.EPERM, "capset: Operation not permitted")
        self.effective, self.permitted, self.inheritable = effective, permitted, inheritable
        self.ambient &= permitted & inheritable

    def last_capability(self) -> int:
        return max(NUMBERS.values())

    def drop_bounding(self, number: int) -> None:
        self.calls.append(f"drop {number}")
        if not self.effective & 1 << NUMBERS["CAP_SETPCAP"]:
            raise OSError(errno.EPERM, "prctl(24): Operation not permitted")
        self.bounding &= ~(1 << number)

    def clear_ambient(self) -> None:
        self.calls.append("clear ambient")
        self.ambient = 0

    def set_no_new_privs(self) -> None:
        self.calls.append("no new privs")
        self.no_new_privs = True

    def threads(self) -> int:
        return self.thread_count

    def status(self) -> ProcessPrivileges:
        return ProcessPrivileges(
            uids=(self.uid,) * 4, gids=(self.gid,) * 4, groups=frozenset(),
            effective=names(self.effective), permitted=names(self.permitted),
            inheritable=names(self.inheritable), bounding=names(self.bounding),
            ambient=names(self.ambient), no_new_privs=self.no_new_privs)
