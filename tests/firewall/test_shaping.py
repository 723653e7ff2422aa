"""
Tests for L{netsuite.firewall.shaping}: per-client rate limits.

The arithmetic and message tests need nothing. The kernel tests need root:
they build a LAN of their own (a bridge in an access-point namespace, two
client namespaces on veth ports, 10.77.<n>.0/24), drive a L{Shaper} in it,
read the state back with the C{tc} binary as an independent check, and
measure real TCP transfers with C{tcpmeter.py}.
"""

import json
import os
import shutil
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite.firewall import shaping
from netsuite.firewall.shaping import (
    DEFAULT_MINOR,
    HASH_HT,
    ROOT_HANDLE,
    Shaper,
    address_of,
    bytes_to_kbit,
    client_slot,
    ip_match_key,
    kbit_to_bytes,
    network_match_key,
    u32_key,
)

IP = shutil.which("ip") or "/sbin/ip"
TC = shutil.which("tc") or "/sbin/tc"
METER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcpmeter.py")

LIMIT_KBIT = 4000
TRANSFER_SECONDS = 1.0


# --- no root needed ---------------------------------------------------------

class SlotArithmeticTests(SynchronousTestCase):
    """
    Class ids and u32 handles derived from the address.
    """

    def test_slash24(self):
        """
        On a /24 the class minor is the host offset, the bucket the low byte
        and the node 1: 10.77.9.10 is class 1:a, u32 node 2:a:1.
        """
        slot = client_slot(IPv4Address("10.77.9.10"), IPv4Network("10.77.9.0/24"))
        self.assertEqual(slot.offset, 10)
        self.assertEqual(slot.classid, 0x1000A)
        self.assertEqual(slot.minor, 0xA)
        self.assertEqual(slot.bucket, 0x0A)
        self.assertEqual(slot.node, 1)
        self.assertEqual(slot.hash_handle, 0x0020A000)   # 2:a:
        self.assertEqual(slot.filter_handle, 0x0020A001)  # 2:a:1

    def test_slash16(self):
        """
        On a /16 addresses sharing a low byte share a bucket and differ by
        node; the largest host offset, 0xfffe, stays below the default
        class 1:ffff.
        """
        net = IPv4Network("10.78.0.0/16")
        a = client_slot(IPv4Address("10.78.0.7"), net)
        b = client_slot(IPv4Address("10.78.3.7"), net)
        last = client_slot(IPv4Address("10.78.255.254"), net)
        self.assertEqual((a.bucket, a.node, a.classid), (7, 1, 0x10007))
        self.assertEqual((b.bucket, b.node, b.classid), (7, 4, 0x10307))
        self.assertEqual(b.filter_handle, 0x00207004)    # 2:7:4
        self.assertEqual((last.classid, last.bucket, last.node), (0x1FFFE, 0xFE, 0x100))
        self.assertLess(last.minor, DEFAULT_MINOR)

    def test_unique_on_slash16(self):
        """
        Every host of a /16 has its own class and its own u32 handle, all
        in range (minor 1..0xfffe, node 1..0x100 in 12 bits).
        """
        net = IPv4Network("10.78.0.0/16")
        base = int(net.network_address)
        classids, handles = set(), set()
        for offset in range(1, 0xFFFF):
            slot = client_slot(IPv4Address(base + offset), net)
            classids.add(slot.classid)
            handles.add(slot.filter_handle)
            self.assertTrue(1 <= slot.node <= 0xFFF)
            self.assertEqual(slot.filter_handle >> 20, HASH_HT >> 20)
        self.assertEqual(len(classids), 0xFFFE)
        self.assertEqual(len(handles), 0xFFFE)
        self.assertNotIn(ROOT_HANDLE | DEFAULT_MINOR, classids)

    def test_unaligned_small_network(self):
        """
        On a /26 that does not start at .0 the bucket is still the low byte
        of the address (what the kernel hashes), not the offset.
        """
        slot = client_slot(IPv4Address("192.0.2.70"), IPv4Network("192.0.2.64/26"))
        self.assertEqual((slot.offset, slot.bucket, slot.node), (6, 70, 1))
        self.assertEqual(address_of(slot.minor, IPv4Network("192.0.2.64/26")),
                         IPv4Address("192.0.2.70"))

    def test_address_of(self):
        """
        The minor of a class maps back to its address; minors that are not
        hosts of the LAN (0, broadcast, the default class) map to None.
        """
        net = IPv4Network("10.77.9.0/24")
        self.assertEqual(address_of(10, net), IPv4Address("10.77.9.10"))
        self.assertIsNone(address_of(0, net))
        self.assertIsNone(address_of(255, net))
        self.assertIsNone(address_of(DEFAULT_MINOR, net))
        self.assertIsNone(address_of(DEFAULT_MINOR, IPv4Network("10.78.0.0/16")))

    def test_refused(self):
        """
        Addresses outside the LAN, its network and broadcast addresses, and
        LANs larger than a /16 are refused.
        """
        net = IPv4Network("10.77.9.0/24")
        for ip in ("10.77.8.10", "10.77.9.0", "10.77.9.255"):
            self.assertRaises(ValueError, client_slot, IPv4Address(ip), net)
        self.assertRaises(ValueError, client_slot, IPv4Address("10.0.0.1"),
                          IPv4Network("10.0.0.0/15"))
        self.assertRaises(ValueError, Shaper, "br0", IPv4Network("10.0.0.0/8"))

    def test_rates(self):
        """
        tc's kbit is 1000 bit/s; the kernel counts bytes/s.
        """
        self.assertEqual(kbit_to_bytes(4000), 500000)
        self.assertEqual(bytes_to_kbit(500000), 4000)
        self.assertEqual(bytes_to_kbit(kbit_to_bytes(1)), 1)


