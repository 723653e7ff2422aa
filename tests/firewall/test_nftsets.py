"""
Tests for L{netsuite.firewall.nftsets}: the JSON commands and the parsing
of listings (pure), the totals that only grow, and the table in a real
network namespace (root): made, read back as made, the binding rules.
"""

import ipaddress
import json
import importlib.util
import os
import subprocess
import threading

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite.firewall import nftsets
from netsuite.firewall.nftsets import (KernelNft, NftState, TrafficBook, add_macs,
                                       delete_bindings, delete_macs, expected_rules,
                                       parse_listing, set_prefixes, table_commands)
from netsuite.firewall.rules import FirewallSettings
from netsuite.registry.values import MAC
from netsuite.runner import enter_netns

S = FirewallSettings("br-lan", "wan0", ipaddress.IPv4Network("10.89.0.0/24"), ipv6_mark=4,
                     ipv6_timeout=600)
PREFIX = ipaddress.IPv6Network("2001:db8:89::/64")
MAC_A = MAC("02:4e:00:00:00:0b")
MAC_B = MAC("02:4e:00:00:00:0c")
A6 = ipaddress.IPv6Address("2001:db8:89::a")
B6 = ipaddress.IPv6Address("2001:db8:89::b")

# What `nft -j list table ip6 ns` gave for a table with one MAC, one
# binding and one prefix (trimmed to what the parser reads).
LISTING = {"nftables": [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"table": {"family": "ip6", "name": "ns"}},
    {"set": {"family": "ip6", "name": "auth6", "table": "ns", "type": "ether_addr",
             "elem": [{"elem": {"val": "02:4e:00:00:00:0b",
                                "counter": {"packets": 3, "bytes": 300}}}],
             "stmt": [{"counter": None}]}},
    {"set": {"family": "ip6", "name": "bind6", "table": "ns",
             "type": ["ipv6_addr", "ether_addr"], "flags": ["timeout"], "timeout": 600,
             "elem": [{"elem": {"val": {"concat": ["2001:db8:89::a", "02:4e:00:00:00:0b"]},
                                "timeout": 600, "expires": 590}}]}},
    {"set": {"family": "ip6", "name": "owned6", "table": "ns", "type": "ipv6_addr",
             "flags": ["timeout"], "timeout": 600, "stmt": [{"counter": None}],
             "elem": [{"elem": {"val": "2001:db8:89::a", "timeout": 600, "expires": 590,
                                "counter": {"packets": 5, "bytes": 5000}}},
                      {"elem": {"val": "not an address"}}]}},
    {"set": {"family": "ip6", "name": "lan6", "table": "ns", "type": "ipv6_addr",
             "flags": ["interval"], "elem": [{"prefix": {"addr": "2001:db8:89::", "len": 64}}]}},
    {"set": {"family": "ip6", "name": "claims6", "table": "ns", "type": "ether_addr",
             "flags": ["timeout"], "timeout": 600,
             "elem": [{"elem": {"val": "02:4e:00:00:00:0b", "timeout": 600, "expires": 599}}]}},
    {"chain": {"family": "ip6", "table": "ns", "name": "prerouting6"}},
    {"chain": {"family": "ip6", "table": "ns", "name": "forward6"}},
] + [{"rule": {"family": "ip6", "table": "ns", "chain": chain, "expr": expr}}
     for chain, rules in expected_rules(S).items() for expr in rules]}


