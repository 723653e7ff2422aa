"""
Tests for L{netsuite.firewall.shaping}: the kernel shaper's tc state, read
back with the C{tc} binary as an independent check, and real TCP transfers
through it. They need root: each builds a LAN of its own (a bridge in an
access-point namespace, two client namespaces on veth ports,
10.77.<n>.0/24; L{tests.firewall.shaperlab}).

What every shaper does, the kernel's included, is in
L{tests.firewall.test_shaper_contract}; the arithmetic and the messages in
L{tests.firewall.test_slots} and L{tests.firewall.test_tcmessages}.
"""

from ipaddress import IPv4Network

from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.shaping import Shaper
from netsuite.firewall.slots import Uplink

from .shaperlab import IP, TC, KernelTestsMixin, run

LIMIT_KBIT = 4000


class SetupTests(KernelTestsMixin, SynchronousTestCase):
    def counts(self):
        """
        What the tc binary sees: (qdisc kind, device) -> count, filters with
        a body on each attachment point, classes per device.
        """
        qdiscs = {}
        for q in self.lab.tc("qdisc", "show"):
            if q["kind"] in ("htb", "ingress"):
                key = (q["kind"], q["dev"])
                qdiscs[key] = qdiscs.get(key, 0) + 1
        def nodes(*where):
            return len([f for f in self.lab.tc("filter", "show", *where)
                        if "options" in f and f["options"].get("fh", "").count(":") == 2
                        and not f["options"]["fh"].endswith(":")])
        return {
            "qdiscs": qdiscs,
            "ingress filters": nodes("dev", "br0", "ingress"),
            "lan filters": nodes("dev", "br0", "parent", "1:"),
            "ifb filters": nodes("dev", "ifb-ns0", "parent", "1:"),
            "lan classes": sorted(self.lab.classes("br0")),
            "ifb classes": sorted(self.lab.classes("ifb-ns0")),
        }

    def test_setup_twice(self):
        """
        setup() twice leaves one copy of each qdisc, class and filter; a
        limit set in between survives the second setup() (its read-back:
        the contract's test_setup_twice).
        """
        self.shaper.setup()
        first = self.counts()
        self.assertEqual(first, {
            "qdiscs": {("htb", "br0"): 1, ("ingress", "br0"): 1, ("htb", "ifb-ns0"): 1},
            "ingress filters": 1, "lan filters": 1, "ifb filters": 1,
            "lan classes": ["1:ffff"], "ifb classes": ["1:ffff"],
        })
        self.assertTrue(self.lab.links()["ifb-ns0"]["operstate"] in ("UNKNOWN", "UP"))
        self.shaper.limit(self.lab.ip_a, 1000, 2000)
        self.shaper.setup()
        second = self.counts()
        self.assertEqual(second["qdiscs"], first["qdiscs"])
        self.assertEqual((second["ingress filters"], second["lan filters"], second["ifb filters"]),
                         (1, 2, 2))
        self.assertEqual(second["lan classes"], ["1:a", "1:ffff"])

    def test_setup_repairs(self):
        """
        setup() replaces what is not its own or is broken: a foreign root
        qdisc, an ingress filter that redirects elsewhere, a tree for another
        LAN, an IFB left down; the result is the same as a fresh setup().
        """
        ipr = self.lab.ipr
        lan = ipr.link_lookup(ifname="br0")[0]
        # a layout left by a run with another LAN ...
        Shaper("br0", IPv4Network("10.99.0.0/16"), ipr=ipr).setup()
        # ... then disturbed: the IFB down, a foreign root qdisc on the LAN,
        # a foreign ingress filter redirecting elsewhere
        ipr.link("set", index=ipr.link_lookup(ifname="ifb-ns0")[0], state="down")
        ipr.link("add", ifname="ifb-other", kind="ifb")
        other = ipr.link_lookup(ifname="ifb-other")[0]
        ipr.tc("del", index=lan, root=True)
        ipr.tc("add", "tbf", lan, 0x50000, rate="1mbit", burst=10000, latency="50ms")
        ipr.tc("del", "ingress", lan, 0xFFFF0000)
        ipr.tc("add", "ingress", lan, 0xFFFF0000)
        ipr.tc("add-filter", "u32", lan, parent=0xFFFF0000, prio=5, protocol=0x0003,
               target=0x10001, keys=["0x0/0x0+0"],
               action={"kind": "mirred", "direction": "egress", "action": "redirect",
                       "ifindex": other})
        self.assertFalse(self.shaper.intact())
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        self.assertEqual(self.counts(), {
            "qdiscs": {("htb", "br0"): 1, ("ingress", "br0"): 1, ("htb", "ifb-ns0"): 1},
            "ingress filters": 1, "lan filters": 1, "ifb filters": 1,
            "lan classes": ["1:ffff"], "ifb classes": ["1:ffff"],
        })
        [redirect] = [f for f in self.lab.tc("filter", "show", "dev", "br0", "ingress")
                      if "actions" in f.get("options", {})]
        self.assertEqual(redirect["options"]["actions"][0]["to_dev"], "ifb-ns0")
        self.assertEqual(redirect["pref"], 1)
        lan_tree = [f for f in self.lab.tc("filter", "show", "dev", "br0", "parent", "1:")
                    if f.get("options", {}).get("fh") == "800::1"]
        want = "a4d%02x00" % (int(self.lab.network.network_address) >> 8 & 0xFF)
        self.assertEqual(lan_tree[0]["options"]["match"]["value"], want)
        self.assertEqual(lan_tree[0]["options"]["hash_off"], 16)
        ifb_tree = [f for f in self.lab.tc("filter", "show", "dev", "ifb-ns0", "parent", "1:")
                    if f.get("options", {}).get("fh") == "800::1"]
        self.assertEqual(ifb_tree[0]["options"]["match"]["value"], want)
        self.assertEqual(ifb_tree[0]["options"]["hash_off"], 12)

    def test_teardown(self):
        """
        teardown() removes the qdiscs and the IFB device, and nothing else;
        a second teardown() is harmless (and intact() is then False: the
        contract's test_teardown).
        """
        self.shaper.setup()
        self.shaper.limit(self.lab.ip_a, 1000, 1000)
        self.shaper.teardown()
        self.shaper.teardown()
        kinds = {(q["kind"], q["dev"]) for q in self.lab.tc("qdisc", "show")}
        self.assertFalse({k for k in kinds if k[0] in ("htb", "ingress")})
        links = self.lab.links()
        self.assertNotIn("ifb-ns0", links)
        self.assertIn("br0", links)

    def test_intact(self):
        """
        intact() is True after setup(), False once someone deletes the LAN
        ingress qdisc, a root qdisc or the IFB, and True again after setup().
        """
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        run([TC, "-n", self.lab.ap, "qdisc", "del", "dev", "br0", "ingress"])
        self.assertFalse(self.shaper.intact())
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        run([TC, "-n", self.lab.ap, "qdisc", "del", "dev", "ifb-ns0", "root"])
        self.assertFalse(self.shaper.intact())
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        run([TC, "-n", self.lab.ap, "filter", "del", "dev", "br0", "parent", "1:",
             "prio", "10", "handle", "800::1", "u32"])
        self.assertFalse(self.shaper.intact())
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        run([IP, "-n", self.lab.ap, "link", "del", "ifb-ns0"])
        self.assertFalse(self.shaper.intact())
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())


