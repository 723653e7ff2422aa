"""
The accounting log (L{netsuite.stats.accounting}).
"""

import calendar
import errno
import ipaddress
import json
import os
import shutil
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.registry.interfaces import EVENT, Stop
from netsuite.registry.values import MAC
from netsuite.stats.accounting import (AccountingLog, Sessions, portal_sessions, record,
                                       rotated_name)
from netsuite.stats.model import Totals, Traffic
from netsuite.testing import SyncRunner, registry_on_clock

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
NOON = calendar.timegm((2026, 12, 4, 12, 0, 0))
MIDNIGHT = calendar.timegm((2026, 12, 5, 0, 0, 0))


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class TempDir:
    def tempdir(self):
        path = tempfile.mkdtemp(prefix="statsexport-")
        self.addCleanup(shutil.rmtree, path, True)
        return path


class RecordTests(SynchronousTestCase):
    def test_record(self):
        """A record has both ISO 8601 UTC and epoch times, and the totals."""
        rec = record("10.0.0.2", A, "", "click", NOON, NOON + 90.5, "logout",
                     Totals(1, 2, 3, 4))
        self.assertEqual(rec, {
            "ip": "10.0.0.2", "mac": A, "user": None, "method": "click",
            "start": "2026-12-04T12:00:00Z", "end": "2026-12-04T12:01:30Z",
            "start_epoch": NOON, "end_epoch": NOON + 90.5, "seconds": 90.5,
            "reason": "logout", "bytes_up": 1, "bytes_down": 2, "packets_up": 3,
            "packets_down": 4, "adopted": False})

    def test_rotated_name(self):
        self.assertEqual(rotated_name("/x/accounting.jsonl", NOON),
                         "/x/accounting-20261204T120000Z.jsonl")