class CommandTests(SynchronousTestCase):
    def test_table(self):
        """
        The table is made anew in one transaction: made if missing, deleted,
        made again; four sets (timeouts from ipv6_timeout, counters on
        auth6 and owned6), two base chains at priority -150, the rules, the
        prefixes and the MACs.
        """
        commands = table_commands(S, [PREFIX], [MAC_A])
        self.assertEqual(commands[:3], [{"add": {"table": {"family": "ip6", "name": "ns"}}},
                                        {"delete": {"table": {"family": "ip6", "name": "ns"}}},
                                        {"add": {"table": {"family": "ip6", "name": "ns"}}}])
        sets = {c["add"]["set"]["name"]: c["add"]["set"] for c in commands
                if "set" in c.get("add", {})}
        self.assertEqual(sorted(sets), ["auth6", "bind6", "claims6", "lan6", "owned6"])
        self.assertEqual((sets["bind6"]["timeout"], sets["owned6"]["timeout"]), (600, 600))
        self.assertEqual(sets["auth6"]["stmt"], [{"counter": None}])
        self.assertEqual(sets["owned6"]["stmt"], [{"counter": None}])
        self.assertEqual(sets["lan6"]["flags"], ["interval"])
        chains = [c["add"]["chain"] for c in commands if "chain" in c.get("add", {})]
        self.assertEqual([(c["hook"], c["prio"], c["policy"]) for c in chains],
                         [("prerouting", -150, "accept"), ("forward", -150, "accept")])
        self.assertEqual(len([c for c in commands if "rule" in c.get("add", {})]), 3)
        self.assertEqual(commands[-2:], [
            {"add": {"element": {"family": "ip6", "table": "ns", "name": "lan6",
                                 "elem": [{"prefix": {"addr": "2001:db8:89::", "len": 64}}]}}},
            {"add": {"element": {"family": "ip6", "table": "ns", "name": "auth6",
                                 "elem": ["02:4e:00:00:00:0b"]}}}])

    def test_rules(self):
        """
        The bound rule needs the (source, MAC) binding and the MAC
        authorized, refreshes both sets and sets ipv6_mark; the claim rule
        needs a source in the LAN prefixes that no MAC owns and an
        authorized MAC; the download rule counts on the way to the LAN.
        """
        rules = expected_rules(S)
        bound, claim = rules["prerouting6"]
        text = json.dumps(bound)
        self.assertIn('"right": "@bind6"', text)
        self.assertIn('"op": "update"', text)
        self.assertEqual(bound[-2:], [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {
            "|": [{"meta": {"key": "mark"}}, 4]}}}, {"accept": None}])
        self.assertIn({"match": {"op": "!=", "left": {"payload": {"protocol": "ip6",
                                                                  "field": "saddr"}},
                                 "right": "@owned6"}}, claim)
        self.assertEqual([e["set"]["op"] for e in claim if "set" in e], ["add", "add", "add"])
        # The MAC's claim budget comes before the claim.
        self.assertEqual(claim[4], {"set": {"op": "add", "elem": {"payload": {
            "protocol": "ether", "field": "saddr"}}, "set": "@claims6", "stmt": [
            {"limit": {"rate": nftsets.CLAIM_RATE, "burst": nftsets.CLAIM_BURST,
                       "per": "minute"}}]}})
        self.assertEqual(rules["forward6"][0][0]["match"]["right"], "br-lan")

    def test_elements(self):
        """
        Elements in batches; nothing to do makes no command.
        """
        self.assertEqual(add_macs(S, []), [])
        self.assertEqual(delete_macs(S, [MAC_A, MAC_B])[0]["delete"]["element"]["elem"],
                         ["02:4e:00:00:00:0b", "02:4e:00:00:00:0c"])
        deletes = delete_bindings(S, [(A6, MAC_A)])
        self.assertEqual([d["delete"]["element"]["name"] for d in deletes], ["bind6", "owned6"])
        self.assertEqual(deletes[0]["delete"]["element"]["elem"],
                         [{"concat": ["2001:db8:89::a", "02:4e:00:00:00:0b"]}])
        self.assertEqual([list(c) for c in set_prefixes(S, [])], [["flush"]])