class LimitTests(KernelTestsMixin, SynchronousTestCase):
    def setUp(self):
        KernelTestsMixin.setUp(self)
        self.shaper.setup()

    def test_classes_in_tc(self):
        """
        The tc binary agrees with what limit() set (the limits() read-back
        of the same steps: the contract's test_limits_read_back): upload
        classes on the IFB, download on the LAN; after unlimit() no client
        node is left in the tree.
        """
        a, b = self.lab.ip_a, self.lab.ip_b
        self.shaper.limit(a, 1000, 3000)
        self.shaper.limit(b, 0, 2000)
        self.shaper.limit(a, 500, 0)
        self.assertEqual(self.lab.classes("ifb-ns0"), {"1:a": "500Kbit", "1:ffff": "10Gbit"})
        self.assertEqual(self.lab.classes("br0"), {"1:14": "2Mbit", "1:ffff": "10Gbit"})
        self.shaper.unlimit(b)
        self.shaper.unlimit(b)
        self.shaper.unlimit(self.lab.network.network_address + 99)
        self.shaper.unlimit(a)
        lan_nodes = [f for f in self.lab.tc("filter", "show", "dev", "br0", "parent", "1:")
                     if f.get("options", {}).get("fh", "").startswith("2:")
                     and not f["options"]["fh"].endswith(":")]
        self.assertEqual(lan_nodes, [])

    def test_throughput(self):
        """
        A client limited to 4000 kbit/s both ways moves about that much with
        a real TCP transfer either way, while the other client runs
        unthrottled; after unlimit() the first client is fast again.
        """
        lab = self.lab
        limit_bits = LIMIT_KBIT * 1000
        self.shaper.limit(lab.ip_a, LIMIT_KBIT, LIMIT_KBIT)
        rates = {
            "A down": lab.transfer(self, lab.ap, lab.a, lab.ip_a),
            "A up": lab.transfer(self, lab.a, lab.ap, lab.gateway),
            "B down": lab.transfer(self, lab.ap, lab.b, lab.ip_b),
            "B up": lab.transfer(self, lab.b, lab.ap, lab.gateway),
        }
        self.shaper.unlimit(lab.ip_a)
        rates["A down, unlimited"] = lab.transfer(self, lab.ap, lab.a, lab.ip_a)
        rates["A up, unlimited"] = lab.transfer(self, lab.a, lab.ap, lab.gateway)
        report = ", ".join(f"{k} {v / 1e6:.1f} Mbit/s" for k, v in rates.items())
        print(f"\nthroughput with A limited to {LIMIT_KBIT} kbit/s: {report}")
        for key in ("A down", "A up"):
            self.assertLessEqual(rates[key], 1.5 * limit_bits, report)
            self.assertGreaterEqual(rates[key], 0.25 * limit_bits, report)
        for key in ("B down", "B up", "A down, unlimited", "A up, unlimited"):
            self.assertGreaterEqual(rates[key], 5 * limit_bits, report)


