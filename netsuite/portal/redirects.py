# -*- test-case-name: tests.portal.test_front -*-
"""
The redirect front's pure pieces: a request target's path, and the
redirects kept, bounded in bytes. No I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Tuple
from urllib.parse import urlsplit

__all__ = ["RedirectCache", "request_path"]


def request_path(uri: str) -> Optional[str]:
    """
    The path of a request's target (C{/a?b} or C{http://host/a?b}), or None
    when it is not a URL at all (C{http://[x/}).
    """
    if uri.startswith("/") and not uri.startswith("//"):  # the common case, quickly
        return uri.partition("?")[0].partition("#")[0] or "/"
    try:
        return urlsplit(uri).path or "/"
    except ValueError:
        return None


class RedirectCache:
    """
    The redirects kept (a captive client asks for the same few URLs again
    and again), bounded in bytes: the oldest go first, and one larger than
    a 64th of the whole is not kept.
    """

    def __init__(self, max_bytes: int = 2 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._kept: "OrderedDict[Tuple[str, ...], Tuple[bytes, bytes]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Tuple[str, ...]) -> Optional[Tuple[bytes, bytes]]:
        return self._kept.get(key)

    def put(self, key: Tuple[str, ...], value: Tuple[bytes, bytes]) -> None:
        """
        Keep C{value}, counting the lengths of C{key}'s and C{value}'s parts.
        """
        cost = self._cost(key, value)
        if cost > self.max_bytes // 64 or key in self._kept:
            return
        while self._kept and self.size + cost > self.max_bytes:
            self.size -= self._cost(*self._kept.popitem(last=False))
        self._kept[key] = value
        self.size += cost

    @staticmethod
    def _cost(key: Tuple[str, ...], value: Tuple[bytes, bytes]) -> int:
        return sum(map(len, key)) + sum(map(len, value))

    def clear(self) -> None:
        self._kept.clear()
        self.size = 0
