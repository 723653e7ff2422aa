"""
netsuite-mailproxy behind the firewall's own TPROXY rules and routing, in a
lab: the all-in-one daemon runs the firewall (tproxy_port, tproxy_ports)
and the mail proxy in the access point; an authorized client's connection
to a server upstream is diverted to the proxy, relayed byte-identical both
ways, its login announced on /mailproxy/login (with the client's MAC), and
listed on /mailproxy/connections while it lasts. The mail filters here are
a stand-in module (tests.mailproxy.fakemail): a login per "LOGIN user ok"
line, done after it (so the rest is cut through).
"""

import hashlib
import os
import random

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.child import PYTHON

from ..lab.labs import lab_name, need, need_root
from .procs import TWISTD, first_event, socket_dir, spawn, write_config
from .test_proxy_lab import DOWN, SERVER, SERVER_PORT, UP, digest

PROXY_PORT = 49110
LOGIN = b"LOGIN joe ok\n"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 0
shaping = false
lock_dir = "{locks}"
tproxy_port = {port}
tproxy_ports = [{server_port}]
masquerade = {spoof_off}

[mailproxy]
enabled = true
port = {port}
modules = {{ {server_port} = "tests.mailproxy.fakemail:logins" }}
spoof_source = {spoof}
"""

# Sends a login line, then UP bytes; half-closes; reads the answer to the end.
CLIENT = """
import hashlib, random, socket, sys
host, port, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=20)
s.sendall(b"LOGIN joe ok\\n")
print("sent login", flush=True)
sys.stdin.readline()
s.sendall(random.Random(1).randbytes(up)); s.shutdown(socket.SHUT_WR)
h, n = hashlib.sha256(), 0
while True:
    data = s.recv(65536)
    if not data: break
    h.update(data); n += len(data)
print("client", h.hexdigest(), n, flush=True)
"""


class MailProxyLabTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        need_root()
        need("iptables-legacy-save", "ipset")
        self.lab = Lab(lab_name(self, prefix="pxc"), clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.sockets = socket_dir(self)
        self.locks = os.path.abspath(self.mktemp())

    @inlineCallbacks
    def start(self, spoof: bool):  # type: ignore[no-untyped-def]
        config = write_config(self, CONFIG.format(
            locks=self.locks, port=PROXY_PORT, server_port=SERVER_PORT,
            spoof="true" if spoof else "false", spoof_off="false" if spoof else "true"))
        daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", config], netns=self.lab.netns("ap"))
        server = spawn(self, "upstream", [PYTHON, "-u", "-c", SERVER, "0.0.0.0",
                                          str(SERVER_PORT), str(DOWN)],
                       netns=self.lab.netns("up"))
        yield daemon.when_line("mailproxy ready", timeout=30)
        yield server.when_line("^listening", timeout=20)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        answer = yield self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1)})
        self.assertTrue(answer["authorized"])
        return server

    @inlineCallbacks
    def relay(self, spoof: bool):  # type: ignore[no-untyped-def]
        server = yield self.start(spoof)
        attached, logins = first_event(self.bus, "/mailproxy/login")
        yield attached
        client = spawn(self, "client", [PYTHON, "-u", "-c", CLIENT, self.lab.internet,
                                        str(SERVER_PORT), str(UP)],
                       netns=self.lab.netns("c1"), stdin=True)
        yield client.when_line("^sent login", timeout=20)
        login = yield logins.addTimeout(10, reactor)
        self.assertEqual(dict(login), {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1).lower(),
            "server": self.lab.internet, "port": SERVER_PORT, "protocol": "imap",
            "user": "joe", "outcome": "success", "evidence": "seen"})
        [entry] = yield self.bus.send("/mailproxy/connections")
        self.assertEqual(entry["server"], f"{self.lab.internet}:{SERVER_PORT}")
        self.assertEqual(entry["state"], "cut-through")  # done after the login
        self.assertEqual(entry["from_client"], len(LOGIN))
        client.send("\n")
        line = yield client.when_line("^client", timeout=30)
        self.assertEqual(line, f"client {digest(DOWN, 2)} {DOWN}")
        got = yield server.when_line("^got", timeout=10)
        sent = LOGIN + random.Random(1).randbytes(UP)
        self.assertEqual(got, f"got {hashlib.sha256(sent).hexdigest()} {len(sent)}")
        peer = (yield server.when_line("^peer", timeout=10)).split()
        counters = yield self.bus.send("/mailproxy/counters")
        self.assertEqual((counters["connections"], counters["logins"]), (1, 1))
        return peer[1]

    @inlineCallbacks
    def test_through_the_firewalls_tproxy(self):  # type: ignore[no-untyped-def]
        """From the access point's address (and out through its masquerade)."""
        source = yield self.relay(spoof=False)
        self.assertEqual(source, self.lab.wan_ap_address)

    @inlineCallbacks
    def test_from_the_clients_address(self):  # type: ignore[no-untyped-def]
        """With spoof_source and no masquerade, the server sees the client's address."""
        source = yield self.relay(spoof=True)
        self.assertEqual(source, self.lab.client_address(1))

