"""
Tests for L{netsuite.firewall.kernel.KernelFirewall}'s bookkeeping around
its runner, with fake sets and rules and a held runner (no kernel).
"""

import ipaddress

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.kernel import KernelFirewall
from netsuite.firewall.nftsets import NftState, expected_rules
from netsuite.firewall.rules import FirewallSettings
from netsuite.registry.values import MAC
from netsuite.testing import HeldRunner

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
B = ipaddress.IPv4Address("10.89.0.12")
MAC_A = MAC("02:4e:00:00:00:0b")
MAC_B = MAC("02:4e:00:00:00:0c")
PREFIX6 = ipaddress.IPv6Network("2001:db8:89::/64")
A6 = ipaddress.IPv6Address("2001:db8:89::a")
A6b = ipaddress.IPv6Address("2001:db8:89::a:b")
B6 = ipaddress.IPv6Address("2001:db8:89::b")


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
    def __init__(self):
        self.installs = 0
        self.closes = 0

    def install(self):
        self.installs += 1
        return []

    def close(self):
        self.closes += 1


class FakeNetwork:
    """The LAN's IPv6 (why it has it, or None); not a bridge."""

    def __init__(self, ipv6=None):
        self.ipv6 = ipv6
        self.prefixes = [PREFIX6]

    def lan_ipv6(self):
        return self.ipv6

    def lan_prefixes6(self):
        return list(self.prefixes) if self.ipv6 else []

    def bridge_nf_call_iptables(self):
        return None


class FailingSets(FakeSets):
    def add_client(self, ip, mac):
        raise OSError("refused")


class CheckTests(SynchronousTestCase):
    def setUp(self):
        self.runner = HeldRunner()
        self.firewall = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN), self.runner,
                                       Clock(), lock_dir=self.mktemp(), network=FakeNetwork())
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


class GardenSets(FakeSets):
    """The garden set as a list of the batches written to it."""

    garden = "ns-garden"

    def __init__(self):
        FakeSets.__init__(self)
        self.batches = []
        self.fail = False

    def add_garden(self, entries):
        if self.fail:
            raise OSError("refused")
        self.batches.append(list(entries))


X, Y, Z = (ipaddress.IPv4Address(a) for a in ("198.51.100.7", "203.0.113.9", "192.0.2.44"))


class GardenBatchTests(SynchronousTestCase):
    def setUp(self):
        self.runner = HeldRunner()
        self.clock = Clock()
        self.firewall = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN), self.runner,
                                       self.clock, lock_dir=self.mktemp(),
                                       network=FakeNetwork())
        self.firewall.sets = GardenSets()

    def test_adds_batched(self):
        """
        Adds made while one is written go to the kernel together, in one
        runner call, with the longest time asked for each address; each
        caller hears how many of its addresses are in.
        """
        first = self.firewall.add_garden([X], 60)
        second = self.firewall.add_garden([Y, Z], 120)
        third = self.firewall.add_garden([Y], 300)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(first), 1)
        self.runner.run_next()
        self.assertEqual((self.successResultOf(second), self.successResultOf(third)), (2, 1))
        self.assertEqual(self.firewall.sets.batches, [[(X, 60)], [(Z, 120), (Y, 300)]])
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(self.successResultOf(self.firewall.add_garden([X], 30)), 1)
        self.assertEqual(self.runner.calls, [])  # nothing to write: not lowered

    def test_refused_write(self):
        """
        When the kernel refuses a batch its callers get a FirewallError;
        the entries are kept and written with the next batch, unless the
        garden was flushed meanwhile.
        """
        from netsuite.firewall.interfaces import FirewallError
        self.firewall.sets.fail = True
        refused = self.firewall.add_garden([X, Y], 60)
        self.runner.run_next()
        self.failureResultOf(refused, FirewallError)
        self.flushLoggedErrors()
        self.firewall.sets.fail = False
        again = self.firewall.add_garden([Z], 60)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(again), 1)
        self.assertEqual(self.firewall.sets.batches, [[(Z, 60), (X, 60), (Y, 60)]])
        self.firewall.sets.fail = True
        lost = self.firewall.add_garden([ipaddress.IPv4Address("198.51.100.9")], 600)
        self.runner.run_next()
        self.failureResultOf(lost, FirewallError)
        self.firewall.garden_book.clear()  # as flush_garden does, before its runner call
        self.firewall.sets.fail = False
        self.firewall.garden_writes._writes.flush()
        self.assertEqual(self.runner.calls, [])


