"""
The limits before login (L{netsuite.dns.policy}), on a Clock.
"""

import base64
import random

from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dns.policy import Policy, RateLimit, label_entropy, qtype_name, qtype_number

REAL_NAMES = [b"www.debian.org", b"connectivitycheck.gstatic.com", b"captive.apple.com",
              b"www.msftconnecttest.com", b"detectportal.firefox.com",
              b"clients3.google.com", b"d2c8v52ll5s99u.cloudfront.net",
              b"ec2-54-123-45-67.compute-1.amazonaws.com", b"r3---sn-4g5e6nsz.googlevideo.com"]


def base32_label(rng: random.Random, n: int) -> bytes:
    return base64.b32encode(bytes(rng.randrange(256) for _ in range(64))).lower()[:n]


class PolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.policy = Policy(self.clock, rate=2.0, burst=3, refuse_types=[dns.NULL, dns.TXT],
                             suspect_threshold=4, event_interval=10.0, max_clients=2)

    def test_real_names_pass(self) -> None:
        policy = Policy(self.clock, burst=100)
        for name in REAL_NAMES:
            self.assertIsNone(policy.check("10.89.0.100", name, dns.A), name)

    def test_tunnel_labels_refused(self) -> None:
        """
        iodine-like base32 labels: 63 bytes fail on length, 32 to 40 bytes
        on entropy (nearly all of them).
        """
        rng = random.Random(16)
        policy = Policy(self.clock, burst=10000)
        self.assertEqual(policy.check("10.89.0.100", base32_label(rng, 63) + b".t.example",
                                      dns.A), "label_length")
        refused = sum(policy.check("10.89.0.100", base32_label(rng, 36) + b".t.example",
                                   dns.A) == "entropy" for _ in range(200))
        self.assertGreaterEqual(refused, 190)
        self.assertGreater(label_entropy(base32_label(rng, 40)), 3.9)

    def test_name_length(self) -> None:
        name = b".".join([b"abcdefgh"] * 20)
        self.assertEqual(self.policy.check("10.89.0.100", name, dns.A), "name_length")

    def test_qtype(self) -> None:
        self.assertEqual(self.policy.check("10.89.0.100", b"x.example", dns.TXT), "qtype")
        self.assertIsNone(self.policy.check("10.89.0.100", b"x.example", dns.AAAA))

    def test_rate(self) -> None:
        """
        A burst of 3, then 2 per second.
        """
        ip = "10.89.0.100"
        self.assertEqual([self.policy.check(ip, b"a.example", dns.A) for _ in range(4)],
                         [None, None, None, "rate"])
        self.assertEqual(self.policy.check("10.89.0.101", b"a.example", dns.A), None)
        self.clock.advance(0.5)
        self.assertEqual([self.policy.check(ip, b"a.example", dns.A) for _ in range(2)],
                         [None, "rate"])
        self.clock.advance(100)
        self.assertEqual([self.policy.check(ip, b"a.example", dns.A) for _ in range(4)],
                         [None, None, None, "rate"])

    def test_events_rate_limited(self) -> None:
        """
        One /dns/refused per client per interval; /dns/tunnel-suspect at each
        multiple of the threshold.
        """
        ip = "10.89.0.100"
        out = [self.policy.refused(ip, b"x.example", dns.TXT, "qtype") for _ in range(4)]
        self.assertEqual(out[0], [("/dns/refused", {"ip": ip, "name": "x.example",
                                                    "qtype": "TXT", "reason": "qtype",
                                                    "suppressed": 0})])
        self.assertEqual(out[1], [])
        self.assertEqual(out[3], [("/dns/tunnel-suspect",
                                   {"ip": ip, "count": 4, "reasons": {"qtype": 4}})])
        self.clock.advance(10)
        (event,) = self.policy.refused(ip, b"y.example", dns.NULL, "qtype")
        self.assertEqual(event[1]["suppressed"], 3)
        self.assertEqual(self.policy.refusals(), {ip: {"count": 5, "reasons": {"qtype": 5}}})
        self.assertEqual(self.policy.counters["qtype"], 5)

    def test_table_bounded(self) -> None:
        for n in range(5):
            self.policy.refused(f"10.89.0.{n}", b"x", dns.TXT, "qtype")
        self.assertEqual(sorted(self.policy.refusals()), ["10.89.0.3", "10.89.0.4"])

    def test_qtypes(self) -> None:
        self.assertEqual(qtype_number("txt"), dns.TXT)
        self.assertEqual(qtype_number("ANY"), 255)
        self.assertEqual(qtype_number("TYPE65399"), 65399)
        self.assertEqual(qtype_name(255), "ANY")
        self.assertEqual(qtype_name(65399), "TYPE65399")
        self.assertRaises(ValueError, qtype_number, "BOGUS")


class RateLimitTests(SynchronousTestCase):
    def test_bucket_per_client_bounded(self):
        """
        Each client has its own bucket; past max_clients the least recently
        seen is forgotten (and starts again full).
        """
        clock = Clock()
        limit = RateLimit(clock, rate=1.0, burst=2, max_clients=2)
        self.assertEqual([limit.take("a") for _ in range(3)], [True, True, False])
        self.assertTrue(limit.take("b"))
        clock.advance(1.5)
        self.assertEqual([limit.take("a") for _ in range(2)], [True, False])
        limit.take("c")  # "b" is forgotten, "a" kept
        self.assertEqual(sorted(limit._buckets), ["a", "c"])
        self.assertFalse(limit.take("a"))
