# -*- test-case-name: tests.dns.test_policy -*-
"""
What a client that has not logged in may ask the resolver (sans-IO: the
caller passes the clock, and gets back the events to send).

Before login DNS is the one thing a client can send past the access
point, so it is the way a tunnel (iodine and the like) would go: the
limits here make such a tunnel slow, small and noisy without hurting
the few lookups a phone makes before it shows the portal.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from twisted.names import dns

__all__ = ["Policy", "RateLimit", "label_entropy", "qtype_number", "qtype_name", "REASONS"]

REASONS = ("rate", "name_length", "label_length", "entropy", "qtype", "answer_size")
"""Why a query is refused before login."""

Announcement = Tuple[str, Dict[str, Any]]


def label_entropy(label: bytes) -> float:
    """
    The Shannon entropy of C{label}'s bytes, in bits per byte.
    """
    n = len(label)
    if n == 0:
        return 0.0
    counts = Counter(label.lower())
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def qtype_number(text: str) -> int:
    """
    A query type by name (C{"TXT"}) or as C{"TYPE65399"}; ValueError if
    neither.
    """
    upper = text.strip().upper()
    if upper == "ANY":
        return dns.ALL_RECORDS
    if upper in dns.REV_TYPES:
        return int(dns.REV_TYPES[upper])
    if upper.startswith("TYPE") and upper[4:].isdigit() and 0 <= int(upper[4:]) < 65536:
        return int(upper[4:])
    raise ValueError(f"not a DNS query type: {text!r}")


def qtype_name(number: int) -> str:
    if number == dns.ALL_RECORDS:
        return "ANY"
    return str(dns.QUERY_TYPES.get(number) or dns.EXT_QUERIES.get(number) or f"TYPE{number}")


class RateLimit:
    """
    A token bucket per client: C{rate} queries per second, C{burst} at
    once, for the C{max_clients} most recently seen (a forgotten one starts
    again with a full bucket).
    """

    def __init__(self, clock: Any, rate: float, burst: float, max_clients: int = 4096) -> None:
        self.clock = clock
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: "OrderedDict[str, List[float]]" = OrderedDict()  # ip -> [tokens, when]

    def take(self, ip: str) -> bool:
        """Whether C{ip} may make one more query now (it takes a token)."""
        now = self.clock.seconds()
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = [self.burst, now]
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ip)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True


class _Client:
    __slots__ = ("refusals", "reasons", "last_event", "suppressed")

    def __init__(self) -> None:
        self.refusals = 0
        self.reasons: Counter = Counter()
        self.last_event: Optional[float] = None
        self.suppressed = 0


class Policy:
    """
    The limits on one unauthorized client's queries.

    @param clock: an C{IReactorTime} (C{seconds()}).
    @param rate: queries per second a client may make (token bucket).
    @param burst: queries a client may make at once (the bucket's size).
    @param max_name: the longest query name (dotted text, bytes).
    @param max_label: the longest label.
    @param entropy: labels of at least C{entropy_min_length} bytes whose
        entropy is above this (bits per byte) are refused.
    @param refuse_types: query type numbers refused.
    @param max_answer: the largest answer (encoded bytes) given.
    @param suspect_threshold: refusals after which a client is announced
        as a tunnel suspect (again at each further multiple).
    @param event_interval: seconds between two C{/dns/refused} events about
        one client (the refusals between are counted, not announced).
    @param max_clients: clients tracked; the least recently seen is
        forgotten first.
    """

    def __init__(self, clock: Any, rate: float = 10.0, burst: int = 40, max_name: int = 120,
                 max_label: int = 40, entropy: float = 3.9, entropy_min_length: int = 24,
                 refuse_types: Iterable[int] = (), max_answer: int = 1232,
                 suspect_threshold: int = 20, event_interval: float = 10.0,
                 max_clients: int = 4096) -> None:
        self.clock = clock
        self.bucket = RateLimit(clock, rate, burst, max_clients)
        self.max_name = max_name
        self.max_label = max_label
        self.entropy = entropy
        self.entropy_min_length = entropy_min_length
        self.refuse_types: FrozenSet[int] = frozenset(refuse_types)
        self.max_answer = max_answer
        self.suspect_threshold = suspect_threshold
        self.event_interval = event_interval
        self.max_clients = max_clients
        self._clients: "OrderedDict[str, _Client]" = OrderedDict()
        self.counters: Counter = Counter()

    def _client(self, ip: str) -> _Client:
        client = self._clients.get(ip)
        if client is None:
            client = self._clients[ip] = _Client()
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(ip)
        return client

    def check(self, ip: str, name: bytes, qtype: int) -> Optional[str]:
        """
        Why C{ip}'s query for C{name} (dotted, no final dot) of type
        C{qtype} is refused (one of L{REASONS}), or None: answer it. Each
        query takes a token, refused or not.
        """
        if not self.bucket.take(ip):
            return "rate"
        if len(name) > self.max_name:
            return "name_length"
        if qtype in self.refuse_types:
            return "qtype"
        for label in name.split(b"."):
            if len(label) > self.max_label:
                return "label_length"
            if (len(label) >= self.entropy_min_length
                    and label_entropy(label) > self.entropy):
                return "entropy"
        return None

    def refused(self, ip: str, name: bytes, qtype: int, reason: str) -> List[Announcement]:
        """
        Count a refusal; the events to send about it (C{/dns/refused} at
        most once per C{event_interval} per client, C{/dns/tunnel-suspect}
        at each multiple of C{suspect_threshold} refusals).
        """
        self.counters[reason] += 1
        client = self._client(ip)
        client.refusals += 1
        client.reasons[reason] += 1
        now = self.clock.seconds()
        out: List[Announcement] = []
        if client.last_event is None or now - client.last_event >= self.event_interval:
            client.last_event = now
            out.append(("/dns/refused", {
                "ip": ip, "name": name.decode("ascii", "replace")[:self.max_name],
                "qtype": qtype_name(qtype), "reason": reason,
                "suppressed": client.suppressed}))
            client.suppressed = 0
        else:
            client.suppressed += 1
        if self.suspect_threshold and client.refusals % self.suspect_threshold == 0:
            out.append(("/dns/tunnel-suspect", {
                "ip": ip, "count": client.refusals, "reasons": dict(client.reasons)}))
        return out

    def refusals(self) -> Dict[str, Dict[str, Any]]:
        """The clients tracked that had refusals: ip -> {count, reasons}."""
        return {ip: {"count": c.refusals, "reasons": dict(c.reasons)}
                for ip, c in self._clients.items() if c.refusals}
