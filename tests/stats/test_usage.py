"""
Tests for L{netsuite.stats.usage}: /stats/usage and /stats/counters, and
the core part of the service (L{netsuite.stats.tap._sampler}).
"""

from twisted.trial.unittest import SynchronousTestCase

from netsuite.registry import NO_ANSWER
from netsuite.stats import tap
from netsuite.stats.model import Totals, Traffic
from netsuite.stats.usage import MAX_TOP, declare_core
from netsuite.testing import registry_on_clock

from .test_tap import config


class Counted:
    def __init__(self, **counters):
        self.counters = counters


class UsageTests(SynchronousTestCase):
    def setUp(self):
        self.registry, self.clock = registry_on_clock("stats")
        self.traffic = Traffic()
        declare_core(self.registry, self.traffic, Counted(samples=3, skipped=1),
                     Counted(batches=2, seconds=0.5))
        self.traffic.update(100, {"10.89.0.%d" % i: ("02:4e:00:00:00:%02x" % i,
                                                     Totals(i, 1000 * i, 1, 1))
                                  for i in range(1, 151)}, uplink=Totals(1, 2, 3, 4))

    def send(self, message):
        return self.successResultOf(self.registry.send("/stats/usage", message))

    def test_by_ip_and_mac(self):
        """A client is found by its address or its MAC (any spelling)."""
        by_ip = self.send({"ip": "10.89.0.7"})
        self.assertEqual(by_ip["found"], True)
        self.assertEqual(by_ip["usage"]["mac"], "02:4e:00:00:00:07")
        self.assertEqual(by_ip["usage"]["total"]["bytes_down"], 7000)
        self.assertEqual(self.send({"mac": "02-4E-00-00-00-07"}), by_ip)
        self.assertEqual(self.send({"ip": "10.89.0.200"}), {"found": False, "usage": None})

    def test_top(self):
        """The top clients, by a key, at most MAX_TOP, with the uplink."""
        answer = self.send({"top": 2, "key": "total"})
        self.assertEqual([u["ip"] for u in answer["clients"]], ["10.89.0.150", "10.89.0.149"])
        self.assertEqual(answer["uplink"]["total"]["bytes_down"], 2)
        self.assertEqual(len(self.send({"top": 1000})["clients"]), MAX_TOP)

    def test_bad_requests(self):
        """A bad request is a failing listener: no answer, logged."""
        for bad in ({}, {"top": -1}, {"top": "x"}, {"top": 3, "key": "bytes"},
                    {"mac": "nope"}):
            self.assertIs(self.send(bad), NO_ANSWER)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 5)

    def test_counters(self):
        """The sampler's counters, and the store's prefixed store_."""
        self.assertEqual(self.successResultOf(self.registry.send("/stats/counters", {})),
                         {"samples": 3, "skipped": 1, "store_batches": 2,
                          "store_seconds": 0.5})


class PartTests(SynchronousTestCase):
    def test_core_part(self):
        """
        The service has the sampler (on the configured interval, the
        firewall's process, the uplink interface or the firewall's WAN)
        and the store, and declares the mailboxes.
        """
        registry, clock = registry_on_clock("stats")
        service = tap.serviceFromConfig(config(interval=5, firewall_process="fw",
                                               directory="/tmp/statscore-none"), registry, clock)
        sampler = [s for s in service if type(s).__name__ == "Sampler"][0]
        self.assertEqual((sampler.interval, sampler.address, sampler.uplink_interface),
                         (5, "fw:/firewall/counters", "wan0"))
        self.assertEqual([m["path"] for m in registry.describe("/stats/")],
                         ["/stats/counters", "/stats/usage"])
