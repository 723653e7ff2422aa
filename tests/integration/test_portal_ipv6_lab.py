"""
Issue 17: an unauthorized client's IPv6 HTTP lands on the portal. In an
IPv6 lab (C{Lab(ipv6=True)}: radvd, SLAAC, forwarding on in the access
point; docs/lab.md) netsuite runs the firewall and the portal (the
all-in-one C{twistd netsuite}); the upstream serves HTTP on IPv6 (and
IPv4). The client's IPv6 HTTP to the upstream gets the portal's redirect
to the IPv4 login page, fast; the OS probes over IPv6 get the captive
answer; a login tried over IPv6 is sent to the IPv4 login page; TCP to
another IPv6 port is still reset in under 1 s; the upstream never sees the
client. After a clean stop its IPv6 HTTP is refused (the redirect is gone
with the portal).
"""

import os
import shutil
import sys
import tempfile
from urllib.parse import quote

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, missing

from .procs import TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORTAL_PORT = 48080
OTHER_PORT = 48081
UPSTREAM_BODY = "the internet"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
check_interval = 1.0
shaping = false
lock_dir = "{work}"

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
sample_interval = 1.0
session_file = "{work}/sessions.sqlite"
"""

# One TCP connection attempt over IPv6; prints what happened and how long.
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

PROBES = [("captive.apple.com", "/hotspot-detect.html"),
          ("connectivitycheck.gstatic.com", "/generate_204"),
          ("www.msftconnecttest.com", "/connecttest.txt"),
          ("detectportal.firefox.com", "/canonical.html")]


class PortalIPv6LabTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        if os.getuid() != 0:
            raise SkipTest("needs root to build network namespaces and change their firewall")
        absent = missing("curl", "ipset", "ip6tables-legacy-save", "radvd")
        if absent:
            raise SkipTest(f"not installed: {', '.join(absent)}")
        self.lab = Lab(lab_name(self, prefix="v6p"), clients=1, ipv6=True)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.upstream = [HttpPeer(self.lab.netns("up"), None, port, UPSTREAM_BODY, ipv6=True)
                         for port in (80, OTHER_PORT)]
        for peer in self.upstream:
            yield deferToThread(peer.start)
            self.addCleanup(peer.stop)
        yield deferToThread(self.lab.client_addresses6, "c1", 10)
        self.work = tempfile.mkdtemp(prefix="v6p-")
        self.addCleanup(shutil.rmtree, self.work, True)
        config = write_config(self, CONFIG.format(port=PORTAL_PORT, ap=self.lab.ap_address,
                                                  work=self.work))
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            socket_dir(self), "--config", config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line("firewall ready")
        yield self.daemon.when_line(r"portal ready on .* and \[::\]:48080 \(IPv6\)")
        self.login = f"http://{self.lab.ap_address}:{PORTAL_PORT}/login"
        self.internet6 = f"http://[{self.lab.internet6}]"

    def curl(self, url, *options):
        """
        Fire with (exit code, status line, Location, seconds) of one curl
        over IPv6 from c1.
        """
        def run():
            done = self.lab.exec("c1", [
                "curl", "-6", "-s", "-o", "/dev/null", "--max-time", "3", "-w",
                "%{http_code} %{time_total} %{redirect_url}", *options, url], timeout=15)
            code, seconds, *location = done.stdout.split(" ", 2) + [""]
            return done.returncode, code, location[0], float(seconds)
        return deferToThread(run)

    def upstream_requests(self):
        return [r for peer in self.upstream for r in peer.requests()]

    @inlineCallbacks
    def assert_reset(self, port):
        done = yield deferToThread(self.lab.exec, "c1", [sys.executable, "-c", CONNECT,
                                                         self.lab.internet6, str(port)],
                                   timeout=15)
        result, seconds = done.stdout.split()
        log.msg(f"TCP to [{self.lab.internet6}]:{port}: {result} after {seconds} s")
        self.assertEqual(result, "ConnectionRefusedError")
        self.assertLess(float(seconds), 1.0)

    @inlineCallbacks
    def test_http_lands_on_portal(self):
        """
        IPv6 HTTP to the upstream: the portal's 307 to the IPv4 login page
        with the original URL, in under a second; the probes over IPv6 get
        the same captive answer; another port is reset; the upstream sees
        nothing.
        """
        exit_code, code, location, seconds = yield self.curl(f"{self.internet6}/page?x=1")
        log.msg(f"IPv6 HTTP to the upstream: curl exit {exit_code}, {code} after {seconds} s")
        self.assertEqual((exit_code, code), (0, "307"))
        self.assertEqual(location, self.login + "?url=" + quote(
            f"{self.internet6}/page?x=1", safe=""))
        self.assertLess(seconds, 1.0)
        for host, path in PROBES:
            exit_code, code, location, _ = yield self.curl(f"{self.internet6}{path}",
                                                           "-H", f"Host: {host}")
            self.assertEqual((exit_code, code), (0, "307"), host)
            self.assertEqual(location, self.login + "?url=" + quote(f"http://{host}{path}",
                                                                    safe=""))
        yield self.assert_reset(OTHER_PORT)
        yield self.assert_reset(443)
        self.assertEqual(self.upstream_requests(), [])

    @inlineCallbacks
    def test_login_over_ipv6(self):
        """
        The login page and a login posted over IPv6 (straight to the access
        point's IPv6 address, with the portal's Host) get a 303 to the IPv4
        login page, not an error; nobody is logged in.
        """
        portal6 = f"http://[{self.lab.ap_address6}]:{PORTAL_PORT}"
        host = f"{self.lab.ap_address}:{PORTAL_PORT}"
        for options in ([], ["--data", "csrf=x&accept=1"]):
            exit_code, code, location, _ = yield self.curl(
                f"{portal6}/login?url=http%3A%2F%2Fexample.com%2F", "-H", f"Host: {host}",
                *options)
            self.assertEqual((exit_code, code), (0, "303"), options)
            self.assertEqual(location, self.login + "?url=http%3A%2F%2Fexample.com%2F")

    @inlineCallbacks
    def test_stopped(self):
        """
        After a clean stop the redirect is gone with the portal: IPv6 HTTP
        is reset like the rest, in under a second.
        """
        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        saved = yield deferToThread(self.lab.exec, "ap", ["ip6tables-legacy-save"],
                                    timeout=10)
        self.assertNotIn("NS6-PREROUTING", saved.stdout)
        yield self.assert_reset(80)
        self.assertEqual(self.upstream_requests(), [])
