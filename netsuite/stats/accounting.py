# -*- test-case-name: tests.stats.test_accounting -*-
"""
The accounting log: one JSON line per portal session (who had which
address when, and what it moved), the record an operator needs when asked
who used an address at a given time.

L{Sessions} follows the portal's C{/portal/login} and C{/portal/logout}
events and the shared L{Traffic} model: a session's bytes and packets are
what the sampler counted for its address between its login and its
logout. At a logout the firewall has already dropped the client's
counters, so the record holds the last sample: the traffic of the
session's last interval (at most C{[stats] interval} seconds of it) is
missing. The portal cannot do better: it counts bytes up and down together,
and only from its own, slower samples, so the record takes the sampler's.
Sessions open when stats starts, or when it finds the portal again, are
adopted from C{/portal/sessions}; sessions the portal ended while stats did
not hear it are closed with reason C{unheard}.

L{AccountingLog} appends the records off the reactor (an L{IRunner},
through L{GroupCommit}), rotates the file by size and at UTC midnight and
prunes the rotated files by count and age. A write that fails is logged
once, counted, undone (the file is cut back to its former size) and the
records are kept to try again, at most C{max_pending} of them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from ..config.fields import PATH, POSITIVE_INT
from ..config.schema import Field
from ..registry.interfaces import InvalidAddress, UnknownMailbox, join_address
from ..runner import GroupCommit, IRunner
from .model import ZERO, Totals, Traffic, Usage

__all__ = ["FIELDS", "AccountingLog", "Sessions", "record", "rotated_name", "portal_sessions",
           "part"]

_log = Logger()

FIELDS = {
    "enabled": Field(bool, True, "write the accounting log (when stats runs)"),
    "path": Field(PATH, "/var/log/netsuite/accounting.jsonl", "the log, one JSON line "
                  "per ended session; rotated files beside it are named "
                  "accounting-YYYYMMDDTHHMMSSZ.jsonl (the time of rotation, UTC)"),
    "rotate_bytes": Field(int, 16 * 1024 * 1024, "rotate when the file reaches this "
                          "size (0: never by size)", lambda v: None if v >= 0 else ">= 0"),
    "rotate_daily": Field(bool, True, "rotate at the first record after UTC midnight "
                          "(one file a day)"),
    "keep_files": Field(int, 400, "rotated files kept, newest first (0: no limit)",
                        lambda v: None if v >= 0 else ">= 0"),
    "keep_days": Field(int, 400, "days a rotated file is kept after its last record "
                       "(0: no limit)", lambda v: None if v >= 0 else ">= 0"),
    "max_pending": Field(POSITIVE_INT, 100_000, "records held while the log cannot be "
                         "written; more are dropped and counted"),
}


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def _utc_day(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).date().isoformat()


def record(ip: str, mac: str, user: Optional[str], method: str, start: float, end: float,
           reason: str, totals: Totals, adopted: bool = False) -> Dict[str, Any]:
    """One session's record (times as ISO 8601 UTC and as epoch seconds)."""
    out: Dict[str, Any] = {"ip": ip, "mac": mac, "user": user or None, "method": method,
                           "start": _iso(start), "end": _iso(end),
                           "start_epoch": round(start, 3), "end_epoch": round(end, 3),
                           "seconds": round(max(0.0, end - start), 3), "reason": reason}
    out.update(totals.as_dict())
    out["adopted"] = adopted
    return out


def rotated_name(path: str, when: float) -> str:
    """C{dir/accounting.jsonl} rotated at C{when}: C{dir/accounting-STAMP.jsonl}."""
    stem, suffix = os.path.splitext(path)
    stamp = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    return f"{stem}-{stamp}{suffix}"


Pending = Tuple[float, str]
"""A record to write: (the time it was made, its JSON line)."""