class FairShareTests(KernelTestsMixin, SynchronousTestCase):
    """
    The class tree of fair shares, read back with tc.
    """

    UPLINK = Uplink(up_kbit=8000, down_kbit=20000)

    def fair(self, uplink=UPLINK):
        return Shaper("br0", self.lab.network, ipr=self.lab.ipr, uplink=uplink)

    def parents(self, dev):
        """
        handle -> (parent, rate, ceil) as tc prints them ("root" for a root
        class).
        """
        out = run([TC, "-n", self.lab.ap, "class", "show", "dev", dev]).stdout
        found = {}
        for line in out.splitlines():
            words = line.split()
            if words[:2] == ["class", "htb"]:
                parent = "root" if words[3] == "root" else words[4]
                found[words[2]] = (parent, words[words.index("rate") + 1],
                                   words[words.index("ceil") + 1])
        return found

    def test_tree(self):
        """
        Each direction has the uplink's class 1:fffe at its capacity and
        each client a class under it: rate the guarantee (capacity / 254),
        ceil its own limit or the capacity; the default class stays a root
        class outside it.
        """
        shaper = self.fair()
        shaper.setup()
        shaper.limit(self.lab.ip_a, 0, 0)
        shaper.limit(self.lab.ip_b, 1000, 4000)
        self.assertEqual(self.parents("br0"), {
            "1:ffff": ("root", "10Gbit", "10Gbit"),
            "1:fffe": ("root", "20Mbit", "20Mbit"),
            "1:a": ("1:fffe", "78Kbit", "20Mbit"),
            "1:14": ("1:fffe", "78Kbit", "4Mbit"),
        })
        self.assertEqual(self.parents("ifb-ns0"), {
            "1:ffff": ("root", "10Gbit", "10Gbit"),
            "1:fffe": ("root", "8Mbit", "8Mbit"),
            "1:a": ("1:fffe", "31Kbit", "8Mbit"),
            "1:14": ("1:fffe", "31Kbit", "1Mbit"),
        })

    def test_switching(self):
        """
        A tree without fair shares and one with cannot be turned into each
        other class by class: setup() with the other setting rebuilds the
        tree empty (the firewall then puts its clients back), both ways.
        """
        plain = Shaper("br0", self.lab.network, ipr=self.lab.ipr)
        plain.setup()
        plain.limit(self.lab.ip_a, 1000, 1000)
        shaper = self.fair()
        self.assertFalse(shaper.intact())
        shaper.setup()
        self.assertTrue(shaper.intact())
        self.assertEqual(shaper.limits(), {})
        shaper.limit(self.lab.ip_a, 1000, 1000)
        self.assertEqual(self.parents("br0")["1:a"][0], "1:fffe")
        plain.setup()
        self.assertEqual(plain.limits(), {})
        self.assertNotIn("1:fffe", self.parents("br0"))

    def test_capacity_changed(self):
        """
        Read back by a shaper with another capacity (a restart with a new
        config), a client without a limit of its own still reads as (0, 0):
        "no limit" is a ceil equal to the uplink class's rate in the tree,
        whatever the new capacity; setup() sets the new capacity and keeps
        the clients' classes, which the firewall then sets again
        (KernelFirewall.start puts back every client it adopts).
        """
        self.fair().setup()
        self.fair().limit(self.lab.ip_a, 0, 0)
        self.fair().limit(self.lab.ip_b, 0, 4000)
        other = self.fair(Uplink(up_kbit=4000, down_kbit=10000))
        self.assertEqual(other.limits(), {self.lab.ip_a: (0, 0), self.lab.ip_b: (0, 4000)})
        other.setup()
        self.assertEqual(self.parents("br0")["1:fffe"], ("root", "10Mbit", "10Mbit"))
        other.limit(self.lab.ip_a, 0, 0)
        other.limit(self.lab.ip_b, 0, 4000)
        self.assertEqual(other.limits(), {self.lab.ip_a: (0, 0), self.lab.ip_b: (0, 4000)})
        self.assertEqual(self.parents("br0")["1:a"], ("1:fffe", "39Kbit", "10Mbit"))

    def test_uplink_class_deleted(self):
        """
        With no client under it, another tool can delete the uplink's
        class: the layout is then not intact, and setup() puts it back.
        """
        shaper = self.fair()
        shaper.setup()
        run([TC, "-n", self.lab.ap, "class", "del", "dev", "br0", "classid", "1:fffe"])
        self.assertFalse(shaper.intact())
        shaper.setup()
        self.assertTrue(shaper.intact())
        shaper.limit(self.lab.ip_a, 0, 0)
        self.assertEqual(shaper.limits(), {self.lab.ip_a: (0, 0)})
