"""
Tests for netsuite.lab.netns: real namespaces, veths, a bridge and routes,
read back with pyroute2 and ip; they need root.
"""

import json
import os
import socket
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab import Lab, LabError
from netsuite.lab import netns as netns_module
from netsuite.lab.netns import ETC_NETNS
from netsuite.lab import nsutil

from .labs import lab_name, make_lab, need, need_root


def ping(lab, role, address):
    return lab.exec(role, ["busybox", "ping", "-c", "1", "-W", "2", address], timeout=10)


def links(lab, role):
    with lab.ipr(role) as ipr:
        return {link.get("ifname"): link for link in ipr.get_links()}


def ipv4(lab, role, ifname):
    with lab.ipr(role) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        return [f"{a.get('address')}/{a['prefixlen']}"
                for a in ipr.get_addr(family=socket.AF_INET, index=index)]


def routes(lab, role):
    found = json.loads(lab.exec(role, ["ip", "-j", "-4", "route", "show"],
                                check=True, timeout=10).stdout)
    return {(r["dst"], r.get("gateway"), r["dev"]) for r in found}


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


class LabTests(SynchronousTestCase):
    def setUp(self):
        need_root()
        self.host_resolv = read("/etc/resolv.conf")
        self.host_forward = read("/proc/sys/net/ipv4/ip_forward")
        self.host_bridge_nf = read("/proc/sys/net/bridge/bridge-nf-call-iptables")

    def tearDown(self):
        self.assertEqual(read("/etc/resolv.conf"), self.host_resolv)
        self.assertEqual(read("/proc/sys/net/ipv4/ip_forward"), self.host_forward)
        self.assertEqual(read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
                         self.host_bridge_nf)

    def test_namespaces_and_state(self):
        """
        up() creates ns<name>-ap, -up, -c1.. and records them in the state
        file; each namespace has its own resolv.conf, seen by commands run
        inside, and the host's is untouched.
        """
        lab = make_lab(self, clients=3)
        expected = [lab.prefix + r for r in ("ap", "c1", "c2", "c3", "up")]
        self.assertEqual(sorted(lab.namespaces()), expected)
        with open(lab.state_path) as f:
            state = json.load(f)
        self.assertEqual(sorted(state["namespaces"]), expected)
        self.assertTrue(state["complete"])
        for ns in expected:
            self.assertTrue(os.path.exists(os.path.join(ETC_NETNS, ns, "resolv.conf")))
        seen = lab.exec("c2", ["cat", "/etc/resolv.conf"], check=True, timeout=10).stdout
        self.assertIn(f"nameserver {lab.ap_address}", seen)

    def test_clients(self):
        """
        Each client has lo and eth0 up, eth0 with its fixed MAC, and no IPv4
        address or route until it is given one.
        """
        lab = make_lab(self, clients=2)
        for i, role in enumerate(lab.client_roles, 1):
            found = links(lab, role)
            self.assertEqual(sorted(found), ["eth0", "lo"])
            self.assertEqual(found["eth0"].get("address"), lab.client_mac(i))
            self.assertEqual(found["eth0"].get("operstate"), "UP")
            self.assertEqual(found["lo"].get("state"), "up")
            self.assertEqual(ipv4(lab, role, "eth0"), [])
            self.assertEqual(routes(lab, role), set())

    def test_bridge(self):
        """
        The AP's br-lan holds the LAN's first address and has exactly one
        veth port per client.
        """
        lab = make_lab(self, clients=3)
        self.assertEqual(ipv4(lab, "ap", "br-lan"), [f"{lab.ap_address}/24"])
        ports = json.loads(lab.exec("ap", ["ip", "-j", "link", "show", "master", "br-lan"],
                                    check=True, timeout=10).stdout)
        self.assertEqual(sorted(p["ifname"] for p in ports),
                         [lab.layout.ap_port(i) for i in (1, 2, 3)])
        found = links(lab, "ap")
        bridge = found["br-lan"]["index"]
        for i in (1, 2, 3):
            self.assertEqual(found[lab.layout.ap_port(i)].get("master"), bridge)

    def test_routes(self):
        """
        The AP routes by default to the upstream and forwards; the upstream
        routes the LAN back via the AP and holds the internet address.
        """
        lab = make_lab(self, clients=1)
        self.assertIn(("default", lab.wan_up_address, "wan0"), routes(lab, "ap"))
        self.assertIn(("10.89.0.0/24", lab.wan_ap_address, lab.layout.up_port),
                      routes(lab, "up"))
        self.assertIn(f"{lab.internet}/32", ipv4(lab, "up", "lo"))
        self.assertEqual(lab.sysctl("ap", "net.ipv4.ip_forward"), "1")

    def test_addressed_clients(self):
        """
        With addresses, clients get .11, .12 and a default route via the
        AP; they reach the AP, each other and the upstream's internet
        address (routed, not NATed).
        """
        need("busybox")
        lab = make_lab(self, clients=2, addresses=True)
        self.assertEqual(ipv4(lab, "c1", "eth0"), ["10.89.0.11/24"])
        self.assertIn(("default", lab.ap_address, "eth0"), routes(lab, "c2"))
        for role, target in [("c1", lab.ap_address), ("c1", lab.internet),
                             ("c2", lab.client_address(1)), ("up", lab.client_address(2))]:
            result = ping(lab, role, target)
            self.assertEqual(result.returncode, 0, f"{role} -> {target}: {result}")

    def test_parallel_labs(self):
        """
        Two labs with the same addresses live side by side, each with its
        own MACs and interface names.
        """
        need("busybox")
        one = make_lab(self, clients=1, addresses=True, extra="one")
        two = make_lab(self, clients=1, addresses=True, extra="two")
        self.assertNotEqual(one.client_mac(1), two.client_mac(1))
        self.assertNotEqual(one.layout.ap_port(1), two.layout.ap_port(1))
        for lab in (one, two):
            self.assertEqual(ping(lab, "c1", lab.internet).returncode, 0)
        one.down()
        self.assertEqual(ping(two, "c1", two.internet).returncode, 0)

    def test_bridge_nf_call_iptables(self):
        """
        bridge-nf-call-iptables starts at 1 in the AP and the helper reads
        and sets it there only.
        """
        lab = make_lab(self, clients=1)
        self.assertTrue(lab.bridge_nf_call_iptables())
        self.assertFalse(lab.bridge_nf_call_iptables(False))
        seen = lab.exec("ap", ["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"],
                        check=True, timeout=10).stdout
        self.assertEqual(seen.strip(), "0")

    def test_status(self):
        """
        status() lists every namespace with its interfaces, MACs, bridge
        ports, addresses and routes.
        """
        lab = make_lab(self, clients=2, addresses=True)
        status = lab.status()
        self.assertEqual(list(status["namespaces"]), ["ap", "up", "c1", "c2"])
        c2 = status["namespaces"]["c2"]
        self.assertEqual(c2["netns"], lab.netns("c2"))
        self.assertEqual(c2["interfaces"]["eth0"]["mac"], lab.client_mac(2))
        self.assertIn("10.89.0.12/24", c2["interfaces"]["eth0"]["addresses"])
        self.assertIn(f"default via {lab.ap_address} dev eth0", c2["routes"])
        port = status["namespaces"]["ap"]["interfaces"][lab.layout.ap_port(2)]
        self.assertEqual(port["master"], "br-lan")
        json.dumps(status)

    def test_down(self):
        """
        down() kills what runs inside and removes the namespaces, the
        /etc/netns entries and the state file; a second down() is harmless.
        """
        lab = make_lab(self, clients=2)
        names = lab.namespaces()
        proc = lab.popen("c1", ["sleep", "600"])
        # `ip netns exec` enters the namespace a moment after it starts: a
        # down() before that would remove the namespace under it (exit 255);
        # the line says it is in
        stray = subprocess.Popen(nsutil.ns_argv(lab.netns("up"), [
            "sh", "-c", "echo in; exec sleep 600"]), stdout=subprocess.PIPE, text=True)
        self.addCleanup(stray.stdout.close)
        self.addCleanup(stray.wait, 10)
        self.assertEqual(stray.stdout.readline(), "in\n")
        lab.down()
        self.assertIsNotNone(proc.poll())
        self.assertEqual(stray.wait(10), -9)
        self.assertEqual([ns for ns in nsutil.listed() if ns in names], [])
        for ns in names:
            self.assertFalse(os.path.exists(os.path.join(ETC_NETNS, ns)))
        self.assertFalse(os.path.exists(lab.state_path))
        self.assertFalse(lab.exists())
        lab.down()

    def test_up_refused_when_exists(self):
        """
        Building a lab whose name is in use fails and leaves the first one
        intact.
        """
        lab = make_lab(self, clients=1)
        again = Lab(lab.name, clients=1)
        error = self.assertRaises(LabError, again.up)
        self.assertIn("already exists", str(error))
        self.assertEqual(len(lab.namespaces()), 3)

    def test_load_and_remove_stale(self):
        """
        Lab.load() finds a lab from its state file; remove_stale() removes
        labs by prefix and nothing else.
        """
        lab = make_lab(self, clients=2, addresses=True)
        other = make_lab(self, clients=1, extra="other")
        loaded = Lab.load(lab.name)
        self.assertEqual(loaded.layout, lab.layout)
        self.assertTrue(loaded.addresses)
        self.assertRaises(LabError, Lab.load, lab_name(self, "absent"))
        removed = Lab.remove_stale(prefix=lab.prefix)
        self.assertEqual(removed, sorted(lab.netns(r) for r in lab.roles))
        self.assertFalse(lab.exists())
        self.assertEqual(len(other.namespaces()), 3)
        self.assertRaises(LabError, Lab.remove_stale, "ns")

    def test_failed_build_leaves_nothing(self):
        """
        When building fails half-way, up() removes what it made and raises.
        """
        need_root()
        lab = Lab(lab_name(self), clients=2)
        self.addCleanup(lab.down)

        def broken(**kwargs):
            raise OSError("netlink broke")
        self.patch(netns_module, "IPRoute", broken)
        self.assertRaises(OSError, lab.up)
        self.assertEqual(lab.namespaces(), [])
        self.assertFalse(lab.exists())
        if os.path.isdir(ETC_NETNS):
            self.assertEqual([e for e in os.listdir(ETC_NETNS) if e.startswith(lab.prefix)],
                             [])

    def test_exec(self):
        """
        exec() runs inside the namespace, honours check and timeout.
        """
        lab = make_lab(self, clients=1)
        result = lab.exec("c1", ["cat", "/sys/class/net/eth0/address"], check=True)
        self.assertEqual(result.stdout.strip(), lab.client_mac(1))
        self.assertRaises(subprocess.CalledProcessError, lab.exec, "c1", ["false"],
                          check=True)
        self.assertRaises(subprocess.TimeoutExpired, lab.exec, "c1", ["sleep", "5"],
                          timeout=0.3)
        self.assertRaises(LabError, lab.exec, "c2", ["true"])

    def test_context_manager(self):
        """
        Used as a context manager the lab is built on entry and removed on
        exit, also when the block raises.
        """
        need_root()
        lab = Lab(lab_name(self), clients=1)
        self.addCleanup(lab.down)

        def use():
            with lab:
                self.assertEqual(len(lab.namespaces()), 3)
                raise ValueError("boom")
        self.assertRaises(ValueError, use)
        self.assertFalse(lab.exists())
