"""
One contract for both firewalls: the in-memory fake (with a Clock) and the
kernel adapter (in a network namespace made for the test, its state read
back with the ipset and iptables-legacy tools).
"""

import ipaddress
import importlib.util
import os
import shutil
import subprocess

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from netsuite.firewall.interfaces import Client, IFirewall, NotInLan, Traffic
from netsuite.firewall.kernel import KernelFirewall
from netsuite.firewall.memory import MemoryFirewall, MemoryShaper
from netsuite.firewall.owner import FirewallOwned, netns_key
from netsuite.firewall.rules import FirewallSettings
from netsuite.firewall.slots import Uplink
from netsuite.runner import ThreadRunner
from netsuite.registry.values import MAC

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
B = ipaddress.IPv4Address("10.89.0.12")
MAC_A = MAC("02:4e:00:00:00:0b")
MAC_B = MAC("02:4e:00:00:00:0c")
X = ipaddress.IPv4Address("198.51.100.7")
Y = ipaddress.IPv4Address("203.0.113.9")
Z = ipaddress.IPv4Address("192.0.2.44")


class FirewallContract:
    """
    What every IFirewall does. Subclasses provide C{make(**kw)},
    C{kernel_clients()} (ip -> mac, read from the kernel or the fake's
    simulated kernel) and C{wipe()} (what a firewall restart does).
    """

    @inlineCallbacks
    def test_interface(self):
        """
        It provides IFirewall.
        """
        firewall = yield self.make()
        self.assertTrue(verifyObject(IFirewall, firewall))

    @inlineCallbacks
    def test_authorize(self):
        """
        An authorized client is in the firewall's state and in the kernel,
        bound to its MAC; authorizing again with another MAC rebinds it.
        """
        firewall = yield self.make()
        client = yield firewall.authorize(A, MAC_A)
        self.assertEqual(client, Client(A, MAC_A, 0, 0))
        self.assertEqual(firewall.clients, {A: client})
        kernel = yield self.kernel_clients()
        self.assertEqual(kernel, {A: MAC_A})
        yield firewall.authorize(A, MAC_B)
        kernel = yield self.kernel_clients()
        self.assertEqual(kernel, {A: MAC_B})

    @inlineCallbacks
    def test_deauthorize(self):
        """
        De-authorizing removes the client from state and kernel and says
        whether it was authorized.
        """
        firewall = yield self.make()
        yield firewall.authorize(A, MAC_A)
        yield firewall.authorize(B, MAC_B)
        self.assertTrue((yield firewall.deauthorize(A)))
        self.assertFalse((yield firewall.deauthorize(A)))
        self.assertEqual(list(firewall.clients), [B])
        self.assertEqual((yield self.kernel_clients()), {B: MAC_B})

    @inlineCallbacks
    def test_not_in_lan(self):
        """
        An address outside the LAN (or its network or broadcast address) is
        refused with NotInLan and changes nothing.
        """
        firewall = yield self.make()
        for ip in ("192.0.2.1", "10.89.0.0", "10.89.0.255"):
            yield self.assertFailure(firewall.authorize(ipaddress.IPv4Address(ip), MAC_A),
                                     NotInLan)
        self.assertEqual(firewall.clients, {})

    @inlineCallbacks
    def test_refused_authorize_changes_nothing(self):
        """
        An authorize with limits no shaper accepts (negative, too large, not
        a number) fails with ValueError and leaves the kernel's sets and the
        firewall's state as they were: the limits are checked first.
        """
        firewall = yield self.make()
        yield firewall.authorize(B, MAC_B)
        for up, down in ((-5, 0), (0, 10 ** 9), ("fast", 0), (1.5, 0)):
            yield self.assertFailure(firewall.authorize(A, MAC_A, up, down), ValueError)
            self.assertEqual((yield self.kernel_clients()), {B: MAC_B}, (up, down))
            self.assertEqual(list(firewall.clients), [B])
        self.assertEqual((yield firewall.check()), [])

    @inlineCallbacks
    def test_rates(self):
        """
        Each direction's limit is the first of: the one given to authorize
        (the login's back end's), the device's (rates, by MAC), the
        default; an explicit 0 (no limit) counts as given.
        """
        firewall = yield self.make(rates={MAC_A: (100, None)}, default_limits=(10, 20))
        self.assertEqual((yield firewall.authorize(A, MAC_A)), Client(A, MAC_A, 100, 20))
        self.assertEqual((yield firewall.authorize(A, MAC_A, 5)), Client(A, MAC_A, 5, 20))
        self.assertEqual((yield firewall.authorize(A, MAC_A, None, 0)),
                         Client(A, MAC_A, 100, 0))
        self.assertEqual((yield firewall.authorize(B, MAC_B)), Client(B, MAC_B, 10, 20))
        self.assertEqual(firewall.clients[A], Client(A, MAC_A, 100, 0))

    @inlineCallbacks
    def test_stop_closes_the_lan(self):
        """
        Without keep_clients a clean stop logs everyone out and leaves the
        LAN closed (only the rules dropping forwarded LAN traffic); the next
        start reopens the portal with nobody authorized; remove() takes out
        everything, the closed LAN included.
        """
        firewall = yield self.make()
        yield firewall.authorize(A, MAC_A)
        yield firewall.stop()
        self.assertEqual((yield self.lan_state()), "closed")
        again = yield self.make()
        self.assertEqual((yield self.lan_state()), "running")
        self.assertEqual(again.clients, {})
        yield again.stop()
        yield again.remove()
        self.assertEqual((yield self.lan_state()), "nothing")

    @inlineCallbacks
    def test_traffic(self):
        """
        Every authorized client has traffic counters, zero at first.
        """
        firewall = yield self.make()
        yield firewall.authorize(A, MAC_A)
        traffic = yield firewall.traffic()
        self.assertEqual(traffic, {A: Traffic(0, 0, 0, 0)})

    @inlineCallbacks
    def test_smtp_windows(self):
        """
        An SMTP window opens for one client with its length, is listed,
        and closes on request.
        """
        firewall = yield self.make()
        seconds = yield firewall.open_smtp(A, 120)
        self.assertEqual(seconds, 120)
        windows = yield firewall.smtp_windows()
        self.assertEqual(list(windows), [A])
        self.assertEqual(list(windows[A]), [None])
        self.assertTrue(110 <= windows[A][None] <= 120, windows)
        yield firewall.close_smtp(A)
        self.assertEqual((yield firewall.smtp_windows()), {})
        yield self.assertFailure(firewall.open_smtp(A, 0), ValueError)

    @inlineCallbacks
    def test_smtp_server_windows(self):
        """
        A window towards one server is listed under that server beside the
        client's window to any destination; opening again re-times it;
        closing closes both kinds for that client only; a server in the LAN
        or not unicast is refused.
        """
        firewall = yield self.make()
        yield firewall.open_smtp(A, 120, X)
        yield firewall.open_smtp(A, 60, Y)
        yield firewall.open_smtp(A, 30)
        yield firewall.open_smtp(B, 120, X)
        windows = yield firewall.smtp_windows()
        self.assertEqual(sorted(windows), [A, B])
        self.assertEqual(sorted(windows[A], key=str), sorted([None, X, Y], key=str))
        self.assertTrue(110 <= windows[A][X] <= 120, windows)
        self.assertTrue(50 <= windows[A][Y] <= 60, windows)
        self.assertTrue(20 <= windows[A][None] <= 30, windows)
        yield firewall.open_smtp(A, 300, Y)  # renewed
        windows = yield firewall.smtp_windows()
        self.assertTrue(290 <= windows[A][Y] <= 300, windows)
        yield firewall.close_smtp(A)
        windows = yield firewall.smtp_windows()
        self.assertEqual(list(windows), [B])
        self.assertEqual(list(windows[B]), [X])
        for bad in (B, "10.89.0.1", "0.0.0.0", "224.0.0.5", "255.255.255.255", "nonsense"):
            yield self.assertFailure(firewall.open_smtp(A, 60, bad), ValueError)

    @inlineCallbacks
    def test_check_restores(self):
        """
        After another tool wipes the rules and sets, a check reports and
        restores everything, authorized clients included; a second check
        finds nothing to do.
        """
        firewall = yield self.make()
        yield firewall.authorize(A, MAC_A)
        self.assertEqual((yield firewall.check()), [])
        yield self.wipe()
        self.assertEqual((yield self.kernel_clients()), {})
        repaired = yield firewall.check()
        self.assertTrue(repaired)
        self.assertEqual((yield self.kernel_clients()), {A: MAC_A})
        self.assertEqual((yield firewall.check()), [])

    @inlineCallbacks
    def test_keep_clients(self):
        """
        With keep_clients, a stop leaves authorized clients in the kernel
        and the next start adopts them; without it, a start drops them.
        """
        firewall = yield self.make(keep_clients=True)
        yield firewall.authorize(A, MAC_A)
        yield firewall.stop()
        again = yield self.make(keep_clients=True)
        self.assertEqual(list(again.clients), [A])
        self.assertEqual(again.clients[A].mac, MAC_A)
        yield again.stop()
        fresh = yield self.make(keep_clients=False)
        self.assertEqual(fresh.clients, {})
        self.assertEqual((yield self.kernel_clients()), {})

    @inlineCallbacks
    def test_garden(self):
        """
        Garden addresses are added for their seconds, clamped to [60,
        86400]; a shorter add never lowers an entry's time, a longer one
        raises it; LAN (and loopback, multicast) addresses are skipped;
        bad input fails with ValueError and changes nothing; a flush
        empties the set and says how many entries there were.
        """
        firewall = yield self.make()
        self.assertEqual((yield firewall.add_garden([str(X), Y, str(X)], 120)), 2)
        garden = yield firewall.garden()
        self.assertEqual(sorted(garden), [X, Y])
        self.assertTrue(110 <= garden[X] <= 120, garden)
        self.assertEqual((yield firewall.add_garden([X], 1)), 1)  # 60: not lowered
        self.assertTrue(110 <= (yield firewall.garden())[X] <= 120)
        self.assertEqual((yield firewall.add_garden([Y], 10 ** 7)), 1)
        self.assertTrue(86000 <= (yield firewall.garden())[Y] <= 86400)
        self.assertEqual((yield firewall.add_garden([Z], 1)), 1)
        self.assertTrue(50 <= (yield firewall.garden())[Z] <= 60)
        self.assertEqual((yield firewall.add_garden([str(A), "127.0.0.1", "224.0.0.5"], 60)), 0)
        for ips, seconds in (("198.51.100.8", 60), (["not an address"], 60), ([X], "60"),
                             ([X], None), ([X], True), ([X] * 300, 60)):
            yield self.assertFailure(firewall.add_garden(ips, seconds), ValueError)
        self.assertEqual(sorted((yield firewall.garden())), [Z, X, Y])
        self.assertEqual((yield firewall.flush_garden()), 3)
        self.assertEqual((yield firewall.garden()), {})
        self.assertEqual((yield firewall.check()), [])

    @inlineCallbacks
    def test_garden_full(self):
        """
        Past garden_max_entries new addresses are refused (counted) while
        those already in are still re-timed; a flush makes room.
        """
        firewall = yield self.make(garden_max_entries=2)
        self.assertEqual((yield firewall.add_garden([X, Y, Z], 60)), 2)
        self.assertEqual(sorted((yield firewall.garden())), [X, Y])
        self.assertEqual(firewall.garden_book.refused, 1)
        self.assertEqual((yield firewall.add_garden([X, Z], 600)), 1)
        yield firewall.flush_garden()
        self.assertEqual((yield firewall.add_garden([Z], 60)), 1)

    @inlineCallbacks
    def test_garden_check_restores(self):
        """
        A garden set flushed by another tool is restored by the check, with
        its entries' times; a second check finds nothing to do. keep_clients
        keeps the garden across a restart; a start without it empties it.
        """
        firewall = yield self.make(keep_clients=True)
        yield firewall.add_garden([X], 600)
        yield self.wipe()
        self.assertEqual((yield firewall.garden()), {})
        repaired = yield firewall.check()
        self.assertIn("garden entries restored (1 were missing)", repaired)
        self.assertTrue(590 <= (yield firewall.garden())[X] <= 600)
        self.assertEqual((yield firewall.check()), [])
        yield firewall.stop()
        again = yield self.make(keep_clients=True)
        self.assertEqual(list((yield again.garden())), [X])
        self.assertEqual(list(again.garden_book.left()), [X])
        yield again.stop()
        fresh = yield self.make(keep_clients=False)
        self.assertEqual((yield fresh.garden()), {})


