# -*- test-case-name: tests.stats.test_usage -*-
"""
The core's mailboxes: C{/stats/usage} (a client's usage, or the top
clients) and C{/stats/counters} (what the sampler and the store did).
"""

from __future__ import annotations

from typing import Any, Dict

from ..registry.interfaces import Stop
from ..registry.registry import declare_service
from ..registry.values import MAC, Message
from .model import Traffic

__all__ = ["MAILBOXES", "MAX_TOP", "declare_core"]

MAX_TOP = 100
"""The most clients one /stats/usage {top} answer lists."""

KEYS = ("today", "total", "rate")

MAILBOXES = {
    "/stats/usage": "A client's traffic {ip} or {mac}: answers {found, usage: {ip, mac, total, "
                    "today, day, rate_up, rate_down, sampled} or null}; or the top clients "
                    f"{{top: n (at most {MAX_TOP}), key?: \"today\", \"total\" or \"rate\"}}: "
                    "answers {clients: [usage...], uplink: usage}.",
    "/stats/counters": "What the sampler and the store did: answers {samples, skipped, errors, "
                       "uplink_errors, clients, last_sample_seconds, store_batches, "
                       "store_errors, store_seconds, store_last_batch_seconds, store_created, "
                       "store_stale, store_dropped, store_pruned}.",
}


def declare_core(registry: Any, traffic: Traffic, sampler: Any, store: Any) -> None:
    """Put the core's mailboxes on C{registry}, answering from C{traffic}."""
    def usage(message: Message) -> Stop:
        if "top" in message:
            n, key = message["top"], message.get("key", "today")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"top must be a count, not {n!r}")
            if key not in KEYS:
                raise ValueError(f"key must be one of {', '.join(KEYS)}, not {key!r}")
            return Stop({"clients": [u.as_dict() for u in traffic.top(min(n, MAX_TOP), key)],
                         "uplink": traffic.uplink.as_dict()})
        if "ip" in message:
            found = traffic.clients.get(str(message["ip"]))
        elif "mac" in message:
            found = traffic.by_mac(str(MAC(message["mac"])))
        else:
            raise ValueError("/stats/usage needs an ip, a mac or a top")
        return Stop({"found": found is not None,
                     "usage": None if found is None else found.as_dict()})

    def counters(message: Message) -> Stop:
        answer: Dict[str, Any] = dict(sampler.counters)
        answer.update((f"store_{k}", v) for k, v in store.counters.items())
        return Stop(answer)

    declare_service(registry, "stats", MAILBOXES, {},
                    {"/stats/usage": usage, "/stats/counters": counters})
