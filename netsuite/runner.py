# -*- test-case-name: tests.test_runner -*-
"""
Where blocking work runs: libiptc and netlink calls, ldap3, scrypt checks,
SQLite commits. The reactor thread never makes such a call itself; it
hands the callable to an L{IRunner} and gets a Deferred of the result.

L{ThreadRunner} is the one implementation (a thread pool of its own,
started on first use and stopped at reactor shutdown): with one thread the
calls run one at a time in call order (the firewall's rules, a store's
commits), with more they run side by side (directory searches, password
checks). A stop waits for a running write; a runner of reads
(C{finish=False}) leaves a running call behind instead, so that a hung
server cannot hold the process's exit. L{netsuite.testing.SyncRunner} is the fake: it runs each call at
once, in the caller's thread. L{GroupCommit} commits a store's queued
writes through a runner, several in one transaction.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

__all__ = ["IRunner", "ThreadRunner", "GroupCommit", "RunnerStopped", "enter_netns"]

_log = Logger()

CLONE_NEWNET = 0x40000000


class RunnerStopped(RuntimeError):
    """
    A call was handed to a runner that has been stopped.
    """


class IRunner(Interface):
    """
    Runs blocking callables away from the reactor thread.
    """

    def run(fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        """
        Call C{fn(*args)} where it may block.

        @return: a Deferred firing (on the reactor thread) with its result,
            or failing with what it raised, or with L{RunnerStopped}.
        """

    def stop() -> None:
        """
        Run nothing more. Idempotent. Calls already running finish, or (for
        a runner that allows it) are left to end on their own.
        """


def enter_netns(name: str) -> None:
    """
    Move the calling thread into the named network namespace
    (C{/run/netns/NAME}, as C{ip netns add} makes). Only this thread moves.
    """
    fd = os.open(os.path.join("/run/netns", name), os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({name}): {os.strerror(error)}")
    finally:
        os.close(fd)


@implementer(IRunner)
class ThreadRunner:
    """
    Runs calls in a pool of at most C{threads} threads of its own, started
    on first use and stopped when the reactor shuts down (or by L{stop}).
    One thread (the default) runs them one at a time, in call order.

    @param name: names the threads (what a stack dump shows).
    @param netns: run the calls in this named network namespace instead of
        the process's own (each worker thread enters it before its first
        call; for tests and for managing a namespace from outside it).
    @param finish: whether L{stop} waits for the calls that are running.
        True for writes (a commit, the firewall's teardown: they must be
        done before the process exits). False for reads whose answer nobody
        waits for once the process stops (directory searches, password
        checks): L{stop} returns at once, and the threads are daemons, so
        a call blocked on a hung server holds neither the reactor's
        shutdown nor the interpreter's exit.
    """

    def __init__(self, reactor: Any, threads: int = 1, name: str = "netsuite",
                 netns: Optional[str] = None, finish: bool = True) -> None:
        if threads < 1:
            raise ValueError(f"a runner needs at least one thread, not {threads}")
        self._reactor = reactor
        self.threads = threads
        self.finish = finish
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name=name)
        if not finish:
            self._pool.threadFactory = _daemon_thread  # type: ignore[assignment]
        self._netns = netns
        self._entered = threading.local()
        self._trigger: Any = None
        self._stopped = False

    def run(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if self._stopped:
            return fail(RunnerStopped(f"the {self._pool.name} threads are stopped"))
        if self._trigger is None:
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown",
                                                                self._shutdown)
        if self._netns is None:
            return deferToThreadPool(self._reactor, self._pool, fn, *args)
        return deferToThreadPool(self._reactor, self._pool, self._in_netns, fn, *args)

    def _in_netns(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not getattr(self._entered, "done", False):
            enter_netns(self._netns)  # type: ignore[arg-type]
            self._entered.done = True
        return fn(*args)

    def _shutdown(self) -> None:
        self._trigger = None
        self.stop()

    def stop(self) -> None:
        """
        Stop the pool. With C{finish}, waits for the calls that are running
        (a write takes milliseconds); without, returns at once and the
        threads end after their call.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._trigger is not None:
            trigger, self._trigger = self._trigger, None
            try:
                self._reactor.removeSystemEventTrigger(trigger)
            except (ValueError, KeyError):
                pass
        if not self._pool.started:
            return
        if self.finish:
            self._pool.stop()
        else:
            # ThreadPool.stop() joins its threads; joined in a daemon thread
            # of its own, the busy ones are waited for by nobody.
            _daemon_thread(target=self._pool.stop, name=f"{self._pool.name}-stop").start()


