"""
Tests for L{netsuite.firewall.kernel.KernelFirewall}'s bookkeeping around
its runner, with fake sets and rules and a held runner (no kernel).
"""

import ipaddress

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.kernel import KernelFirewall
from netsuite.firewall.rules import FirewallSettings
from netsuite.registry.values import MAC
from netsuite.testing import HeldRunner

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
B = ipaddress.IPv4Address("10.89.0.12")
MAC_A = MAC("02:4e:00:00:00:0b")
MAC_B = MAC("02:4e:00:00:00:0c")


class FakeSets:
    """The authorized set as a dict; the download set follows it."""

    auth = "ns-auth"
    down = "ns-down"

    def __init__(self):
        self.members = {}

    def create_missing(self):
        return []

    def size(self, name):
        return len(self.members)

    def clients(self):
        return dict(self.members)

    def add_client(self, ip, mac):
        self.members[ip] = mac

    def remove_client(self, ip):
        self.members.pop(ip, None)


class FakeRules:
    def install(self):
        return []


class FailingSets(FakeSets):
    def add_client(self, ip, mac):
        raise OSError("refused")


class CheckTests(SynchronousTestCase):
    def setUp(self):
        self.runner = HeldRunner()
        self.firewall = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN), self.runner,
                                       Clock(), lock_dir=self.mktemp())
        self.firewall.sets = FakeSets()
        self.firewall.rules = FakeRules()

    def test_check_during_authorize(self):
        """
        A check queued while an authorize is under way (in the kernel
        when the check runs, not yet in the adapter's clients) leaves the
        new client in: the login is not undone, nothing is "repaired".
        """
        authorized = self.firewall.authorize(A, MAC_A)
        checked = self.firewall.check()
        self.runner.run_next()
        self.successResultOf(authorized)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked), [])
        self.assertEqual(self.firewall.sets.members, {A: MAC_A})

    def test_check_during_failed_authorize(self):
        """
        An authorize that fails while a check waits is not let in by the
        check.
        """
        self.firewall.sets = FailingSets()
        authorized = self.firewall.authorize(A, MAC_A)
        checked = self.firewall.check()
        self.runner.run_next()
        self.failureResultOf(authorized, OSError)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked), [])
        self.assertEqual(self.firewall.sets.members, {})

    def test_check_still_repairs(self):
        """
        Clients someone else removed, or added, are still restored while
        another client's authorize is under way.
        """
        self.firewall.authorize(B, MAC_B)
        self.runner.run_next()
        self.firewall.sets.members = {}  # flushed by someone else
        self.firewall.sets.members[ipaddress.IPv4Address("10.89.0.99")] = MAC_A
        self.firewall.authorize(A, MAC_A)
        checked = self.firewall.check()
        self.runner.run_next()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked),
                         ["authorized clients restored (1 were missing)"])
        self.assertEqual(self.firewall.sets.members, {A: MAC_A, B: MAC_B})
        self.assertEqual(self.firewall._adding, {})
