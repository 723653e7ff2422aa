# -*- test-case-name: tests.portal.test_auth -*-
"""
The login rate limit (per IP and per MAC) of the portal's login form
(L{netsuite.portal.auth} re-exports it).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from ..clock import clock_watch

__all__ = ["LoginLimiter"]


class LoginLimiter:
    """
    Login attempts per client, clock-driven: at most C{max_failures}
    failed ones and C{max_attempts} in all (accepted or not) in C{window}
    seconds (0: no limit). A client is one or more keys (its IP address,
    its MAC): each is counted, and the most limited one decides, so that
    a device cannot multiply its guesses by taking more addresses. Keys
    whose times have all left the window are dropped as the books grow,
    so memory follows the recent attempts, not every client ever seen.
    The times move with a step of the wall clock (L{netsuite.clock}), so
    that a step back does not lock a client out for as long.
    """

    def __init__(self, clock: Any, max_failures: int = 5, window: float = 60.0,
                 max_attempts: int = 0) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.max_attempts = max_attempts
        self.window = window
        self._failures: Dict[str, Deque[float]] = {}
        self._attempts: Dict[str, Deque[float]] = {}
        self._prune_at = _PRUNE_AT
        clock_watch(clock).observe(self.shift)

    def shift(self, seconds: float) -> None:
        """The wall clock stepped by C{seconds}: move every recorded time."""
        for book in (self._failures, self._attempts):
            for key, times in book.items():
                book[key] = deque(t + seconds for t in times)

    def _recent(self, book: Dict[str, Deque[float]], key: Any) -> Deque[float]:
        now = self.clock.seconds()
        times = book.get(str(key))
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del book[str(key)]
        return times

    def _wait(self, times: Deque[float], limit: int) -> Optional[int]:
        if not limit or len(times) < limit:
            return None
        wait = times[-limit] + self.window - self.clock.seconds()
        return max(1, int(wait + 0.999))

    def retry_after(self, *clients: Any) -> Optional[int]:
        """
        Seconds before C{clients} (keys of one client) may try again, or
        None if it may now.
        """
        waits = [w for key in clients
                 for w in (self._wait(self._recent(self._failures, key), self.max_failures),
                           self._wait(self._recent(self._attempts, key), self.max_attempts))
                 if w is not None]
        return max(waits) if waits else None

    def _note(self, clients: Tuple[Any, ...], book: Dict[str, Deque[float]],
              limit: int) -> None:
        if not limit:
            return
        for key in clients:
            self._recent(book, key)
            times = book.setdefault(str(key), deque())
            times.append(self.clock.seconds())
            while len(times) > limit:
                times.popleft()
        if len(book) >= self._prune_at:
            for key in list(book):
                self._recent(book, key)
            self._prune_at = max(_PRUNE_AT, 2 * len(book))

    def attempted(self, *clients: Any) -> None:
        """
        C{clients} tries to log in (counted whatever the outcome).
        """
        self._note(clients, self._attempts, self.max_attempts)

    def failed(self, *clients: Any) -> None:
        self._note(clients, self._failures, self.max_failures)

    def succeeded(self, *clients: Any) -> None:
        for key in clients:
            self._failures.pop(str(key), None)


_PRUNE_AT = 1024
