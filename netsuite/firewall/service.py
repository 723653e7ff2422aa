# -*- test-case-name: tests.firewall.test_service -*-
"""
The firewall as a service: start and stop the adapter, check the kernel
every few seconds, and offer the adapter's operations as mailboxes so a
script (or another netsuite process) can drive it over the bus.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..registry.interfaces import IRegistry, Stop
from ..registry.registry import declare_service
from ..registry.values import MAC, Message
from ..services import Readiness
from .compact import ROW_SIZE, pack_rows
from .interfaces import Client, IFirewall, NotInLan

__all__ = ["FirewallService", "MAILBOXES", "REFUSALS"]

REFUSALS = {"/firewall/authorize": {"authorized": False,
                                    "reason": "a required check of this device failed"}}
"""What a decision answers when a fail-closed hook on it fails or is late."""

_log = Logger()

MAILBOXES = {
    "/firewall/authorize": "Authorize {ip, mac, up_kbit?, down_kbit?}; answers {authorized, ip, mac, up_kbit, down_kbit}.",
    "/firewall/deauthorize": "De-authorize {ip} and cut its connections; answers {deauthorized: was it authorized}.",
    "/firewall/smtp/open": "Open SMTP for {ip} for {seconds?}, to any destination or towards {server?} (IPv4) only; opening again re-times it; answers {open: true, seconds}.",
    "/firewall/smtp/close": "Close all of {ip}'s SMTP windows; answers {open: false}.",
    "/firewall/smtp/windows": "Open SMTP windows: answers {ip-string: {\"any\" or server-string: seconds left}}.",
    "/firewall/garden/add": "Open {ips: [IPv4...], seconds} to unauthorized clients (seconds clamped to [garden_min_ttl, garden_max_ttl], never lowered); answers {added: n, refused: addresses refused since start because the set was full}.",
    "/firewall/garden": "The garden set: answers {ip-string: seconds left}.",
    "/firewall/garden/flush": "Empty the garden set; answers {flushed: n}.",
    "/firewall/clients": "Authorized clients: answers a list of {ip, mac, up_kbit, down_kbit}.",
    "/firewall/counters": "Traffic per authorized client: answers {ip-string: {bytes_up, packets_up, bytes_down, packets_down}}; with {compact: true}, {count, rows: bytes} (42-byte rows of IPv4, MAC and the four counters: netsuite.firewall.compact).",
}
EVENTS = {
    "/firewall/authorized": "Event: a client was authorized {ip, mac, up_kbit, down_kbit}.",
    "/firewall/deauthorized": "Event: a client was de-authorized {ip}.",
    "/firewall/repaired": "Event: the periodic check restored the kernel state {what: [str]}.",
}


def _client_value(client: Client) -> Message:
    return {"ip": client.ip, "mac": client.mac, "up_kbit": client.up_kbit,
            "down_kbit": client.down_kbit}


def _compact(rows: bytes) -> Message:
    return {"count": len(rows) // ROW_SIZE, "rows": rows}


def _ip(message: Message) -> ipaddress.IPv4Address:
    if "ip" not in message:
        raise ValueError("the message needs an 'ip'")
    return ipaddress.IPv4Address(message["ip"])


class FirewallService(Service):
    """
    @param firewall: the adapter (kernel or in-memory).
    @param registry: where its mailboxes go.
    @param clock: schedules the periodic check.
    @param check_interval: seconds between checks (0: none).
    """

    def __init__(self, firewall: IFirewall, registry: IRegistry, clock: Any,
                 check_interval: float = 5.0) -> None:
        self.firewall = firewall
        self.registry = registry
        self.clock = clock
        self.check_interval = check_interval
        self._checking: Optional[LoopingCall] = None
        self.readiness = Readiness()
        self._declare()

    def _declare(self) -> None:
        declare_service(self.registry, "firewall", MAILBOXES, EVENTS, {
            "/firewall/authorize": self._authorize,
            "/firewall/deauthorize": self._deauthorize,
            "/firewall/smtp/open": self._open_smtp,
            "/firewall/smtp/close": self._close_smtp,
            "/firewall/smtp/windows": self._smtp_windows,
            "/firewall/garden/add": self._add_garden,
            "/firewall/garden": self._garden,
            "/firewall/garden/flush": self._flush_garden,
            "/firewall/clients": self._clients,
            "/firewall/counters": self._counters}, refusals=REFUSALS)

    # the stock listeners

    def _authorize(self, message: Message) -> "Deferred[Stop]":
        def done(client: Client) -> Stop:
            self.registry.send("/firewall/authorized", _client_value(client))
            return Stop(dict(_client_value(client), authorized=True))
        return maybeDeferred(lambda: self.firewall.authorize(
            _ip(message), MAC(message.get("mac")), message.get("up_kbit"),
            message.get("down_kbit"))).addCallback(done)

    def _deauthorize(self, message: Message) -> "Deferred[Stop]":
        ip = _ip(message)

        def done(known: bool) -> Stop:
            if known:
                self.registry.send("/firewall/deauthorized", {"ip": ip})
            return Stop({"deauthorized": known, "ip": ip})

        def not_a_client(failure: Failure) -> Stop:
            # An address outside the LAN was never authorized: the answer
            # is "no", not a listener failure (an operator's kick of
            # 20.89.0.11 logged a traceback).
            failure.trap(NotInLan)
            return Stop({"deauthorized": False, "ip": ip})
        return self.firewall.deauthorize(ip).addCallbacks(done, not_a_client)

    def _open_smtp(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.open_smtp(_ip(message), message.get("seconds"),
                                       message.get("server")).addCallback(
            lambda seconds: Stop({"open": True, "seconds": seconds}))

    def _close_smtp(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.close_smtp(_ip(message)).addCallback(
            lambda _: Stop({"open": False}))

    def _smtp_windows(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.smtp_windows().addCallback(
            lambda windows: Stop({str(ip): {("any" if to is None else str(to)): left
                                            for to, left in mine.items()}
                                  for ip, mine in windows.items()}))

    def _add_garden(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.add_garden(message.get("ips"), message.get("seconds")).addCallback(
            lambda n: Stop({"added": n, "refused": self.firewall.garden_book.refused}))

    def _garden(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.garden().addCallback(
            lambda entries: Stop({str(ip): left for ip, left in entries.items()}))

    def _flush_garden(self, message: Message) -> "Deferred[Stop]":
        return self.firewall.flush_garden().addCallback(lambda n: Stop({"flushed": n}))

    def _clients(self, message: Message) -> Stop:
        return Stop([_client_value(c) for _, c in sorted(self.firewall.clients.items())])

    def _counters(self, message: Message) -> "Deferred[Stop]":
        if message.get("compact"):
            # The MACs as the traffic read sees them (both taken now).
            macs = {ip: MAC(c.mac).packed for ip, c in self.firewall.clients.items()}
            return self.firewall.traffic().addCallback(lambda traffic: Stop(
                _compact(pack_rows(traffic, macs))))
        return self.firewall.traffic().addCallback(lambda traffic: Stop({
            str(ip): {"bytes_up": t.bytes_up, "packets_up": t.packets_up,
                      "bytes_down": t.bytes_down, "packets_down": t.packets_down}
            for ip, t in traffic.items()}))

    # lifecycle

    def startService(self) -> None:
        Service.startService(self)
        d = self.firewall.start()
        d.addCallback(lambda _: _log.info("firewall ready", netsuite_event="firewall-ready"))
        d.addCallback(lambda _: self.readiness.fire())
        d.addCallback(lambda _: self._start_checking())
        d.addErrback(self._failed_to_start)

    def when_ready(self) -> Any:
        """Fires once the firewall's rules and sets are in place."""
        return self.readiness.when()

    def _failed_to_start(self, failure: Any) -> None:
        _log.failure("firewall could not start; stopping", failure)
        if getattr(self.clock, "running", False):
            self.clock.stop()

    def _start_checking(self) -> None:
        if self.check_interval > 0 and self.running:
            self._checking = LoopingCall(self.check)
            self._checking.clock = self.clock
            self._checking.start(self.check_interval, now=False).addErrback(
                lambda f: _log.failure("firewall check loop ended", f))

    def check(self) -> "Deferred[Any]":
        """
        One check of the kernel; failures are logged, never raised.
        """
        def report(repaired: Any) -> None:
            if repaired:
                self.registry.send("/firewall/repaired", {"what": list(repaired)})
        return self.firewall.check().addCallback(report).addErrback(
            lambda f: _log.failure("firewall check failed", f))

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        if self._checking is not None and self._checking.running:
            self._checking.stop()
        return self.firewall.stop()
