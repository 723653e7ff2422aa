"""
The sampler's view of the traffic (L{netsuite.stats.model}).
"""

import time

from twisted.trial.unittest import SynchronousTestCase

from netsuite.stats.model import ZERO, Totals, Traffic

MAC = "02:00:00:00:00:0a"
NOON = time.mktime((2026, 12, 4, 12, 0, 0, 0, 0, -1))


class TotalsTests(SynchronousTestCase):
    def test_since(self):
        self.assertEqual(Totals(100, 50, 3, 2).since(Totals(40, 50, 1, 2)), Totals(60, 0, 2, 0))

    def test_reset_counts_from_zero(self):
        # The firewall restarted: its counters began again.
        self.assertEqual(Totals(10, 5, 1, 1).since(Totals(1000, 500, 9, 9)), Totals(10, 5, 1, 1))


class TrafficTests(SynchronousTestCase):
    def test_rates_and_totals(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(1000, 2000, 1, 2))})
        usage = traffic.clients["10.0.0.2"]
        self.assertEqual((usage.total, usage.rate_up), (Totals(1000, 2000, 1, 2), 0.0))
        traffic.update(NOON + 10, {"10.0.0.2": (MAC, Totals(2000, 12000, 2, 12))})
        self.assertEqual((usage.rate_up, usage.rate_down), (100.0, 1000.0))
        self.assertEqual(usage.total, Totals(2000, 12000, 2, 12))

    def test_reset_keeps_totals(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(5000, 5000, 5, 5))})
        traffic.update(NOON + 10, {"10.0.0.2": (MAC, Totals(100, 200, 1, 1))})
        usage = traffic.clients["10.0.0.2"]
        self.assertEqual(usage.total, Totals(5100, 5200, 6, 6))
        self.assertEqual((usage.rate_up, usage.rate_down), (10.0, 20.0))

    def test_today_starts_at_midnight(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(100, 100, 1, 1))})
        traffic.update(NOON + 12 * 3600, {"10.0.0.2": (MAC, Totals(150, 300, 2, 2))})
        usage = traffic.clients["10.0.0.2"]
        self.assertEqual((usage.today, usage.total), (Totals(50, 200, 1, 1),
                                                      Totals(150, 300, 2, 2)))

    def test_gone_and_new_mac(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(100, 100, 1, 1)),
                              "10.0.0.3": (MAC.replace("a", "b"), ZERO)})
        updated = traffic.update(NOON + 10, {"10.0.0.2": ("02:00:00:00:00:0c", Totals(1, 1, 1, 1))})
        self.assertEqual(list(traffic.clients), ["10.0.0.2"])
        self.assertEqual([(u.mac, u.total) for u in updated],
                         [("02:00:00:00:00:0c", Totals(1, 1, 1, 1))])

    def test_uplink_subscribe_top(self):
        traffic = Traffic()
        seen = []
        unsubscribe = traffic.subscribe(lambda now, updated: seen.append((now, len(updated))))
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(1, 900, 1, 1)),
                              "10.0.0.3": ("02:00:00:00:00:0b", Totals(5, 5, 1, 1))},
                       uplink=Totals(10, 10, 1, 1))
        traffic.update(NOON + 5, {}, uplink=Totals(60, 110, 2, 2))
        unsubscribe()
        traffic.update(NOON + 10, {})
        self.assertEqual(seen, [(NOON, 2), (NOON + 5, 0)])
        self.assertEqual((traffic.uplink.rate_up, traffic.uplink.rate_down), (10.0, 20.0))
        self.assertEqual(traffic.samples, 3)

    def test_top(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (MAC, Totals(1, 900, 1, 1)),
                              "10.0.0.3": ("02:00:00:00:00:0b", Totals(5, 5, 1, 1)),
                              "10.0.0.4": ("02:00:00:00:00:0c", Totals(500, 500, 1, 1))})
        self.assertEqual([u.ip for u in traffic.top(2)], ["10.0.0.4", "10.0.0.2"])
        self.assertEqual(traffic.by_mac("02:00:00:00:00:0b").ip, "10.0.0.3")
