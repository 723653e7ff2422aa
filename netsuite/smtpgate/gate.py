# -*- test-case-name: tests.smtpgate.test_gate -*-
"""
The SMTP gate: outbound SMTP opens for a client only after a real mail
login, for a while (POP-before-SMTP).

It watches the mail proxy's C{/mailproxy/login} events. A success (or
C{in-use}: right credentials, locked mailbox) goes through the decision
chain C{/smtpgate/decide}, whose stock rule opens towards the server that
authenticated the user (anyone can run a server that accepts every
password, so "the server said OK" is worth that server only), towards that
provider's SMTP hosts from the provider table, or, with C{scope = "any"},
to any destination. The gate then asks the firewall to open the window
(C{/firewall/smtp/open} with a server, or without one) for C{window}
seconds; each further success renews it. The window lives in a
kernel-timed set: it ends by itself, even with the gate down. A portal
logout (C{/portal/logout}), the firewall's de-authorization of the client
(C{/firewall/deauthorized}: an operator's, say) or a C{/smtpgate/close}
closes the client's windows at once (a logout and its de-authorization
close once, not twice). Failures open nothing; they are counted.

Fail closed: with the gate (or the proxy) down nothing opens; what is open
expires in the kernel.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from ..registry.interfaces import (NO_ANSWER, InvalidAddress, Stop, UnknownMailbox,
                                   join_address)
from ..registry.registry import declare_service
from ..registry.values import Message

__all__ = ["SmtpGate", "MAILBOXES", "EVENTS", "REFUSALS", "OUTCOMES", "MAX_SERVERS"]

_log = Logger()

OUTCOMES = ("success", "failure", "in-use")
"""A login's outcomes, as the mail proxy reports them."""

OPENING = frozenset({"success", "in-use"})
"""The outcomes that prove the credentials (in-use: right password, locked mailbox)."""

MAX_SERVERS = 16
"""The most servers one window may open towards (a provider's hosts, a rule's answer)."""

MAILBOXES = {
    "/smtpgate/decide": "Whether a mail login opens SMTP for its client {ip, mac, server, port, "
                        "protocol, user, outcome, evidence}: answer {open: true, servers: "
                        "[IPv4...] or \"any\", seconds?, reason?} or {open: false, reason?}.",
    "/smtpgate/close": "Close {ip}'s SMTP windows now {ip, reason?}; answers {closed: true, ip}.",
    "/smtpgate/windows": "The open SMTP windows (the firewall's): answers {ip-string: {\"any\" "
                         "or server-string: seconds left}}.",
    "/smtpgate/counters": "What the gate saw and did: answers {logins, successes, failures, "
                          "malformed, opened, refused, closed, errors, dropped}.",
}
EVENTS = {
    "/smtpgate/opened": "Event: SMTP opened (or renewed) for a client {ip, servers: [IPv4...] "
                        "or \"any\", seconds, reason}.",
    "/smtpgate/closed": "Event: a client's SMTP windows were closed {ip, reason}.",
}
REFUSALS = {"/smtpgate/decide": {"open": False, "reason": "a required check failed"}}
"""What the decision answers when a fail-closed hook on it fails or is late."""

Servers = Union[str, List[ipaddress.IPv4Address]]
"""A window's destinations: "any", or a list of servers."""


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    if isinstance(value, ipaddress.IPv4Address):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not an IPv4 address: {value!r}")
    return ipaddress.IPv4Address(value)


def servers_of(value: Any) -> Servers:
    """
    A decision's C{servers}, checked: "any", or 1 to L{MAX_SERVERS} IPv4
    addresses (duplicates dropped, order kept).
    """
    if value == "any":
        return "any"
    if not isinstance(value, list) or not 0 < len(value) <= MAX_SERVERS:
        raise ValueError(f"servers must be \"any\" or 1 to {MAX_SERVERS} addresses, "
                         f"not {value!r}")
    found: List[ipaddress.IPv4Address] = []
    for item in value:
        ip = _ipv4(item)
        if ip not in found:
            found.append(ip)
    return found


def _answered(answer: Any, key: str, path: str) -> None:
    """
    Raise unless the firewall answered (a failing listener is skipped:
    the send then fires with no answer).
    """
    if not isinstance(answer, dict) or key not in answer:
        raise ValueError(f"{path} did not answer ({answer!r}): the firewall refused or is "
                         "not there")


