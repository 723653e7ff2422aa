# -*- test-case-name: tests.portal.test_usage -*-
"""
The status page's "used today": asked of the stats service
(C{/stats/usage} in C{[portal] stats_process}) with a short deadline.
Whatever goes wrong (no stats service there, a slow one, an answer that
makes no sense) the page goes without the line: never a stall, never an
error.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twisted.internet.defer import Deferred, succeed

from ..registry.interfaces import join_address
from .pages import data_size

__all__ = ["DEADLINE", "usage_today", "usage_line"]

DEADLINE = 0.5
"""Seconds the status page waits for the stats service."""


def _count(value: Any) -> Optional[int]:
    return value if type(value) is int and value >= 0 else None


def _today(answer: Any) -> Optional[Tuple[int, int]]:
    if not isinstance(answer, dict) or answer.get("found") is not True:
        return None
    usage = answer.get("usage")
    today = usage.get("today") if isinstance(usage, dict) else None
    if not isinstance(today, dict):
        return None
    down, up = _count(today.get("bytes_down")), _count(today.get("bytes_up"))
    return None if down is None or up is None else (down, up)


def usage_today(registry: Any, process: Optional[str], ip: Any, clock: Any,
                deadline: float = DEADLINE) -> "Deferred[Optional[Tuple[int, int]]]":
    """
    Fire with C{(bytes down, bytes up)} today of the client at C{ip}, as
    the stats service in C{process} (C{""}: this one) counts them, or with
    None: not known there, no answer within C{deadline} seconds, or no
    such service; at once with None when C{process} is None (not asked).
    """
    if process is None:
        return succeed(None)
    d: Deferred = registry.send(join_address(process, "/stats/usage", registry.name),
                                {"ip": ip})
    d.addTimeout(deadline, clock)
    return d.addCallbacks(_today, lambda _: None)


def usage_line(today: Optional[Tuple[int, int]]) -> str:
    """The status page's paragraph (HTML) for C{today}, or nothing."""
    if today is None:
        return ""
    down, up = today
    return f'<p class="usage">Used today: {data_size(down)} down, {data_size(up)} up</p>'