class U32KeyTests(SynchronousTestCase):
    """
    u32 keys: (value, mask, offset from the IP header).
    """

    def test_ip_keys(self):
        self.assertEqual(ip_match_key(IPv4Address("10.77.9.10"), "dst"),
                         (0x0A4D090A, 0xFFFFFFFF, 16))
        self.assertEqual(ip_match_key(IPv4Address("10.77.9.10"), "src"),
                         (0x0A4D090A, 0xFFFFFFFF, 12))

    def test_network_keys(self):
        self.assertEqual(network_match_key(IPv4Network("10.77.9.0/24"), "dst"),
                         (0x0A4D0900, 0xFFFFFF00, 16))
        self.assertEqual(network_match_key(IPv4Network("10.78.0.0/16"), "src"),
                         (0x0A4E0000, 0xFFFF0000, 12))

    def test_bad_keys(self):
        self.assertRaises(ValueError, u32_key, 1, 0xFF, 2)          # unaligned
        self.assertRaises(ValueError, u32_key, 0x100, 0xFF, 0)      # value outside mask
        self.assertRaises(ValueError, ip_match_key, IPv4Address("10.0.0.1"), "both")

    def test_encoded_filter(self):
        """
        A client's filter message carries the hash bucket, the class id and
        one key, and reads back the same through a decode.
        """
        from pyroute2.netlink.rtnl.tcmsg import tcmsg

        net = IPv4Network("10.77.9.0/24")
        ip = IPv4Address("10.77.9.10")
        slot = client_slot(ip, net)
        msg = shaping._msg(7, handle=slot.filter_handle, parent=ROOT_HANDLE,
                           info=shaping._filter_info(shaping.CLIENT_PRIO, shaping.ETH_P_IP),
                           attrs=[('TCA_KIND', 'u32'),
                                  ('TCA_OPTIONS', {'attrs': [
                                      ['TCA_U32_HASH', slot.hash_handle],
                                      ['TCA_U32_CLASSID', slot.classid],
                                      ['TCA_U32_SEL', {'keys': [ip_match_key(ip, "dst")],
                                                       'flags': 1}]]})])
        msg['header']['type'] = shaping.RTM_NEWTFILTER
        msg['header']['flags'] = shaping.REPLACE
        msg.encode()
        back = tcmsg(bytes(msg.data))
        back.decode()
        self.assertEqual(back['handle'], 0x0020A001)
        self.assertEqual(back['info'], (10 << 16) | 0x0008)   # prio 10, htons(ETH_P_IP)
        opts = back.get_attr('TCA_OPTIONS')
        self.assertEqual(opts.get_attr('TCA_U32_HASH'), 0x0020A000)
        self.assertEqual(opts.get_attr('TCA_U32_CLASSID'), 0x1000A)
        self.assertEqual(shaping._u32_sel(opts),
                         {'flags': 1, 'hoff': 0, 'hmask': 0, 'keys': [(0x0A4D090A, 0xFFFFFFFF, 16)]})

    def test_encoded_class(self):
        """
        A class carries rate = ceil in bytes/s with the Ethernet link layer
        and no rate tables.
        """
        opts = shaping._htb_class_options(4000)
        parms = dict(opts['attrs'])['TCA_HTB_PARMS']
        self.assertEqual((parms['rate'], parms['ceil']), (500000, 500000))
        self.assertEqual(parms['rate___reserved'], shaping.LINKLAYER_ETHERNET)
        self.assertEqual([name for name, _ in opts['attrs']], ['TCA_HTB_PARMS'])
        big = dict(shaping._htb_class_options(40_000_000)['attrs'])
        self.assertEqual(big['TCA_HTB_RATE64'], 5_000_000_000)