class ParseTests(SynchronousTestCase):
    def test_listing(self):
        """
        Counters by MAC and by address, bindings, prefixes and rules are
        read back; an element in a shape netsuite does not write is
        skipped; the table as made has no problems.
        """
        state = parse_listing(LISTING)
        self.assertEqual(state.auth, {MAC_A: (300, 3)})
        self.assertEqual(state.bind, {A6: MAC_A})
        self.assertEqual(state.owned, {A6: (5000, 5)})
        self.assertEqual(state.prefixes, [PREFIX])
        self.assertEqual(state.problems(S), [])

    def test_problems(self):
        """
        A missing set, a missing chain, a chain flushed by hand are seen.
        """
        state = parse_listing(LISTING)
        state.sets.remove("bind6")
        del state.rules["forward6"]
        state.rules["prerouting6"] = []
        self.assertEqual(state.problems(S), ["sets bind6 missing", "chain prerouting6 changed",
                                             "chain forward6 missing"])
        self.assertEqual(NftState().problems(S)[0], "sets auth6, bind6, claims6, lan6, owned6 missing")


class TrafficBookTests(SynchronousTestCase):
    def test_only_grows(self):
        """
        An address whose entry goes (expired) or starts again keeps what it
        counted; None is no new reading.
        """
        book = TrafficBook()
        self.assertEqual(book.read(MAC_A, {A6: (100, 1), B6: (50, 1)}), (150, 2))
        self.assertEqual(book.read(MAC_A, {A6: (120, 2)}), (170, 3))  # B6 expired
        self.assertEqual(book.read(MAC_A, {A6: (10, 1)}), (180, 4))  # A6 claimed anew
        self.assertEqual(book.read(MAC_A, None), (180, 4))
        self.assertEqual(book.read(MAC_A, {}), (180, 4))
        self.assertEqual(book.read(MAC_B, {}), (0, 0))
        book.keep([MAC_B])
        self.assertEqual(book.read(MAC_A, {}), (0, 0))  # forgotten: starts again


def nft_missing():
    if os.getuid() != 0:
        raise SkipTest("needs root to make a network namespace")
    if importlib.util.find_spec("nftables") is None:
        raise SkipTest("python3-nftables is not installed (scripts/setup.sh links it)")


class KernelTableTests(SynchronousTestCase):
    """
    The table in a namespace of its own, through libnftables.
    """

    def setUp(self):
        nft_missing()
        self.ns = f"v6a-nft{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns])
        subprocess.run(["ip", "-n", self.ns, "link", "add", "br-lan", "type", "bridge"],
                       check=True)

    def in_netns(self, work):
        result = {}

        def run():
            enter_netns(self.ns)  # this thread only
            try:
                result["value"] = work(KernelNft(S))
            except BaseException as e:
                result["error"] = e
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        if "error" in result:
            raise result["error"]
        return result["value"]

    def test_round_trip(self):
        """
        The table loads, reads back as made (no problems: the canonical
        form of the rules is what the kernel gives back), MACs come and go;
        removed, it is gone.
        """
        def work(nft):
            found = {"exists before": nft.exists()}
            nft.install([PREFIX], [MAC_A])
            nft.run(add_macs(S, [MAC_B]) + delete_macs(S, [MAC_A]))
            state = nft.state()
            found.update(problems=state.problems(S), auth=state.auth, prefixes=state.prefixes,
                         bindings=nft.bindings())
            nft.run(set_prefixes(S, [ipaddress.IPv6Network("2001:db8:90::/56")]))
            found["new prefixes"] = nft.state().prefixes
            nft.remove()
            nft.remove()  # harmless
            found["exists after"] = nft.exists()
            return found
        found = self.in_netns(work)
        self.assertEqual(found, {"exists before": False, "problems": [], "auth": {MAC_B: (0, 0)},
                                 "bindings": {},
                                 "prefixes": [PREFIX],
                                 "new prefixes": [ipaddress.IPv6Network("2001:db8:90::/56")],
                                 "exists after": False})

    def test_refused(self):
        """
        A command the kernel refuses raises NftError, naming it.
        """
        def work(nft):
            nft.install([PREFIX], [])
            return nft.run(delete_bindings(S, [(A6, MAC_A)]))
        error = self.assertRaises(nftsets.NftError, self.in_netns, work)
        self.assertIn("nftables refused the commands", str(error))
