"""
Tests for L{netsuite.firewall.garden.GardenBook}: what an add writes, and
the refusals of a full garden, logged at most once a minute.
"""

import ipaddress

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.garden import GardenBook

LAN = ipaddress.IPv4Network("10.89.0.0/24")
X, Y, Z = (ipaddress.IPv4Address(a) for a in ("198.51.100.7", "203.0.113.9", "192.0.2.44"))


class GardenBookTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.book = GardenBook(self.clock, LAN, 60, 600, max_entries=1)

    def test_writes(self):
        """
        A new address and a raised time are written (with the clamped
        seconds); an add that would lower a time writes nothing.
        """
        self.assertEqual(self.book.plan([X], 5), ([(X, 60)], 1))
        self.assertEqual(self.book.plan([X], 30), ([], 1))
        self.clock.advance(10)
        self.assertEqual(self.book.plan([X], 10 ** 6), ([(X, 600)], 1))

    def test_refusals_logged_once_a_minute(self):
        """
        Refusals of a full garden are all counted; one warning a minute
        says how many there were since the last one.
        """
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.book.plan([X], 600)
        for _ in range(4):  # at 0, 20, 40 and 60 s
            self.assertEqual(self.book.plan([Y, Z], 60), ([], 0))
            self.clock.advance(20)
        warnings = [e for e in seen if "garden set is full" in e.get("log_format", "")]
        self.assertEqual([(e["n"], e["total"]) for e in warnings], [(1, 1), (6, 7)])
        self.assertEqual(self.book.refused, 8)

    def test_bad_bounds(self):
        """
        A shortest time above the longest is refused when the book is made.
        """
        self.assertRaises(ValueError, GardenBook, self.clock, LAN, 600, 60)
