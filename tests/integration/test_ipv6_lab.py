"""
Issue 17's reproduction: netsuite's firewall runs in an IPv6 lab (the AP
forwards IPv6 and advertises 2001:db8:89::/64 to its clients, the upstream
has a web server on [2001:db8:100::1]) and a client that never logged in
tries the upstream over IPv6.

The issue's requirement: that client reaches nothing upstream over IPv6,
TCP is refused with a reset in under 1 s (so it falls back to IPv4 at
once), and its IPv6 HTTP is not the upstream page. Until the firewall has
IPv6 rules (helper v6closed) this test fails: the client gets the
upstream page over IPv6 while IPv4 gets the portal.
"""

import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, missing

from .procs import TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORTAL_BODY = "the portal"
UPSTREAM_BODY = "the internet"
# The upstream serves HTTP on 80 (which the firewall may send to the portal),
# 443 (HTTPS, refused at once for IPv4) and any other port.
HTTP_PORTS = (80, 443, 20080)
REFUSED_PORTS = HTTP_PORTS[1:]

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 8080
check_interval = 1.0
lock_dir = "{locks}"
"""

# One TCP connection attempt; prints what happened and how long it took.
CONNECT = """
import socket, sys, time
began = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    result = "connected"
except OSError as e:
    result = type(e).__name__
print(result, round(time.monotonic() - began, 3))
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and change their firewall")
    absent = missing("curl", "ipset", "iptables-legacy-save", "conntrack", "radvd")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class UnauthorizedIPv6Tests(TestCase):
    """
    A client that never logged in, on an access point whose LAN has IPv6.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self, prefix="v6l"), clients=1, ipv6=True)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.portal = HttpPeer(self.lab.netns("ap"), self.lab.ap_address, 8080, PORTAL_BODY)
        self.upstream = [HttpPeer(self.lab.netns("up"), None, port, UPSTREAM_BODY, ipv6=True)
                         for port in HTTP_PORTS]
        for peer in [self.portal, *self.upstream]:
            yield deferToThread(peer.start)
            self.addCleanup(peer.stop)
        self.addresses6 = yield deferToThread(self.lab.client_addresses6, "c1", 10)
        self.sockets = socket_dir(self)
        locks = os.path.abspath(self.mktemp())  # the daemon's cwd is not ours
        config = write_config(self, CONFIG.format(locks=locks))
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line("firewall ready")
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def run_in(self, role, argv, timeout=15):
        def run():
            done = self.lab.exec(role, argv, timeout=timeout)
            return done.returncode, done.stdout
        return deferToThread(run)

    def curl(self, url, *options):
        return self.run_in("c1", ["curl", "-s", "--max-time", "3", *options, url])

    def upstream_requests(self):
        return [r for peer in self.upstream for r in peer.requests()]

    @inlineCallbacks
    def test_ipv6_closed_before_login(self):
        """
        With the firewall on, IPv4 HTTP lands on the portal (the firewall
        works); over IPv6 the same client gets a TCP reset in under 1 s on
        443 and any other port, its HTTP on port 80 is not the upstream page
        (the portal's, once IPv6 HTTP is redirected), and the upstream web
        servers never see it.
        """
        code, body = yield self.curl(f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, PORTAL_BODY))
        self.assertEqual(self.upstream_requests(), [])

        for port in REFUSED_PORTS:
            _, out = yield self.run_in("c1", [sys.executable, "-c", CONNECT,
                                              self.lab.internet6, str(port)])
            result, seconds = out.split()
            self.assertEqual(result, "ConnectionRefusedError",
                             f"TCP to [{self.lab.internet6}]:{port} from an unauthorized "
                             f"client: {result} after {seconds} s")
            self.assertLess(float(seconds), 1.0)

        for port in HTTP_PORTS:
            code, body = yield self.curl(f"http://[{self.lab.internet6}]:{port}/", "-6")
            self.assertNotEqual(body, UPSTREAM_BODY,
                                f"an unauthorized client got the upstream page over IPv6 "
                                f"on port {port} (curl exit {code})")
        self.assertEqual(self.upstream_requests(), [],
                         f"the upstream saw the unauthorized client {self.addresses6}")