def _daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    """
    A C{threading.Thread} the interpreter does not wait for at exit.
    """
    return threading.Thread(*args, daemon=True, **kwargs)


class GroupCommit:
    """
    Commits a store's queued writes through a runner, one transaction at a
    time: whatever is queued while a commit runs goes into the next (one
    fsync for every caller waiting).

    A failed commit (a full disk: C{sqlite3.OperationalError("database or
    disk is full")}) loses nothing: its writes go back in the queue, under
    any newer change of the same key, and are tried again with the next
    waiter's commit, or by themselves after C{retry_after} seconds. Its
    waiters get False. Only the first failure of a run of them is logged
    (one line, with the reason); the first commit that works again says so.

    @param take_writes: C{() -> writes}: what is queued now, handed over
        (empty: nothing to do).
    @param commit: C{(writes, durable) -> None}, blocking: writes them in
        one transaction, fsynced if C{durable} (someone waits on it).
    @param what: names the writes in the log ("lease changes").
    @param give_back: C{(writes) -> None}: put writes whose commit failed
        back in the queue, under newer ones; without it they are dropped.
    @param clock: times the retry of writes nobody waits for; without it
        they wait for the next waiter.

    @ivar failures: how many commits failed, in all.
    @ivar failing: whether the last commit failed.
    """

    def __init__(self, take_writes: Callable[[], Any], commit: Callable[[Any, bool], None],
                 runner: IRunner, what: str = "changes",
                 give_back: Optional[Callable[[Any], None]] = None, clock: Any = None,
                 retry_after: float = 5.0) -> None:
        self._take = take_writes
        self._commit = commit
        self._give_back = give_back
        self._clock = clock
        self.retry_after = retry_after
        self.runner = runner
        self.what = what
        self._waiting: List[Deferred[bool]] = []
        self._busy = False
        self._retry: Any = None
        self.failures = 0
        self.failing = False
        self._failed_in_a_row = 0

    def durable(self) -> "Deferred[bool]":
        """
        Fires with True once every change queued so far is on disk, False
        if the commit failed (logged).
        """
        d: Deferred[bool] = Deferred()
        self._waiting.append(d)
        self.flush()
        return d

    def flush(self) -> None:
        """
        Start committing what is queued, without waiting for it. While
        commits fail, only a waiter or the retry timer starts one.
        """
        self._start(retrying=False)

    def _start(self, retrying: bool) -> None:
        if self._busy or (self.failing and not self._waiting and not retrying):
            return
        writes = self._take()
        waiting, self._waiting = self._waiting, []
        if not writes and not waiting:
            return
        self._busy = True

        def done(ok: bool) -> None:
            self._busy = False
            for d in waiting:
                d.callback(ok)
            self.flush()

        def stored(_: Any) -> None:
            if self.failing:
                _log.info("stored {what} again, after {n} failed commits", what=self.what,
                          n=self._failed_in_a_row)
            self.failing, self._failed_in_a_row = False, 0
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = None
            done(True)

        def failed(failure: Any) -> None:
            self.failures += 1
            self._failed_in_a_row += 1
            if self._give_back is not None and writes:
                self._give_back(writes)
            if not self.failing:
                self.failing = True
                _log.error("could not store {n} {what}: {error}; kept to try again (further "
                           "failures are counted, not logged, until a commit works)",
                           n=len(writes), what=self.what, error=_reason(failure))
            if (self._clock is not None and self._retry is None
                    and not failure.check(RunnerStopped)):
                self._retry = self._clock.callLater(self.retry_after, self._retried)
            done(False)
        self.runner.run(self._commit, writes, bool(waiting)).addCallbacks(stored, failed)

    def _retried(self) -> None:
        self._retry = None
        self._start(retrying=True)

    def cancel_retry(self) -> None:
        """
        Drop the pending retry, if any (at shutdown).
        """
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None


def _reason(failure: Any) -> str:
    """
    A failed commit's exception as one line: its type and message.
    """
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"
