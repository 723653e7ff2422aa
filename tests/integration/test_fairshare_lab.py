"""
Fair shares of the uplink, measured: netsuite's firewall runs in the
access point's namespace with an uplink capacity set, clients pull from
(and push to) a TCP server upstream at once, and the bytes that arrive in
a fixed window after a warm-up are counted by the receiver
(C{pullmeter.py}). Real kernel tc: the HTB classes the firewall made from
its config.
"""

import os
import sys
import time

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.portal.auth import hash_password

from .procs import ROOT, TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

METER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pullmeter.py")
LOGIN_SCRIPT = os.path.join(ROOT, "examples", "portal-login.sh")
PORT = 5301
PORTAL_PORT = 5280

DOWN_KBIT = 20000       # the uplink's capacity, download
UP_KBIT = 10000         # and upload
CLIENT_KBIT = 4000      # c3's own rate, from [firewall.rates]

WARMUP = 1.5            # seconds from the start of the clients to the window
WINDOW = 4.0            # seconds counted

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 1.0
shaping = true
lock_dir = "{locks}"
uplink_down_kbit = {down}
uplink_up_kbit = {up}

[firewall.rates]
"{mac3}" = {{ up_kbit = {rate}, down_kbit = {rate} }}
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and their qdiscs")


class FairShareLab(TestCase):
    """
    A lab with three clients, a meter server upstream and netsuite in the
    AP with the config C{config_text()}; measurements.
    """

    timeout = 90
    ready = "firewall ready"

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self), clients=3)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.server = spawn(self, "pullmeter", [sys.executable, METER, "serve", str(PORT)],
                            netns=self.lab.netns("up"))
        yield self.server.when_line("listening", timeout=10)
        self.sockets = socket_dir(self)
        self.locks = os.path.abspath(self.mktemp())
        self.config = write_config(self, self.config_text())
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line(self.ready)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def measure(self, mode, *clients):
        """
        Fire with {client: bit/s} of C{clients} (indices) pulling or
        pushing at once over the same window.
        """
        start = time.time() + WARMUP
        end = start + WINDOW

        def one(index):
            done = self.lab.exec(f"c{index}", [
                sys.executable, METER, mode, self.lab.internet, str(PORT), repr(start),
                repr(end)], timeout=WARMUP + WINDOW + 20)
            if done.returncode:
                raise AssertionError(f"c{index} {mode}: {done.stderr}")
            return float(done.stdout.split()[0])
        return gatherResults([deferToThread(one, i) for i in clients]).addCallback(
            lambda rates: dict(zip(clients, rates)))

    def report(self, what, rates, capacity):
        text = ", ".join(f"c{i} {r / 1e6:.2f} Mbit/s" for i, r in rates.items())
        print(f"\n{what} (capacity {capacity / 1000:g} Mbit/s): {text}")
        return text

    def check_pair(self, rates, capacity_kbit, what):
        """
        Two clients at once: within 20 % of each other, together about the
        capacity (TCP payload: a few % under the rate HTB counts).
        """
        text = self.report(what, rates, capacity_kbit)
        a, b = rates.values()
        self.assertLessEqual(abs(a - b), 0.2 * max(a, b), f"{what}: {text}")
        self.assertLessEqual(a + b, 1.1 * capacity_kbit * 1000, f"{what}: {text}")
        self.assertGreaterEqual(a + b, 0.75 * capacity_kbit * 1000, f"{what}: {text}")

    def check_alone(self, rates, index, kbit, what, low=0.8, high=1.1):
        """
        Client C{index}'s rate in C{rates} is from C{low} to C{high} times
        C{kbit}.
        """
        rate = rates[index]
        text = self.report(what, {index: rate}, kbit)
        self.assertLessEqual(rate, high * kbit * 1000, f"{what}: {text}")
        self.assertGreaterEqual(rate, low * kbit * 1000, f"{what}: {text}")



