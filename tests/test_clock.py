"""
Tests for L{netsuite.clock}: steps of the wall clock under a running
process, on a L{Clock} whose time is the wall clock, beside a monotonic
clock that no step moves.
"""

from ipaddress import IPv4Address

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.clock import ClockWatch, ClockWatchService, clock_watch
from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.packet import ACK, DISCOVER, REQUEST
from netsuite.dhcp.pool import Pool
from netsuite.dhcp.server import DHCPServer
from netsuite.portal.sessions import IDLE, TIMEOUT, Sessions, SessionStore
from netsuite.registry import Registry
from netsuite.testing import SyncRunner

from .dhcp.test_server import LAN, MAC_A, SERVER, request


class SteppedClock(Clock):
    """
    A L{Clock} as the wall clock, and C{monotonic()}, which L{step} does
    not move.
    """

    def __init__(self, now=1_000_000.0):
        super().__init__()
        self.rightNow = now
        self._stepped = 0.0

    def monotonic(self):
        return self.rightNow - self._stepped

    def step(self, seconds):
        """Set the wall clock C{seconds} forwards (negative: back)."""
        self.rightNow += seconds
        self._stepped += seconds


def watched():
    clock = SteppedClock()
    return clock, clock_watch(clock, wall=clock.seconds, monotonic=clock.monotonic)


class ClockWatchTests(SynchronousTestCase):
    def setUp(self):
        self.clock, self.watch = watched()
        self.calls = []

    def test_noStep(self):
        """
        Time passing, or a difference under the tolerance (drift), is no
        step: timers stay where they were.
        """
        call = self.clock.callLater(5, self.calls.append, 1)
        self.clock.advance(3)
        self.clock.step(0.5)
        self.assertEqual(self.watch.check(), 0.0)
        self.assertEqual(call.getTime(), 1_000_005.0)

    def test_backwards(self):
        """
        After a step back of an hour, a timer fires when it was asked to,
        not an hour later; observers hear of the step.
        """
        steps = []
        self.watch.observe(steps.append)
        self.clock.callLater(5, self.calls.append, 1)
        self.clock.step(-3600)
        self.assertEqual(self.watch.check(), -3600)
        self.clock.advance(5)
        self.assertEqual(self.calls, [1])
        self.assertEqual((steps, self.watch.steps), ([-3600], 1))

    def test_forwards(self):
        """
        After a step forward of an hour, a timer does not fire at once but
        after the time it had left.
        """
        self.clock.callLater(5, self.calls.append, 1)
        self.clock.advance(2)
        self.clock.step(3600)
        self.watch.check()
        self.clock.advance(0)
        self.assertEqual(self.calls, [])
        self.clock.advance(3)
        self.assertEqual(self.calls, [1])

    def test_removeObserver(self):
        steps = []
        remove = self.watch.observe(steps.append)
        remove()
        self.clock.step(100)
        self.watch.check()
        self.assertEqual(steps, [])

    def test_oneWatchPerClock(self):
        self.assertIs(clock_watch(self.clock), self.watch)
        self.assertIsNot(clock_watch(Clock()), self.watch)
        self.assertIsInstance(self.watch, ClockWatch)


class ServiceTests(SynchronousTestCase):
    def test_looksFromAThread(self):
        """
        The service's thread asks the reactor thread to check
        (callFromThread), and stops when the service does.
        """
        import threading
        asked = threading.Event()

        class Reactor(Clock):
            def callFromThread(self, fn, *args):
                asked.set()

        service = ClockWatchService(Reactor(), interval=0.001)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertTrue(asked.wait(10))


class LeaseStepTests(SynchronousTestCase):
    """
    A bound lease keeps the time it had left across a step of the wall
    clock, either way; the lease file gets the moved end.
    """

    def setUp(self):
        self.clock, self.watch = watched()
        self.registry = Registry("dhcp", self.clock)
        self.path = self.mktemp()
        self.store = LeaseStore(self.path, write_through=False)
        self.addCleanup(self.store.close)
        self.server = DHCPServer(self.registry, SyncRunner(), self.clock, LAN,
                                 sweep_interval=10)
        self.server.start(Pool([LAN], self.store, self.clock))
        self.addCleanup(self.server.stop)
        offer = self.successResultOf(self.server.handle(request(DISCOVER, MAC_A, 1)))
        ack = self.successResultOf(self.server.handle(request(REQUEST, MAC_A, 2, options={
            54: SERVER.packed, 50: offer.yiaddr.packed})))
        self.assertEqual(ack.message_type, ACK)
        self.ip = ack.yiaddr

    def state(self):
        return self.store.get_by_ip(self.ip).state

    def test_forwards(self):
        """
        Stepped forward by ten lease times, the lease is still bound at
        the next sweep (which looks for steps itself), and ends a lease
        time after it was bound.
        """
        self.clock.step(10 * LAN.lease_time)
        self.clock.advance(10)
        self.assertEqual(self.state(), "bound")
        self.clock.advance(LAN.lease_time - 20)
        self.assertEqual(self.state(), "bound")
        self.clock.advance(20)
        self.assertEqual(self.state(), "expired")

    def test_backwards(self):
        """
        Stepped back by ten lease times, once the watch has looked, the
        sweep goes on every 10 s and the lease ends a lease time after it
        was bound, not ten lease times later; the file has the moved end.
        """
        self.clock.step(-10 * LAN.lease_time)
        self.watch.check()
        on_disk = LeaseStore(self.path)
        self.addCleanup(on_disk.close)
        self.assertEqual(on_disk.get_by_ip(self.ip).expires,
                         self.clock.seconds() + LAN.lease_time)
        self.clock.advance(LAN.lease_time + 10)
        self.assertEqual(self.state(), "expired")


class SessionStepTests(SynchronousTestCase):
    """
    A portal session keeps the time its time-outs had left across a step.
    """

    def setUp(self):
        self.clock, self.watch = watched()
        self.sessions = Sessions(SessionStore(":memory:"), self.clock, SyncRunner(),
                                 idle_timeout=300, session_timeout=600)
        self.sessions.login(IPv4Address("10.89.0.10"), "02:00:00:00:00:01")

    def test_forwards(self):
        """
        Stepped forward an hour, no session is past a time-out.
        """
        self.clock.advance(100)
        self.clock.step(3600)
        self.assertEqual(self.sessions.expired(), [])
        self.clock.advance(200)
        self.assertEqual([reason for _, reason in self.sessions.expired()], [IDLE])

    def test_backwards(self):
        """
        Stepped back an hour, the session still ends at its time-out.
        """
        self.clock.step(-3600)
        self.clock.advance(600)
        self.assertEqual([reason for _, reason in self.sessions.expired()], [TIMEOUT])