class StartSets(FakeSets):
    """No set in the kernel yet."""

    garden = "ns-garden"

    def exists(self, name):
        return False

    def close(self):
        pass


class IPv6StartTests(SynchronousTestCase):
    """
    Whether the IPv6 rules go in (firewall.ipv6 and the LAN's IPv6), and
    the refusals, with fake rules and a fake network (no kernel).
    """

    def make(self, mode="auto", lan_ipv6="2001:db8:89::1 on br-lan"):
        self.runner = HeldRunner()
        firewall = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN), self.runner,
                                  Clock(), lock_dir=self.mktemp(), network=FakeNetwork(lan_ipv6),
                                  ipv6=mode)
        firewall.sets = StartSets()
        firewall.rules = FakeRules()
        firewall.v6.rules = FakeRules()
        firewall.v6.nft = FakeNft(firewall.settings)  # not the host's nftables
        return firewall

    def start(self, firewall):
        started = firewall.start()
        self.runner.run_next()
        return started

    def test_auto(self):
        """
        With "auto" the IPv6 rules go in when the LAN has IPv6, and not
        when it has none.
        """
        with_ipv6 = self.make()
        self.successResultOf(self.start(with_ipv6))
        self.assertEqual((with_ipv6.v6.rules.installs, with_ipv6.v6.active), (1, True))
        without = self.make(lan_ipv6=None)
        self.successResultOf(self.start(without))
        self.assertEqual((without.v6.rules.installs, without.v6.active), (0, False))

    def test_on(self):
        """
        With "on" the IPv6 rules go in on a LAN without IPv6 too.
        """
        firewall = self.make("on", lan_ipv6=None)
        self.successResultOf(self.start(firewall))
        self.assertEqual(firewall.v6.rules.installs, 1)

    def test_off_refused_on_ipv6_lan(self):
        """
        "off" on a LAN that has IPv6 refuses to start, saying why, before
        any rule goes in; on a LAN without IPv6 it starts without them.
        """
        from netsuite.firewall.interfaces import FirewallError
        firewall = self.make("off")
        failure = self.failureResultOf(self.start(firewall), FirewallError)
        self.assertIn('firewall.ipv6 is "off" but the LAN has IPv6 (2001:db8:89::1 on br-lan)',
                      str(failure.value))
        self.assertEqual((firewall.rules.installs, firewall.v6.rules.installs), (0, 0))
        self.assertFalse(firewall.owner.held)
        fine = self.make("off", lan_ipv6=None)
        self.successResultOf(self.start(fine))
        self.assertEqual((fine.rules.installs, fine.v6.rules.installs), (1, 0))

    def test_refused_without_ip6tables(self):
        """
        When the LAN has IPv6 and ip6tables cannot be controlled (libiptc
        fails: no ip6_tables module), the start is refused with a message
        naming the cause, before any IPv4 rule goes in, and the namespace's
        lock is let go.
        """
        from iptc.ip4tc import IPTCError
        from netsuite.firewall.interfaces import FirewallError

        class NoIp6tables(FakeRules):
            def install(self):
                raise IPTCError("can't initialize ip6tables table `filter': "
                                "Table does not exist (do you need to insmod?)")
        firewall = self.make()
        firewall.v6.rules = NoIp6tables()
        failure = self.failureResultOf(self.start(firewall), FirewallError)
        message = str(failure.value)
        self.assertIn("the LAN has IPv6 (2001:db8:89::1 on br-lan) but netsuite cannot "
                      "control ip6tables (IPTCError: can't initialize ip6tables table", message)
        self.assertIn("refusing to start", message)
        self.assertEqual(firewall.rules.installs, 0)
        self.assertFalse(firewall.v6.active)
        self.assertFalse(firewall.owner.held)

    def test_check_covers_ipv6(self):
        """
        The periodic check repairs the IPv6 rules once they are in; with
        "auto" it installs them when IPv6 appears on the LAN after the
        start (an address added by another daemon).
        """
        firewall = self.make(lan_ipv6=None)
        self.successResultOf(self.start(firewall))
        checked = firewall.check()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked), [])
        self.assertEqual(firewall.v6.rules.installs, 0)
        firewall.network.ipv6 = "2001:db8:89::1 on br-lan"
        checked = firewall.check()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked), [
            "IPv6 rules installed: the LAN has IPv6 now (2001:db8:89::1 on br-lan)"])
        firewall.v6.rules.install = lambda: ["chain filter/NS6-FORWARD has other rules"]
        checked = firewall.check()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked),
                         ["IPv6: chain filter/NS6-FORWARD has other rules"])

    def test_check_without_ip6tables(self):
        """
        When IPv6 appears on the LAN and ip6tables cannot be controlled,
        the check still makes (and reports) its IPv4 repairs, and logs the
        failure naming the cause, at every check.
        """
        from iptc.ip4tc import IPTCError
        from netsuite.firewall.interfaces import FirewallError
        firewall = self.make(lan_ipv6=None)
        self.successResultOf(self.start(firewall))
        firewall.network.ipv6 = "net.ipv6.conf.all.forwarding is 1"
        firewall.rules.install = lambda: ["chain filter/NS-FORWARD has other rules"]

        def refuse():
            raise IPTCError("can't initialize ip6tables table `filter'")
        firewall.v6.rules.install = refuse
        for _ in range(2):
            checked = firewall.check()
            self.runner.run_next()
            self.assertEqual(self.successResultOf(checked),
                             ["chain filter/NS-FORWARD has other rules"])
            [failure] = self.flushLoggedErrors(FirewallError)
            self.assertIn("the LAN has IPv6 (net.ipv6.conf.all.forwarding is 1) but netsuite "
                          "cannot control ip6tables (IPTCError", str(failure.value))
        self.assertFalse(firewall.v6.active)


