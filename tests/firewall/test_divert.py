"""
Tests for L{netsuite.firewall.divert}: the nftables tproxy chain's
commands, run through a fake libnftables that keeps a table from the
same JSON, and the firewall adapter's install, check and stop of it.
"""

import copy
import ipaddress

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.divert import CHAIN, PRIORITY, KernelDivert, divert_commands
from netsuite.firewall.interfaces import FirewallError
from netsuite.firewall.kernel import KernelFirewall
from netsuite.firewall.nftsets import KernelNft, NftError
from netsuite.firewall.rules import FirewallSettings
from netsuite.testing import HeldRunner

from .test_kernel import FakeNetwork, FakeRules, StartSets

LAN = ipaddress.IPv4Network("10.89.0.0/24")
SETTINGS = FirewallSettings("br-lan", "wan0", LAN, tproxy_port=10143, tproxy_ports=(110, 143))


class FakeLibNft:
    """
    libnftables' C{json_cmd}, for the commands netsuite sends: tables of
    chains of rules, kept as C{nft -j list} shows them.
    """

    def __init__(self):
        self.tables = {}  # (family, name) -> {chain name: [chain, [expr, ...]]}

    def json_cmd(self, request):
        tables = copy.deepcopy(self.tables)
        output = {"nftables": []}
        for command in request["nftables"]:
            (verb, body), = command.items()
            (kind, obj), = body.items()
            if kind == "tables":
                output["nftables"] += [{"table": {"family": f, "name": n}}
                                       for f, n in tables if f == obj["family"]]
                continue
            key = (obj["family"], obj["table"] if "table" in obj else obj["name"])
            if kind == "table" and verb == "add":
                tables.setdefault(key, {})
            elif key not in tables:
                return 1, None, f"No such file or directory: {command}"
            elif kind == "table" and verb == "delete":
                del tables[key]
            elif kind == "table" and verb == "list":
                for chain, rules in tables[key].values():
                    output["nftables"].append({"chain": dict(chain)})
                    output["nftables"] += [{"rule": {"family": key[0], "table": key[1],
                                                     "chain": chain["name"], "expr": expr}}
                                           for expr in rules]
            elif kind == "chain" and verb == "add":
                tables[key].setdefault(obj["name"], [obj, []])
            elif kind == "chain" and verb == "flush":
                tables[key][obj["name"]][1] = []
            elif kind == "rule" and verb == "add":
                tables[key][obj["chain"]][1].append(obj["expr"])
            else:
                raise AssertionError(f"unexpected command {command}")
        self.tables = tables  # one transaction: all or nothing
        return 0, output, ""


def divert(settings=SETTINGS):
    nft = KernelNft(settings)
    nft._nft = FakeLibNft()
    return KernelDivert(settings, nft), nft._nft