class AccountingLog:
    """
    The append-only file. L{append} queues a record and starts a write;
    the writes run in C{runner} (one thread: in order), several records to
    a write while one is under way.

    @ivar written: records on disk since the start.
    @ivar dropped: records refused because C{max_pending} were waiting.
    @ivar rotations: files rotated since the start.
    """

    def __init__(self, path: str, runner: IRunner, clock: Any, rotate_bytes: int = 0,
                 rotate_daily: bool = True, keep_files: int = 0, keep_days: int = 0,
                 max_pending: int = 100_000) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.keep_files = keep_files
        self.keep_days = keep_days
        self.max_pending = max_pending
        self.clock = clock
        self._queue: List[Pending] = []
        self.written = self.dropped = self.rotations = 0
        # The file's size and the UTC day of its last record: the thread's alone.
        self._size: Optional[int] = None
        self._day: Optional[str] = None
        self._commits = GroupCommit(self._take, self._write, runner, "accounting records",
                                    give_back=self._give_back, clock=clock)

    @property
    def failures(self) -> int:
        """Writes that failed since the start."""
        return self._commits.failures

    @property
    def pending(self) -> int:
        return len(self._queue)

    def append(self, rec: Dict[str, Any]) -> bool:
        """Queue C{rec} and start writing; False if it was dropped (too many wait)."""
        if len(self._queue) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.error("accounting: {n} records wait to be written; {dropped} dropped "
                           "so far", n=len(self._queue), dropped=self.dropped)
            return False
        self._queue.append((self.clock.seconds(), json.dumps(rec, sort_keys=True)))
        self._commits.flush()
        return True

    def durable(self) -> Any:
        """Fires with True once every record queued so far is on disk."""
        return self._commits.durable()

    def stop(self) -> None:
        self._commits.cancel_retry()

    def _take(self) -> List[Pending]:
        taken, self._queue = self._queue, []
        return taken

    def _give_back(self, writes: List[Pending]) -> None:
        self._queue[:0] = writes[:max(0, self.max_pending - len(self._queue))]
        self.dropped += max(0, len(writes) - self.max_pending)

    # in the runner's thread

    def _write(self, writes: List[Pending], durable: bool) -> None:
        if self._size is None:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, mode=0o750, exist_ok=True)
            try:
                st = os.stat(self.path)
                self._size, self._day = st.st_size, _utc_day(st.st_mtime)
            except FileNotFoundError:
                self._size, self._day = 0, None
            self.prune(time.time())
        chunk: List[str] = []
        size = self._size  # the file's, with the chunk (the lines are ASCII)
        for when, line in writes:
            day = _utc_day(when)
            if size and ((self.rotate_daily and self._day is not None and day != self._day) or
                         (self.rotate_bytes and size >= self.rotate_bytes)):
                self._append(chunk)
                chunk = []
                self._rotate(when)
                size = 0
            chunk.append(line + "\n")
            size += len(line) + 1
            self._day = day
        self._append(chunk)
        self.written += len(writes)

    def _append(self, lines: List[str]) -> None:
        if not lines:
            return
        data = "".join(lines).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            before = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, before)  # no half record, no record twice
                raise
        finally:
            os.close(fd)
        self._size = before + len(data)

    def _rotate(self, when: float) -> None:
        target = rotated_name(self.path, when)
        n = 1
        while os.path.exists(target):
            stem, suffix = os.path.splitext(rotated_name(self.path, when))
            target, n = f"{stem}.{n}{suffix}", n + 1
        os.rename(self.path, target)
        self._size, self.rotations = 0, self.rotations + 1
        self.prune(when)

    def rotated(self) -> List[str]:
        """The rotated files, oldest first."""
        directory = os.path.dirname(self.path) or "."
        stem, suffix = os.path.splitext(os.path.basename(self.path))
        return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                      if name.startswith(stem + "-") and name.endswith(suffix))

    def prune(self, now: float) -> List[str]:
        """Remove the rotated files past C{keep_files} or older than C{keep_days}."""
        files = self.rotated()
        doomed = files[:-self.keep_files] if self.keep_files else []
        if self.keep_days:
            doomed += [f for f in files[len(doomed):]
                       if now - os.stat(f).st_mtime > self.keep_days * 86400]
        for name in doomed:
            os.unlink(name)
        return doomed


PAGE = 1000
"""Sessions asked for in one /portal/sessions message (a page: they outgrow one)."""


