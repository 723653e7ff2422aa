"""
Tests for the lab's IPv6 (Lab(ipv6=True), issue 17): real namespaces,
radvd in the AP, SLAAC and privacy addresses on the clients, an IPv6
upstream web server; they need root and radvd.
"""

import ipaddress
import json
import os
import select
import time

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab import Lab, LabError
from netsuite.lab.nsutil import read_text
from netsuite.lab.peers import HttpPeer

from .labs import lab_name, make_lab, need, need_root

# radvd sends its first RA at once; a client's DAD of its link-local and
# of each global address takes ~1 s each: ~2.2 s measured, 10 s allowed.
BOUND = 10.0


def alive(pid):
    """Running, not gone or a zombie (radvd is this process's child)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class LabIPv6Tests(SynchronousTestCase):
    def setUp(self):
        need("curl", "radvd")
        self.lab = make_lab(self, clients=2, addresses=True, ipv6=True)

    def test_slaac_and_temporary(self):
        """
        Each client gets, within the bound, a SLAAC address (the prefix
        and its MAC's EUI-64) and a different temporary address, both in
        2001:db8:89::/64 and past DAD, and a default route via the AP.
        """
        began = time.monotonic()
        for index, role in enumerate(self.lab.client_roles, 1):
            found = self.lab.wait_ipv6(role, BOUND)
            self.assertEqual(found["slaac"], [self.lab.client_slaac6(index)])
            self.assertEqual(len(found["temporary"]), 1, found)
            self.assertNotEqual(found["temporary"], found["slaac"])
            self.assertEqual(found["tentative"] + found["failed"], [])
            addresses = self.lab.client_addresses6(role, timeout=0)
            self.assertEqual(addresses, found["slaac"] + found["temporary"])
            prefix = ipaddress.IPv6Network(self.lab.lan_prefix6)
            for address in addresses:
                self.assertIn(ipaddress.IPv6Address(address), prefix)
            routes = json.loads(self.lab.exec(role, ["ip", "-j", "-6", "route", "show",
                                                     "default"], check=True).stdout)
            self.assertEqual([r["dev"] for r in routes], ["eth0"])
            self.assertTrue(routes[0]["gateway"].startswith("fe80:"))
        self.assertLess(time.monotonic() - began, BOUND)

    def test_upstream_web_server(self):
        """
        curl -6 from a client reaches the upstream's web server on
        [2001:db8:100::1]:80 and :8080 (no firewall, no NAT: the server
        sees one of the client's own addresses); a dual-stack server
        (ipv6=True) answers IPv4 too.
        """
        up = self.lab.netns("up")
        web = HttpPeer(up, self.lab.internet6, 80, body="v6 body\n").start()
        self.addCleanup(web.stop)
        both = HttpPeer(up, None, 8080, body="both\n", ipv6=True).start()
        self.addCleanup(both.stop)
        self.assertEqual(web.url, "http://[2001:db8:100::1]:80/")
        addresses = self.lab.client_addresses6("c1", BOUND)
        done = self.lab.exec("c1", ["curl", "-6", "-sS", "-m", "5",
                                    f"http://[{self.lab.internet6}]/"], timeout=10)
        self.assertEqual((done.returncode, done.stdout), (0, "v6 body\n"), done.stderr)
        [request] = web.requests()
        self.assertIn(request["client"], addresses)
        # c2 too has its addresses (and the route from the same RA) first
        addresses2 = self.lab.client_addresses6("c2", BOUND)
        for url in (f"http://[{self.lab.internet6}]:8080/", f"http://{self.lab.internet}:8080/"):
            done = self.lab.exec("c2", ["curl", "-sS", "-m", "5", url], timeout=10)
            self.assertEqual((done.returncode, done.stdout), (0, "both\n"), done.stderr)
        clients = [r["client"] for r in both.requests()]
        self.assertIn(clients[0], addresses2)
        self.assertEqual(clients[1], self.lab.client_address(2))  # plain, not ::ffff:

    def test_ap_and_state(self):
        """
        The AP forwards IPv6 and routes it upstream; the upstream routes the
        LAN prefix back via the AP; the state file and status record IPv6
        and radvd; down() stops radvd and removes its directory.
        """
        self.assertEqual(self.lab.sysctl("ap", "net.ipv6.conf.all.forwarding"), "1")
        routes = json.loads(self.lab.exec("up", ["ip", "-j", "-6", "route", "show",
                                                 self.lab.lan_prefix6], check=True).stdout)
        self.assertEqual(routes[0]["gateway"], self.lab.wan_ap_address6)
        with open(self.lab.state_path) as f:
            state = json.load(f)
        self.assertEqual((state["ipv6"], state["lan6"], state["internet6"]),
                         (True, "2001:db8:89::/64", "2001:db8:100::1"))
        loaded = Lab.load(self.lab.name)
        self.assertTrue(loaded.ipv6)
        status = loaded.status()
        self.assertEqual(status["ap_address6"], "2001:db8:89::1")
        self.assertIn("2001:db8:89::1/64",
                      status["namespaces"]["ap"]["interfaces"]["br-lan"]["addresses"])
        self.assertIn("default via 2001:db8:ff::1 dev wan0",
                      status["namespaces"]["ap"]["routes6"])
        pids = self.lab.pids("ap")
        self.assertTrue(pids)
        commands = [read_text(f"/proc/{pid}/comm").strip() for pid in pids]
        self.assertIn("radvd", commands)
        self.assertTrue(os.path.isdir(self.lab.radvd_dir))
        loaded.down()  # another process's view of the lab removes it all
        self.assertFalse(os.path.exists(self.lab.radvd_dir))
        # SIGKILLed: wait for each one's exit itself (its pidfd turns
        # readable), 5 s at most.
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # gone already
            try:
                select.select([fd], [], [], 5.0)
            finally:
                os.close(fd)
            self.assertFalse(alive(pid), pid)


class LabWithoutIPv6Tests(SynchronousTestCase):
    def test_off_by_default(self):
        """
        Without ipv6 the lab has no global IPv6 address, no radvd and says so.
        """
        need_root()
        lab = Lab(lab_name(self), clients=1)
        self.addCleanup(lab.down)
        lab.up(addresses=True)
        self.assertFalse(lab.ipv6)
        self.assertEqual(lab.pids("ap"), [])
        self.assertEqual(lab.addresses6("c1")["slaac"], [])
        self.assertRaises(LabError, lab.wait_ipv6, "c1", 0)
        self.assertNotIn("lan6", lab.status())