class MemoryFirewallTests(FirewallContract, TestCase):
    """
    The contract, for the in-memory fake.
    """

    def setUp(self):
        self.clock = Clock()
        self.firewall = None

    def make(self, keep_clients=False, garden_max_entries=4096, rates=None,
             default_limits=(0, 0)):
        kernel = self.firewall
        firewall = MemoryFirewall(self.clock, LAN, keep_clients=keep_clients,
                                  garden_max_entries=garden_max_entries, rates=rates,
                                  default_limits=default_limits)
        if kernel is not None:  # the same simulated kernel, as after a restart
            firewall.kernel_clients = kernel.kernel_clients
            firewall.kernel_smtp = kernel.kernel_smtp
            firewall.kernel_smtp_servers = kernel.kernel_smtp_servers
            firewall.kernel_limits = kernel.kernel_limits
            firewall.kernel_garden = kernel.kernel_garden
        self.firewall = firewall
        return firewall.start().addCallback(lambda _: firewall)

    def kernel_clients(self):
        from twisted.internet.defer import succeed
        return succeed({ip: mac for ip, (mac, _) in self.firewall.kernel_clients.items()})

    def wipe(self):
        self.firewall.wipe()

    def lan_state(self):
        from twisted.internet.defer import succeed
        f = self.firewall
        assert not (f.closed and (f.rules_installed or f.kernel_clients))
        return succeed("closed" if f.closed else "running" if f.rules_installed else "nothing")

    def test_smtp_window_expires(self):
        """
        The fake's SMTP window closes by itself when its time is up.
        """
        self.make()
        self.firewall.open_smtp(A, 30)
        self.clock.advance(29)
        self.assertEqual(list(self.successResultOf(self.firewall.smtp_windows())), [A])
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.firewall.smtp_windows()), {})
        self.firewall.open_smtp(A, 30, X)
        self.clock.advance(30)
        self.assertEqual(self.successResultOf(self.firewall.smtp_windows()), {})

    def test_ipv6_traffic(self):
        """
        A client's IPv6 bytes (counted by MAC) are in its traffic; a wipe
        does not lower them, the check restores the MAC; de-authorized,
        its MAC counts no more.
        """
        self.make()
        self.firewall.authorize(A, MAC_A)
        self.firewall.add_traffic(A, up=10)
        self.firewall.add_traffic6(MAC_A, up=100, down=1000)
        self.assertEqual(self.successResultOf(self.firewall.traffic()),
                         {A: Traffic(110, 2, 1000, 1)})
        self.firewall.kernel_macs6.clear()  # nft delete table by hand
        self.firewall.add_traffic6(MAC_A, up=100)  # not counted: not let through
        self.assertEqual(self.successResultOf(self.firewall.traffic())[A].bytes_up, 110)
        self.assertEqual(self.successResultOf(self.firewall.check()),
                         ["IPv6: IPv6 authorized MACs restored (1 were missing, 0 extra)"])
        self.firewall.deauthorize(A)
        self.assertEqual(self.firewall.kernel_macs6, set())

    def test_garden_expires(self):
        """
        The fake's garden entries expire by themselves at their time (the
        longest asked for), and an expired address is a new one again: it
        counts against garden_max_entries no more.
        """
        self.make(garden_max_entries=1)
        self.firewall.add_garden([X], 60)
        self.clock.advance(30)
        self.firewall.add_garden([X], 120)  # raised: ends at 150
        self.firewall.add_garden([X], 60)  # not lowered
        self.assertEqual(self.successResultOf(self.firewall.add_garden([Y], 60)), 0)  # full
        self.clock.advance(119)
        self.assertEqual(self.successResultOf(self.firewall.garden()), {X: 1})
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.firewall.garden()), {})
        self.assertEqual(self.successResultOf(self.firewall.add_garden([Y], 60)), 1)
        self.assertEqual(self.successResultOf(self.firewall.garden()), {Y: 60})
        self.assertEqual(self.successResultOf(self.firewall.check()), [])


