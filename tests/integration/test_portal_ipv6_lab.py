"""
Issue 17: an unauthorized client's IPv6 HTTP lands on the portal, and the
portal's sessions cover a logged-in client's IPv6 (dual stack). In an
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

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, missing

from .procs import PYTHON, TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORTAL_PORT = 48080
OTHER_PORT = 48081
UPSTREAM_BODY = "the internet"

FILES_PORT = 48082
BIG = 64 * 1024 * 1024  # a download that lasts minutes at the rate limit

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
idle_timeout = {idle}
session_file = "{work}/sessions.sqlite"
"""


def need_lab(*more):
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and change their firewall")
    absent = missing("curl", "ipset", "ip6tables-legacy-save", "radvd", *more)
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")

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
        need_lab()
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
                                                  work=self.work, idle=0))
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


class PortalDualStackLabTests(TestCase):
    """
    Dual stack after a login through the portal (the merged v6auth
    firewall): two clients, the portal's idle time-out of 4 s; the
    upstream serves HTTP on port 80 (IPv6 and IPv4) and big files over
    IPv6.
    """

    timeout = 120
    idle = 4.0

    @inlineCallbacks
    def setUp(self):
        need_lab("conntrack", "nft")
        if importlib.util.find_spec("nftables") is None:
            raise SkipTest("python3-nftables is not installed (scripts/setup.sh links it)")
        self.lab = Lab(lab_name(self, prefix="v6p"), clients=2, ipv6=True)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, UPSTREAM_BODY, ipv6=True)
        yield deferToThread(self.upstream.start)
        self.addCleanup(self.upstream.stop)
        self.work = tempfile.mkdtemp(prefix="v6p-")
        self.addCleanup(shutil.rmtree, self.work, True)
        www = os.path.join(self.work, "www")
        os.mkdir(www)
        with open(os.path.join(www, "big"), "wb") as f:
            f.truncate(BIG)
        files = spawn(self, "files6", [PYTHON, "-u", "-m", "http.server", "--bind",
                                       self.lab.internet6, "--directory", www,
                                       str(FILES_PORT)], netns=self.lab.netns("up"))
        yield files.when_line("Serving HTTP")
        self.c1 = yield deferToThread(self.lab.wait_ipv6, "c1")
        yield deferToThread(self.lab.wait_ipv6, "c2")
        sockets = socket_dir(self)
        config = write_config(self, CONFIG.format(port=PORTAL_PORT, ap=self.lab.ap_address,
                                                  work=self.work, idle=self.idle))
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            sockets, "--config", config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line("portal ready")
        self.bus = connect("ap", socket_dir=sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        self.portal = f"http://{self.lab.ap_address}:{PORTAL_PORT}"

    def curl(self, client, *args, seconds=3):
        """
        Fire with (exit code, output) of curl in C{client}.
        """
        def run():
            done = self.lab.exec(client, ["curl", "-s", "--max-time", str(seconds), *args],
                                 timeout=seconds + 10)
            return done.returncode, done.stdout
        return deferToThread(run)

    @inlineCallbacks
    def login(self, client):
        """
        Log C{client} in through the portal's form, over IPv4; fire with
        (cookie jar, CSRF token).
        """
        jar = os.path.join(self.work, f"{client}.jar")
        code, page = yield self.curl(client, "-c", jar, "-b", jar, f"{self.portal}/login")
        self.assertEqual(code, 0)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, out = yield self.curl(client, "-c", jar, "-b", jar, "-o", "/dev/null", "-w",
                                    "%{http_code}", "--data", f"csrf={token}&accept=1",
                                    f"{self.portal}/login")
        self.assertEqual((code, out), (0, "303"))
        return jar, token

    @inlineCallbacks
    def get6(self, client, url):
        """
        (exit code, HTTP status, body) of C{url} over IPv6 from C{client}.
        """
        code, out = yield self.curl(client, "-6", "-w", "\n%{http_code}", url)
        body, _, status = out.rpartition("\n")
        return code, status, body

    def download(self, client, seconds):
        """
        A long IPv6 download in C{client} (200 kB/s, at most C{seconds});
        prints the bytes got.
        """
        return spawn(self, f"download {client}", [
            "curl", "-6", "-s", "-o", "/dev/null", "--limit-rate", "200k", "--max-time",
            str(seconds), "-w", "got %{size_download}\n",
            f"http://[{self.lab.internet6}]:{FILES_PORT}/big"], netns=self.lab.netns(client))

    @inlineCallbacks
    def sessions(self):
        return {str(s["ip"]): s for s in (yield self.bus.send("/portal/sessions", {}))}

    @inlineCallbacks
    def test_login_reaches_ipv6(self):
        """
        Before the login the client's IPv6 HTTP lands on the portal; after
        its login through the portal (over IPv4) it reaches the upstream
        over IPv6 (not redirected: its packets carry the mark), on port 80
        and another port; the other client is still redirected.
        """
        internet = f"http://[{self.lab.internet6}]/"
        self.assertEqual((yield self.get6("c1", internet))[:2], (0, "307"))
        yield self.login("c1")
        self.assertEqual((yield self.get6("c1", internet)), (0, "200", UPSTREAM_BODY))
        code, out = yield self.curl("c1", "-6", "-I", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://[{self.lab.internet6}]:{FILES_PORT}/big")
        self.assertEqual((code, out), (0, "200"))
        self.assertEqual((yield self.get6("c2", internet))[:2], (0, "307"))
        [seen] = self.upstream.requests()
        self.assertIn(seen["client"], self.c1["slaac"] + self.c1["temporary"])

    @inlineCallbacks
    def test_idle_timeout_counts_ipv6(self):
        """
        c1 logs in and then only downloads over IPv6; c2 logs in after it
        and stays idle. c2 is logged out for idleness (idle_timeout 4 s)
        while c1, logged in earlier, keeps its session: its IPv6 bytes
        count as activity.
        """
        c1, c2 = self.lab.client_address(1), self.lab.client_address(2)
        first_logout = self.bus.wait_for("/portal/logout", timeout=30)
        yield self.login("c1")
        download = self.download("c1", 30)
        yield self.login("c2")
        logout = yield first_logout
        log.msg(f"first logout: {logout}")
        self.assertEqual((str(logout["ip"]), logout["reason"]), (c2, "idle-timeout"))
        sessions = yield self.sessions()
        self.assertEqual(list(sessions), [c1])
        self.assertGreater(sessions[c1]["bytes_used"], 200 * 1024)
        download.signal("TERM")
        yield download.when_ended()

    @inlineCallbacks
    def test_logout_cuts_ipv6_download(self):
        """
        A download open over IPv6 stops when the client logs out through
        the portal; its IPv6 HTTP lands on the portal again.
        """
        jar, token = yield self.login("c1")
        download = self.download("c1", 60)
        conntrack = ["conntrack", "-L", "-f", "ipv6", "-p", "tcp", "--dport", str(FILES_PORT)]

        def flowing():
            for _ in range(100):
                if "ESTABLISHED" in self.lab.exec("ap", conntrack, timeout=10).stdout:
                    return True
                self.lab.exec("ap", ["sleep", "0.05"])
            return False
        self.assertTrue((yield deferToThread(flowing)))
        code, out = yield self.curl("c1", "-b", jar, "-o", "/dev/null", "-w", "%{http_code}",
                                    "--data", f"csrf={token}", f"{self.portal}/logout")
        self.assertEqual((code, out), (0, "303"))
        status = yield download.when_ended()
        self.assertNotIn(status, (0, 28))  # cut: not the end, nor curl's time-out
        self.assertLess(int(download.output().split()[-1]), BIG)
        internet = f"http://[{self.lab.internet6}]/"
        self.assertEqual((yield self.get6("c1", internet))[:2], (0, "307"))