@inlineCallbacks
def portal_sessions(registry: Any, address: str, clock: Any, deadline: float,
                    page: int = PAGE) -> Any:
    """
    Every session of the portal at C{address} (its C{/portal/sessions}),
    a page at a time, each page within C{deadline}; fires with the list.
    A portal that ignores paging answers all at once: that is all.
    """
    found: List[Any] = []
    after: Any = None
    while True:
        message: Dict[str, Any] = {"limit": page}
        if after is not None:
            message["after"] = after
        d = registry.send(address, message)
        d.addTimeout(deadline, clock)
        answer = yield d
        if not isinstance(answer, list):
            raise ValueError(f"{address} answered {answer!r}, not a list")
        if after is not None and answer and \
                ipaddress.IPv4Address(str(answer[0].get("ip"))) <= after:
            return found  # no paging there: the first answer was all
        found += answer
        if len(answer) < page:
            return found
        after = ipaddress.IPv4Address(str(answer[-1].get("ip")))


class _Open:
    """A session under way, and what its address's L{Usage} counted in it."""

    __slots__ = ("ip", "mac", "user", "method", "start", "adopted", "usage", "base", "done")

    def __init__(self, ip: str, mac: str, user: Optional[str], method: str, start: float,
                 usage: Optional[Usage], adopted: bool) -> None:
        self.ip, self.mac, self.user, self.method = ip, mac, user, method
        self.start, self.adopted = start, adopted
        # A Usage that exists already counted traffic before this session.
        self.usage, self.base, self.done = usage, usage.total if usage else ZERO, ZERO

    def follow(self, usage: Optional[Usage]) -> None:
        """The address's Usage now (None: forgotten, or a new one: counting again)."""
        if usage is not None and usage.mac != self.mac:
            usage = None
        if usage is not self.usage:
            self.done = self.totals()
            self.usage, self.base = usage, ZERO

    def totals(self) -> Totals:
        if self.usage is None:
            return self.done
        return self.done + self.usage.total.since(self.base)