class FakeNft:
    """
    netsuite's nft table in memory, run from the same JSON commands as the
    kernel's (L{netsuite.firewall.nftsets}); C{table} is None without one.
    """

    def __init__(self, settings):
        self.settings = settings
        self.table = None
        self.fail = False
        self.installs = 0

    def _need(self):
        if self.fail:
            raise OSError("nftables refused")

    def install(self, prefixes, macs):
        self._need()
        self.installs += 1
        self.table = NftState(auth={mac: (0, 0) for mac in macs}, prefixes=list(prefixes),
                              sets=["auth6", "bind6", "owned6", "lan6", "claims6"],
                              rules={k: list(v) for k, v in
                                     expected_rules(self.settings).items()})

    def run(self, commands):
        self._need()
        for command in commands:
            (verb, body), = command.items()
            if "element" in body:
                name, elements = body["element"]["name"], body["element"]["elem"]
            elif verb == "flush" and "set" in body:
                name, elements = body["set"]["name"], None
            else:
                raise AssertionError(f"unexpected command {command}")
            if self.table is None:
                raise OSError("no table")
            self._apply(verb, name, elements)

    def _apply(self, verb, name, elements):
        t = self.table
        if name == "lan6":
            if verb == "flush":
                t.prefixes = []
            else:
                t.prefixes += [ipaddress.IPv6Network(f"{e['prefix']['addr']}/{e['prefix']['len']}")
                               for e in elements]
            return
        for element in elements:
            if name == "auth6":
                mac = MAC(element)
                if verb == "add":
                    t.auth.setdefault(mac, (0, 0))
                elif mac in t.auth:
                    del t.auth[mac]
                else:
                    raise OSError("no such element")
            elif name == "bind6":
                del t.bind[ipaddress.IPv6Address(element["concat"][0])]
            elif name == "owned6":
                del t.owned[ipaddress.IPv6Address(element)]

    def claim(self, address, mac, up=0, down=0):
        """What the kernel's rules do with an authorized MAC's traffic."""
        address = ipaddress.IPv6Address(address)
        self.table.bind[address] = mac
        b, p = self.table.owned.get(address, (0, 0))
        self.table.owned[address] = (b + down, p + 1)
        b, p = self.table.auth[mac]
        self.table.auth[mac] = (b + up, p + 1)

    def state(self):
        self._need()
        if self.table is None:
            return None
        return NftState(auth=dict(self.table.auth), bind=dict(self.table.bind),
                        owned=dict(self.table.owned), prefixes=list(self.table.prefixes),
                        rules={k: list(v) for k, v in self.table.rules.items()},
                        sets=list(self.table.sets))

    def available(self):
        return True

    def bindings(self):
        state = self.state()
        return state.bind if state is not None else {}

    def remove(self):
        self._need()
        self.table = None


class FakeFlows:
    def __init__(self):
        self.cuts = []
        self.local6 = ()

    def cut(self, ips):
        if ips:
            self.cuts.append(set(ips))
        return len(ips)

    def close(self):
        pass


class TrafficSets(StartSets):
    def downloads(self):
        return {}

    def destroy(self):
        pass

    def clients(self):
        return {ip: (mac, (1000, 10)) for ip, mac in self.members.items()}