def _need_root_and_tools():
    if os.getuid() != 0:
        raise SkipTest("needs root to make network namespaces and change their firewall")
    for tool in ("ip", "ipset", "iptables-legacy-save"):
        if shutil.which(tool) is None:
            raise SkipTest(f"needs {tool} (apt install iproute2 ipset iptables)")


def in_netns(ns, *argv):
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True,
                          capture_output=True, text=True, timeout=10).stdout


class KernelFirewallTests(FirewallContract, TestCase):
    """
    The contract, for the kernel adapter in a namespace of the test's own
    (a LAN bridge and a WAN veth, nothing attached).
    """

    timeout = 60

    def setUp(self):
        _need_root_and_tools()
        self.ns = f"nsfwc{os.getpid()}-{self.id().rsplit('.', 1)[-1][5:14]}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns], check=False)
        for argv in (["ip", "link", "add", "br-lan", "type", "bridge"],
                     ["ip", "link", "set", "br-lan", "up"],
                     ["ip", "addr", "add", "10.89.0.1/24", "dev", "br-lan"],
                     ["ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan0p"]):
            in_netns(self.ns, *argv)
        self.runner = ThreadRunner(reactor, netns=self.ns)
        self.addCleanup(self.runner.stop)
        self.settings = FirewallSettings("br-lan", "wan0", LAN, portal_port=8080)
        self.locks = self.mktemp()

    def make(self, keep_clients=False, shaper=None, garden_max_entries=4096, ipv6="auto",
             rates=None, default_limits=(0, 0)):
        firewall = KernelFirewall(self.settings, self.runner, reactor, shaper=shaper,
                                  keep_clients=keep_clients, lock_dir=self.locks,
                                  garden_max_entries=garden_max_entries, ipv6=ipv6,
                                  rates=rates, default_limits=default_limits)
        self.addCleanup(lambda: firewall.stop() if not keep_clients else None)
        self.addCleanup(firewall.remove)  # runs after the stop
        return firewall.start().addCallback(lambda _: firewall)

    def kernel_clients(self):
        from twisted.internet.defer import succeed
        found = {}
        for line in in_netns(self.ns, "ipset", "save", "ns-auth").splitlines():
            if line.startswith("add "):
                _, _, entry = line.split()[:3]
                ip, mac = entry.split(",")
                found[ipaddress.IPv4Address(ip)] = MAC(mac)
        return succeed(found)

    def wipe(self):
        for argv in (["iptables-legacy", "-F", "NS-FORWARD"],
                     ["iptables-legacy", "-t", "nat", "-D", "PREROUTING", "-j", "NS-PREROUTING"],
                     ["ipset", "flush", "ns-auth"], ["ipset", "flush", "ns-down"],
                     ["ipset", "flush", "ns-garden"]):
            in_netns(self.ns, *argv)

    def lan_state(self):
        from twisted.internet.defer import succeed
        saved = in_netns(self.ns, "iptables-legacy-save")
        rules = [line for line in saved.splitlines() if line.startswith(("-A", ":NS"))]
        sets = in_netns(self.ns, "ipset", "list", "-n").split()
        if not rules and not sets:
            return succeed("nothing")
        if not sets and sorted(rules) == sorted([
                ":NS-FORWARD - [0:0]", "-A FORWARD -j NS-FORWARD",
                "-A NS-FORWARD -i br-lan -j DROP"]):
            return succeed("closed")
        running = any(line.startswith("-A NS-CLIENT") for line in rules)
        return succeed("running" if running else repr(rules))

    @inlineCallbacks
    def test_smtp_server_set_in_kernel(self):
        """
        A window towards a server is an entry (client, tcp:port, server)
        per SMTP port in ns-smtpto, timed by the kernel, matched src,dst,dst
        in NS-SMTP; when the set and its rule are removed by hand the check
        restores both.
        """
        firewall = yield self.make()
        yield firewall.open_smtp(A, 120, X)
        saved = in_netns(self.ns, "ipset", "save", "ns-smtpto")
        self.assertIn("create ns-smtpto hash:ip,port,ip", saved)
        self.assertIn(f"add ns-smtpto {A},tcp:25,{X} timeout ", saved)
        rule = "-A NS-SMTP -m set --match-set ns-smtpto src,dst,dst -j RETURN"
        self.assertIn(rule, in_netns(self.ns, "iptables-legacy-save"))
        in_netns(self.ns, "iptables-legacy", "-F", "NS-SMTP")
        in_netns(self.ns, "ipset", "destroy", "ns-smtpto")
        repaired = yield firewall.check()
        self.assertIn("set ns-smtpto was missing", repaired)
        self.assertIn(rule, in_netns(self.ns, "iptables-legacy-save"))
        self.assertEqual((yield firewall.smtp_windows()), {})

    @inlineCallbacks
    def test_smtp_cap_in_kernel(self):
        """
        smtp_max_per_minute's rules are installed as written, so the check
        finds nothing to repair.
        """
        import attr
        self.settings = attr.evolve(self.settings, smtp_max_per_minute=19)
        firewall = yield self.make()
        self.assertIn("-A NS-SMTP -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m recent "
                      "--rcheck --seconds 60 --hitcount 20 --name ns-smtp --mask "
                      "255.255.255.255 --rsource -j REJECT --reject-with tcp-reset",
                      in_netns(self.ns, "iptables-legacy-save"))
        self.assertEqual((yield firewall.check()), [])

    @inlineCallbacks
    def test_rules_in_kernel(self):
        """
        Start-up installs each rule once, a second start (as after a crash)
        adds no duplicate, and a clean stop then remove() leave no rule,
        set, or jump.
        """
        first = yield self.make()
        saved = in_netns(self.ns, "iptables-legacy-save")
        self.assertEqual(saved.count("-A FORWARD -j NS-FORWARD"), 1)
        self.assertIn("-A NS-PREROUTING -i br-lan -p tcp -m tcp --dport 80 -j REDIRECT "
                      "--to-ports 8080", saved)
        first.owner.release()  # as its process's death would
        second = KernelFirewall(self.settings, self.runner, reactor, lock_dir=self.locks)
        yield second.start()
        again = in_netns(self.ns, "iptables-legacy-save")
        self.assertEqual([l for l in again.splitlines() if l.startswith("-A")],
                         [l for l in saved.splitlines() if l.startswith("-A")])
        yield second.stop()
        yield second.remove()
        del first
        after = in_netns(self.ns, "iptables-legacy-save")
        self.assertEqual([l for l in after.splitlines() if l.startswith(("-A", ":NS"))], [])
        self.assertEqual(in_netns(self.ns, "ipset", "list", "-n").split(), [])

    @inlineCallbacks
    def test_dns_rules_in_kernel(self):
        """
        The DNS redirects (every variant: an authorized-only one, another
        dns_port) and the garden set's rules read back as they were
        written: a check right after the start finds nothing to repair.
        """
        for preauth in (True, False):
            self.settings = FirewallSettings("br-lan", "wan0", LAN, portal_port=8080,
                                             preauth_dns=preauth, dns_port=5353,
                                             dns_after_login="netsuite")
            firewall = yield self.make()
            self.assertEqual((yield firewall.check()), [], preauth)
            saved = in_netns(self.ns, "iptables-legacy-save")
            self.assertIn("-A NS-PREROUTING -i br-lan -p udp -m udp --dport 53 -j REDIRECT "
                          "--to-ports 5353", saved.replace(
                              "-m set --match-set ns-auth src,src ", ""))
            self.assertIn("-A NS-FORWARD -i br-lan -m set --match-set ns-garden dst -j RETURN",
                          saved)
            yield firewall.stop()
            yield firewall.remove()

    def rules6(self):
        saved = in_netns(self.ns, "ip6tables-legacy-save")
        return [line for line in saved.splitlines() if line.startswith(("-A", ":NS"))]

    @inlineCallbacks
    def test_ipv6_rules_in_kernel(self):
        """
        A LAN without IPv6 gets no IPv6 rule. Once br-lan has a global
        IPv6 address, the start installs the IPv6 chains, a check finds
        nothing to repair, and restores a hand flush of the ip6 filter
        table; a clean stop leaves the LAN's forwarded IPv6 refused,
        remove() takes it out. "off" is refused on that LAN.
        """
        firewall = yield self.make()
        self.assertEqual(self.rules6(), [])
        yield firewall.stop()
        in_netns(self.ns, "ip", "addr", "add", "2001:db8:89::1/64", "dev", "br-lan", "nodad")
        refused = KernelFirewall(self.settings, self.runner, reactor, lock_dir=self.locks,
                                 ipv6="off")
        failure = yield self.assertFailure(refused.start(), Exception)
        self.assertIn("the LAN has IPv6 (2001:db8:89::1 on br-lan)", str(failure))
        firewall = yield self.make()
        running = self.rules6()
        self.assertIn("-A FORWARD -j NS6-FORWARD", running)
        self.assertIn("-A INPUT -j NS6-INPUT", running)
        self.assertIn("-A NS6-FORWARD -i br-lan -p tcp -j REJECT --reject-with tcp-reset",
                      running)
        self.assertIn("-A NS6-FORWARD -i br-lan -j REJECT --reject-with icmp6-adm-prohibited",
                      running)
        self.assertIn("-A NS6-INPUT -i br-lan -p ipv6-icmp -m icmp6 --icmpv6-type 135 "
                      "-j ACCEPT", running)
        self.assertIn("-A NS6-INPUT -i br-lan -p tcp -m tcp --dport 8080 -j ACCEPT", running)
        self.assertIn("-A PREROUTING -j NS6-PREROUTING", running)
        self.assertIn("-A NS6-PREROUTING -i br-lan -m mark --mark 0x2/0x2 -j RETURN", running)
        self.assertIn("-A NS6-PREROUTING -i br-lan -p tcp -m tcp --dport 80 -j REDIRECT "
                      "--to-ports 8080", running)
        self.assertEqual((yield firewall.check()), [])
        in_netns(self.ns, "ip6tables-legacy", "-t", "nat", "-F")
        self.assertEqual((yield firewall.check()), [
            "IPv6: chain nat/NS6-PREROUTING has other rules",
            "IPv6: nat/PREROUTING has 0 jumps to NS6-PREROUTING"])
        self.assertEqual(self.rules6(), running)
        in_netns(self.ns, "ip6tables-legacy", "-F")
        self.assertTrue(all("IPv6" in what for what in (yield firewall.check())))
        self.assertEqual(self.rules6(), running)
        self.assertEqual((yield firewall.check()), [])
        yield firewall.stop()
        self.assertEqual(sorted(self.rules6()), sorted([
            ":NS6-FORWARD - [0:0]", "-A FORWARD -j NS6-FORWARD",
            "-A NS6-FORWARD -i br-lan -p tcp -j REJECT --reject-with tcp-reset",
            "-A NS6-FORWARD -i br-lan -j REJECT --reject-with icmp6-adm-prohibited"]))
        yield firewall.remove()
        self.assertEqual(self.rules6(), [])

    def nft6(self, *what):
        done = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "list", *what],
                              capture_output=True, text=True, timeout=10)
        return done.stdout if done.returncode == 0 else None

    @inlineCallbacks
    def test_dual_stack_in_kernel(self):
        """
        On a LAN with IPv6 the nft table goes in with the LAN's prefix; an
        authorized client's MAC is in auth6, out again when de-authorized;
        a check finds nothing to repair, restores a flushed chain, a
        deleted table (with the clients' MACs) and a deleted MAC; a clean
        stop removes the table, as remove() does.
        """
        if shutil.which("nft") is None:
            raise SkipTest("needs nft (apt install nftables)")
        if importlib.util.find_spec("nftables") is None:
            raise SkipTest("needs python3-nftables (scripts/setup.sh links it into .venv)")
        in_netns(self.ns, "ip", "addr", "add", "2001:db8:89::1/64", "dev", "br-lan", "nodad")
        firewall = yield self.make()
        self.assertIn("2001:db8:89::/64", self.nft6("set", "ip6", "ns", "lan6"))
        yield firewall.authorize(A, MAC_A)
        yield firewall.authorize(B, MAC_B)
        self.assertIn(str(MAC_A), self.nft6("set", "ip6", "ns", "auth6"))
        self.assertEqual((yield firewall.check()), [])
        yield firewall.deauthorize(B)
        self.assertNotIn(str(MAC_B), self.nft6("set", "ip6", "ns", "auth6"))
        self.assertEqual((yield firewall.check()), [])
        in_netns(self.ns, "nft", "flush", "chain", "ip6", "ns", "prerouting6")
        self.assertEqual((yield firewall.check()),
                         ["IPv6: nft table restored (chain prerouting6 changed)"])
        in_netns(self.ns, "nft", "delete", "table", "ip6", "ns")
        self.assertEqual((yield firewall.check()), ["IPv6: nft table restored (table missing)"])
        self.assertIn(str(MAC_A), self.nft6("set", "ip6", "ns", "auth6"))
        in_netns(self.ns, "nft", "delete", "element", "ip6", "ns", "auth6", f"{{ {MAC_A} }}")
        self.assertEqual((yield firewall.check()), [
            "IPv6: IPv6 authorized MACs restored (1 were missing, 0 extra)"])
        self.assertEqual((yield firewall.check()), [])
        yield firewall.stop()
        self.assertIsNone(self.nft6("table", "ip6", "ns"))
        firewall = yield self.make()
        self.assertIsNotNone(self.nft6("table", "ip6", "ns"))
        yield firewall.stop()
        yield firewall.remove()
        self.assertIsNone(self.nft6("table", "ip6", "ns"))

    @inlineCallbacks
    def test_bridge_netfilter(self):
        """
        On a bridge with bridge-nf-call-iptables=1 the adapter sets it to 0
        ("fix"), or refuses to start with a message saying why ("refuse").
        """
        switch = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        in_netns(self.ns, "sh", "-c", f"echo 1 > {switch}")
        refusing = KernelFirewall(self.settings, self.runner, reactor,
                                  bridge_netfilter="refuse", lock_dir=self.locks)
        failure = yield self.assertFailure(refusing.start(), Exception)
        self.assertIn("bridge-nf-call-iptables is 1", str(failure))
        yield self.make()
        self.assertEqual(in_netns(self.ns, "cat", switch).strip(), "0")

    @inlineCallbacks
    def test_shaper_refusal_changes_no_set(self):
        """
        When the shaper refuses a client's limits (its qdiscs were flushed),
        the authorize fails and the client is not in the sets.
        """
        shaper = MemoryShaper(LAN)
        firewall = yield self.make(shaper=shaper)
        shaper.flush()
        yield self.assertFailure(firewall.authorize(A, MAC_A, 512, 0), LookupError)
        self.assertEqual((yield self.kernel_clients()), {})
        self.assertEqual(firewall.clients, {})

    @inlineCallbacks
    def test_one_owner(self):
        """
        While one firewall owns the namespace's firewall state, a second is
        refused at start, naming the owner's pid, and changes nothing; so
        is a removal, and its stop leaves the first's state alone. The first
        keeps working. Once it stops, a second may start. The lock is per namespace: the worker thread (in the test's
        namespace) and this one (in the host's) have different keys.
        """
        first = yield self.make()
        yield first.authorize(A, MAC_A)
        before = in_netns(self.ns, "iptables-legacy-save")
        second = KernelFirewall(self.settings, self.runner, reactor, lock_dir=self.locks)
        failure = yield self.assertFailure(second.start(), FirewallOwned)
        self.assertIn(f"pid {os.getpid()}", str(failure))
        yield self.assertFailure(second.remove(), FirewallOwned)
        yield second.stop()  # as its service does when its start failed
        # the rules, not the save's "# Generated ... on <time>" comments
        self.assertEqual([l for l in in_netns(self.ns, "iptables-legacy-save").splitlines()
                          if not l.startswith("#")],
                         [l for l in before.splitlines() if not l.startswith("#")])
        self.assertEqual((yield self.kernel_clients()), {A: MAC_A})
        yield first.authorize(B, MAC_B)
        self.assertEqual((yield self.kernel_clients()), {A: MAC_A, B: MAC_B})
        self.assertEqual((yield first.check()), [])
        yield first.stop()
        yield second.start()
        self.assertEqual(second.clients, {})
        yield second.stop()
        theirs = yield self.runner.run(netns_key)
        self.assertNotEqual(theirs, netns_key())

    @inlineCallbacks
    def test_rate_limits(self):
        """
        The adapter drives its IShaper (a memory one here): limits follow
        authorization and de-authorization, a check restores flushed
        limits, a start with keep_clients adopts them with the clients, one
        without drops them, and a clean stop tears the shaper down.
        """
        shaper = MemoryShaper(LAN)
        firewall = yield self.make(keep_clients=True, shaper=shaper)
        self.assertTrue(shaper.intact())
        yield firewall.authorize(A, MAC_A, 512, 0)
        yield firewall.authorize(B, MAC_B)
        self.assertEqual(shaper.limits(), {A: (512, 0)})
        shaper.flush()
        self.assertIn("rate limits restored", (yield firewall.check()))
        self.assertEqual(shaper.limits(), {A: (512, 0)})
        self.assertEqual((yield firewall.check()), [])
        yield firewall.stop()
        again = yield self.make(keep_clients=True, shaper=shaper)
        self.assertEqual(again.clients[A], Client(A, MAC_A, 512, 0))
        yield again.stop()
        fresh = yield self.make(shaper=shaper)
        self.assertEqual(shaper.limits(), {})
        yield fresh.authorize(B, MAC_B, 0, 64)
        self.assertEqual(shaper.limits(), {B: (0, 64)})
        yield fresh.deauthorize(B)
        self.assertEqual(shaper.limits(), {})
        yield fresh.stop()
        self.assertFalse(shaper.intact())

    @inlineCallbacks
    def test_fair_shares(self):
        """
        With an uplink capacity every authorized client has classes, one
        without limits of its own as (0, 0): de-authorization removes them,
        a check restores them after a flush, a start with keep_clients
        adopts them and one without drops them.
        """
        shaper = MemoryShaper(LAN, Uplink(up_kbit=8000, down_kbit=20000))
        firewall = yield self.make(keep_clients=True, shaper=shaper)
        yield firewall.authorize(A, MAC_A)
        yield firewall.authorize(B, MAC_B, 512, 0)
        self.assertEqual(shaper.limits(), {A: (0, 0), B: (512, 0)})
        self.assertEqual(shaper.kernel_classes[A]["down"], ("uplink", 78, 20000))
        shaper.flush()
        self.assertIn("rate limits restored", (yield firewall.check()))
        self.assertEqual(shaper.limits(), {A: (0, 0), B: (512, 0)})
        yield firewall.stop()
        again = yield self.make(keep_clients=True, shaper=shaper)
        self.assertEqual(again.clients, {A: Client(A, MAC_A), B: Client(B, MAC_B, 512, 0)})
        self.assertEqual(shaper.limits(), {A: (0, 0), B: (512, 0)})
        yield again.stop()
        fresh = yield self.make(shaper=shaper)
        self.assertEqual(shaper.limits(), {})
        yield fresh.authorize(A, MAC_A)
        yield fresh.authorize(B, MAC_B)
        yield fresh.deauthorize(B)
        self.assertEqual(shaper.limits(), {A: (0, 0)})
        yield fresh.stop()