class FairShareLabTests(FairShareLab):
    """
    Two clients at once get equal shares; one alone borrows the whole
    uplink; one with a rate of its own ([firewall.rates]) keeps to it.
    Both directions.
    """

    def config_text(self):
        return CONFIG.format(locks=self.locks, down=DOWN_KBIT, up=UP_KBIT, rate=CLIENT_KBIT,
                             mac3=self.lab.client_mac(3))

    @inlineCallbacks
    def setUp(self):
        yield FairShareLab.setUp(self)
        for index in (1, 2, 3):
            answer = yield self.bus.send("/firewall/authorize", {
                "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})
            self.assertTrue(answer["authorized"])
        self.assertEqual((answer["up_kbit"], answer["down_kbit"]), (CLIENT_KBIT, CLIENT_KBIT))

    @inlineCallbacks
    def test_download(self):
        """
        Download, capacity 20 Mbit/s: c1 and c2 at once get shares within
        20 % of each other; c1 alone borrows nearly all of it (its
        guarantee is 20000 / 254 kbit/s); c3, with a rate of 4 Mbit/s of
        its own, stays within 10 % of it; c3 beside c1: c1 takes the rest.
        """
        rates = yield self.measure("pull", 1, 2)
        self.check_pair(rates, DOWN_KBIT, "download, c1 and c2")
        rates = yield self.measure("pull", 1)
        self.check_alone(rates, 1, DOWN_KBIT, "download, c1 alone")
        rates = yield self.measure("pull", 3)
        self.check_alone(rates, 3, CLIENT_KBIT, "download, c3 alone (4 Mbit/s)", 0.9, 1.1)
        rates = yield self.measure("pull", 1, 3)
        self.check_alone(rates, 3, CLIENT_KBIT, "download, c3 beside c1", 0.9, 1.1)
        self.check_alone(rates, 1, DOWN_KBIT - CLIENT_KBIT, "download, c1 beside c3")

    @inlineCallbacks
    def test_upload(self):
        """
        Upload (through the IFB), capacity 10 Mbit/s: c1 and c2 at once get
        shares within 20 % of each other; c1 alone borrows nearly all of
        it; c3 stays within 10 % of its 4 Mbit/s.
        """
        rates = yield self.measure("push", 1, 2)
        self.check_pair(rates, UP_KBIT, "upload, c1 and c2")
        rates = yield self.measure("push", 1)
        self.check_alone(rates, 1, UP_KBIT, "upload, c1 alone")
        rates = yield self.measure("push", 3)
        self.check_alone(rates, 3, CLIENT_KBIT, "upload, c3 alone (4 Mbit/s)", 0.9, 1.1)


PORTAL_CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
check_interval = 1.0
shaping = true
lock_dir = "{locks}"
uplink_down_kbit = {down}

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
session_file = "{sessions}"
policy_text = "Be nice."

[portal.auth]
users_file = "{users}"
"""


class PortalRatesLabTests(FairShareLab):
    """
    A user's rate from the portal's users file reaches the firewall's
    class at login and holds the client's real traffic.
    """

    ready = "portal ready"

    def config_text(self):
        users = os.path.abspath(self.mktemp())
        with open(users, "w") as f:
            f.write(f"alice:{hash_password('wonder land', n=16, r=1, p=1)}:"
                    f"down_kbit={CLIENT_KBIT}\n")
        return PORTAL_CONFIG.format(port=PORTAL_PORT, ap=self.lab.ap_address, down=DOWN_KBIT,
                                    locks=self.locks, users=users,
                                    sessions=os.path.abspath(self.mktemp()))

    @inlineCallbacks
    def test_users_file_rate(self):
        """
        alice logs in on c1 with the login script; her down_kbit from the
        users file is the ceil of c1's class under the uplink's, and c1's
        download stays within 10 % of it; c2, authorized without a rate,
        borrows the uplink.
        """
        done = yield deferToThread(self.lab.exec, "c1", [
            "sh", LOGIN_SCRIPT, f"http://{self.lab.ap_address}:{PORTAL_PORT}",
            "--data-urlencode", "username=alice", "--data-urlencode", "password=wonder land"],
            timeout=30)
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        [client] = yield self.bus.send("/firewall/clients")
        self.assertEqual((client["up_kbit"], client["down_kbit"]), (0, CLIENT_KBIT))
        classes = self.lab.exec("ap", ["tc", "class", "show", "dev", "br-lan"]).stdout
        minor = int(self.lab.client_address(1).rsplit(".", 1)[1])
        self.assertRegex(classes, rf"class htb 1:{minor:x} parent 1:fffe .* ceil 4Mbit")
        yield self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(2), "mac": self.lab.client_mac(2)})
        rates = yield self.measure("pull", 1, 2)
        self.report("download, c1 as alice (4 Mbit/s) and c2", rates, DOWN_KBIT)
        self.check_alone(rates, 1, CLIENT_KBIT, "download, alice", 0.9, 1.1)
        self.check_alone(rates, 2, DOWN_KBIT - CLIENT_KBIT, "download, c2 beside alice")
