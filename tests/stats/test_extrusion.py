"""
L{netsuite.stats.extrusion}: the detectors, fed on a Clock.
"""

import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.stats.extrusion import MAX_HOSTS, MAX_SAMPLES, Detectors, Thresholds

IP = "10.89.0.11"
MAC = "02:00:00:00:00:11"


def off(**on):
    """Thresholds with every detector off but those given."""
    return Thresholds(**dict({"destinations": 0, "ports": 0, "smtp": 0, "rate": 0}, **on))


class DetectorTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def feed(self, detectors, host, port, ip=IP, step=0.0):
        self.clock.advance(step)
        return detectors.connection(self.clock.seconds(), ip, MAC, host, port)

    def test_scan(self):
        """
        The 100th distinct host within a minute is a detection, with the
        evidence: count, window, threshold and the last destinations.
        """
        d = Detectors(off(destinations=100))
        for i in range(99):
            self.assertEqual(self.feed(d, f"192.0.2.{i}", 80, step=0.1), [])
        self.assertEqual(self.feed(d, "192.0.2.1", 443), [], "a host seen again counts once")
        [found] = self.feed(d, "198.51.100.1", 80)
        self.assertEqual((found.ip, found.mac, found.detector, found.count, found.window,
                          found.threshold), (IP, MAC, "destinations", 100, 60.0, 100))
        self.assertEqual(len(found.samples), MAX_SAMPLES)
        self.assertEqual(found.samples[-1], ("198.51.100.1", 80))
        self.assertEqual(found.at, self.clock.seconds())
        self.assertEqual((d.counters["detections"], d.counters["destinations"]), (1, 1))

    def test_scan_slower_than_the_window(self):
        """Hosts spread over more than the window never add up to the threshold."""
        d = Detectors(off(destinations=10, destinations_window=60.0))
        for i in range(100):
            self.assertEqual(self.feed(d, f"192.0.2.{i}", 80, step=7.0), [])

    def test_ports(self):
        """Distinct ports on one host: the 30th is a detection; other hosts count apart."""
        d = Detectors(off(ports=30))
        for port in range(1, 30):
            self.assertEqual(self.feed(d, "192.0.2.9", port, step=0.5), [])
            self.assertEqual(self.feed(d, "192.0.2.10", port), [])
        [found] = self.feed(d, "192.0.2.9", 30)
        self.assertEqual((found.detector, found.count, found.threshold), ("ports", 30, 30))
        self.assertEqual(found.samples, tuple(("192.0.2.9", p) for p in range(21, 31)))

    def test_smtp_burst(self):
        """
        Attempts to the SMTP ports (any of 25, 465, 587) add up; other
        ports do not.
        """
        d = Detectors(off(smtp=20))
        for i in range(200):
            self.assertEqual(self.feed(d, "192.0.2.9", 80 + i), [])
        for i in range(19):
            self.assertEqual(self.feed(d, "192.0.2.9", (25, 465, 587)[i % 3], step=1.0), [])
        [found] = self.feed(d, "192.0.2.99", 25)
        self.assertEqual((found.detector, found.count, found.window), ("smtp", 20, 60.0))
        self.assertTrue(all(port in (25, 465, 587) for _, port in found.samples))
        self.assertEqual(found.samples[-1], ("192.0.2.99", 25))

    def test_smtp_spread_out(self):
        """One SMTP attempt every 4 s stays under 20 a minute."""
        d = Detectors(off(smtp=20))
        for _ in range(200):
            self.assertEqual(self.feed(d, "192.0.2.9", 25, step=4.0), [])

    def test_rate(self):
        """200 new connections within a second (to one destination) are a detection."""
        d = Detectors(off(rate=200))
        for _ in range(199):
            self.assertEqual(self.feed(d, "192.0.2.9", 443, step=0.004), [])
        [found] = self.feed(d, "192.0.2.9", 443)
        self.assertEqual((found.detector, found.count, found.window), ("rate", 200, 1.0))
        self.assertEqual(found.samples, (("192.0.2.9", 443),) * MAX_SAMPLES)

    def test_rate_steady_below(self):
        """150 connections/s for a minute: never 200 in a second."""
        d = Detectors(off(rate=200))
        for _ in range(150 * 60):
            self.assertEqual(self.feed(d, "192.0.2.9", 443, step=1 / 150), [])

    def test_hold_off(self):
        """
        After a detection, the same client and detector are quiet for
        hold_off seconds, then counted from zero; another client and
        another detector are not held off.
        """
        d = Detectors(off(smtp=5, ports=5, hold_off=300.0))
        found = [self.feed(d, "192.0.2.9", 25) for _ in range(5)]
        self.assertEqual([x.detector for x in found[-1]], ["smtp"])
        for _ in range(50):
            self.assertEqual(self.feed(d, "192.0.2.9", 25, step=1.0), [])
        [other] = [x for _ in range(5) for x in self.feed(d, "192.0.2.9", 25, ip="10.89.0.12")]
        self.assertEqual(other.ip, "10.89.0.12")
        ports = [x for p in range(100, 105) for x in self.feed(d, "192.0.2.9", p)]
        self.assertEqual([x.detector for x in ports], ["ports"])
        self.clock.advance(300)
        again = [x for _ in range(5) for x in self.feed(d, "192.0.2.9", 25)]
        self.assertEqual([x.detector for x in again], ["smtp"])
        self.assertEqual(d.counters["smtp"], 3)

    def test_hostile_client_bounded(self):
        """
        20,000 SYNs with random destinations and ports from one client
        (the detectors held off almost at once): its state stays within the
        thresholds and MAX_HOSTS.
        """
        t = Thresholds()
        d = Detectors(t)
        rng = random.Random(7)
        for _ in range(20000):
            self.feed(d, f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.1",
                      rng.randrange(1, 65536), step=0.0001)
        client = d.clients[IP]
        self.assertLessEqual(len(client.hosts.seen), t.destinations)
        self.assertLessEqual(len(client.ports), MAX_HOSTS)
        for ports in client.ports.values():
            self.assertLessEqual(len(ports.seen), t.ports)
        self.assertEqual(set(client.quiet), {"destinations", "rate"})
        # without the hold-off each detection clears its set: still bounded
        d = Detectors(Thresholds(hold_off=0.0))
        for _ in range(20000):
            self.feed(d, f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.1",
                      rng.randrange(1, 65536), step=0.0001)
        client = d.clients[IP]
        self.assertLess(len(client.hosts.seen), t.destinations)
        self.assertGreater(d.counters["destinations"], 100)

    def test_clients_bounded(self):
        """
        Beyond max_clients the client idle longest is forgotten (counted);
        clients idle longer than every window and the hold-off go by
        themselves.
        """
        d = Detectors(Thresholds(max_clients=50, hold_off=120.0))
        for i in range(200):
            self.feed(d, "192.0.2.9", 80, ip=f"10.89.{i // 250}.{i % 250}")
        self.assertEqual(len(d), 50)
        self.assertEqual(d.counters["clients_dropped"], 150)
        self.assertIn("10.89.0.199", d.clients)
        self.clock.advance(119)
        self.feed(d, "192.0.2.9", 80, ip="10.89.0.199")
        d.expire(self.clock.seconds())
        self.assertEqual(len(d), 50)
        self.clock.advance(2)
        d.expire(self.clock.seconds())
        self.assertEqual(list(d.clients), ["10.89.0.199"])

    def test_off(self):
        """A threshold of 0 turns its detector off."""
        d = Detectors(off())
        for i in range(1000):
            self.assertEqual(self.feed(d, f"192.0.2.{i % 250}", 25 + i), [])
        self.assertEqual(d.counters["connections"], 1000)

    def test_ipv4_of(self):
        """The IPv4 address last active with a MAC (for a dual-stack client's IPv6)."""
        d = Detectors(off())
        self.assertIsNone(d.ipv4_of(MAC))
        self.feed(d, "192.0.2.9", 80, ip="10.89.0.5")
        self.feed(d, "2001:db8::9", 80, ip="2001:db8:89::5")
        self.feed(d, "192.0.2.9", 80, ip=IP)
        d.connection(self.clock.seconds(), "10.89.0.6", "02:00:00:00:00:66", "192.0.2.9", 80)
        self.assertEqual(d.ipv4_of(MAC), IP)
        self.assertIsNone(d.ipv4_of("02:00:00:00:00:99"))