class AccountingLogTests(TempDir, SynchronousTestCase):
    def setUp(self):
        self.dir = self.tempdir()
        self.path = os.path.join(self.dir, "log", "accounting.jsonl")
        self.clock = Clock()
        self.clock.advance(NOON)
        self.runner = SyncRunner()

    def log(self, **kwargs):
        log = AccountingLog(self.path, self.runner, self.clock, **kwargs)
        self.addCleanup(log.stop)
        return log

    def test_append(self):
        """Records are appended as JSON lines, in order, in a directory made for them."""
        log = self.log()
        log.append({"n": 1})
        log.append({"n": 2})
        self.assertEqual(lines(self.path), [{"n": 1}, {"n": 2}])
        self.assertEqual((log.written, log.pending, log.failures), (2, 0, 0))
        # another run the same day appends to the same file (the file's day is
        # its mtime: pin it to the clock's day, not the real one)
        os.utime(self.path, (NOON, NOON))
        self.log().append({"n": 3})
        self.assertEqual([r["n"] for r in lines(self.path)], [1, 2, 3])

    def test_rotate_by_size(self):
        """Past rotate_bytes the file is renamed, and a new one begun; no record lost."""
        log = self.log(rotate_bytes=30, rotate_daily=False)
        for n in range(5):
            log.append({"n": n, "pad": "x" * 10})  # 25 bytes a line
            self.clock.advance(1)
        rotated = log.rotated()
        self.assertEqual(len(rotated), 4)
        found = [r["n"] for path in rotated + [self.path] for r in lines(path)]
        self.assertEqual(found, [0, 1, 2, 3, 4])
        self.assertEqual(log.rotations, 4)

    def test_rotate_daily(self):
        """The first record after midnight UTC starts a new file."""
        self.clock.advance(MIDNIGHT - 1 - NOON)
        log = self.log()
        log.append({"n": 1})
        log.append({"n": 2})
        self.clock.advance(2)
        log.append({"n": 3})
        self.assertEqual(log.rotated(), [rotated_name(self.path, MIDNIGHT + 1)])
        self.assertEqual([r["n"] for r in lines(log.rotated()[0])], [1, 2])
        self.assertEqual([r["n"] for r in lines(self.path)], [3])

    def test_day_of_an_old_file(self):
        """A file last written yesterday is rotated before today's first record."""
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w") as f:
            f.write('{"n": 0}\n')
        os.utime(self.path, (NOON - 86400, NOON - 86400))
        self.log().append({"n": 1})
        self.assertEqual(lines(self.path), [{"n": 1}])

    def test_keep_files(self):
        """Only the newest keep_files rotated files stay."""
        log = self.log(rotate_bytes=1, rotate_daily=False, keep_files=2)
        for n in range(6):
            log.append({"n": n})
            self.clock.advance(1)
        self.assertEqual([[r["n"] for r in lines(p)] for p in log.rotated()], [[3], [4]])
        self.assertEqual(lines(self.path), [{"n": 5}])

    def test_keep_days(self):
        """Rotated files older than keep_days are removed (at start and at each rotation)."""
        os.makedirs(os.path.dirname(self.path))
        old = rotated_name(self.path, NOON - 10 * 86400)
        recent = rotated_name(self.path, NOON - 86400)
        for name, when in ((old, NOON - 10 * 86400), (recent, NOON - 86400)):
            with open(name, "w") as f:
                f.write("{}\n")
            os.utime(name, (when, when))
        other = os.path.join(os.path.dirname(self.path), "other.jsonl")
        open(other, "w").close()
        log = self.log(keep_days=5)
        log.prune(NOON)
        self.assertEqual(log.rotated(), [recent])
        self.assertTrue(os.path.exists(other))

    def test_failure_keeps_the_record(self):
        """
        A write that fails is counted and its records kept; they are written
        once the log can be written again (retried after 5 s).
        """
        blocker = os.path.dirname(self.path)
        with open(blocker, "w") as f:  # a file where the directory should be
            f.write("in the way")
        log = self.log()
        log.append({"n": 1})
        self.assertEqual((log.failures, log.pending, log.written), (1, 1, 0))
        log.append({"n": 2})  # while failing, only the retry writes
        self.assertEqual((log.failures, log.pending), (1, 2))
        os.unlink(blocker)
        self.clock.advance(5)
        self.assertEqual(lines(self.path), [{"n": 1}, {"n": 2}])
        self.assertEqual((log.failures, log.pending, log.written), (1, 0, 2))

    def test_half_written(self):
        """
        A write cut short (the disk filled up mid-way) is undone: no half
        record in the file, and the record is written whole, once, later.
        """
        log = self.log()
        log.append({"n": 1})
        real = os.write

        def full(fd, data):
            real(fd, bytes(data[:5]))
            raise OSError(errno.ENOSPC, "No space left on device")
        self.patch(os, "write", full)
        log.append({"n": 2, "pad": "x" * 100})
        self.assertEqual(lines(self.path), [{"n": 1}])
        self.assertEqual((log.failures, log.pending), (1, 1))
        self.patch(os, "write", real)
        self.clock.advance(5)
        self.assertEqual([r["n"] for r in lines(self.path)], [1, 2])

    def test_bounded(self):
        """While the log cannot be written, at most max_pending records wait."""
        with open(os.path.dirname(self.path), "w"):
            pass
        log = self.log(max_pending=3)
        results = [log.append({"n": n}) for n in range(5)]
        self.assertEqual(results, [True, True, True, False, False])
        self.assertEqual((log.pending, log.dropped), (3, 2))


