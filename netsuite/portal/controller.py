# -*- test-case-name: tests.portal.test_controller -*-
"""
The portal's logic and its mailboxes: authenticate a client through the
C{/portal/authenticate} chain, authorize it in the firewall (through the
firewall's mailboxes, in this process or another), keep its session, end
it on logout, time-out or an operator's command.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, List, Optional, Sequence

from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..registry.interfaces import NO_ANSWER, IRegistry, Stop, join_address
from ..registry.registry import declare_service
from ..registry.values import MAC, Message
from .rates import Rates, answer_rates, session_rates
from .sessions import Session, Sessions

__all__ = ["Portal", "MAILBOXES", "EVENTS", "LoginRefused", "SessionNotStored", "STOPPED"]

_log = Logger()

MAILBOXES = {
    "/portal/authenticate": "May {ip, mac, method} log in? Answer {ok, message?, up_kbit?, "
                            "down_kbit?} (the user's rates, passed to /firewall/authorize); "
                            "the stock click-through listener (last) accepts method 'click'.",
    "/portal/authorize": "Log {ip, mac?} in without asking (an operator); answers {authorized, ip, mac}.",
    "/portal/deauthorize": "Log {ip, reason?} out; answers {deauthorized: had it a session}.",
    "/portal/sessions": "The sessions {after?, limit?}: answers a list of {ip, mac, started, "
                        "last_active, bytes_seen, bytes_used, reason, username, "
                        "seconds_remaining, bytes_remaining}, in address order (a page: "
                        "at most limit, past the address after).",
}
EVENTS = {
    "/portal/request": "Event: the portal caught a request {ip, host, path, method}.",
    "/portal/login": "Event: a client logged in {ip, mac, reason, username?}.",
    "/portal/logout": "Event: a client logged out {ip, mac, reason} (logout, idle-timeout, "
                      "session-timeout, quota, moved, replaced, operator, admin, "
                      "lease-released, lease-expired, deauthorized, stopped).",
}

REFUSALS = {"/portal/authenticate": {"ok": False, "message": "Logins cannot be checked "
                                     "right now; please try again in a moment."}}
"""What a decision answers when a fail-closed hook on it fails or is late."""

SECRETS = {"/portal/authenticate": ("password", "code")}
"""The fields listeners (a login back end) get and watchers never see."""

STOPPED = "stopped"
"""The reason of the sessions a clean stop ends (C{[portal] keep_sessions = false})."""

MacFinder = Callable[[ipaddress.IPv4Address], "Deferred[Optional[MAC]]"]

MAC_RETRIES = (0.1, 0.3)
"""
Seconds to wait before each further look at the neighbour table for a
client whose MAC neither it nor a DHCP lease gave: a client talking to
the portal has an entry, but for a moment it can be missing from a read
(evicted, being resolved again: a read of a busy table is not atomic), and
a 503 for that is wrong. Only such lookups wait; 0.4 s at most.
"""


def _no_mac(ip: ipaddress.IPv4Address) -> "Deferred[Optional[MAC]]":
    return succeed(None)



class LoginRefused(Exception):
    """
    The firewall (or a hook in front of it) refused to let the client in.
    """


class SessionNotStored(Exception):
    """
    The client's new session could not be stored (a full disk): the login
    was undone, the client is not let in, and may try again later.
    """

class Portal:
    """
    @param registry: where the portal's mailboxes go, and how it reaches
        the firewall's.
    @param sessions: the sessions.
    @param host: the portal's own C{host[:port]}, for its URLs.
    @param firewall_process: the process running the firewall ("": this one).
    @param dhcp_process: the process whose C{/dhcp/leases} tells a MAC
        the neighbour table does not know ("": this one).
    @param find_mac: C{ip -> Deferred(MAC or None)} (the neighbour table).
    @param move_session: a login with the username of a session on another
        IP/MAC moves that session here (phones randomize their MAC).
    @param clock: times the further looks of L{mac_for} (the sessions' clock).
    @param mac_retries: seconds before each of them (L{MAC_RETRIES}).

    @ivar mac_late: MACs found only on a further look.
    @ivar mac_unknown: lookups that found no MAC at all (a 503 for a login).

    @ivar last_logout: C{ip -> (reason, when)} of each client's last logout
        (kept in the session store: the operator page shows it after a
        restart too).
    """

    def __init__(self, registry: IRegistry, sessions: Sessions, host: str,
                 firewall_process: str = "", dhcp_process: str = "",
                 find_mac: MacFinder = _no_mac, policy_text: str = "",
                 move_session: bool = True, clock: Any = None,
                 mac_retries: Sequence[float] = MAC_RETRIES) -> None:
        self.registry = registry
        self.clock = sessions.clock if clock is None else clock
        self.mac_retries = tuple(mac_retries)
        self.mac_late = 0
        self.mac_unknown = 0
        self.sessions = sessions
        self.move_session = move_session
        self.last_logout = sessions.last_logout
        self.host = host
        self.firewall_process = firewall_process
        self.dhcp_process = dhcp_process
        self.find_mac = find_mac
        self.policy_text = policy_text
        self._declare()

    def _declare(self) -> None:
        declare_service(self.registry, "portal", MAILBOXES, EVENTS, {
            "/portal/authenticate": self._click_through,
            "/portal/authorize": self._authorize,
            "/portal/deauthorize": self._deauthorize,
            "/portal/sessions": self._sessions}, refusals=REFUSALS, secrets=SECRETS)

    def _at(self, process: str, path: str) -> str:
        return join_address(process, path)

    # the stock listeners

    def _click_through(self, message: Message) -> Stop:
        if message.get("method") == "click":
            return Stop({"ok": True})
        return Stop({"ok": False, "message": "unknown login method"})

    def _authorize(self, message: Message) -> "Deferred[Stop]":
        ip = ipaddress.IPv4Address(message["ip"])

        @inlineCallbacks
        def run() -> Any:
            mac = message.get("mac")
            try:
                mac = MAC(mac) if mac is not None else (yield self.mac_for(ip))
                if mac is None:
                    raise ValueError(f"no MAC known for {ip}; give one")
                session = yield self.login(ip, mac, "admin")
            except Exception as e:
                return Stop({"authorized": False, "ip": ip, "error": str(e)})
            return Stop({"authorized": True, "ip": ip, "mac": session.mac})
        return run()

    def _deauthorize(self, message: Message) -> "Deferred[Stop]":
        ip = ipaddress.IPv4Address(message["ip"])
        return self.logout(ip, str(message.get("reason") or "admin")).addCallback(
            lambda session: Stop({"deauthorized": session is not None, "ip": ip}))

    def _sessions(self, message: Message) -> Stop:
        """
        The sessions in address order; a page of them with C{limit} (at
        most that many) and C{after} (those past that address), since a
        list of thousands outgrows a bus message.
        """
        sessions = self.sessions.all()
        after, limit = message.get("after"), message.get("limit")
        if after is not None:
            after = ipaddress.IPv4Address(str(after))
            sessions = [s for s in sessions if s.ip > after]
        if limit is not None:
            if type(limit) is not int or limit < 1:
                raise ValueError(f"limit must be an integer > 0, not {limit!r}")
            sessions = sessions[:limit]
        return Stop([self.session_value(s) for s in sessions])

    def session_value(self, s: Session) -> Message:
        return {"ip": s.ip, "mac": s.mac, "started": s.started,
                "last_active": s.last_active, "bytes_seen": s.bytes_seen,
                "bytes_used": s.bytes_used, "reason": s.reason, "username": s.username,
                "seconds_remaining": self.sessions.seconds_remaining(s.ip),
                "bytes_remaining": self.sessions.bytes_remaining(s.ip)}

    # what the web pages and the timers do

    def hears_requests(self) -> bool:
        """
        Whether anyone listens to or watches C{/portal/request}: an
        unauthorized client sends many requests, not worth an event each
        when nobody hears them.
        """
        return self.registry.heard("/portal/request")

    def request_seen(self, ip: Any, host: str, path: str, method: str) -> None:
        """
        Tell C{/portal/request} (an event: errors are only logged). Callers
        ask L{hears_requests} first, and spare themselves the message.
        """
        self.registry.send("/portal/request", {"ip": ip, "host": host, "path": path,
                                               "method": method}).addErrback(
            lambda f: _log.failure("/portal/request", f))

    @inlineCallbacks
    def mac_for(self, ip: ipaddress.IPv4Address) -> Any:
        """
        The MAC of C{ip}: the neighbour table's, else the DHCP lease's, else
        the neighbour table's on a further look after each of
        C{mac_retries} seconds, else None.
        """
        mac = yield self._neighbour_mac(ip)
        if mac is None:
            mac = yield self._lease_mac(ip)
        for n, delay in enumerate(self.mac_retries if mac is None else (), 2):
            yield deferLater(self.clock, delay, lambda: None)
            mac = yield self._neighbour_mac(ip)
            if mac is not None:
                self.mac_late += 1
                _log.info("the MAC of {ip} found on look {n} at the neighbour table "
                          "({late} so far)", ip=ip, n=n, late=self.mac_late)
                break
        if mac is None:
            self.mac_unknown += 1
        return mac

    @inlineCallbacks
    def _neighbour_mac(self, ip: ipaddress.IPv4Address) -> Any:
        try:
            mac = yield self.find_mac(ip)
        except Exception:
            _log.failure("neighbour table lookup for {ip}", ip=ip)
            return None
        return None if mac is None else MAC(mac)

    @inlineCallbacks
    def _lease_mac(self, ip: ipaddress.IPv4Address) -> Any:
        try:
            leases = yield self.registry.send(self._at(self.dhcp_process, "/dhcp/leases"),
                                              {"ip": ip})
        except Exception:
            return None
        for lease in leases if isinstance(leases, list) else []:
            if str(lease.get("ip")) == str(ip) and lease.get("mac") is not None:
                return MAC(lease["mac"])
        return None

    @inlineCallbacks
    def authenticate(self, ip: ipaddress.IPv4Address, mac: MAC, method: str,
                     extra: Optional[Message] = None) -> Any:
        """
        Run the C{/portal/authenticate} chain; fires with C{(ok, message,
        rates)}, the rates (C{up_kbit}, C{down_kbit}) the answer gave, if
        any (L{netsuite.portal.rates}); a bad one refuses the login.
        """
        answer = yield self.registry.send("/portal/authenticate",
                                          dict(extra or {}, ip=ip, mac=mac, method=method))
        if answer is NO_ANSWER or not isinstance(answer, dict):
            return False, "nobody accepted the login", {}
        ok = bool(answer.get("ok"))
        try:
            rates = answer_rates(answer) if ok else {}
        except ValueError as e:
            _log.warn("a login back end answered {ip} with a bad rate: {error}", ip=ip,
                      error=e)
            return False, "the login could not be completed (a bad rate limit)", {}
        return ok, str(answer.get("message") or ""), rates

    @inlineCallbacks
    def login(self, ip: ipaddress.IPv4Address, mac: MAC, reason: str,
              username: str = "", rates: Optional[Rates] = None) -> Any:
        """
        Authorize C{ip}/C{mac} in the firewall (with C{rates}, the back
        end's C{up_kbit}, C{down_kbit}: L{netsuite.portal.rates}), record
        the session, tell C{/portal/login}; fires with the L{Session}. With C{move_session},
        the sessions of C{username} on another IP or MAC end (reason
        C{moved}) and this one carries on their start time and byte count.

        A login again from the device of a session, as its user, keeps
        that session as it is (nothing ends, nothing is told, no time-out
        starts again); as another user (or from another MAC, not moved),
        the session there ends (reason C{replaced}) and a new one starts.
        """
        started, bytes_base = None, 0
        moved = []
        current = self.sessions.get(ip)
        if self.move_session and username:
            moved = [s for s in self.sessions.by_username(username)
                     if (s.ip, s.mac) != (ip, mac)]
        rates = dict(rates or {})
        answer = yield self.registry.send(
            self._at(self.firewall_process, "/firewall/authorize"),
            dict(rates, ip=ip, mac=mac))
        if not isinstance(answer, dict) or not answer.get("authorized"):
            reason = answer.get("reason") if isinstance(answer, dict) else None
            raise LoginRefused(str(reason or "the network did not accept this device"))
        if current is not None and (current.mac, current.username) == (mac, username):
            if session_rates(current.up_kbit, current.down_kbit) != rates:
                current = self.sessions.set_rates(ip, rates) or current
            return current
        if current is not None and current not in moved:
            # the firewall entry was just replaced: end the session only
            self.sessions.logout(ip, "replaced")
            self._ended(current, "replaced")
        for old in moved:
            started = old.started if started is None else min(started, old.started)
            bytes_base += old.bytes_used
            if old.ip != ip:
                yield self.logout(old.ip, "moved")
            else:  # same IP, new MAC: the firewall entry was just replaced
                self.sessions.logout(old.ip, "moved")
                self._ended(old, "moved")
        session = self.sessions.login(ip, mac, reason, username, started, bytes_base, rates)
        stored = yield self._stored()
        if not stored:
            yield self._undo_login(ip)
            raise SessionNotStored("the portal could not record the session")
        _log.info("portal login {ip} {mac} ({reason})", ip=ip, mac=mac, reason=reason,
                  netsuite_event="portal-login")
        event: Message = {"ip": ip, "mac": mac, "reason": reason}
        if username:
            event["username"] = username
        self._event("/portal/login", event)
        return session

    @inlineCallbacks
    def logout(self, ip: ipaddress.IPv4Address, reason: str) -> Any:
        """
        End C{ip}'s session (if any) and de-authorize it; fires with the
        ended session or None.
        """
        session = self.sessions.logout(ip, reason)
        try:
            yield self.registry.send(self._at(self.firewall_process, "/firewall/deauthorize"),
                                     {"ip": ip})
        except Exception:
            _log.failure("firewall de-authorization of {ip} failed", ip=ip)
        if session is not None:
            self._ended(session, reason)
            yield self._stored()
        return session

    @inlineCallbacks
    def _undo_login(self, ip: ipaddress.IPv4Address) -> Any:
        """
        Take back a login whose session could not be stored: no session,
        no firewall entry, no event (nobody was told of the login). A
        session the login replaced stays ended.
        """
        self.sessions.logout(ip)
        try:
            yield self.registry.send(self._at(self.firewall_process, "/firewall/deauthorize"),
                                     {"ip": ip})
        except Exception:
            _log.failure("firewall de-authorization of {ip} failed", ip=ip)

    def firewall_here(self) -> bool:
        """
        Whether the firewall the portal drives runs in this process.
        """
        here = join_address(self.firewall_process, "/firewall/deauthorize", self.registry.name)
        return here.startswith("/") and bool(self.registry.describe(here))

    def end_all(self, reason: str = STOPPED, deauthorize: bool = True) -> "Deferred[int]":
        """
        End every session (a clean stop that does not keep them), so that
        the next start authorizes nobody again; with C{deauthorize}, ask
        the firewall to let each client go too. The firewall messages all
        leave before this returns (a firewall in this process, stopping
        next, still gets them first); fires with the number ended once
        they are answered and the logouts stored.
        """
        ended = [s for s in (self.sessions.logout(s.ip, reason) for s in self.sessions.all())
                 if s is not None]
        asked = []
        for session in ended:
            self._ended(session, reason)
            if deauthorize:
                asked.append(self.registry.send(
                    self._at(self.firewall_process, "/firewall/deauthorize"),
                    {"ip": session.ip}).addErrback(
                    lambda f, ip=session.ip: _log.failure(
                        "firewall de-authorization of {ip} failed", f, ip=ip)))
        if ended:
            _log.info("portal stopping: {n} sessions end ({reason})", n=len(ended),
                      reason=reason, netsuite_event="portal-sessions-ended")
        return gatherResults(asked + [self._stored()]).addCallback(lambda _: len(ended))

    def _stored(self) -> "Deferred[bool]":
        """
        Wait until the session changes so far are stored: fires with
        False if that failed (logged by the sessions, and tried again).
        """
        return self.sessions.durable()

    def _ended(self, session: Session, reason: str) -> None:
        _log.info("portal logout {ip} ({reason})", ip=session.ip, reason=reason,
                  netsuite_event="portal-logout")
        self._event("/portal/logout", {"ip": session.ip, "mac": session.mac,
                                       "reason": reason})

    def _event(self, path: str, message: Message) -> None:
        self.registry.send(path, message).addErrback(lambda f: _log.failure(path, f))

    @inlineCallbacks
    def sample(self) -> Any:
        """
        Read the firewall's counters, note who was active, log out whoever
        timed out. Fires with the list of (ip, reason) logged out.
        """
        if self.sessions.idle_timeout or self.sessions.quota_bytes:
            counters = yield self.registry.send(
                self._at(self.firewall_process, "/firewall/counters"), {})
            if isinstance(counters, dict):
                self.sessions.sample(counters)
        ended: List[Any] = []
        for session, reason in self.sessions.expired():
            yield self.logout(session.ip, reason)
            ended.append((session.ip, reason))
        return ended

    @property
    def firewall_elsewhere(self) -> bool:
        """Whether the firewall is another process (which may restart alone)."""
        return join_address(self.firewall_process, "/", self.registry.name) != "/"

    @inlineCallbacks
    def restore(self) -> Any:
        """
        After a restart (of the portal, or of the firewall's process): make
        the firewall's clients the sessions. Authorize every stored session
        again, then deauthorize every client the firewall lets through
        without a session (a login cut short by a crash between the
        firewall's answer and the stored session). Fires with
        C{(restored, strays)}.
        """
        restored = 0
        for session in self.sessions.all():
            try:
                yield self.registry.send(
                    self._at(self.firewall_process, "/firewall/authorize"),
                    dict(session_rates(session.up_kbit, session.down_kbit),
                         ip=session.ip, mac=session.mac))
                restored += 1
            except Exception:
                _log.failure("could not restore the session of {ip}", ip=session.ip)
        strays = yield self._deauthorize_strays()
        if restored and (self.sessions.idle_timeout or self.sessions.quota_bytes):
            # A firewall that started afresh counts from 0: note it now, before
            # the client can pass its old count again.
            try:
                counters = yield self.registry.send(
                    self._at(self.firewall_process, "/firewall/counters"), {})
            except Exception:
                _log.failure("could not read the firewall's counters after restoring")
            else:
                if isinstance(counters, dict):
                    self.sessions.sample(counters)
        _log.info("portal restored {n} sessions in the firewall; {strays} clients without "
                  "a session deauthorized", n=restored, strays=strays,
                  netsuite_event="portal-restored")
        return restored, strays

    @inlineCallbacks
    def _deauthorize_strays(self) -> Any:
        """
        Deauthorize the firewall's clients that have no session; fires
        with how many.
        """
        try:
            clients = yield self.registry.send(
                self._at(self.firewall_process, "/firewall/clients"), {})
        except Exception:
            _log.failure("could not list the firewall's clients")
            return 0
        strays = 0
        for client in clients if isinstance(clients, list) else []:
            try:
                ip = ipaddress.IPv4Address(str(client["ip"]))
            except (KeyError, TypeError, ValueError):
                continue
            if self.sessions.get(ip) is not None:
                continue
            _log.info("portal: {ip} is let through without a session; deauthorizing it",
                      ip=ip)
            try:
                yield self.registry.send(
                    self._at(self.firewall_process, "/firewall/deauthorize"), {"ip": ip})
                strays += 1
            except Exception:
                _log.failure("could not deauthorize {ip}", ip=ip)
        return strays
