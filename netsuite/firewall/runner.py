# -*- test-case-name: tests.firewall.test_kernel -*-
"""
Where the firewall's blocking calls (libiptc, netlink) run: one worker
thread, so they leave the reactor free and take effect in call order.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["SerialRunner", "InlineRunner", "enter_netns"]

CLONE_NEWNET = 0x40000000


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


class SerialRunner:
    """
    Runs calls one at a time, in order, in a single worker thread.

    @param netns: run them in this named network namespace instead of the
        process's own (the worker thread alone enters it; for tests and
        for managing a namespace from outside it).
    """

    def __init__(self, reactor: Any, netns: Optional[str] = None) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="netsuite-firewall")
        self._started = False
        self._netns = netns
        self._entered = False

    def __call__(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if not self._started:
            self._pool.start()
            self._started = True
            self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return deferToThreadPool(self._reactor, self._pool, self._call, fn, *args)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._netns is not None and not self._entered:
            enter_netns(self._netns)
            self._entered = True
        return fn(*args)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._pool.stop()


class InlineRunner:
    """
    Runs each call at once in the calling thread (tests, benchmarks).
    """

    def __call__(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        try:
            return succeed(fn(*args))
        except Exception:
            return fail()
