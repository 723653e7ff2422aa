# -*- test-case-name: tests.dns.test_server -*-
"""
The resolver's cache: answers by (name, type, class), bounded in entries
(the least recently used goes first), each kept for its smallest TTL and
given out with the TTLs it has left.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, List, Optional, Tuple

from twisted.names import dns

__all__ = ["Cache", "Answer"]

Key = Tuple[bytes, int, int]


class Answer:
    """What the resolver answers: an rcode and the three sections."""

    __slots__ = ("rcode", "answers", "authority", "additional")

    def __init__(self, rcode: int, answers: List[Any] = (), authority: List[Any] = (),
                 additional: List[Any] = ()) -> None:
        self.rcode = rcode
        self.answers = list(answers)
        self.authority = list(authority)
        self.additional = list(additional)

    def __repr__(self) -> str:
        return f"<Answer rcode={self.rcode} answers={self.answers!r}>"

    def records(self) -> List[Any]:
        return self.answers + self.authority + self.additional


def _aged(records: List[Any], elapsed: int) -> List[Any]:
    out = []
    for record in records:
        if record.type == dns.OPT:
            continue
        record = copy.copy(record)
        record.ttl = max(0, record.ttl - elapsed)
        out.append(record)
    return out


class Cache:
    """
    @param size: the most answers kept (0: none).
    @param negative_ttl: seconds a name error (NXDOMAIN) or empty answer is
        kept when the upstream's SOA says nothing shorter.
    @param max_ttl: the longest any answer is kept.
    """

    def __init__(self, clock: Any, size: int = 10000, negative_ttl: int = 60,
                 max_ttl: int = 86400) -> None:
        self.clock = clock
        self.size = size
        self.negative_ttl = negative_ttl
        self.max_ttl = max_ttl
        self._entries: "OrderedDict[Key, Tuple[float, float, Answer]]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Optional[Answer]:
        entry = self._entries.get(key)
        now = self.clock.seconds()
        if entry is None or entry[0] <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        expires, stored, answer = entry
        elapsed = int(now - stored)
        if elapsed == 0:
            return answer
        return Answer(answer.rcode, _aged(answer.answers, elapsed),
                      _aged(answer.authority, elapsed), _aged(answer.additional, elapsed))

    def put(self, key: Key, answer: Answer) -> None:
        if self.size <= 0 or answer.rcode not in (dns.OK, dns.ENAME):
            return
        if answer.answers:
            ttl = min(record.ttl for record in answer.answers)
        else:  # negative: the SOA's minimum, RFC 2308
            soas = [r for r in answer.authority if r.type == dns.SOA]
            ttl = min([self.negative_ttl] + [min(r.ttl, r.payload.minimum) for r in soas])
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            return
        now = self.clock.seconds()
        answer = Answer(answer.rcode, _aged(answer.answers, 0), _aged(answer.authority, 0),
                        _aged(answer.additional, 0))
        self._entries[key] = (now + ttl, now, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
