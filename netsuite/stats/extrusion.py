# -*- test-case-name: tests.stats.test_extrusion -*-
"""
The extrusion detectors, sans-IO: fed the start of each new outbound
connection (time, client, MAC, destination, port), they say when a client
behaves like an infected or abusive machine. No I/O, no clock of their own:
the caller passes the time.

Four detectors, each over a sliding window of its own:

  - C{destinations}: distinct destination hosts (a scan);
  - C{ports}: distinct ports on one host (a port scan of one machine);
  - C{smtp}: connection attempts to the SMTP ports (a spam burst; counted
    whether or not SMTP is open for the client);
  - C{rate}: new connections at all.

A detector fires once its count reaches its threshold; then it is quiet
for that client for C{hold_off} seconds (nothing is counted meanwhile) and
starts again from zero.

Memory is bounded: a distinct set holds at most its threshold (reaching it
is a detection, which clears it), a client's hosts for C{ports} at most
L{MAX_HOSTS}, the counts are two numbers each (a sliding window counter:
the last window's count weighed by how much of it still overlaps, plus
this window's), and at most C{max_clients} clients are tracked (the one
idle longest goes first); a client idle longer than every window and the
hold-off is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import attr

__all__ = ["Detection", "Detectors", "Thresholds", "DETECTORS", "MAX_SAMPLES", "MAX_HOSTS"]

DETECTORS = ("destinations", "ports", "smtp", "rate")

MAX_SAMPLES = 10
"""Destinations a detection carries as evidence, at most."""

MAX_HOSTS = 16
"""Hosts a client's C{ports} detector follows at once (the most recent)."""

Destination = Tuple[str, int]


@attr.s(frozen=True, auto_attribs=True)
class Thresholds:
    """Each detector's threshold (0: off) and window (seconds)."""

    destinations: int = 100
    destinations_window: float = 60.0
    ports: int = 30
    ports_window: float = 60.0
    smtp: int = 20
    smtp_window: float = 60.0
    smtp_ports: Tuple[int, ...] = (25, 465, 587)
    rate: int = 200
    rate_window: float = 1.0
    hold_off: float = 300.0
    max_clients: int = 1024

    def window(self, detector: str) -> float:
        return float(getattr(self, f"{detector}_window"))

    def threshold(self, detector: str) -> int:
        return int(getattr(self, detector))


@attr.s(frozen=True, auto_attribs=True)
class Detection:
    """A client crossed a detector's threshold, with the evidence."""

    ip: str
    mac: Optional[str]
    detector: str
    count: int
    window: float
    threshold: int
    samples: Tuple[Destination, ...]
    at: float