class Sessions:
    """
    The sessions the portal reports, each written to C{log} when it ends.

    @ivar malformed: events dropped as malformed; C{adopted}: sessions
        adopted from C{/portal/sessions}.
    """

    def __init__(self, registry: Any, traffic: Traffic, log: AccountingLog, clock: Any,
                 portal_process: str = "", deadline: float = 10.0) -> None:
        self.registry = registry
        self.traffic = traffic
        self.log = log
        self.clock = clock
        self.portal_process = portal_process
        self.deadline = deadline
        self.open: Dict[str, _Open] = {}
        self.malformed = 0
        self.adopted = 0
        self._watchers: List[Any] = []
        self._unsubscribe: Any = None
        # the addresses events spoke of while each adoption waits for its answer
        self._touched: List[Set[str]] = []

    def _at(self, path: str) -> str:
        return join_address(self.portal_process, path, self.registry.name)

    def start(self) -> None:
        self._unsubscribe = self.traffic.subscribe(self._sampled)
        login, logout = self._at("/portal/login"), self._at("/portal/logout")
        if login.startswith("/") and not self.registry.describe(login):
            _log.warn("accounting: no /portal/login in this process (set [stats] "
                      "portal_process): no session will be logged")
            return
        try:
            self._watchers.append(self.registry.watch(logout, self.logout))
            self._watchers.append(self.registry.watch(login, self.login,
                                                      on_attach=self.adopt))
        except (UnknownMailbox, InvalidAddress) as e:
            _log.warn("accounting: cannot watch the portal: {error}", error=e)

    def stop(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.remove()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _sampled(self, now: float, updated: List[Usage]) -> None:
        clients = self.traffic.clients
        for session in self.open.values():
            session.follow(clients.get(session.ip))

    @staticmethod
    def _address(message: Any) -> Tuple[str, str]:
        ip = str(ipaddress.IPv4Address(str(message["ip"])))
        mac = str(message["mac"]).lower()
        return ip, mac

    def _begin(self, ip: str, mac: str, user: Optional[str], method: str, start: float,
               adopted: bool) -> None:
        usage = self.traffic.clients.get(ip)
        self.open[ip] = _Open(ip, mac, user, method, start,
                              usage if usage is not None and usage.mac == mac else None,
                              adopted)

    def login(self, message: Any) -> None:
        """One C{/portal/login} event {ip, mac, reason, username?}."""
        try:
            ip, mac = self._address(message)
            method = str(message.get("reason") or "")
        except (KeyError, TypeError, ValueError) as e:
            self.malformed += 1
            _log.warn("accounting: a malformed login event was dropped ({error})", error=e)
            return
        self._touch(ip)
        if ip in self.open:  # the portal ends a replaced session first; be sure
            self._end(ip, "replaced")
        self._begin(ip, mac, message.get("username") or None, method, self.clock.seconds(),
                    adopted=False)

    def logout(self, message: Any) -> None:
        """One C{/portal/logout} event {ip, mac, reason}."""
        try:
            ip, _ = self._address(message)
            reason = str(message.get("reason") or "logout")
        except (KeyError, TypeError, ValueError) as e:
            self.malformed += 1
            _log.warn("accounting: a malformed logout event was dropped ({error})", error=e)
            return
        self._touch(ip)
        self._end(ip, reason)

    def _touch(self, ip: str) -> None:
        for touched in self._touched:
            touched.add(ip)

    def _end(self, ip: str, reason: str) -> None:
        session = self.open.pop(ip, None)
        if session is None:
            return  # begun before stats knew (and ended before it could ask)
        self.log.append(record(ip, session.mac, session.user, session.method, session.start,
                               self.clock.seconds(), reason, session.totals(),
                               session.adopted))

    def adopt(self) -> Any:
        """
        Ask the portal for its sessions: adopt those not known here, close
        with reason C{unheard} those it no longer has.
        """
        touched: Set[str] = set()
        self._touched.append(touched)
        d = portal_sessions(self.registry, self._at("/portal/sessions"), self.clock,
                            self.deadline)

        def got(answer: Any) -> None:
            # What events said meanwhile is newer than the answer: it stands.
            theirs = {}
            for item in answer:
                try:
                    ip, mac = self._address(item)
                    theirs[ip] = (mac, item)
                except (KeyError, TypeError, ValueError):
                    self.malformed += 1
            for ip in [ip for ip, s in self.open.items() if ip not in touched and
                       (ip not in theirs or theirs[ip][0] != s.mac)]:
                self._end(ip, "unheard")
            for ip, (mac, item) in theirs.items():
                if ip not in self.open and ip not in touched:
                    started = item.get("started")
                    start = float(started) if isinstance(started, (int, float)) else \
                        self.clock.seconds()
                    self._begin(ip, mac, item.get("username") or None,
                                str(item.get("reason") or ""), start, adopted=True)
                    self.adopted += 1
        d.addCallback(got)
        d.addErrback(lambda f: _log.failure("accounting: could not read the portal's "
                                            "sessions", f))
        return d.addBoth(lambda _: self._touched.remove(touched))


def part(service: Any, config: Any, registry: Any, reactor: Any) -> None:
    """Add the accounting log to the stats C{service}, if the config enables it."""
    from twisted.application.service import Service

    from ..runner import ThreadRunner

    section = config.stats.accounting
    if not section.enabled:
        return
    log = AccountingLog(section.path, ThreadRunner(reactor, name="stats-accounting"), reactor,
                        rotate_bytes=section.rotate_bytes, rotate_daily=section.rotate_daily,
                        keep_files=section.keep_files, keep_days=section.keep_days,
                        max_pending=section.max_pending)
    sessions = Sessions(registry, service.traffic, log, reactor,
                        portal_process=config.stats.portal_process)
    service.accounting = sessions

    class AccountingService(Service):
        name = "accounting"

        def startService(self) -> None:
            Service.startService(self)
            sessions.start()

        def stopService(self) -> Any:
            Service.stopService(self)
            sessions.stop()
            log.stop()
            return log.durable() if log.pending else None

    AccountingService().setServiceParent(service)