class SessionsTests(TempDir, SynchronousTestCase):
    def setUp(self):
        self.registry, self.clock = registry_on_clock("stats")
        self.clock.advance(NOON)
        self.portal = []  # what /portal/sessions answers
        for path in ("/portal/login", "/portal/logout"):
            self.registry.declare(path, kind=EVENT)
        self.registry.declare("/portal/sessions")
        self.registry.listen("/portal/sessions", lambda m: Stop(list(self.portal)))
        self.path = os.path.join(self.tempdir(), "accounting.jsonl")
        self.log = AccountingLog(self.path, SyncRunner(), self.clock)
        self.traffic = Traffic()
        self.sessions = Sessions(self.registry, self.traffic, self.log, self.clock)
        self.sessions.start()
        self.addCleanup(self.sessions.stop)
        self.flush()

    def flush(self):
        self.registry.eventual.flush_sync()

    def sample(self, seconds, clients):
        self.clock.advance(seconds)
        self.traffic.update(self.clock.seconds(), clients)

    def event(self, path, **message):
        self.registry.send(path, message)
        self.flush()

    def records(self):
        return lines(self.path) if os.path.exists(self.path) else []

    def test_session(self):
        """
        A session's record holds what the sampler counted for its address
        from login to logout (the last sample), its user and method.
        """
        self.event("/portal/login", ip="10.0.0.2", mac=MAC(A), reason="password",
                   username="alice")
        self.sample(10, {"10.0.0.2": (A, Totals(100, 5000, 2, 5)),
                         "10.0.0.3": (B, Totals(7, 7, 1, 1))})
        self.sample(10, {"10.0.0.2": (A, Totals(300, 105000, 6, 80)),
                         "10.0.0.3": (B, Totals(9, 9, 2, 2))})
        self.clock.advance(3)
        self.event("/portal/logout", ip="10.0.0.2", mac=MAC(A), reason="logout")
        [rec] = self.records()
        self.assertEqual((rec["ip"], rec["mac"], rec["user"], rec["method"], rec["reason"]),
                         ("10.0.0.2", A, "alice", "password", "logout"))
        self.assertEqual((rec["start_epoch"], rec["end_epoch"], rec["adopted"]),
                         (NOON, NOON + 23, False))
        self.assertEqual((rec["bytes_up"], rec["bytes_down"], rec["packets_up"],
                          rec["packets_down"]), (300, 105000, 6, 80))
        self.assertEqual(self.sessions.open, {})

    def test_counted_before_login(self):
        """
        Traffic of the address before its login (an earlier session the
        sampler still follows) is not the session's; a counter reset is.
        """
        self.sample(10, {"10.0.0.2": (A, Totals(1000, 1000, 10, 10))})
        self.event("/portal/login", ip="10.0.0.2", mac=MAC(A), reason="click")
        self.sample(10, {"10.0.0.2": (A, Totals(1500, 3000, 15, 30))})
        self.sample(10, {"10.0.0.2": (A, Totals(100, 100, 1, 1))})  # firewall restarted
        self.event("/portal/logout", ip="10.0.0.2", mac=MAC(A), reason="idle-timeout")
        [rec] = self.records()
        self.assertEqual((rec["bytes_up"], rec["bytes_down"], rec["user"]), (600, 2100, None))

    def test_forgotten_before_logout(self):
        """
        The sampler may forget the client (the firewall dropped it) before
        the logout is heard: its last sample stays the session's.
        """
        self.event("/portal/login", ip="10.0.0.2", mac=MAC(A), reason="click")
        self.sample(10, {"10.0.0.2": (A, Totals(10, 20, 1, 2))})
        self.sample(10, {})
        self.sample(10, {"10.0.0.2": (A, Totals(5, 5, 1, 1))})  # authorized again, uncounted
        self.event("/portal/logout", ip="10.0.0.2", mac=MAC(A), reason="logout")
        [rec] = self.records()
        self.assertEqual((rec["bytes_up"], rec["bytes_down"]), (15, 25))

    def test_two_sessions(self):
        """Each session of an address is a record of its own."""
        for n in range(2):
            self.event("/portal/login", ip="10.0.0.2", mac=MAC(A), reason="click")
            self.sample(10, {"10.0.0.2": (A, Totals(100, 100, 1, 1))})
            self.event("/portal/logout", ip="10.0.0.2", mac=MAC(A), reason="logout")
            self.sample(10, {})
        self.assertEqual([r["bytes_down"] for r in self.records()], [100, 100])

    def test_adopt(self):
        """
        The portal's sessions open when stats starts are adopted (their
        start the portal's); one the portal no longer has is closed as
        unheard when it is asked again.
        """
        self.portal = [{"ip": "10.0.0.5", "mac": MAC(B), "started": NOON - 600.0,
                        "username": "", "reason": "click"}]
        self.sessions.adopt()
        self.assertEqual(self.sessions.adopted, 1)
        self.sample(10, {"10.0.0.5": (B, Totals(10, 900, 1, 9))})
        self.portal = []
        self.sessions.adopt()
        [rec] = self.records()
        self.assertEqual((rec["ip"], rec["reason"], rec["adopted"], rec["start_epoch"],
                          rec["method"], rec["bytes_down"]),
                         ("10.0.0.5", "unheard", True, NOON - 600, "click", 900))

    def test_adopt_in_pages(self):
        """The portal's sessions are asked for a page at a time."""
        asked = []

        def paged(message):
            asked.append(dict(message))
            after = ipaddress.IPv4Address(str(message.get("after", "0.0.0.0")))
            page = [s for s in self.portal if ipaddress.IPv4Address(s["ip"]) > after]
            return Stop(page[:message["limit"]])
        self.registry.listen("/portal/sessions", paged, first=True)
        self.portal = [{"ip": f"10.0.0.{n}", "mac": MAC(f"02:00:00:00:00:{n:02x}"),
                        "started": NOON, "username": "", "reason": "click"}
                       for n in range(2, 7)]
        found = self.successResultOf(portal_sessions(self.registry, "/portal/sessions",
                                                     self.clock, 5, page=2))
        self.assertEqual([s["ip"] for s in found], [s["ip"] for s in self.portal])
        self.assertEqual([m.get("after") for m in asked],
                         [None] + [ipaddress.IPv4Address(a) for a in ("10.0.0.3", "10.0.0.5")])

    def test_events_during_adoption(self):
        """
        Events heard while the portal's answer is on its way are newer than
        it: a login then is not closed as unheard, a logout then is not
        adopted again.
        """
        held = []
        self.registry.listen("/portal/sessions", lambda m: held.append(Deferred()) or held[-1],
                             first=True)
        d = self.sessions.adopt()
        self.event("/portal/login", ip="10.0.0.2", mac=MAC(A), reason="click")
        self.event("/portal/logout", ip="10.0.0.3", mac=MAC(B), reason="logout")
        held[0].callback(Stop([{"ip": "10.0.0.3", "mac": MAC(B), "started": NOON,
                                "username": "", "reason": "click"}]))
        self.successResultOf(d)
        self.assertEqual(list(self.sessions.open), ["10.0.0.2"])
        self.assertEqual((self.records(), self.sessions._touched), ([], []))

    def test_adopt_on_attach(self):
        """Watching the portal asks for its sessions at once."""
        self.sessions.stop()
        self.portal = [{"ip": "10.0.0.5", "mac": MAC(B), "started": NOON,
                        "username": "bob", "reason": "password"}]
        sessions = Sessions(self.registry, self.traffic, self.log, self.clock)
        sessions.start()
        self.addCleanup(sessions.stop)
        self.flush()
        self.assertEqual(list(sessions.open), ["10.0.0.5"])
        self.assertEqual(sessions.open["10.0.0.5"].user, "bob")

    def test_malformed(self):
        """A malformed event is counted and dropped."""
        self.event("/portal/login", ip="not an address", mac=MAC(A), reason="click")
        self.event("/portal/logout", mac=MAC(A))
        self.assertEqual((self.sessions.malformed, self.sessions.open), (2, {}))
        self.flushLoggedErrors()

    def test_logout_unknown(self):
        """A logout of a session stats never saw begin writes nothing."""
        self.event("/portal/logout", ip="10.0.0.9", mac=MAC(A), reason="logout")
        self.assertEqual(self.records(), [])

    def test_no_portal(self):
        """Without the portal in this process (and no portal_process) nothing is watched."""
        registry, clock = registry_on_clock("alone")
        sessions = Sessions(registry, Traffic(), self.log, clock)
        sessions.start()
        self.assertEqual(sessions._watchers, [])
        sessions.stop()
