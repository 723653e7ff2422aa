# -*- test-case-name: tests.dns.test_garden -*-
"""
The walled garden by name: when the resolver answers a name of
C{[dns] garden_names} (for anyone), the A records go to the firewall's
garden set (C{/firewall/garden/add}) for their TTL, so that a client
that has not logged in may reach those addresses, as dnsmasq's
C{--ipset} does.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Dict, Iterable, Tuple

from twisted.logger import Logger

__all__ = ["GardenNames", "GardenFeeder"]

_log = Logger()


class GardenNames:
    """
    Name patterns: C{"login.provider.net"} is that name alone,
    C{"*.example.org"} any name below example.org (not example.org
    itself). Case and a final dot do not matter.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact = set()
        self.suffixes = set()
        for pattern in patterns:
            text = pattern.strip().lower().rstrip(".")
            if text.startswith("*."):
                if not text[2:] or "*" in text[2:]:
                    raise ValueError(f"not a name pattern: {pattern!r}")
                self.suffixes.add(text[2:].encode("ascii"))
            elif not text or "*" in text:
                raise ValueError(f"not a name pattern: {pattern!r}")
            else:
                self.exact.add(text.encode("ascii"))

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)

    def matches(self, name: bytes) -> bool:
        name = name.lower().rstrip(b".")
        if name in self.exact:
            return True
        labels = name.split(b".")
        return any(b".".join(labels[i:]) in self.suffixes for i in range(1, len(labels)))


class GardenFeeder:
    """
    Sends the addresses of garden names to C{address}
    (C{/firewall/garden/add {ips, seconds}}), batched: the addresses seen
    in one reactor turn go together, one request at a time, at most
    C{batch} addresses each, those with the same seconds in one request.
    An address already sent is sent again only once half its time is
    over. At most C{max_pending} addresses wait; more are dropped and
    counted. C{garden_full_refused} is the firewall's count of addresses
    it refused because the garden set was full, as of its last answer. A failed request is logged and its addresses dropped (the
    next answer of the name sends them again).
    """

    def __init__(self, registry: Any, clock: Any, address: str = "/firewall/garden/add",
                 batch: int = 64, max_pending: int = 1024, max_known: int = 4096) -> None:
        self.registry = registry
        self.clock = clock
        self.address = address
        self.batch = batch
        self.max_pending = max_pending
        self.max_known = max_known
        self._pending: Dict[IPv4Address, int] = {}
        self._known: Dict[IPv4Address, float] = {}  # ip -> when to send it again
        self._call: Any = None
        self._sending = False
        self.counters = {"garden_sent": 0, "garden_dropped": 0, "garden_failures": 0,
                         "garden_full_refused": 0}

    def add(self, records: Iterable[Tuple[IPv4Address, int]]) -> None:
        now = self.clock.seconds()
        for ip, ttl in records:
            ttl = max(1, int(ttl))
            if self._known.get(ip, 0.0) > now and ip not in self._pending:
                continue
            if ip not in self._pending and len(self._pending) >= self.max_pending:
                self.counters["garden_dropped"] += 1
                continue
            self._pending[ip] = max(ttl, self._pending.get(ip, 0))
        self._schedule()

    def _schedule(self) -> None:
        if self._pending and self._call is None and not self._sending:
            self._call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._call = None
        if not self._pending:
            return
        seconds = max(self._pending.values())
        ips = [ip for ip, s in self._pending.items() if s == seconds][:self.batch]
        for ip in ips:
            del self._pending[ip]
        now = self.clock.seconds()
        if len(self._known) > self.max_known:
            self._known = {ip: t for ip, t in self._known.items() if t > now}
        for ip in ips:
            self._known[ip] = now + seconds / 2.0
        self._sending = True

        def sent(answer: Any) -> Any:
            if not isinstance(answer, dict):  # nobody answered (a failing listener skipped)
                from twisted.python.failure import Failure
                return failed(Failure(RuntimeError(f"no answer: {answer!r}")))
            self.counters["garden_sent"] += len(ips)
            refused = answer.get("refused")
            if isinstance(refused, int):  # the firewall's total: the set was full
                self.counters["garden_full_refused"] = refused
            return None

        def failed(failure: Any) -> None:
            self.counters["garden_failures"] += 1
            for ip in ips:
                self._known.pop(ip, None)
            n = self.counters["garden_failures"]
            log = _log.warn if n % 100 == 1 else _log.debug
            log("dns: adding {n} garden addresses through {address} failed ({count} so far): "
                "{error}", n=len(ips), address=self.address, count=n,
                error=failure.getErrorMessage())

        def done(_: Any) -> None:
            self._sending = False
            self._schedule()
        try:
            d = self.registry.send(self.address, {"ips": ips, "seconds": seconds})
        except Exception as e:  # UnknownMailbox raised at once, say
            from twisted.python.failure import Failure
            failed(Failure(e))
            self._sending = False
            self._schedule()
            return
        d.addCallbacks(sent, failed).addBoth(done)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
