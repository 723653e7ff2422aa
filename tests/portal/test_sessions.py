"""
Tests for L{netsuite.portal.sessions}.
"""

import os
from ipaddress import IPv4Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.sessions import IDLE, TIMEOUT, Session, SessionStore, Sessions
from netsuite.registry.values import MAC
from netsuite.testing import HeldRunner, SyncRunner

IP5 = IPv4Address("10.89.0.5")
MAC5 = MAC("aa:bb:cc:dd:ee:ff")


class SessionsTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.sessions = Sessions(SessionStore(":memory:"), self.clock, SyncRunner(), idle_timeout=60,
                                 session_timeout=600)

    def test_login_logout(self):
        s = self.sessions.login("10.89.0.5", "aa:bb:cc:dd:ee:ff")
        self.assertEqual(s, Session(IP5, MAC5, 1000, 1000, 0, "click"))
        self.assertEqual(self.sessions.get("10.89.0.5"), s)
        self.assertEqual(self.sessions.logout("10.89.0.5"), s)
        self.assertIsNone(self.sessions.get("10.89.0.5"))
        self.assertIsNone(self.sessions.logout("10.89.0.5"))

    def test_idle(self):
        """
        Traffic seen by the sampler keeps a session alive; none for
        idle_timeout seconds ends it.
        """
        self.sessions.login("10.89.0.5", "aa:bb:cc:dd:ee:ff")
        self.clock.advance(50)
        self.assertEqual(self.sessions.sample({"10.89.0.5": {"bytes_up": 10, "bytes_down": 5}}),
                         [IP5])
        self.clock.advance(50)
        self.assertEqual(self.sessions.expired(), [])
        self.assertEqual(self.sessions.sample({"10.89.0.5": {"bytes_up": 10, "bytes_down": 5}}),
                         [])
        self.clock.advance(10)
        [(session, reason)] = self.sessions.expired()
        self.assertEqual((session.ip, session.bytes_seen, reason), (IP5, 15, IDLE))

    def test_session_timeout(self):
        self.sessions.login("10.89.0.5", "aa:bb:cc:dd:ee:ff")
        for n in range(10):
            self.clock.advance(55)
            self.sessions.sample({"10.89.0.5": {"bytes_up": n + 1, "bytes_down": 0}})
        self.clock.advance(49)
        self.assertEqual(self.sessions.expired(), [])
        self.clock.advance(1)
        [(session, reason)] = self.sessions.expired()
        self.assertEqual(reason, TIMEOUT)

    def test_seconds_remaining(self):
        """
        The time left is the session time-out's, never the idle
        time-out's (10 seconds here): with only an idle time-out there is
        none.
        """
        self.sessions.login(IP5, MAC5)
        self.clock.advance(50)
        self.assertEqual(self.sessions.seconds_remaining(IP5), 550)
        self.clock.advance(600)
        self.assertEqual(self.sessions.seconds_remaining(IP5), 0)
        idle = Sessions(SessionStore(":memory:"), self.clock, SyncRunner(), idle_timeout=60)
        idle.login(IP5, MAC5)
        self.clock.advance(50)
        self.assertIsNone(idle.seconds_remaining(IP5))

    def test_no_limits(self):
        sessions = Sessions(SessionStore(":memory:"), self.clock, SyncRunner())
        sessions.login("10.89.0.5", "aa:bb:cc:dd:ee:ff")
        self.clock.advance(10 ** 6)
        self.assertEqual(sessions.expired(), [])
        self.assertIsNone(sessions.seconds_remaining("10.89.0.5"))

    def test_unknown_counters_ignored(self):
        self.assertEqual(self.sessions.sample({"10.89.0.9": {"bytes_up": 1}}), [])

    def test_durable(self):
        """
        Sessions and their activity are back after a restart.
        """
        path = os.path.abspath(self.mktemp())
        first = Sessions(SessionStore(path), self.clock, SyncRunner(), idle_timeout=60)
        first.login("10.89.0.5", "aa:bb:cc:dd:ee:ff", reason="admin")
        first.login("10.89.0.6", "aa:bb:cc:dd:ee:01")
        self.clock.advance(30)
        first.sample({"10.89.0.5": {"bytes_up": 7, "bytes_down": 1}})
        first.logout("10.89.0.6")
        self.assertTrue(self.successResultOf(first.durable()))
        first.store.close()
        second = Sessions(SessionStore(path), self.clock, SyncRunner(), idle_timeout=60)
        self.assertEqual(second.all(), [
            Session(IP5, MAC5, 1000, 1030, 8, "admin")])


class StoreWritesTests(SynchronousTestCase):
    """
    Session changes are queued and written by the runner (never on the
    reactor thread), everything queued in one transaction.
    """

    def test_written_by_runner(self):
        path = os.path.abspath(self.mktemp())
        runner = HeldRunner()
        clock = Clock()
        sessions = Sessions(SessionStore(path), clock, runner)
        sessions.login("10.89.0.5", "aa:bb:cc:dd:ee:ff")
        sessions.login("10.89.0.6", "aa:bb:cc:dd:ee:01")
        sessions.logout("10.89.0.6", "logout")
        stored = sessions.durable()
        self.assertNoResult(stored)
        self.assertEqual(len(runner.calls), 1)
        self.assertEqual(SessionStore(path).load(), [])  # nothing written yet
        runner.run_next()
        self.assertTrue(self.successResultOf(stored))
        again = SessionStore(path)
        self.assertEqual(again.load(), [Session(IP5, MAC5, 0, 0, 0, "click")])
        self.assertEqual(again.load_logouts(), {IPv4Address("10.89.0.6"): ("logout", 0)})
