"""
Extrusion detection in a real lab: the firewall runs in the access point's
namespace (process "ap") with its extrusion queue rule, netsuite-stats
("stats") reads that queue, the SMTP gate runs in a process of its own
("smtpgate"), and this test stands in for the portal ("portal": it
answers C{/portal/deauthorize} and records what it was asked) and the
mail proxy. Clients make real connections to the upstream namespace only:
a port scan of the upstream's "internet" address (a bounded loop of
connects), an SMTP burst to its SMTP sink, and plain connections to its
web server.
"""

import importlib.util
import ipaddress
import os
import sys
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, SmtpPeer
from netsuite.registry.interfaces import Stop

from .procs import TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import need_lab
from .test_smtpgate_lab import CONNECT, Standin, until
from ..lab.labs import lab_name

QUEUE = 7
WEB = 8080

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 1.0
shaping = false
lock_dir = "{locks}"
extrusion_queue = {queue}

[smtpgate]
firewall_process = "ap"
mailproxy_process = "mailproxy"
portal_process = "portal"

[stats]
firewall_process = "ap"
portal_process = "portal"

[stats.extrusion]
enabled = true
queue = {queue}
destinations = 50
ports = 20
smtp = 20
rate = 0
actions = {actions}
quarantine_seconds = 600.0
action_deadline = 3.0
smtpgate_process = "smtpgate"
"""

# Connect to HOST on each port of FIRST..LAST (0.3 s at most each): print
# the wall-clock time of the first connect, then "PORT refused|open|...".
SCAN = """
import socket, sys, time
host, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("start", time.time(), flush=True)
for port in range(first, last + 1):
    try:
        socket.create_connection((host, port), timeout=0.3).close()
        got = "open"
    except ConnectionRefusedError:
        got = "refused"
    except OSError as e:
        got = type(e).__name__
    print(port, got, flush=True)
"""

# N connections to HOST:25, each reading the greeting: print the wall-clock
# time of the first, then each outcome.
BURST = """
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
print("start", time.time(), flush=True)
for _ in range(n):
    try:
        with socket.create_connection((host, 25), timeout=1) as s:
            print("connected", s.recv(3).decode(), flush=True)
    except ConnectionRefusedError:
        print("refused", flush=True)
    except OSError as e:
        print(type(e).__name__, flush=True)
"""

# One connection to HOST:PORT: "connected", "refused" or the error.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(type(e).__name__)
"""


