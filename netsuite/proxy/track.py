# -*- test-case-name: tests.proxy.test_track -*-
"""
The live connections of one proxy instance: who, where to, through which
modules, in which state, bytes each way, age and idle time. The service
lists them at C{/mailproxy/connections} as plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from twisted.internet.interfaces import IReactorTime

from .filters import CLIENT, SERVER

__all__ = ["CONNECTING", "INSPECTING", "RELAYING", "CUT_THROUGH", "CLOSING",
           "Tracked", "ConnectionTable"]

CONNECTING = "connecting"
"""Accepted; the connection to the original destination is being made."""
INSPECTING = "inspecting"
"""Both sides connected; some filter still inspects its direction."""
RELAYING = "relaying"
"""Every filter is done; bytes are relayed by Python (no cut-through here)."""
CUT_THROUGH = "cut-through"
"""Every filter is done; bytes are relayed in the kernel (splice)."""
CLOSING = "closing"
"""Being closed (a cut, a time-out, or one side gone)."""


@dataclass
class Tracked:
    id: int
    client: Tuple[str, int]
    server: Tuple[str, int]
    modules: Tuple[str, ...]
    started: float
    last: float
    state: str = CONNECTING
    received: Dict[str, int] = field(default_factory=lambda: {CLIENT: 0, SERVER: 0})
    """Bytes received from each side (C{CLIENT}: from the client)."""

    def describe(self, now: float) -> Dict[str, Any]:
        return {
            "id": self.id,
            "client": f"{_host(self.client[0])}:{self.client[1]}",
            "server": f"{_host(self.server[0])}:{self.server[1]}",
            "modules": list(self.modules),
            "state": self.state,
            "from_client": self.received[CLIENT],
            "from_server": self.received[SERVER],
            "age": round(now - self.started, 3),
            "idle": round(now - self.last, 3),
        }


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class ConnectionTable:
    """The live connections of one proxy instance, by id."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._live: Dict[int, Tracked] = {}
        self._next = 1

    def add(self, client: Tuple[str, int], server: Tuple[str, int],
            modules: Sequence[str]) -> Tracked:
        now = self.clock.seconds()
        entry = Tracked(self._next, client, server, tuple(modules), now, now)
        self._next += 1
        self._live[entry.id] = entry
        return entry

    def remove(self, entry: Tracked) -> None:
        self._live.pop(entry.id, None)

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Tracked]:
        return iter(list(self._live.values()))

    def describe(self) -> List[Dict[str, Any]]:
        """Every live connection as a plain dict, oldest first."""
        now = self.clock.seconds()
        return [entry.describe(now) for entry in self._live.values()]