class _Count:
    """
    A sliding window counter: events in the last C{window} seconds,
    estimated from this fixed window's count and the last one's, weighed
    by the part of it the sliding window still covers. Two numbers,
    whatever the rate.
    """

    __slots__ = ("window", "start", "current", "previous")

    def __init__(self, window: float, now: float) -> None:
        self.window = window
        self.start = now
        self.current = 0
        self.previous = 0

    def add(self, now: float) -> int:
        elapsed = now - self.start
        if elapsed >= self.window:
            steps = int(elapsed // self.window)
            self.previous = self.current if steps == 1 else 0
            self.current = 0
            self.start += steps * self.window
            elapsed = now - self.start
        self.current += 1
        overlap = 1.0 - elapsed / self.window
        return self.current + int(self.previous * overlap)


class _Distinct:
    """
    The distinct keys seen in the last C{window} seconds, oldest first (a
    key seen again moves to the end); at most C{limit} are kept.
    """

    __slots__ = ("window", "seen")

    def __init__(self, window: float) -> None:
        self.window = window
        self.seen: "OrderedDict[Any, float]" = OrderedDict()

    def add(self, key: Any, now: float) -> int:
        seen = self.seen
        horizon = now - self.window
        while seen:
            oldest = next(iter(seen.values()))
            if oldest > horizon:
                break
            seen.popitem(last=False)
        if key in seen:
            seen.move_to_end(key)
        seen[key] = now
        return len(seen)


class _Client:
    """One client's state: each detector's, and its hold-offs."""

    __slots__ = ("mac", "last", "hosts", "ports", "smtp", "rate", "quiet", "recent",
                 "recent_smtp")

    def __init__(self, thresholds: Thresholds, now: float) -> None:
        self.mac: Optional[str] = None
        self.last = now
        self.hosts = _Distinct(thresholds.destinations_window)
        # host -> its distinct ports, the most recent host last
        self.ports: "OrderedDict[str, _Distinct]" = OrderedDict()
        self.smtp = _Count(thresholds.smtp_window, now)
        self.rate = _Count(thresholds.rate_window, now)
        self.quiet: Dict[str, float] = {}  # detector -> end of its hold-off
        self.recent: Deque[Destination] = deque(maxlen=MAX_SAMPLES)
        self.recent_smtp: Deque[Destination] = deque(maxlen=MAX_SAMPLES)


class Detectors:
    """
    Every client's detectors. L{connection} takes one new outbound
    connection and returns the detections it caused (most often none).

    @ivar counters: C{connections}, C{detections}, one count per detector,
        C{clients_dropped} (pushed out by C{max_clients}).
    """

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.clients: "OrderedDict[str, _Client]" = OrderedDict()
        self.smtp_ports = frozenset(thresholds.smtp_ports)
        self.idle = max(thresholds.destinations_window, thresholds.ports_window,
                        thresholds.smtp_window, thresholds.rate_window, thresholds.hold_off)
        self.counters: Dict[str, int] = dict.fromkeys(
            ("connections", "detections", "clients_dropped") + DETECTORS, 0)

    def __len__(self) -> int:
        return len(self.clients)

    def expire(self, now: float) -> None:
        """Forget the clients idle longer than every window and the hold-off."""
        clients = self.clients
        while clients:
            oldest = next(iter(clients.values()))
            if oldest.last > now - self.idle:
                break
            clients.popitem(last=False)

    def ipv4_of(self, mac: str) -> Optional[str]:
        """
        The IPv4 address of the client with C{mac} that was active last,
        if one is followed (a dual-stack client's, for its IPv6 address).
        """
        for ip, client in reversed(self.clients.items()):
            if client.mac == mac and ":" not in ip:
                return ip
        return None

    def _client(self, ip: str, now: float) -> _Client:
        clients = self.clients
        client = clients.get(ip)
        if client is not None:
            clients.move_to_end(ip)
            client.last = now
            return client
        # forget whoever has been idle too long, then the idlest beyond the cap
        self.expire(now)
        clients = self.clients
        while len(clients) >= self.thresholds.max_clients:
            clients.popitem(last=False)
            self.counters["clients_dropped"] += 1
        client = clients[ip] = _Client(self.thresholds, now)
        return client

    def connection(self, now: float, ip: str, mac: Optional[str], host: str,
                   port: int) -> List[Detection]:
        """
        A new outbound connection from C{ip} (C{mac}, if known) to
        C{host}:C{port}, at C{now}: the detections it completes.
        """
        t = self.thresholds
        self.counters["connections"] += 1
        client = self._client(ip, now)
        if mac is not None:
            client.mac = mac
        quiet = client.quiet
        if quiet:
            for name, until in list(quiet.items()):
                if until <= now:
                    del quiet[name]
        found: List[Detection] = []
        destination = (host, port)
        client.recent.append(destination)

        if t.rate and "rate" not in quiet:
            count = client.rate.add(now)
            if count >= t.rate:
                found.append(self._fire(client, ip, "rate", count, tuple(client.recent), now))
                client.rate = _Count(t.rate_window, now)

        if t.smtp and port in self.smtp_ports and "smtp" not in quiet:
            client.recent_smtp.append(destination)
            count = client.smtp.add(now)
            if count >= t.smtp:
                found.append(self._fire(client, ip, "smtp", count, tuple(client.recent_smtp),
                                        now))
                client.smtp = _Count(t.smtp_window, now)
                client.recent_smtp.clear()

        if t.destinations and "destinations" not in quiet:
            count = client.hosts.add(host, now)
            if count >= t.destinations:
                found.append(self._fire(client, ip, "destinations", count,
                                        tuple(client.recent), now))
                client.hosts = _Distinct(t.destinations_window)

        if t.ports and "ports" not in quiet:
            ports = client.ports.get(host)
            if ports is None:
                while len(client.ports) >= MAX_HOSTS:
                    client.ports.popitem(last=False)
                ports = client.ports[host] = _Distinct(t.ports_window)
            else:
                client.ports.move_to_end(host)
            count = ports.add(port, now)
            if count >= t.ports:
                samples = list(ports.seen)[-MAX_SAMPLES:]
                found.append(self._fire(client, ip, "ports", count,
                                        tuple((host, p) for p in samples), now))
                client.ports.clear()
        return found

    def _fire(self, client: _Client, ip: str, detector: str, count: int,
              samples: Tuple[Destination, ...], now: float) -> Detection:
        t = self.thresholds
        client.quiet[detector] = now + t.hold_off
        self.counters["detections"] += 1
        self.counters[detector] += 1
        return Detection(ip=ip, mac=client.mac, detector=detector, count=count,
                         window=t.window(detector), threshold=t.threshold(detector),
                         samples=samples, at=now)
