# -*- test-case-name: tests.mailproxy.test_service -*-
"""
The mail proxy's service: one proxy instance (L{netsuite.proxy.proxy.Proxy})
on its listeners, its modules chosen by the original destination's port,
and its mailboxes: logins announced on C{/mailproxy/login}, each
connection offered to C{/mailproxy/connect} before it is relayed (when
that has listeners), the live connections at C{/mailproxy/connections}.

The TLS heuristic (C{tls_seconds}, off when None): a C{tls-session} event
of the C{tls} module starts a timer on the reactor's clock; when it fires
and the connection is still open and received bytes from both sides since
the handshake, the service publishes the login L{tls.inferred_login}
gives (C{evidence: "inferred"}). The connection's end cancels the timer.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred, succeed
from twisted.logger import Logger

from ..proxy.filters import CLIENT, SERVER, Connection, Event, MakeFilters
from ..proxy.intercept import listen
from ..proxy.proxy import Proxy
from ..proxy.track import CLOSING, Tracked
from ..registry.interfaces import NO_ANSWER, Stop
from ..registry.registry import declare_service
from ..services import Readiness
from .tls import inferred_login

__all__ = ["MAILBOXES", "EVENTS", "REFUSALS", "MailProxy", "MailProxyService"]

_log = Logger()

MAILBOXES = {
    "/mailproxy/connect": "A client's connection was intercepted, before it is relayed: "
                          "{ip, port, server, server_port, modules: [names]}. Answer "
                          "{refuse: reason} to close it, or continue: it is relayed. Sent "
                          "only when it has listeners or watchers.",
    "/mailproxy/connections": "The live connections: a list of {id, client, server, modules, "
                              "state, from_client, from_server, age, idle}.",
    "/mailproxy/counters": "The proxy's counters: {name: count} (connections, logins, "
                           "cut_through, connect_failed, idle_timeout, cut_held...).",
}
EVENTS = {
    "/mailproxy/login": "Event: a login seen in a proxied session {ip, mac, server, port, "
                        "protocol, user, outcome, evidence}: outcome success, failure or "
                        "in-use (POP3 [IN-USE]: right credentials, mailbox locked); evidence "
                        "seen (the exchange was read) or inferred (TLS heuristic). No "
                        "password, ever.",
}
REFUSALS = {"/mailproxy/connect": {"refuse": "hook-failed"}}
"""What C{/mailproxy/connect} answers when a fail-closed hook on it fails or
is late: the connection is closed."""

Modules = Sequence[Tuple[str, MakeFilters]]


class MailProxy:
    """
    The proxy instance and its mailboxes.

    @param by_port: the modules of connections to each destination port.
    @param default: the modules of connections to any other port.
    @param mac_for: a client's MAC from its IP (a Deferred of a MAC or
        None): the neighbour table, read in a thread.
    @param make_proxy: builds the L{Proxy} from its C{select}, C{on_event},
        C{on_open}, C{on_close} and C{admit} (the service's tap gives the
        destination, the outbound connector and the settings).
    @param clock: the reactor's clock (the TLS heuristic's timers).
    @param tls_seconds: the TLS heuristic: seconds after a TLS handshake
        before a login is inferred; None: off (the default).
    """

    def __init__(self, registry: Any, make_proxy: Callable[..., Proxy],
                 by_port: Mapping[int, Modules], default: Modules,
                 mac_for: Callable[[str], Any] = lambda ip: succeed(None),
                 clock: Any = None, tls_seconds: Optional[float] = None) -> None:
        self.registry = registry
        self.clock = clock
        self.tls_seconds = tls_seconds
        self._tls_timers: Dict[int, Any] = {}
        self.syn_counters: Optional[Mapping[str, int]] = None
        """The nfqueue mode's counters (L{netsuite.proxy.nfqueue.SynTable})."""
        self.by_port = {port: list(modules) for port, modules in by_port.items()}
        self.default = list(default)
        self.mac_for = mac_for
        self.counters: Dict[str, int] = {"connections": 0, "logins": 0, "login_failures": 0}
        self.proxy = make_proxy(select=self.select, on_event=self.event, on_open=self.opened,
                                on_close=self.closed, admit=self.admit)
        if tls_seconds is not None and clock is None:
            raise ValueError("the TLS heuristic needs a clock")
        declare_service(registry, "mailproxy", MAILBOXES, EVENTS, {
            "/mailproxy/connections": lambda message: Stop(self.proxy.connections()),
            "/mailproxy/counters": lambda message: Stop(self.all_counters()),
        }, refusals=REFUSALS)

    def all_counters(self) -> Dict[str, int]:
        counters = dict(self.counters)
        counters.update(self.proxy.counters)
        if self.syn_counters is not None:
            counters.update(self.syn_counters)
        counters["live"] = len(self.proxy.table)
        return counters

    def select(self, conn: Connection) -> Modules:
        return self.by_port.get(conn.server[1], self.default)

    def opened(self, entry: Tracked) -> None:
        self.counters["connections"] += 1

    def closed(self, entry: Tracked) -> None:
        timer = self._tls_timers.pop(entry.id, None)
        if timer is not None and timer.active():
            timer.cancel()
            self.counters["tls_abandoned"] = self.counters.get("tls_abandoned", 0) + 1

    def _tls_session(self, entry: Tracked, event: Event) -> None:
        if self.tls_seconds is None or entry.id in self._tls_timers:
            return
        since = dict(entry.received)
        self._tls_timers[entry.id] = self.clock.callLater(
            self.tls_seconds, self._tls_decide, entry, event.values, since)

    def _tls_decide(self, entry: Tracked, values: Mapping[str, Any],
                    since: Mapping[str, int]) -> None:
        del self._tls_timers[entry.id]
        busy = entry.state != CLOSING and all(entry.received[d] > since[d]
                                              for d in (CLIENT, SERVER))
        if not busy:
            self.counters["tls_idle"] = self.counters.get("tls_idle", 0) + 1
            return
        self.event(entry, inferred_login(values))

    def admit(self, entry: Tracked) -> Any:
        if not self.registry.heard("/mailproxy/connect"):
            return True
        d = self.registry.send("/mailproxy/connect", {
            "ip": entry.client[0], "port": entry.client[1], "server": entry.server[0],
            "server_port": entry.server[1], "modules": list(entry.modules)})
        return d.addCallback(self._verdict, entry)

    def _verdict(self, answer: Any, entry: Tracked) -> bool:
        if answer is NO_ANSWER or not isinstance(answer, dict) or "refuse" not in answer:
            return True
        _log.info("mailproxy: {ip} to {server}:{port} refused by a hook: {reason}",
                  ip=entry.client[0], server=entry.server[0], port=entry.server[1],
                  reason=answer["refuse"])
        return False

    def event(self, entry: Tracked, event: Event) -> None:
        if event.name == "tls-session":
            self._tls_session(entry, event)
        if event.name != "login":
            _log.debug("mailproxy: {event} on {ip} to {server}", event=event.name,
                       ip=entry.client[0], server=entry.server[0])
            return
        values = event.values
        outcome = str(values.get("outcome", ""))
        self.counters["logins" if outcome == "success" else "login_failures"] += 1
        message = {
            "ip": entry.client[0], "server": entry.server[0], "port": entry.server[1],
            "protocol": str(values.get("protocol", "")), "user": str(values.get("user", "")),
            "outcome": outcome, "evidence": str(values.get("evidence", "seen")),
        }
        d = maybeDeferred(self.mac_for, entry.client[0])
        d.addErrback(lambda failure: None)

        def send(mac: Any) -> Any:
            message["mac"] = str(mac) if mac is not None else ""
            return self.registry.send("/mailproxy/login", message)

        d.addCallback(send)
        d.addErrback(lambda failure: _log.failure("mailproxy: /mailproxy/login failed",
                                                  failure))


