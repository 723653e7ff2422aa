"""
The walled garden by name (L{netsuite.dns.garden}), with a fake firewall.
"""

from ipaddress import IPv4Address

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dns.garden import GardenFeeder, GardenNames
from netsuite.registry.interfaces import Stop
from netsuite.testing import registry_on_clock

A, B, C = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"), IPv4Address("192.0.2.3")


class NamesTests(SynchronousTestCase):
    def test_matching(self) -> None:
        names = GardenNames(["*.example.org", "Login.Provider.net."])
        self.assertTrue(names.matches(b"www.example.org"))
        self.assertTrue(names.matches(b"a.b.EXAMPLE.org."))
        self.assertFalse(names.matches(b"example.org"))
        self.assertFalse(names.matches(b"badexample.org"))
        self.assertTrue(names.matches(b"login.provider.net"))
        self.assertFalse(names.matches(b"x.login.provider.net"))
        self.assertFalse(GardenNames([]))

    def test_bad_patterns(self) -> None:
        for bad in ["", "*.", "a.*.org", "*"]:
            self.assertRaises(ValueError, GardenNames, [bad])


class FakeFirewall:
    def __init__(self) -> None:
        self.registry, self.clock = registry_on_clock("dns")
        self.registry.declare("/firewall/garden/add")
        self.calls = []
        self.answers = []
        self.registry.listen("/firewall/garden/add", self.add)

    def add(self, message):
        self.calls.append((sorted(message["ips"]), message["seconds"]))
        if self.answers:
            return self.answers.pop(0)
        return Stop({"added": len(message["ips"])})


class FeederTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.firewall = FakeFirewall()
        self.clock = self.firewall.clock
        self.feeder = GardenFeeder(self.firewall.registry, self.clock, batch=2)

    def test_batched(self) -> None:
        """
        What one turn adds goes in requests of at most C{batch} addresses,
        grouped by seconds.
        """
        self.feeder.add([(A, 300), (B, 300), (C, 60)])
        self.assertEqual(self.firewall.calls, [])
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(self.firewall.calls, [([A, B], 300), ([C], 60)])
        self.assertEqual(self.feeder.counters["garden_sent"], 3)

    def test_full_refused_from_the_firewall(self) -> None:
        """The firewall's count of addresses refused (garden set full) is kept."""
        self.firewall.answers = [Stop({"added": 1, "refused": 4})]
        self.feeder.add([(A, 300), (B, 300)])
        self.clock.advance(0)
        self.assertEqual(self.feeder.counters["garden_full_refused"], 4)

    def test_not_again_until_half_time(self) -> None:
        self.feeder.add([(A, 100)])
        self.clock.advance(0)
        self.feeder.add([(A, 100)])
        self.clock.advance(49)
        self.feeder.add([(A, 100)])
        self.clock.advance(0)
        self.assertEqual(len(self.firewall.calls), 1)
        self.clock.advance(2)
        self.feeder.add([(A, 90)])
        self.clock.advance(0)
        self.assertEqual(self.firewall.calls[1], ([A], 90))

    def test_one_at_a_time(self) -> None:
        held = Deferred()
        self.firewall.answers.append(held)
        self.feeder.add([(A, 10)])
        self.clock.advance(0)
        self.feeder.add([(B, 10)])
        self.clock.advance(0)
        self.assertEqual(len(self.firewall.calls), 1)
        held.callback(Stop({"added": 1}))
        self.clock.advance(0)
        self.assertEqual(self.firewall.calls[1], ([B], 10))

    def test_failure_logged_not_fatal(self) -> None:
        """
        A failing firewall: counted and logged; the addresses go again on
        the next answer.
        """
        self.firewall.answers.append(fail(RuntimeError("nope")))
        self.feeder.add([(A, 10)])
        self.clock.advance(0)
        self.assertEqual(self.feeder.counters["garden_failures"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.feeder.add([(A, 10)])
        self.clock.advance(0)
        self.assertEqual(len(self.firewall.calls), 2)

    def test_no_firewall(self) -> None:
        """
        No /firewall/garden/add mailbox: counted, nothing raised.
        """
        registry, clock = registry_on_clock("dns")
        feeder = GardenFeeder(registry, clock)
        feeder.add([(A, 10)])
        clock.advance(0)
        self.assertEqual(feeder.counters["garden_failures"], 1)

    def test_bounded(self) -> None:
        feeder = GardenFeeder(self.firewall.registry, self.clock, max_pending=2)
        feeder.add([(A, 10), (B, 10), (C, 10)])
        self.assertEqual(feeder.counters["garden_dropped"], 1)