class DivertTests(SynchronousTestCase):
    def test_rule(self):
        """
        One chain in table ip <nft_table>, prerouting just after legacy
        mangle (-150): TCP with the divert mark is TPROXY'd to tproxy_port
        and gets tproxy_mark (the policy routing's) only if a socket took it.
        """
        commands = divert_commands(SETTINGS)
        chains = [c["add"]["chain"] for c in commands if "chain" in c.get("add", {})]
        self.assertEqual(chains, [{"family": "ip", "table": "ns", "name": CHAIN,
                                   "type": "filter", "hook": "prerouting", "prio": -149,
                                   "policy": "accept"}])
        self.assertEqual(PRIORITY, -149)
        (rule,) = [c["add"]["rule"]["expr"] for c in commands if "rule" in c.get("add", {})]
        mark = {"meta": {"key": "mark"}}
        self.assertEqual(rule, [
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            {"match": {"op": "==", "left": {"&": [mark, 4]}, "right": 4}},
            {"tproxy": {"port": 10143}},
            {"mangle": {"key": mark, "value": {"|": [mark, 1]}}},
            {"accept": None}])

    def test_install_check(self):
        """
        Installed, the table has no problems; installed again it is
        replaced, not doubled; flushed, deleted or re-hooked by hand, the
        problem is found.
        """
        kernel, lib = divert()
        self.assertEqual(kernel.problems(), ["nft table ip ns missing"])
        kernel.install()
        kernel.install()
        self.assertEqual(kernel.problems(), [])
        self.assertEqual(len(lib.tables[("ip", "ns")][CHAIN][1]), 1)
        lib.tables[("ip", "ns")][CHAIN][1] = []
        self.assertEqual(kernel.problems(), ["nft chain ip ns divert changed"])
        kernel.install()
        lib.tables[("ip", "ns")][CHAIN][0]["prio"] = 0
        self.assertEqual(kernel.problems(),
                         ["nft chain ip ns divert changed (hook, priority or policy)"])
        del lib.tables[("ip", "ns")][CHAIN]
        self.assertEqual(kernel.problems(), ["nft chain ip ns divert missing"])
        kernel.remove()
        kernel.remove()  # harmless without a table
        self.assertEqual(lib.tables, {})

    def test_other_port(self):
        """The rule follows tproxy_port and the marks."""
        kernel, lib = divert(FirewallSettings("br-lan", "wan0", LAN, tproxy_port=20110,
                                              tproxy_mark=0x100, divert_mark=0x200))
        kernel.install()
        (rule,) = lib.tables[("ip", "ns")][CHAIN][1]
        self.assertEqual(rule[2], {"tproxy": {"port": 20110}})
        self.assertEqual(rule[1]["match"]["right"], 0x200)
        self.assertEqual(rule[3]["mangle"]["value"]["|"][1], 0x100)
        self.assertEqual(divert()[0].problems(), ["nft table ip ns missing"])


class FakeDivert:
    def __init__(self):
        self.installed = False
        self.fail = False
        self.log = []

    def install(self):
        if self.fail:
            raise NftError("nftables refused")
        self.installed = True
        self.log.append("install")

    def problems(self):
        return [] if self.installed else ["nft table ip ns missing"]

    def remove(self):
        self.installed = False
        self.log.append("remove")


class Network(FakeNetwork):
    def install_tproxy_routing(self):
        pass

    def remove_tproxy_routing(self):
        pass

    def tproxy_routing_problems(self):
        return []


class Rules(FakeRules):
    def __init__(self, log):
        super().__init__()
        self.log = log

    def install(self):
        self.log.append("rules")
        return super().install()

    def close(self):
        self.log.append("close")
        super().close()


class AdapterTests(SynchronousTestCase):
    """KernelFirewall with a TPROXY port: the diversion's life (no kernel)."""

    def setUp(self):
        self.runner = HeldRunner()
        self.firewall = KernelFirewall(SETTINGS, self.runner, Clock(), lock_dir=self.mktemp(),
                                       network=Network(), ipv6="off")
        self.firewall.sets = StartSets()
        self.firewall.sets.destroy = lambda: None
        self.firewall.divert = FakeDivert()
        self.firewall.rules = Rules(self.firewall.divert.log)

    def start(self):
        started = self.firewall.start()
        self.runner.run_next()
        return started

    def test_start_check_stop(self):
        """
        The table goes in at start before the iptables rules (which set the
        mark it acts on), comes back when a check finds it gone, and goes
        after the rules are closed at a clean stop.
        """
        self.successResultOf(self.start())
        self.assertEqual(self.firewall.divert.log, ["install", "rules"])
        self.firewall.divert.installed = False  # nft flush ruleset, by hand
        checked = self.firewall.check()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked),
                         ["TPROXY diversion restored (nft table ip ns missing)"])
        self.assertTrue(self.firewall.divert.installed)
        checked = self.firewall.check()
        self.runner.run_next()
        self.assertEqual(self.successResultOf(checked), [])
        del self.firewall.divert.log[:]
        stopped = self.firewall.stop()
        self.runner.run_next()
        self.successResultOf(stopped)
        self.assertEqual(self.firewall.divert.log, ["close", "remove"])

    def test_no_nftables(self):
        """
        Without nftables the start is refused with a clear error (the mail
        ports would be reset for everyone), before any rule goes in.
        """
        self.firewall.divert.fail = True
        error = self.failureResultOf(self.start(), FirewallError)
        self.assertIn("cannot make its nftables table ip ns", str(error.value))
        self.assertIn("python3-nftables", str(error.value))
        self.assertEqual(self.firewall.rules.installs, 0)