def ipv4_mac(neighbours: Callable[[str], Any], runner: Any) -> Callable[[str], Any]:
    """A client's MAC from the neighbour table, in the runner; IPv6 clients: None."""

    def mac_for(ip: str) -> Any:
        if ipaddress.ip_address(ip).version != 4:
            return succeed(None)
        return runner.run(neighbours, ip)

    return mac_for


class MailProxyService(Service):
    """Binds the listeners (before twistd drops privileges), and serves."""

    def __init__(self, mailproxy: MailProxy, reactor: Any, listeners: List[Tuple[str, int]],
                 transparent: bool, runner: Optional[Any] = None,
                 reader: Optional[Any] = None,
                 can_give_verdicts: Optional[Callable[[], bool]] = None) -> None:
        self.mailproxy = mailproxy
        self.reader = reader
        if can_give_verdicts is None:
            from ..proxy.nfqueue import can_give_verdicts
        self.can_give_verdicts = can_give_verdicts
        self.reactor = reactor
        self.listeners = listeners
        self.transparent = transparent
        self.runner = runner
        self.ports: List[Any] = []
        self.readiness = Readiness()

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        for host, port in self.listeners:
            try:
                self.ports.append(listen(self.reactor, host, port, self.mailproxy.proxy,
                                         self.transparent))
            except OSError as e:
                _log.critical("mailproxy cannot listen on {host} port {port}: {error}",
                              host=host, port=port, error=e.strerror or str(e))
                raise SystemExit(1) from None
        if self.reader is not None:
            # the queue binds as root (CAP_NET_ADMIN); bound, the process still
            # needs CAP_NET_ADMIN for each verdict (docs/mailproxy.md)
            try:
                self.reader.start()
            except OSError as e:
                _log.critical("mailproxy cannot read NFQUEUE {num}: {error}",
                              num=self.reader.num, error=e)
                raise SystemExit(1) from None

    def startService(self) -> None:
        Service.startService(self)
        if self.reader is not None and self.reader.running and not self.can_give_verdicts():
            # after twistd --uid: the verdicts would be refused and every SYN
            # would wait in the queue; unbound, the queue fails as configured
            # (nfqueue_bypass: the SYNs pass and the proxy closes their
            # connections; without: they are dropped)
            _log.critical("mailproxy: nfqueue mode needs CAP_NET_ADMIN once started (its "
                          "verdicts); the queue is not read")
            self.reader.stop()
        _log.info("mailproxy ready on {listeners}", netsuite_event="mailproxy-ready",
                  listeners=", ".join(f"{h}:{p}" for h, p in self.listeners))
        self.readiness.fire()

    def when_ready(self) -> Any:
        return self.readiness.when()

    def stopService(self) -> Any:
        Service.stopService(self)
        ports, self.ports = self.ports, []
        if self.reader is not None:
            self.reader.stop()
        if self.runner is not None:
            self.runner.stop()
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])
