"""
Tests for L{netsuite.stats.sampler}: the sampler against the in-memory
firewall's service on a Clock, the uplink read through a SyncRunner.
"""

import ipaddress

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.compact import rows_of
from netsuite.firewall.service import FirewallService
from netsuite.registry import Stop
from netsuite.registry.values import MAC
from netsuite.stats.model import Totals, Traffic
from netsuite.stats.sampler import Sampler, parse_compact
from netsuite.testing import MemoryFirewall, SyncRunner, registry_on_clock

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A, B = ipaddress.IPv4Address("10.89.0.11"), ipaddress.IPv4Address("10.89.0.12")
MAC_A, MAC_B = MAC("02:4e:00:00:00:0b"), MAC("02:4e:00:00:00:0c")


class Uplink:
    """A fake interface: its counters, or what reading them raises."""

    def __init__(self):
        self.totals = Totals()
        self.error = None
        self.reads = []

    def __call__(self, interface):
        self.reads.append(interface)
        if self.error is not None:
            raise self.error
        return self.totals


class SamplerTests(SynchronousTestCase):
    def setUp(self):
        self.registry, self.clock = registry_on_clock("ap")
        self.clock.advance(1_000_003)
        self.firewall = MemoryFirewall(self.clock, LAN)
        self.firewall_service = FirewallService(self.firewall, self.registry, self.clock,
                                                check_interval=0)
        self.firewall_service.startService()
        self.traffic = Traffic()
        self.uplink = Uplink()
        self.runner = SyncRunner()
        self.sampler = Sampler(self.traffic, self.registry, self.clock, self.runner, 10,
                               uplink_interface="wan0", read_uplink=self.uplink)
        self.seen = []
        self.traffic.subscribe(lambda now, updated: self.seen.append(
            (now, sorted((u.ip, u.mac, u.raw) for u in updated))))

    def start(self):
        self.sampler.startService()
        self.addCleanup(self.sampler.stopService)

    def authorize(self, ip, mac):
        self.successResultOf(self.firewall.authorize(ip, mac))

    def test_aligned_to_interval(self):
        """
        Samples come at whole multiples of the interval on the reactor's
        clock, not at start + interval.
        """
        self.start()
        self.clock.advance(6.9)
        self.assertEqual(self.seen, [])
        self.clock.advance(0.1)
        self.assertEqual([now for now, _ in self.seen], [1_000_010])
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual([now for now, _ in self.seen], [1_000_010, 1_000_020, 1_000_030])
        self.assertEqual(self.sampler.counters["samples"], 3)

    def test_readings(self):
        """
        Each sample gives the model every authorized client's MAC and
        counters (one compact firewall request) and the uplink's counters,
        read in the runner.
        """
        self.authorize(A, MAC_A)
        self.authorize(B, MAC_B)
        self.firewall.add_traffic(A, up=1000, down=50_000, packets=10)
        self.uplink.totals = Totals(5000, 90_000, 40, 80)
        self.start()
        self.clock.advance(7)
        self.assertEqual(self.seen, [(1_000_010, [
            ("10.89.0.11", "02:4e:00:00:00:0b", Totals(1000, 50_000, 10, 10)),
            ("10.89.0.12", "02:4e:00:00:00:0c", Totals())])])
        self.assertEqual(self.traffic.uplink.raw, Totals(5000, 90_000, 40, 80))
        self.assertEqual(self.uplink.reads, ["wan0"])
        self.assertEqual(self.runner.calls, 1)
        self.firewall.add_traffic(A, down=20_000, packets=2)
        self.clock.advance(10)
        usage = self.traffic.clients["10.89.0.11"]
        self.assertEqual(usage.total.bytes_down, 70_000)
        self.assertEqual(usage.rate_down, 2000.0)
        self.assertEqual(self.sampler.counters["clients"], 2)

    def test_firewall_restart(self):
        """
        A firewall restart (its counters start again from zero) loses
        nothing already counted: the totals never go back.
        """
        self.authorize(A, MAC_A)
        self.firewall.add_traffic(A, down=50_000)
        self.start()
        self.clock.advance(7)
        self.firewall.wipe()
        self.successResultOf(self.firewall.check())
        self.firewall.add_traffic(A, down=3000)
        self.clock.advance(10)
        usage = self.traffic.clients["10.89.0.11"]
        self.assertEqual(usage.raw.bytes_down, 3000)
        self.assertEqual(usage.total.bytes_down, 53_000)
        self.assertEqual(usage.today.bytes_down, 53_000)

    def test_deauthorized_forgotten(self):
        """A client no longer authorized leaves the model at the next sample."""
        self.authorize(A, MAC_A)
        self.start()
        self.clock.advance(7)
        self.assertIn("10.89.0.11", self.traffic.clients)
        self.successResultOf(self.firewall.deauthorize(A))
        self.clock.advance(10)
        self.assertEqual(self.traffic.clients, {})

    def test_slow_sample_skips(self):
        """
        A sample still under way when the next is due makes that one
        skipped and counted, not queued; once it ends, sampling goes on.
        """
        self.firewall_service.stopService()
        self.registry, self.clock = registry_on_clock("ap", default_deadline=30)
        self.sampler = Sampler(self.traffic, self.registry, self.clock, self.runner, 10,
                               read_uplink=self.uplink)
        self.registry.declare("/firewall/counters")
        held = []

        def slow(message):
            d = Deferred()
            held.append(d)
            return d
        self.registry.listen("/firewall/counters", slow)
        self.start()
        self.clock.advance(10)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(len(held), 1)
        self.assertEqual(self.sampler.counters["skipped"], 2)
        held[0].callback(Stop({"count": 0, "rows": b""}))
        self.assertEqual(self.sampler.counters["samples"], 1)
        self.assertEqual(self.uplink.reads, [])
        self.clock.advance(10)
        self.assertEqual(len(held), 2)

    def test_firewall_missing_or_late(self):
        """
        No firewall answering (nothing listening, or later than the bus's
        deadline) is an error counted, not a crash, and the model is not
        fed; sampling goes on and recovers once the firewall answers.
        """
        self.firewall_service.stopService()
        self.registry, self.clock = registry_on_clock("ap", default_deadline=2)
        self.sampler = Sampler(self.traffic, self.registry, self.clock, self.runner, 10,
                               read_uplink=self.uplink)
        self.registry.declare("/firewall/counters")
        self.start()
        self.clock.advance(10)
        self.assertEqual(self.sampler.counters["errors"], 1)
        listener = self.registry.listen("/firewall/counters", lambda m: Deferred())
        self.clock.advance(10)
        self.clock.advance(2)
        self.assertEqual(self.sampler.counters["errors"], 2)
        self.flushLoggedErrors()
        listener.remove()
        rows = rows_of([("10.89.0.11", "02:4e:00:00:00:0b", 1, 2, 3, 4)])
        self.registry.listen("/firewall/counters", lambda m: Stop({"count": 1, "rows": rows}))
        self.clock.advance(8)
        self.assertEqual(self.sampler.counters["samples"], 1)
        self.assertEqual(self.sampler.counters["skipped"], 0)
        self.assertEqual(list(self.traffic.clients), ["10.89.0.11"])

    def test_uplink_failure(self):
        """
        An uplink that cannot be read is counted; the clients' sample still
        counts (the uplink keeps its last reading).
        """
        self.authorize(A, MAC_A)
        self.uplink.error = LookupError("no interface 'wan0'")
        self.start()
        self.clock.advance(7)
        self.assertEqual(self.sampler.counters["uplink_errors"], 1)
        self.assertEqual(self.sampler.counters["samples"], 1)
        self.assertEqual(self.traffic.uplink.sampled, 0.0)
        self.assertEqual(self.seen[0][1][0][0], "10.89.0.11")

    def test_remote_firewall(self):
        """firewall_process names the process the counters are asked of."""
        sampler = Sampler(self.traffic, self.registry, self.clock, self.runner, 10,
                          firewall_process="firewall")
        self.assertEqual(sampler.address, "firewall:/firewall/counters")
        here = Sampler(self.traffic, self.registry, self.clock, self.runner, 10,
                       firewall_process="ap")
        self.assertEqual(here.address, "/firewall/counters")

    def test_parse_compact_refuses(self):
        """What is not a compact answer is refused with a clear error."""
        for answer in ({"10.89.0.11": {"bytes_up": 1}}, None, {"rows": "x"},
                       {"rows": b"short"}):
            self.assertRaises(ValueError, parse_compact, answer)
