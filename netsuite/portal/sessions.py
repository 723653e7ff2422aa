# -*- test-case-name: tests.portal.test_sessions -*-
"""
Portal sessions: who is logged in, since when, last seen active; idle and
session time-outs and the data quota. They live in memory (the reactor's);
every change is also queued for SQLite, committed through a runner (never
on the reactor thread), so that the sessions survive a portal restart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any, Dict, List, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred

from ..registry.values import MAC
from ..clock import clock_watch
from ..runner import GroupCommit, IRunner

__all__ = ["Session", "SessionStore", "Sessions", "IDLE", "TIMEOUT", "QUOTA"]

IDLE = "idle-timeout"
TIMEOUT = "session-timeout"
QUOTA = "quota"


def _ip(ip: Any) -> IPv4Address:
    """C{ip} as an address, not parsed again when it is one already."""
    return ip if type(ip) is IPv4Address else IPv4Address(ip)


@dataclass(frozen=True)
class Session:
    """
    One logged-in client. C{reason} says how it logged in (C{click}, C{admin}...);
    C{username} who (C{""}: nobody in particular); C{bytes_base} the bytes
    used before the session moved to this IP/MAC (the firewall's counters
    start again at 0); C{up_kbit} and C{down_kbit} the rates the login's
    back end gave (None: none, the firewall chooses), asked of the
    firewall again when the session is restored.
    """
    ip: IPv4Address
    mac: MAC
    started: float
    last_active: float
    bytes_seen: int = 0
    reason: str = "click"
    username: str = ""
    bytes_base: int = 0
    up_kbit: Optional[int] = None
    down_kbit: Optional[int] = None

    @property
    def bytes_used(self) -> int:
        return self.bytes_base + self.bytes_seen


Writes = Dict[Tuple[str, IPv4Address], Any]
"""Queued changes: C{("session", ip) -> Session or None} (None: deleted)
and C{("logout", ip) -> (reason, when)}; a later change to the same row
replaces an earlier one."""


class SessionStore:
    """
    Sessions in SQLite (a file, or C{":memory:"}); one row per client IP.
    Reads happen once, when the portal starts; changes are queued
    (L{put}, L{delete}, L{put_logout}) and written by L{commit} in the
    runner's thread, one transaction for everything queued.
    """

    def __init__(self, path: str) -> None:
        # One thread at a time uses the connection: the builder's, then the
        # runner's one thread.
        self.db = sqlite3.connect(path, check_same_thread=False)
        # WAL with synchronous=NORMAL: a commit survives the portal's crash
        # (not a power cut) and no longer waits for an fsync per login.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sessions (ip TEXT PRIMARY KEY, mac TEXT NOT NULL, "
            "started REAL NOT NULL, last_active REAL NOT NULL, bytes_seen INTEGER NOT NULL, "
            "reason TEXT NOT NULL)")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(sessions)")}
        if "username" not in columns:  # a file from before usernames
            self.db.execute("ALTER TABLE sessions ADD COLUMN username TEXT NOT NULL DEFAULT ''")
        if "bytes_base" not in columns:
            self.db.execute("ALTER TABLE sessions ADD COLUMN bytes_base INTEGER NOT NULL "
                            "DEFAULT 0")
        for name in ("up_kbit", "down_kbit"):  # NULL: no rate of the session's own
            if name not in columns:
                self.db.execute(f"ALTER TABLE sessions ADD COLUMN {name} INTEGER")
        self.db.execute("CREATE TABLE IF NOT EXISTS logouts (ip TEXT PRIMARY KEY, "
                        "reason TEXT NOT NULL, at REAL NOT NULL)")
        self.db.commit()
        self._writes: Writes = {}

    # reading, at start

    def load_logouts(self) -> Dict[IPv4Address, Tuple[str, float]]:
        """
        The last logout of each client IP: C{ip -> (reason, when)}.
        """
        return {IPv4Address(ip): (reason, at) for ip, reason, at in
                self.db.execute("SELECT ip, reason, at FROM logouts")}

    def load(self) -> List[Session]:
        rows = self.db.execute("SELECT ip, mac, started, last_active, bytes_seen, reason, "
                               "username, bytes_base, up_kbit, down_kbit FROM sessions "
                               "ORDER BY ip")
        return [Session(IPv4Address(ip), MAC(mac), *rest) for ip, mac, *rest in rows]

    # queued changes

    def put(self, *sessions: Session) -> None:
        for session in sessions:
            self._writes[("session", session.ip)] = session

    def delete(self, ip: IPv4Address) -> None:
        self._writes[("session", ip)] = None

    def put_logout(self, ip: IPv4Address, reason: str, at: float) -> None:
        self._writes[("logout", ip)] = (reason, at)

    def take_writes(self) -> Writes:
        """
        The changes not yet handed to L{commit}, now the caller's.
        """
        writes, self._writes = self._writes, {}
        return writes

    def give_back(self, writes: Writes) -> None:
        """
        Queue C{writes} again (their commit failed), under the changes
        queued since: the newer change of a row wins.
        """
        for key, value in writes.items():
            self._writes.setdefault(key, value)

    def commit(self, writes: Writes, durable: bool = True) -> None:
        """
        Blocking: write C{writes} in one transaction (WAL, synchronous=NORMAL
        whatever C{durable} says: a portal crash loses nothing committed).
        """
        puts, deletes, logouts = [], [], []
        for (table, ip), value in writes.items():
            if table == "logout":
                logouts.append((str(ip), *value))
            elif value is None:
                deletes.append((str(ip),))
            else:
                puts.append((str(value.ip), str(value.mac), value.started, value.last_active,
                             value.bytes_seen, value.reason, value.username,
                             value.bytes_base, value.up_kbit, value.down_kbit))
        with self.db:
            if deletes:
                self.db.executemany("DELETE FROM sessions WHERE ip = ?", deletes)
            if puts:
                self.db.executemany(
                    "INSERT OR REPLACE INTO sessions (ip, mac, started, last_active, "
                    "bytes_seen, reason, username, bytes_base, up_kbit, down_kbit) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    puts)
            if logouts:
                self.db.executemany(
                    "INSERT OR REPLACE INTO logouts (ip, reason, at) VALUES (?, ?, ?)", logouts)

    def close(self) -> None:
        self.db.close()


class Sessions:
    """
    The sessions and their time-outs.

    @param store: where they are kept.
    @param clock: gives the time (C{seconds()}).
    @param runner: commits the store's changes (one thread, in order).
    @param idle_timeout: seconds without traffic before a logout (0: never).
    @param session_timeout: seconds after login before a logout (0: never).
    @param quota_bytes: bytes (up and down) a session may use (0: no limit).

    @ivar last_logout: C{ip -> (reason, when)} of each client's last logout
        (kept in the store: the operator page shows it after a restart too).
    """

    def __init__(self, store: SessionStore, clock: Any, runner: IRunner,
                 idle_timeout: float = 0, session_timeout: float = 0,
                 quota_bytes: int = 0) -> None:
        self.store = store
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.session_timeout = session_timeout
        self.quota_bytes = quota_bytes
        self.sessions: Dict[IPv4Address, Session] = {s.ip: s for s in store.load()}
        self.last_logout = store.load_logouts()
        self._commits = GroupCommit(store.take_writes, store.commit, runner, "session changes",
                                    give_back=store.give_back, clock=clock)
        clock_watch(clock).observe(self.shift)

    def shift(self, seconds: float) -> None:
        """
        The wall clock stepped by C{seconds} (L{netsuite.clock}): move each
        session's start and last activity with it, so that its time-outs
        keep the time they had left; the moved sessions are stored.
        Logout times stay as they were recorded.
        """
        for ip, session in list(self.sessions.items()):
            moved = replace(session, started=session.started + seconds,
                            last_active=session.last_active + seconds)
            self.sessions[ip] = moved
            self.store.put(moved)
        self._commits.flush()

    def durable(self) -> "Deferred[bool]":
        """
        Fires with True once every change made so far is stored (False if
        storing failed: logged).
        """
        return self._commits.durable()

    def get(self, ip: Any) -> Optional[Session]:
        return self.sessions.get(_ip(ip))

    def all(self) -> List[Session]:
        return [self.sessions[ip] for ip in sorted(self.sessions)]

    def by_username(self, username: str) -> List[Session]:
        """
        The sessions of C{username} (none for C{""}).
        """
        return [s for s in self.all() if username and s.username == username]

    def login(self, ip: Any, mac: Any, reason: str = "click", username: str = "",
              started: Optional[float] = None, bytes_base: int = 0,
              rates: Optional[Mapping[str, int]] = None) -> Session:
        """
        Start (or restart) the session of C{ip}; C{started} and
        C{bytes_base} carry over what a moved session had; C{rates} are the
        back end's (L{netsuite.portal.rates}). Stored on the next commit
        (L{durable}).
        """
        now = self.clock.seconds()
        rates = rates or {}
        session = Session(_ip(ip), MAC(mac), now if started is None else started, now,
                          0, reason, username, bytes_base, rates.get("up_kbit"),
                          rates.get("down_kbit"))
        self.sessions[session.ip] = session
        self.store.put(session)
        return session

    def set_rates(self, ip: Any, rates: Mapping[str, int]) -> Optional[Session]:
        """
        Give the session of C{ip} (if any) these rates (a login again, after
        the back end's rates changed); stored on the next commit.
        """
        session = self.sessions.get(_ip(ip))
        if session is None:
            return None
        session = replace(session, up_kbit=rates.get("up_kbit"),
                          down_kbit=rates.get("down_kbit"))
        self.sessions[session.ip] = session
        self.store.put(session)
        return session

    def logout(self, ip: Any, reason: Optional[str] = None) -> Optional[Session]:
        """
        End the session of C{ip}; the ended session, or None if it had none.
        With C{reason}, it is also the client's last logout.
        """
        ip = _ip(ip)
        session = self.sessions.pop(ip, None)
        if session is not None:
            self.store.delete(ip)
            if reason is not None:
                now = self.clock.seconds()
                self.last_logout[ip] = (reason, now)
                self.store.put_logout(ip, reason, now)
        return session

    def seconds_remaining(self, ip: Any) -> Optional[float]:
        """
        Seconds left of C{ip}'s session, by the session time-out (None: no
        session or no time-out). The idle time-out is not counted: a
        client that stays in use keeps its session until then (RFC 8908
        5, C{seconds-remaining}).
        """
        session = self.get(ip)
        if session is None or not self.session_timeout:
            return None
        return max(0.0, session.started + self.session_timeout - self.clock.seconds())

    def bytes_remaining(self, ip: Any) -> Optional[int]:
        """
        Bytes C{ip}'s session may still use (None: no session or no quota).
        """
        session = self.get(ip)
        if session is None or not self.quota_bytes:
            return None
        return max(0, self.quota_bytes - session.bytes_used)

    def sample(self, counters: Mapping[Any, Mapping[str, Any]]) -> List[IPv4Address]:
        """
        Take the firewall's counters (C{ip -> {bytes_up, bytes_down}}); a
        session whose byte count changed was active now. Returns those IPs
        (their changes are being stored). A count lower than the last one
        means the counters started again.
        """
        now = self.clock.seconds()
        active = []
        for ip, traffic in counters.items():
            try:
                session = self.get(ip)
            except ValueError:
                continue
            if session is None:
                continue
            seen = int(traffic.get("bytes_up", 0)) + int(traffic.get("bytes_down", 0))
            if seen != session.bytes_seen:
                base = session.bytes_base
                if seen < session.bytes_seen:
                    # The firewall's counters started again (its entry for the
                    # client was made anew): keep what was used before.
                    base += session.bytes_seen
                self.sessions[session.ip] = replace(session, bytes_seen=seen, bytes_base=base,
                                                    last_active=now)
                active.append(session.ip)
        if active:
            self.store.put(*(self.sessions[ip] for ip in active))
            self._commits.flush()
        return active

    def expired(self) -> List[Tuple[Session, str]]:
        """
        The sessions past a time-out, with the reason (not yet ended);
        a step of the wall clock is taken into account first.
        """
        clock_watch(self.clock).check()
        now = self.clock.seconds()
        out = []
        for session in self.all():
            if self.quota_bytes and session.bytes_used >= self.quota_bytes:
                out.append((session, QUOTA))
            elif self.session_timeout and now - session.started >= self.session_timeout:
                out.append((session, TIMEOUT))
            elif self.idle_timeout and now - session.last_active >= self.idle_timeout:
                out.append((session, IDLE))
        return out