class DualStackTests(SynchronousTestCase):
    """
    IPv6 after login: the MAC in auth6, its bindings and flows cut at
    logout, its IPv6 bytes in its traffic, the table checked, kept or
    removed; with fakes (no kernel).
    """

    def setUp(self):
        self.runner = HeldRunner()
        self.clock = Clock()
        self.firewall = self.make()

    def make(self, keep_clients=False):
        firewall = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN), self.runner,
                                  self.clock, lock_dir=self.mktemp(), keep_clients=keep_clients,
                                  network=FakeNetwork("2001:db8:89::1 on br-lan"))
        firewall.sets = TrafficSets()
        firewall.rules = FakeRules()
        firewall.v6.rules = FakeRules()
        firewall.v6.nft = FakeNft(firewall.settings)
        firewall.flows = firewall.v6.flows = FakeFlows()
        return firewall

    def settle(self, d):
        while self.runner.calls:
            self.runner.run_next()
        return self.successResultOf(d)

    def start(self):
        self.settle(self.firewall.start())
        self.assertTrue(self.firewall.v6.nft_active)

    def test_login_and_logout(self):
        """
        authorize puts the MAC in auth6 (one command); deauthorize takes it
        out at once, and with the next cut its bindings go and the flows
        of its IPv6 addresses are cut with its IPv4 ones.
        """
        self.start()
        nft = self.firewall.v6.nft
        self.assertEqual(nft.table.prefixes, [PREFIX6])
        self.settle(self.firewall.authorize(A, MAC_A))
        self.settle(self.firewall.authorize(B, MAC_B))
        self.assertEqual(set(nft.table.auth), {MAC_A, MAC_B})
        nft.claim(A6, MAC_A)
        nft.claim(B6, MAC_B)
        self.assertTrue(self.settle(self.firewall.deauthorize(A)))
        self.assertEqual(set(nft.table.auth), {MAC_B})
        self.assertEqual(set(nft.table.bind), {A6, B6})  # until the cut
        self.clock.advance(self.firewall.cut_delay)
        self.settle(succeed(None))
        self.assertEqual(nft.table.bind, {B6: MAC_B})
        self.assertEqual(set(nft.table.owned), {B6})
        self.assertEqual(self.firewall.flows.cuts, [{A, A6}])

    def test_traffic(self):
        """
        A client's traffic is its IPv4 counters plus its IPv6 ones: upload
        from auth6 by MAC, download summed over its addresses; an address
        that expires takes nothing away.
        """
        self.start()
        self.settle(self.firewall.authorize(A, MAC_A))
        self.firewall.sets.members[A] = MAC_A
        nft = self.firewall.v6.nft
        nft.claim(A6, MAC_A, up=500, down=7000)
        nft.claim(A6b, MAC_A, up=500, down=3000)
        nft.claim(B6, MAC_B if MAC_B in nft.table.auth else MAC_A, down=0)
        traffic = self.settle(self.firewall.traffic())[A]
        self.assertEqual((traffic.bytes_up, traffic.bytes_down), (1000 + 1000, 10000))
        del nft.table.owned[A6b]  # expired
        del nft.table.bind[A6b]
        traffic = self.settle(self.firewall.traffic())[A]
        self.assertEqual((traffic.bytes_up, traffic.bytes_down), (2000, 10000))
        nft.remove()  # deleted by hand: the totals stay until the check remakes it
        traffic = self.settle(self.firewall.traffic())[A]
        self.assertEqual((traffic.bytes_up, traffic.bytes_down), (2000, 10000))
        nft.fail = True  # unreadable: the last totals
        traffic = self.settle(self.firewall.traffic())[A]
        self.assertEqual((traffic.bytes_up, traffic.bytes_down), (2000, 10000))
        self.flushLoggedErrors(OSError)

    def test_check(self):
        """
        The check restores a deleted or changed table with the clients'
        MACs, a missing MAC, removes one no client has, and follows the
        LAN's prefixes.
        """
        self.start()
        self.settle(self.firewall.authorize(A, MAC_A))
        nft = self.firewall.v6.nft
        self.assertEqual(self.settle(self.firewall.check()), [])
        nft.remove()
        self.assertEqual(self.settle(self.firewall.check()),
                         ["IPv6: nft table restored (table missing)"])
        self.assertEqual(set(nft.table.auth), {MAC_A})
        nft.table.rules["prerouting6"] = []  # nft flush chain by hand
        self.assertEqual(self.settle(self.firewall.check()),
                         ["IPv6: nft table restored (chain prerouting6 changed)"])
        nft.table.auth = {MAC_B: (0, 0)}
        self.assertEqual(self.settle(self.firewall.check()),
                         ["IPv6: IPv6 authorized MACs restored (1 were missing, 1 extra)"])
        self.assertEqual(set(nft.table.auth), {MAC_A})
        self.firewall.network.prefixes = [ipaddress.IPv6Network("2001:db8:90::/64")]
        self.assertEqual(self.settle(self.firewall.check()), ["IPv6: IPv6 LAN prefixes updated"])
        self.assertEqual(nft.table.prefixes, [ipaddress.IPv6Network("2001:db8:90::/64")])

    def test_nft_unusable(self):
        """
        Without nftables the firewall starts with IPv6 closed for every
        client (logged); logins get IPv4; a check installs the table once
        nftables works, with the clients' MACs.
        """
        self.firewall.v6.nft.fail = True
        self.settle(self.firewall.start())
        self.assertFalse(self.firewall.v6.nft_active)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.settle(self.firewall.authorize(A, MAC_A))
        self.assertEqual(self.firewall.sets.members, {A: MAC_A})
        self.settle(self.firewall.check())
        self.flushLoggedErrors(OSError)
        self.firewall.v6.nft.fail = False
        self.assertEqual(self.settle(self.firewall.check()), [])  # a first install: no repair
        self.assertEqual(set(self.firewall.v6.nft.table.auth), {MAC_A})

    def test_stop_and_restart(self):
        """
        A clean stop cuts the IPv6 flows of the bound addresses and
        removes the table; a start without keep_clients makes it anew and
        cuts what a crashed run left; with keep_clients a sound table is
        kept, bindings included, its MACs those of the adopted clients.
        """
        self.start()
        self.settle(self.firewall.authorize(A, MAC_A))
        self.firewall.v6.nft.claim(A6, MAC_A)
        self.settle(self.firewall.stop())
        self.assertIsNone(self.firewall.v6.nft.table)
        self.assertIn(A6, set.union(*self.firewall.flows.cuts))

        crashed = self.firewall.v6.nft
        crashed.install([PREFIX6], [MAC_A])
        crashed.claim(A6, MAC_A)
        self.firewall = self.make()
        self.firewall.v6.nft = crashed
        self.start()
        self.assertEqual((crashed.table.auth, crashed.table.bind), ({}, {}))
        self.assertEqual(self.firewall.flows.cuts, [{A6}])

        crashed.install([PREFIX6], [MAC_A, MAC_B])
        crashed.claim(A6, MAC_A)
        self.firewall = self.make(keep_clients=True)
        self.firewall.v6.nft = crashed
        self.firewall.sets.members = {A: MAC_A}
        self.firewall.sets.exists = lambda name: True
        self.firewall.sets.garden_entries = lambda: {}
        installs = crashed.installs
        self.start()
        self.assertEqual(list(self.firewall.clients), [A])
        self.assertEqual((set(crashed.table.auth), crashed.table.bind), ({MAC_A}, {A6: MAC_A}))
        self.assertEqual(crashed.installs, installs)  # kept, not made anew

    def test_mac_shared_or_replaced(self):
        """
        A MAC two clients have keeps IPv6 until both are gone; an address
        authorized anew for another MAC takes IPv6 from the old one.
        """
        self.start()
        nft = self.firewall.v6.nft
        self.settle(self.firewall.authorize(A, MAC_A))
        self.settle(self.firewall.authorize(B, MAC_A))
        self.settle(self.firewall.deauthorize(A))
        self.assertEqual(set(nft.table.auth), {MAC_A})
        self.settle(self.firewall.deauthorize(B))
        self.assertEqual(set(nft.table.auth), set())
        self.settle(self.firewall.authorize(A, MAC_A))
        self.settle(self.firewall.authorize(A, MAC_B))
        self.assertEqual(set(nft.table.auth), {MAC_B})
        self.assertEqual(self.firewall._macs, {MAC_B: 1})

    def test_stop_when_nft_fails(self):
        """
        A table that cannot be deleted at stop is logged: the IPv6 rules are
        closed all the same and the stop ends (the lock let go).
        """
        self.start()
        self.firewall.v6.nft.fail = True
        self.settle(self.firewall.stop())
        self.assertEqual(self.firewall.v6.rules.closes, 1)
        self.assertFalse(self.firewall.owner.held)
        self.assertTrue(self.flushLoggedErrors(OSError))
