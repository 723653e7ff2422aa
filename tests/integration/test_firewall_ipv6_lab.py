"""
The LAN's IPv6 closed by netsuite (issue 17, "Closed by default"), in a
real lab given IPv6 by hand (static addresses, as v6lab's
C{Lab(ipv6=True)} plan gives: WAN 2001:db8:ff::/64, the internet
2001:db8:100::1, LAN 2001:db8:89::/64), forwarding on in the access point,
and a web server upstream on the internet address. Without netsuite the
client reaches it; with netsuite (the firewall alone) an unauthorized
client's TCP is reset in under a second, while netsuite runs, after a hand
flush of ip6tables (restored by the check) and after a clean stop.
"""

import os
import time

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab import Lab
from netsuite.lab.layout import BRIDGE, CLIENT_IF, WAN
from netsuite.lab.peers import missing

from .procs import PYTHON, TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORT = 20580
INTERNET6 = "2001:db8:100::1"
AP6 = "2001:db8:89::1"
CLIENT6 = "2001:db8:89::10"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 20581
check_interval = 1.0
shaping = false
lock_dir = "{work}"
"""

# One TCP connection to the upstream over IPv6: prints what happened and
# how long it took.
CONNECT = """
import socket, sys, time
s = socket.socket(socket.AF_INET6); s.settimeout(3)
start = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    print("connected", s.recv(100).decode(errors="replace").split()[1])
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - start, 3))
"""


class IPv6ClosedLabTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        if os.getuid() != 0:
            raise SkipTest("needs root to build network namespaces and change their firewall")
        absent = missing("ip", "ip6tables-legacy", "ip6tables-legacy-save", "ipset")
        if absent:
            raise SkipTest(f"not installed: {', '.join(absent)}")
        self.lab = Lab("v6c" + lab_name(self)[1:], clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        yield deferToThread(self.add_ipv6)
        web = spawn(self, "web6", [PYTHON, "-u", "-m", "http.server", "--bind", INTERNET6,
                                   str(PORT)], netns=self.lab.netns("up"))
        yield web.when_line("Serving HTTP")
        self.work = self.mktemp()
        os.makedirs(self.work)
        self.sockets = socket_dir(self)
        self.config = write_config(self, CONFIG.format(work=self.work))

    def ip(self, role, *argv):
        done = self.lab.exec(role, ["ip", *argv], timeout=10)
        assert done.returncode == 0, (argv, done.stderr)

    def add_ipv6(self):
        up_port = self.lab.layout.up_port
        self.ip("up", "-6", "addr", "add", f"{INTERNET6}/128", "dev", "lo")
        self.ip("up", "-6", "addr", "add", "2001:db8:ff::1/64", "dev", up_port, "nodad")
        self.ip("up", "-6", "route", "add", "2001:db8:89::/64", "via", "2001:db8:ff::2")
        self.ip("ap", "-6", "addr", "add", "2001:db8:ff::2/64", "dev", WAN, "nodad")
        self.ip("ap", "-6", "addr", "add", f"{AP6}/64", "dev", BRIDGE, "nodad")
        self.ip("ap", "-6", "route", "add", "default", "via", "2001:db8:ff::1")
        self.lab.sysctl(self.lab.netns("ap"), "net.ipv6.conf.all.forwarding", "1")
        self.ip("c1", "-6", "addr", "add", f"{CLIENT6}/64", "dev", CLIENT_IF, "nodad")
        self.ip("c1", "-6", "route", "add", "default", "via", AP6)

    @inlineCallbacks
    def connect(self):
        done = yield deferToThread(self.lab.exec, "c1", [PYTHON, "-c", CONNECT, INTERNET6,
                                                         str(PORT)], timeout=20)
        return done.stdout.strip()

    @inlineCallbacks
    def assert_reset(self):
        answer = yield self.connect()
        what, seconds = answer.split()
        self.assertEqual(what, "ConnectionRefusedError", answer)  # a reset, not a timeout
        self.assertLess(float(seconds), 1.0)

    def rules6(self):
        saved = self.lab.exec("ap", ["ip6tables-legacy-save"], timeout=10).stdout
        return [line for line in saved.splitlines() if line.startswith(("-A", ":NS"))]

    @inlineCallbacks
    def test_closed(self):
        """
        The hole first (no netsuite: the upstream answers over IPv6); then
        reset in < 1 s with netsuite; an ip6tables flush by hand is
        restored by the periodic check; after a clean stop still reset.
        """
        self.assertEqual((yield self.connect()), "connected 200")
        daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield daemon.when_line("firewall ready")
        yield self.assert_reset()
        running = yield deferToThread(self.rules6)
        self.assertIn("-A FORWARD -j NS6-FORWARD", running)

        done = yield deferToThread(self.lab.exec, "ap", ["ip6tables-legacy", "-F"], timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual((yield self.connect()), "connected 200")  # the hole, for a moment
        deadline = time.monotonic() + 10
        while (yield deferToThread(self.rules6)) != running:
            self.assertLess(time.monotonic(), deadline, "the check did not restore IPv6")
            yield deferLater(reactor, 0.2, lambda: None)
        yield self.assert_reset()

        daemon.signal("TERM")
        yield daemon.when_ended()
        self.assertIn("-A NS6-FORWARD -i br-lan -p tcp -j REJECT --reject-with tcp-reset",
                      (yield deferToThread(self.rules6)))
        yield self.assert_reset()