# --- root: namespaces -------------------------------------------------------

def run(argv, check=True, timeout=10):
    return subprocess.run(argv, check=check, timeout=timeout, capture_output=True, text=True)


class Lab:
    """
    An access point namespace with a bridge br0 (10.77.<n>.1/24) and two
    client namespaces A (.10) and B (.20) on veth ports.
    """

    count = 0

    def __init__(self, case):
        Lab.count += 1
        n = Lab.count
        self.prefix = f"nsshp{os.getpid()}-{n}"
        self.ap, self.a, self.b = (f"{self.prefix}-{x}" for x in ("ap", "a", "b"))
        subnet = 100 + (os.getpid() + n) % 100
        self.network = IPv4Network(f"10.77.{subnet}.0/24")
        self.gateway = self.network.network_address + 1
        self.ip_a = self.network.network_address + 10
        self.ip_b = self.network.network_address + 20
        for ns in (self.ap, self.a, self.b):
            case.addCleanup(run, [IP, "netns", "del", ns], check=False)
            run([IP, "netns", "add", ns])
        run([IP, "-n", self.ap, "link", "add", "br0", "type", "bridge"])
        run([IP, "-n", self.ap, "link", "set", "br0", "up"])
        run([IP, "-n", self.ap, "addr", "add", f"{self.gateway}/24", "dev", "br0"])
        run([IP, "-n", self.ap, "link", "set", "lo", "up"])
        # br_netfilter would drop what the ingress redirect sends to the IFB
        run([IP, "netns", "exec", self.ap, "sh", "-c",
             "echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables"])
        for ns, port, ip in ((self.a, "pa", self.ip_a), (self.b, "pb", self.ip_b)):
            run([IP, "-n", self.ap, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns])
            run([IP, "-n", self.ap, "link", "set", port, "master", "br0", "up"])
            run([IP, "-n", ns, "link", "set", "lo", "up"])
            run([IP, "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run([IP, "-n", ns, "link", "set", "eth0", "up"])
        self.ipr = IPRoute(netns=self.ap)
        case.addCleanup(self.ipr.close)

    def tc(self, *argv):
        """
        C{tc -j ...} in the access point namespace, parsed.
        """
        out = run([TC, "-n", self.ap, "-j", *argv]).stdout
        return json.loads(out) if out.strip() else []

    def classes(self, dev):
        """
        handle -> rate as tc prints it ("4Mbit"): this tc prints HTB classes
        as text even with -j.
        """
        out = run([TC, "-n", self.ap, "class", "show", "dev", dev]).stdout
        found = {}
        for line in out.splitlines():
            words = line.split()
            if words[:2] == ["class", "htb"]:
                found[words[2]] = words[words.index("rate") + 1]
        return found

    def links(self):
        return {link["ifname"]: link for link in
                json.loads(run([IP, "-n", self.ap, "-j", "link", "show"]).stdout)}

    def transfer(self, case, sender_ns, receiver_ns, receiver_ip):
        """
        A bounded TCP transfer: the receiver's rate in bit/s over
        TRANSFER_SECONDS.
        """
        port = "5201"
        receiver = subprocess.Popen(
            [IP, "netns", "exec", receiver_ns, sys.executable, METER, "recv",
             str(receiver_ip), port, str(TRANSFER_SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        case.addCleanup(_reap, receiver)
        self_ready = receiver.stdout.readline()
        case.assertEqual(self_ready.strip(), "ready", receiver.stderr.read() if receiver.poll() else "")
        sender = subprocess.Popen(
            [IP, "netns", "exec", sender_ns, sys.executable, METER, "send",
             str(receiver_ip), port, str(TRANSFER_SECONDS + 8)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        case.addCleanup(_reap, sender)
        out, err = receiver.communicate(timeout=TRANSFER_SECONDS + 10)
        sender.wait(timeout=10)
        case.assertEqual(receiver.returncode, 0, err)
        return float(out.split()[0])


def _reap(process):
    if process.poll() is None:
        process.kill()
        process.wait()


class KernelTestsMixin:
    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("needs root: builds network namespaces, bridges and qdiscs")
        self.lab = Lab(self)
        self.shaper = Shaper("br0", self.lab.network, ipr=self.lab.ipr)


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
        limit set in between survives the second setup().
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
        self.assertEqual(self.shaper.limits(), {self.lab.ip_a: (1000, 2000)})
        self.assertTrue(self.shaper.intact())

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
        a second teardown() is harmless, and intact() is then False.
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
        self.assertFalse(self.shaper.intact())

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

    def test_limits_read_back(self):
        """
        limits() reads back what limit() set, from the kernel: a second
        limit() replaces, 0 leaves a direction out, unlimit() removes, twice
        or for a client that has no limit without error.
        """
        a, b = self.lab.ip_a, self.lab.ip_b
        self.assertEqual(self.shaper.limits(), {})
        self.shaper.limit(a, 1000, 3000)
        self.shaper.limit(b, 0, 2000)
        self.assertEqual(self.shaper.limits(), {a: (1000, 3000), b: (0, 2000)})
        self.shaper.limit(a, 500, 0)
        self.assertEqual(self.shaper.limits(), {a: (500, 0), b: (0, 2000)})
        # the tc binary agrees: upload classes on the IFB, download on the LAN
        self.assertEqual(self.lab.classes("ifb-ns0"), {"1:a": "500Kbit", "1:ffff": "10Gbit"})
        self.assertEqual(self.lab.classes("br0"), {"1:14": "2Mbit", "1:ffff": "10Gbit"})
        self.shaper.unlimit(b)
        self.shaper.unlimit(b)
        self.shaper.unlimit(self.lab.network.network_address + 99)
        self.assertEqual(self.shaper.limits(), {a: (500, 0)})
        self.shaper.unlimit(a)
        self.assertEqual(self.shaper.limits(), {})
        lan_nodes = [f for f in self.lab.tc("filter", "show", "dev", "br0", "parent", "1:")
                     if f.get("options", {}).get("fh", "").startswith("2:")
                     and not f["options"]["fh"].endswith(":")]
        self.assertEqual(lan_nodes, [])

    def test_refuses(self):
        """
        Limits are ints of kbit/s; an address outside the LAN is refused.
        """
        self.assertRaises(ValueError, self.shaper.limit, self.lab.ip_a, -1, 10)
        self.assertRaises(ValueError, self.shaper.limit, self.lab.ip_a, 1.5, 10)
        self.assertRaises(ValueError, self.shaper.limit, IPv4Address("192.0.2.1"), 10, 10)

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
