# -*- test-case-name: tests.registry.test_registry -*-
"""
Calls made on a later reactor turn, so that a watcher or a waiter cannot
re-enter the registry while a message is being dispatched.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["EventualQueue"]

_log = Logger()


class EventualQueue:
    """
    A queue of calls run together on the next turn of C{clock}.

    One C{callLater(0)} serves every call queued before it runs.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._calls: List[Tuple[Callable[..., Any], Tuple[Any, ...]]] = []
        self._timer: Optional[IDelayedCall] = None

    def eventually(self, fn: Callable[..., Any], *args: Any) -> None:
        """
        Call C{fn(*args)} on a later turn; errors are logged, not raised.
        """
        self._calls.append((fn, args))
        if self._timer is None:
            self._timer = self._clock.callLater(0, self._turn)

    def _turn(self) -> None:
        self._timer = None
        self.flush_sync()

    def flush_sync(self) -> None:
        """
        Run every queued call now, including ones queued while running
        (for tests, and for the queue's own turn).
        """
        while self._calls:
            calls, self._calls = self._calls, []
            for fn, args in calls:
                try:
                    fn(*args)
                except Exception:
                    _log.failure("eventual call {fn!r} failed", fn=fn)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
