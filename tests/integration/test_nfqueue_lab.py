"""
The mail proxy's nfqueue mode in a lab, behind the firewall's own rules
(nfqueue_num, nfqueue_ports, nfqueue_redirect_port): an authorized
client's connection to a server upstream has its SYN queued (mangle
NS-QUEUE), read by the proxy's queue reader and accepted, is REDIRECTed to
the proxy, which connects to the destination the SYN carried; its login
is announced and the bytes pass identical both ways.

Without a reader for the firewall's queue (the proxy here reads another
one): with nfqueue_bypass the SYN passes, the connection reaches the
proxy with no record of its SYN, and is closed at once (counted); without
bypass the SYN is dropped and the client's connect times out; the proxy
sees nothing. With no proxy process at all (and bypass) the redirect meets
a closed port: refused. All bounded in time.
"""

import hashlib
import importlib.util
import json
import os
import random
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.child import PYTHON

from ..lab.labs import lab_name, need, need_root
from .procs import TWISTD, first_event, socket_dir, spawn, write_config
from .test_mailproxy_lab import CLIENT, LOGIN
from .test_proxy_lab import DOWN, SERVER, UP, digest

SERVER_PORT = 54143
PROXY_PORT = 54110
QUEUE = 54

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 0
shaping = false
lock_dir = "{locks}"
nfqueue_num = {queue}
nfqueue_ports = [{server_port}]
nfqueue_redirect_port = {port}
nfqueue_bypass = {bypass}

[mailproxy]
enabled = {mailproxy}
mode = "nfqueue"
nfqueue_num = {queue}
port = {port}
modules = {{ {server_port} = "tests.mailproxy.fakemail:logins" }}
"""

# Connects (2 s at most) and says what happened: "closed N" (the bytes it
# got before the end), "error ..." or "timeout S".
PROBE = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
start = time.monotonic()
try:
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"LOGIN joe ok\\n")
    n = len(s.recv(65536))
    print("probe closed", n, round(time.monotonic() - start, 3), flush=True)
except socket.timeout:
    print("probe timeout", round(time.monotonic() - start, 3), flush=True)
except OSError as e:
    print("probe error", e.errno, round(time.monotonic() - start, 3), flush=True)
"""


class NfqueueLabTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        need_root()
        need("iptables-legacy-save", "ipset")
        if importlib.util.find_spec("netfilterqueue") is None:  # scripts/setup.sh builds it
            self.fail("NetfilterQueue is not installed in .venv: run scripts/setup.sh")
        self.lab = Lab(lab_name(self, prefix="nfq"), clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.sockets = socket_dir(self)
        self.locks = os.path.abspath(self.mktemp())

    @inlineCallbacks
    def start(self, mailproxy: bool = True, bypass: bool = True):  # type: ignore
        config = write_config(self, CONFIG.format(
            locks=self.locks, port=PROXY_PORT, server_port=SERVER_PORT, queue=QUEUE,
            bypass="true" if bypass else "false", mailproxy="true" if mailproxy else "false"))
        daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", config], netns=self.lab.netns("ap"))
        server = spawn(self, "upstream", [PYTHON, "-u", "-c", SERVER, "0.0.0.0",
                                          str(SERVER_PORT), str(DOWN)],
                       netns=self.lab.netns("up"))
        yield daemon.when_line("mailproxy ready" if mailproxy else "firewall ready", timeout=30)
        yield server.when_line("^listening", timeout=20)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        answer = yield self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1)})
        self.assertTrue(answer["authorized"])
        return server

    @inlineCallbacks
    def test_through_the_queue(self):  # type: ignore[no-untyped-def]
        server = yield self.start()
        attached, logins = first_event(self.bus, "/mailproxy/login")
        yield attached
        client = spawn(self, "client", [PYTHON, "-u", "-c", CLIENT, self.lab.internet,
                                        str(SERVER_PORT), str(UP)],
                       netns=self.lab.netns("c1"), stdin=True)
        yield client.when_line("^sent login", timeout=20)
        login = yield logins.addTimeout(10, reactor)
        self.assertEqual((login["ip"], login["server"], login["port"], login["user"],
                          login["outcome"]),
                         (self.lab.client_address(1), self.lab.internet, SERVER_PORT, "joe",
                          "success"))
        [entry] = yield self.bus.send("/mailproxy/connections")
        self.assertEqual(entry["server"], f"{self.lab.internet}:{SERVER_PORT}")
        client.send("\n")
        line = yield client.when_line("^client", timeout=30)
        self.assertEqual(line, f"client {digest(DOWN, 2)} {DOWN}")
        got = yield server.when_line("^got", timeout=10)
        sent = LOGIN + random.Random(1).randbytes(UP)
        self.assertEqual(got, f"got {hashlib.sha256(sent).hexdigest()} {len(sent)}")
        peer = (yield server.when_line("^peer", timeout=10)).split()
        self.assertEqual(peer[1], self.lab.wan_ap_address)  # the proxy's own connection
        counters = yield self.bus.send("/mailproxy/counters")
        self.assertEqual((counters["connections"], counters["logins"],
                          counters["syn_recorded"], counters.get("no_destination", 0)),
                         (1, 1, 1, 0))
        # the firewall's rules as the kernel holds them: queued in mangle, redirected in nat
        saved = yield deferToThread(self.lab.exec, "ap", ["iptables-legacy-save"], check=True)
        self.assertIn(f"-A NS-QUEUE -i br-lan -p tcp -m tcp --dport {SERVER_PORT}",
                      saved.stdout)
        self.assertIn(f"--queue-num {QUEUE} --queue-bypass", saved.stdout)
        self.assertIn(f"-j REDIRECT --to-ports {PROXY_PORT}", saved.stdout)

    @inlineCallbacks
    def probe(self):  # type: ignore[no-untyped-def]
        probe = spawn(self, "probe", [PYTHON, "-u", "-c", PROBE, self.lab.internet,
                                      str(SERVER_PORT)], netns=self.lab.netns("c1"))
        line = yield probe.when_line("^probe", timeout=15)
        return line.split()

    @inlineCallbacks
    def no_reader(self, bypass: bool):  # type: ignore[no-untyped-def]
        """The firewall's queue has no reader; a proxy (reading another queue) listens."""
        server = yield self.start(mailproxy=False, bypass=bypass)
        proxy = spawn(self, "proxy", [
            PYTHON, "-u", "-m", "netsuite.proxy.run", "--listen", f"0.0.0.0:{PROXY_PORT}",
            "--mode", "nfqueue", "--queue", str(QUEUE + 1)], netns=self.lab.netns("ap"))
        yield proxy.when_line("^listening", timeout=20)
        result = yield self.probe()
        proxy.stop()
        counters = yield deferToThread(proxy.wait_for_line, "^counters", 10)
        self.assertFalse([line for line in server.lines() if line.startswith("peer")],
                         "nothing reached the server")
        return result, json.loads(counters[0].split(" ", 1)[1])

    @inlineCallbacks
    def test_no_reader_bypass(self):  # type: ignore[no-untyped-def]
        """Bypass: the SYN passes, the proxy has no record of it: closed at once."""
        started = time.monotonic()
        result, counters = yield self.no_reader(bypass=True)
        self.assertIn(result[:2], [["probe", "closed"], ["probe", "error"]], result)
        if result[1] == "closed":
            self.assertEqual(result[2], "0")
        self.assertLess(float(result[-1]), 1.0, "closed fast, no hang")
        self.assertEqual(counters, {"no_destination": 1, "syn_missing": 1})
        self.assertLess(time.monotonic() - started, 60)

    @inlineCallbacks
    def test_no_proxy_bypass(self):  # type: ignore[no-untyped-def]
        """No proxy process at all, bypass: the redirect meets a closed port: refused at once."""
        server = yield self.start(mailproxy=False, bypass=True)
        result = yield self.probe()
        self.assertEqual(result[:3], ["probe", "error", "111"], result)  # ECONNREFUSED
        self.assertLess(float(result[3]), 1.0)
        self.assertFalse([line for line in server.lines() if line.startswith("peer")])

    @inlineCallbacks
    def test_no_reader_no_bypass(self):  # type: ignore[no-untyped-def]
        """No bypass: the SYN is dropped; the client's connect times out; the proxy sees nothing."""
        result, counters = yield self.no_reader(bypass=False)
        self.assertEqual(result[:2], ["probe", "timeout"], result)
        self.assertGreaterEqual(float(result[2]), 1.9)
        self.assertEqual(counters, {})