class SmtpGate:
    """
    @param registry: where its mailboxes go, and the way to the firewall,
        the mail proxy and the portal (in this process or others).
    @param window: seconds a window lasts (renewed by each success).
    @param scope: C{"server"}: towards the server that authenticated the
        user (or its provider's hosts); C{"any"}: any destination.
    @param providers: server address -> the provider's SMTP hosts.
    @param max_pending: decisions under way at once; more logins are
        dropped and counted.
    """

    def __init__(self, registry: Any, window: int = 900, scope: str = "server",
                 providers: Optional[Mapping[ipaddress.IPv4Address,
                                             Sequence[ipaddress.IPv4Address]]] = None,
                 firewall_process: str = "", mailproxy_process: str = "",
                 portal_process: str = "", max_pending: int = 1024) -> None:
        if scope not in ("server", "any"):
            raise ValueError(f"scope is \"server\" or \"any\", not {scope!r}")
        self.registry = registry
        self.window = window
        self.scope = scope
        self.providers = {ip: list(hosts)[:MAX_SERVERS] for ip, hosts in (providers or {}).items()}
        self.firewall_process = firewall_process
        self.mailproxy_process = mailproxy_process
        self.portal_process = portal_process
        self.max_pending = max_pending
        self.counters = dict.fromkeys(("logins", "successes", "failures", "malformed",
                                       "opened", "refused", "closed", "errors", "dropped"), 0)
        # ip -> decisions under way; ip -> closes seen meanwhile (an open
        # decided before a close must not land after it)
        self._pending: Dict[ipaddress.IPv4Address, int] = {}
        self._closes: Dict[ipaddress.IPv4Address, int] = {}
        # ip -> whether the gate's last act for it was an open (True) or a
        # close (False): a logout and the de-authorization it causes close
        # once; an address not here (since a restart) is closed anyway.
        self._last: Dict[ipaddress.IPv4Address, bool] = {}
        self._watchers: List[Any] = []
        declare_service(registry, "smtpgate", MAILBOXES, EVENTS, {
            "/smtpgate/decide": self._decide,
            "/smtpgate/close": self._close,
            "/smtpgate/windows": self._windows,
            "/smtpgate/counters": lambda message: Stop(dict(self.counters))}, refusals=REFUSALS)

    def _at(self, process: str, path: str) -> str:
        return join_address(process, path, self.registry.name)

    # watching the proxy and the portal

    def start(self) -> None:
        self._watch(self._at(self.mailproxy_process, "/mailproxy/login"), self.login,
                    "mailproxy_process", "no SMTP window will open")
        self._watch(self._at(self.portal_process, "/portal/logout"), self._logout,
                    "portal_process", "windows end only when they expire or on /smtpgate/close")
        self._watch(self._at(self.firewall_process, "/firewall/deauthorized"),
                    self._deauthorized, "firewall_process",
                    "an operator's de-authorization leaves the client's windows to expire")

    def _watch(self, address: str, fn: Any, key: str, consequence: str) -> None:
        if address.startswith("/") and not self.registry.describe(address):
            _log.warn("smtpgate: no {address} in this process (set [smtpgate] {key}): "
                      "{consequence}", address=address, key=key, consequence=consequence)
            return
        try:
            self._watchers.append(self.registry.watch(address, fn))
        except (UnknownMailbox, InvalidAddress) as e:
            _log.warn("smtpgate: cannot watch {address}: {error}", address=address, error=e)

    def stop(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.remove()

    # a login

    def login(self, message: Any) -> "Deferred[Optional[Servers]]":
        """
        One C{/mailproxy/login} event. Fires with what was opened ("any",
        the servers) or None; never fails.
        """
        self.counters["logins"] += 1
        try:
            ip = _ipv4(message["ip"])
            _ipv4(message["server"])
            outcome = message["outcome"]
            if outcome not in OUTCOMES:
                raise ValueError(f"outcome {outcome!r}")
        except (TypeError, KeyError, ValueError) as e:
            self.counters["malformed"] += 1
            _log.warn("smtpgate: a malformed login event was dropped ({error})", error=e)
            return succeed(None)
        if outcome not in OPENING:
            self.counters["failures"] += 1
            return succeed(None)
        self.counters["successes"] += 1
        if sum(self._pending.values()) >= self.max_pending:
            self.counters["dropped"] += 1
            _log.warn("smtpgate: {n} decisions under way; a login of {ip} was dropped",
                      n=self.max_pending, ip=ip)
            return succeed(None)
        self._pending[ip] = self._pending.get(ip, 0) + 1
        closes = self._closes.get(ip, 0)
        d = self.registry.send("/smtpgate/decide", dict(message))
        d.addCallback(self._decided, ip, closes)
        d.addErrback(self._failed, "deciding about", ip)

        def settled(result: Any) -> Any:
            self._pending[ip] -= 1
            if not self._pending[ip]:
                del self._pending[ip]
                self._closes.pop(ip, None)
            return result
        return d.addBoth(settled)

    def _decided(self, answer: Any, ip: ipaddress.IPv4Address,
                 closes: int) -> "Deferred[Optional[Servers]]":
        if answer is NO_ANSWER or not isinstance(answer, dict) or answer.get("open") is not True:
            self.counters["refused"] += 1
            reason = answer.get("reason") if isinstance(answer, dict) else None
            _log.info("smtpgate: SMTP stays closed for {ip} ({reason})", ip=ip,
                      reason=reason or "no rule opened it")
            return succeed(None)
        servers = servers_of(answer.get("servers"))
        seconds = answer.get("seconds", self.window)
        if type(seconds) is not int or not 0 < seconds <= 2_000_000:
            raise ValueError(f"a window of {seconds!r} seconds")
        reason = answer.get("reason") or "login"
        if self._closes.get(ip, 0) != closes:
            self.counters["refused"] += 1
            return succeed(None)  # closed while the decision was made
        opens = self._at(self.firewall_process, "/firewall/smtp/open")
        if servers == "any":
            sends = [self.registry.send(opens, {"ip": ip, "seconds": seconds})]
        else:
            sends = [self.registry.send(opens, {"ip": ip, "seconds": seconds, "server": server})
                     for server in servers]

        def opened(answers: List[Any]) -> Servers:
            for answer in answers:
                _answered(answer, "open", "/firewall/smtp/open")
            self.counters["opened"] += 1
            self._remember(ip, True)
            self.registry.send("/smtpgate/opened", {"ip": ip, "servers": servers,
                                                    "seconds": seconds, "reason": reason})
            return servers
        return gatherResults(sends, consumeErrors=True).addCallback(opened)

    def _failed(self, failure: Any, doing: str, ip: Any) -> None:
        self.counters["errors"] += 1
        _log.failure("smtpgate: failed {doing} {ip}'s SMTP", failure, doing=doing, ip=ip)
        return None

    def _decide(self, message: Message) -> Stop:
        """
        The stock rule: towards the server that authenticated the user, or
        its provider's hosts; with scope "any", any destination.
        """
        if self.scope == "any":
            return Stop({"open": True, "servers": "any", "seconds": self.window,
                         "reason": "scope-any"}, reason="any")
        server = _ipv4(message["server"])
        hosts = self.providers.get(server)
        if hosts:
            return Stop({"open": True, "servers": list(hosts), "seconds": self.window,
                         "reason": "provider"}, reason="provider")
        return Stop({"open": True, "servers": [server], "seconds": self.window,
                     "reason": "server"}, reason="server")

    # closing

    def close(self, ip: Any, reason: str) -> "Deferred[Any]":
        """
        Close all of C{ip}'s windows now, and say so on C{/smtpgate/closed}.
        """
        ip = _ipv4(ip)
        if ip in self._pending:
            self._closes[ip] = self._closes.get(ip, 0) + 1
        self._remember(ip, False)

        def closed(answer: Any) -> Dict[str, Any]:
            _answered(answer, "open", "/firewall/smtp/close")
            self.counters["closed"] += 1
            self.registry.send("/smtpgate/closed", {"ip": ip, "reason": reason})
            return {"closed": True, "ip": ip}
        return self.registry.send(self._at(self.firewall_process, "/firewall/smtp/close"),
                                  {"ip": ip}).addCallback(closed)

    def _remember(self, ip: ipaddress.IPv4Address, opened: bool) -> None:
        if ip not in self._last and len(self._last) >= 65536:
            self._last = {k: v for k, v in self._last.items() if v}  # forget the closed
        self._last[ip] = opened

    def _logout(self, message: Any) -> None:
        self._close_once(message, "portal-logout")

    def _deauthorized(self, message: Any) -> None:
        self._close_once(message, "deauthorized")

    def _close_once(self, message: Any, reason: str) -> None:
        """Close, unless the gate's last act for the client was a close."""
        try:
            ip = _ipv4(message["ip"])
        except (TypeError, KeyError, ValueError):
            return
        if self._last.get(ip) is False and ip not in self._pending:
            return
        self.close(ip, reason).addErrback(self._failed, "closing", ip)

    def _close(self, message: Message) -> "Deferred[Stop]":
        reason = message.get("reason") or "requested"
        if not isinstance(reason, str) or len(reason) > 200:
            raise ValueError("reason must be a string of at most 200 characters")
        return self.close(message.get("ip"), reason).addCallback(Stop)

    def _windows(self, message: Message) -> "Deferred[Stop]":
        def answered(windows: Any) -> Stop:
            if not isinstance(windows, dict):
                raise ValueError("/firewall/smtp/windows did not answer")
            return Stop(windows)
        return self.registry.send(self._at(self.firewall_process, "/firewall/smtp/windows"),
                                  {}).addCallback(answered)