class ExtrusionLab:
    timeout = 60
    actions = '["smtp:close-smtp"]'
    ipv6 = False

    @inlineCallbacks
    def setUp(self):
        need_lab()
        if importlib.util.find_spec("netfilterqueue") is None:
            raise SkipTest("NetfilterQueue is not installed (scripts/setup.sh builds it)")
        self.lab = Lab(lab_name(self, prefix="ext"), clients=2, ipv6=self.ipv6)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        if self.ipv6:
            yield deferToThread(self.lab.wait_ipv6, "c1")
        self.sink = SmtpPeer(self.lab.netns("up"), None, 25)
        yield deferToThread(self.sink.start)
        self.addCleanup(self.sink.stop)
        self.web = HttpPeer(self.lab.netns("up"), None, WEB)
        yield deferToThread(self.web.start)
        self.addCleanup(self.web.stop)
        self.sockets = socket_dir(self)
        self.portal = Standin(self, "portal", "/portal/logout", self.sockets)
        self.deauthorized = []
        self.portal.registry.declare("/portal/deauthorize")
        self.portal.registry.listen("/portal/deauthorize", self._deauthorize)
        self.proxy = Standin(self, "mailproxy", "/mailproxy/login", self.sockets)
        locks = os.path.abspath(self.mktemp())
        self.config = write_config(self, CONFIG.format(locks=locks, queue=QUEUE,
                                                       actions=self.actions))
        self.firewall = spawn(self, "netsuite firewall", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.firewall.when_line("firewall ready")
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        for index in (1, 2):
            yield self.bus.send("/firewall/authorize", {
                "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})
        self.gate = spawn(self, "netsuite-smtpgate", [
            *TWISTD, "-n", "--pidfile=", "netsuite-smtpgate", "--name", "smtpgate",
            "--socket-dir", self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.gate.when_line("smtpgate ready")
        self.stats = spawn(self, "netsuite-stats", [
            *TWISTD, "-n", "--pidfile=", "netsuite-stats", "--name", "stats",
            "--socket-dir", self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.stats.when_line("extrusion detection reading queue")
        self.stats_bus = connect("stats", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.stats_bus.close)
        self.events = []
        yield self.stats_bus.watch(
            "/stats/extrusion", lambda m: self.events.append((time.time(), m))).attached
        self.gate_bus = connect("smtpgate", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.gate_bus.close)
        self.closed = []
        yield self.gate_bus.watch("/smtpgate/closed", self.closed.append).attached

    def _deauthorize(self, message):
        self.deauthorized.append((time.time(), message))
        return Stop({"deauthorized": True, "ip": message["ip"]})

    def script(self, client, script, *args):
        """Fire with the lines SCRIPT printed in client C{client}."""
        return deferToThread(lambda: self.lab.exec(
            client, [sys.executable, "-c", script, *map(str, args)],
            timeout=30).stdout.split("\n"))

    @inlineCallbacks
    def probe(self, client, host, port):
        lines = yield self.script(client, PROBE, host, port)
        return lines[0]

    def event(self, detector, index):
        ip = ipaddress.ip_address(self.lab.client_address(index))
        found = [(t, m) for t, m in self.events if m["detector"] == detector and m["ip"] == ip]
        return found[0] if found else None


class ScanTests(ExtrusionLab, TestCase):
    actions = '["ports:deauthorize", "ports:quarantine", "smtp:close-smtp"]'

    @inlineCallbacks
    def test_port_scan(self):
        """
        A port scan of the upstream from c1 raises /stats/extrusion
        (detector ports, the evidence) within 5 s of its first connect; the
        portal is asked to log c1 out and c1 is quarantined: its next
        connections are dropped by verdict, c2's still pass.
        """
        # another upstream address than the scan's
        self.assertEqual((yield self.probe("c1", self.lab.wan_up_address, WEB)), "connected")
        rules = yield deferToThread(self.lab.exec, "ap", ["iptables-legacy-save", "-t", "mangle"])
        self.assertIn(f"-A NS-EXTRUSION -i br-lan -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN "
                      f"-j NFQUEUE --queue-num {QUEUE} --queue-bypass", rules.stdout)
        lines = yield self.script("c1", SCAN, self.lab.internet, 1, 24)
        started = float(lines[0].split()[1])
        yield until(lambda: self.event("ports", 1), "a ports event for c1", 5.0)
        arrived, event = self.event("ports", 1)
        print(f"\nport scan: event {arrived - started:.3f} s after the first connect")
        self.assertLess(arrived - started, 5.0)
        self.assertEqual((event["count"], event["threshold"], event["window"]), (20, 20, 60.0))
        self.assertEqual(event["mac"], self.lab.client_mac(1))
        self.assertEqual(len(event["samples"]), 10)
        self.assertTrue(all(str(s["ip"]) == self.lab.internet for s in event["samples"]))
        outcomes = [line.split()[1] for line in lines[1:] if line]
        # the 21st on: dropped by verdict (quarantined), not refused by the upstream
        self.assertEqual(outcomes, ["refused"] * 20 + ["TimeoutError"] * 4)
        yield until(lambda: self.deauthorized, "a /portal/deauthorize", 5.0)
        self.assertEqual(self.deauthorized[0][1],
                         {"ip": ipaddress.ip_address(self.lab.client_address(1)),
                          "reason": "port-scan"})
        # quarantined: dropped, not refused; the other client is not
        self.assertEqual((yield self.probe("c1", self.lab.wan_up_address, WEB)),
                         "TimeoutError")
        self.assertEqual((yield self.probe("c2", self.lab.wan_up_address, WEB)), "connected")
        counters = yield self.stats_bus.send("/stats/extrusion/counters", {})
        self.assertEqual((counters["ports"], counters["action_errors"]), (1, 0))
        self.assertGreaterEqual(counters["quarantine_dropped"], 1)
        self.assertEqual(self.event("ports", 2), None)


class DualStackScanTests(ExtrusionLab, TestCase):
    actions = '["ports:deauthorize", "ports:quarantine"]'
    ipv6 = True

    @inlineCallbacks
    def test_ipv6_port_scan(self):
        """
        A port scan over IPv6 (the firewall's ip6tables rule queues it too)
        raises the event with the client's IPv6 address and its MAC; the
        portal is asked about the client's IPv4 address (its MAC's), and
        the quarantine holds the MAC: the client's IPv4 connections are
        dropped too.
        """
        self.assertEqual((yield self.probe("c1", self.lab.wan_up_address, WEB)), "connected")
        lines = yield self.script("c1", SCAN, self.lab.internet6, 1, 22)
        started = float(lines[0].split()[1])
        yield until(lambda: [m for t, m in self.events if m["ip"].version == 6], "an IPv6 event",
                    5.0)
        [(arrived, event)] = [(t, m) for t, m in self.events if m["ip"].version == 6]
        print(f"\nIPv6 port scan: event {arrived - started:.3f} s after the first connect")
        self.assertLess(arrived - started, 5.0)
        self.assertIn(event["ip"], ipaddress.ip_network(self.lab.lan_prefix6))
        self.assertEqual((event["detector"], event["mac"]), ("ports", self.lab.client_mac(1)))
        yield until(lambda: self.deauthorized, "a /portal/deauthorize", 5.0)
        self.assertEqual(self.deauthorized[0][1]["ip"],
                         ipaddress.ip_address(self.lab.client_address(1)))
        self.assertEqual((yield self.probe("c1", self.lab.wan_up_address, WEB)),
                         "TimeoutError")
        self.assertEqual((yield self.probe("c2", self.lab.wan_up_address, WEB)), "connected")


class SmtpBurstTests(ExtrusionLab, TestCase):
    @inlineCallbacks
    def test_smtp_burst_closes_the_window(self):
        """
        With an SMTP window open, a burst of connections to the upstream's
        SMTP sink from c1 raises the smtp detector, and the gate closes the
        window: a real connect to port 25 is then refused; c2's window
        stays open.
        """
        for index in (1, 2):
            yield self.bus.send("/firewall/smtp/open", {
                "ip": self.lab.client_address(index), "seconds": 600})
        got = yield self.script("c1", CONNECT, self.lab.internet)
        self.assertEqual(got[0], "connected 220")
        lines = yield self.script("c1", BURST, self.lab.internet, 24)
        started = float(lines[0].split()[1])
        yield until(lambda: self.event("smtp", 1), "an smtp event for c1", 5.0)
        arrived, event = self.event("smtp", 1)
        print(f"\nSMTP burst: event {arrived - started:.3f} s after the first connect")
        self.assertLess(arrived - started, 5.0)
        self.assertEqual((event["count"], event["threshold"]), (20, 20))
        self.assertTrue(all(s["port"] == 25 for s in event["samples"]))
        yield until(lambda: self.closed, "/smtpgate/closed", 5.0)
        self.assertEqual((str(self.closed[0]["ip"]), self.closed[0]["reason"]),
                         (self.lab.client_address(1), "smtp-burst"))
        got = yield self.script("c1", CONNECT, self.lab.internet)
        self.assertTrue(got[0].startswith("refused "), got)
        got = yield self.script("c2", CONNECT, self.lab.internet)
        self.assertEqual(got[0], "connected 220")

    @inlineCallbacks
    def test_stats_down_forwarding_goes_on(self):
        """
        The queue's SYNs are seen while stats runs; with stats killed,
        connections are still forwarded (queue-bypass), at once.
        """
        self.assertEqual((yield self.probe("c1", self.lab.internet, WEB)), "connected")
        counters = yield self.stats_bus.send("/stats/extrusion/counters", {})
        self.assertGreaterEqual(counters["connections"], 1)
        self.stats.signal("KILL")
        yield self.stats.when_ended()
        started = time.monotonic()
        for _ in range(3):
            self.assertEqual((yield self.probe("c1", self.lab.internet, WEB)), "connected")
        self.assertLess(time.monotonic() - started, 5.0)
