"""
The SMTP gate in a real lab: the firewall runs in the access point's
namespace (process "ap"), the gate in a process of its own ("smtpgate"),
and this test stands in for the mail proxy and the portal: it serves the
processes "mailproxy" and "portal" on the bus and publishes their
C{/mailproxy/login} and C{/portal/logout} events, as they will. Clients
make real SMTP connections to the SMTP sink upstream, which answers on two
addresses (the "internet" and the upstream's WAN address: two servers).
"""

import os
import sys
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.bus.reach import socket_path
from netsuite.bus.server import BusServerFactory
from netsuite.lab import Lab
from netsuite.lab.peers import SmtpPeer
from netsuite.registry import EVENT, Registry

from .procs import ROOT, TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import need_lab
from ..lab.labs import lab_name

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 1.0
lock_dir = "{locks}"
smtp_max_per_minute = {cap}

[smtpgate]
window = {window}
firewall_process = "ap"
mailproxy_process = "mailproxy"
portal_process = "portal"
"""

# Connect to SMTP: "refused SECONDS" (a reset), "connected", or the error.
CONNECT = """
import socket, sys, time
start = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], 25), timeout=3)
    print("connected", s.recv(3).decode())
except ConnectionRefusedError:
    print("refused %.3f" % (time.monotonic() - start))
except OSError as e:
    print(type(e).__name__)
"""

SEND = """
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=5)
s.sendmail("a@lan.test", ["b@upstream.test"], "Subject: sgt\\n\\nhello from " + sys.argv[2])
s.quit()
"""


@inlineCallbacks
def until(done, what, seconds=10.0):
    """Fire once C{done()} is true, looking every 50 ms; fail after C{seconds}."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {seconds} s")
        yield deferLater(reactor, 0.05, lambda: None)


class Standin:
    """
    A process of the bus served from this test: its registry, with the
    event mailbox C{path} declared, listening at C{name}'s socket.
    """

    def __init__(self, test, name, path, sockets):
        self.registry = Registry(name, reactor)
        self.path = path
        self.registry.declare(path, kind=EVENT)
        self.port = reactor.listenUNIX(socket_path(name, sockets),
                                       BusServerFactory(self.registry), mode=0o660)
        test.addCleanup(self.port.stopListening)

    def watched(self):
        """Fires once someone (the gate) watches the mailbox."""
        return until(lambda: self.registry.heard(self.path), f"a watch of {self.path}")

    def publish(self, message):
        return self.registry.send(self.path, message)


class SmtpGateLab:
    """
    The set-up both window lengths share.
    """

    timeout = 120
    window = 600
    cap = 0

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self, prefix="sgt"), clients=3)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.sink = SmtpPeer(self.lab.netns("up"), None, 25)
        yield deferToThread(self.sink.start)
        self.addCleanup(self.sink.stop)
        self.server = self.lab.internet  # where the user logs in and sends
        self.other = self.lab.wan_up_address  # another server, same sink
        self.sockets = socket_dir(self)
        self.proxy = Standin(self, "mailproxy", "/mailproxy/login", self.sockets)
        self.portal = Standin(self, "portal", "/portal/logout", self.sockets)
        locks = os.path.abspath(self.mktemp())
        self.config = write_config(self, CONFIG.format(locks=locks, window=self.window, cap=self.cap))
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
        self.gate_bus = connect("smtpgate", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.gate_bus.close)
        self.events = []
        for path in ("/smtpgate/opened", "/smtpgate/closed"):
            yield self.gate_bus.watch(
                path, lambda m, path=path: self.events.append((path, m))).attached
        yield self.proxy.watched()
        yield self.portal.watched()

    def smtp(self, client, server):
        """Fire with what a connection to C{server}:25 from C{client} got."""
        return deferToThread(lambda: self.lab.exec(
            client, [sys.executable, "-c", CONNECT, server]).stdout.strip())

    @inlineCallbacks
    def assertRefusedFast(self, client, server):
        got = yield self.smtp(client, server)
        self.assertTrue(got.startswith("refused "), f"{client} -> {server}:25: {got}")
        self.assertLess(float(got.split()[1]), 1.0)

    def login(self, index, outcome="success", user="alice"):
        return self.proxy.publish({
            "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index),
            "server": self.server, "port": 143, "protocol": "imap", "user": user,
            "outcome": outcome, "evidence": "seen"})

    @inlineCallbacks
    def counted(self, key, n):
        """Fire with the gate's counters once C{key} reached C{n} (10 s at most)."""
        for _ in range(200):
            counters = yield self.gate_bus.send("/smtpgate/counters", {})
            if counters[key] >= n:
                return counters
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"{key} never reached {n}: {counters}")

    @inlineCallbacks
    def event(self, path, index):
        """Fire with the gate's next event C{path} about client C{index}."""
        ip = self.lab.client_address(index)
        before = len(self.events)

        def found():
            return [m for p, m in self.events[before:] if p == path and str(m["ip"]) == ip]
        yield until(found, f"{path} for {ip}")
        return found()[0]

    @inlineCallbacks
    def opened(self, index):
        """Publish a successful login of client C{index}; fire once the gate opened."""
        seen = self.event("/smtpgate/opened", index)
        yield self.login(index)
        event = yield seen
        return event


class ShortWindowTests(SmtpGateLab, TestCase):
    window = 4

    @inlineCallbacks
    def test_login_opens_towards_the_server_only(self):
        """
        Before a login SMTP is reset at once; a failed login opens
        nothing; after a successful one the client's message reaches the
        sink through the server it logged in to, while another server and
        another client stay refused; the window closes by itself.
        """
        yield self.assertRefusedFast("c1", self.server)
        yield self.login(1, "failure")
        counters = yield self.counted("logins", 1)
        self.assertEqual((counters["failures"], counters["opened"]), (1, 0))
        yield self.assertRefusedFast("c1", self.server)
        event = yield self.opened(1)
        opened_at = time.monotonic()
        self.assertEqual([str(s) for s in event["servers"]], [self.server])
        self.assertEqual(event["seconds"], self.window)
        sent = yield deferToThread(self.lab.exec, "c1",
                                   [sys.executable, "-c", SEND, self.server, "c1"])
        self.assertEqual(sent.returncode, 0, sent.stderr)
        messages = yield deferToThread(self.sink.wait_for_messages, 1)
        self.assertIn(b"hello from c1", messages[0]["data"])
        yield self.assertRefusedFast("c1", self.other)
        yield self.assertRefusedFast("c2", self.server)
        windows = yield self.gate_bus.send("/smtpgate/windows", {})
        self.assertEqual(list(windows), [self.lab.client_address(1)])
        self.assertEqual(list(windows[self.lab.client_address(1)]), [self.server])
        self.assertLess(time.monotonic() - opened_at, self.window)  # all that was inside it
        # the kernel's own timer
        yield deferLater(reactor, self.window + 0.5 - (time.monotonic() - opened_at),
                         lambda: None)
        yield self.assertRefusedFast("c1", self.server)

    @inlineCallbacks
    def test_gate_killed(self):
        """
        With the gate killed, a login opens nothing (fail closed), and the
        window already open still ends by itself in the kernel.
        """
        yield self.opened(1)
        opened_at = time.monotonic()
        self.gate.signal("KILL")
        yield self.gate.when_ended()
        got = yield self.smtp("c1", self.server)
        self.assertEqual(got, "connected 220")
        yield self.login(2)
        yield self.assertRefusedFast("c2", self.server)
        yield deferLater(reactor, self.window + 0.5 - (time.monotonic() - opened_at),
                         lambda: None)
        yield self.assertRefusedFast("c1", self.server)


class LongWindowTests(SmtpGateLab, TestCase):
    window = 600
    cap = 3

    @inlineCallbacks
    def test_connection_cap(self):
        """
        With firewall.smtp_max_per_minute = 3, a client with a window opens
        3 SMTP connections; the 4th is reset, another client's is not.
        """
        yield self.opened(1)
        yield self.opened(2)
        for _ in range(3):
            got = yield self.smtp("c1", self.server)
            self.assertEqual(got, "connected 220")
        yield self.assertRefusedFast("c1", self.server)
        got = yield self.smtp("c2", self.server)
        self.assertEqual(got, "connected 220")

    @inlineCallbacks
    def test_portal_logout_closes(self):
        """
        A portal logout closes the client's window at once; another
        client's stays open.
        """
        yield self.opened(1)
        yield self.opened(2)
        got = yield self.smtp("c1", self.server)
        self.assertEqual(got, "connected 220")
        closed = self.event("/smtpgate/closed", 1)
        yield self.portal.publish({"ip": self.lab.client_address(1),
                                   "mac": self.lab.client_mac(1), "reason": "logout"})
        event = yield closed
        self.assertEqual((str(event["ip"]), event["reason"]),
                         (self.lab.client_address(1), "portal-logout"))
        yield self.assertRefusedFast("c1", self.server)
        got = yield self.smtp("c2", self.server)
        self.assertEqual(got, "connected 220")

    @inlineCallbacks
    def test_hook_refuses(self):
        """
        examples/smtp_allow_users.py on /smtpgate/decide: a login by a user
        not listed opens nothing; a listed user's opens.
        """
        hook = spawn(self, "smtp_allow_users", [
            sys.executable, os.path.join(ROOT, "examples", "smtp_allow_users.py"), "smtpgate",
            self.sockets, "alice"])
        yield hook.when_line("hooked")
        yield self.login(1, user="mallory")
        counters = yield self.counted("refused", 1)
        self.assertEqual(counters["opened"], 0)
        yield self.assertRefusedFast("c1", self.server)
        event = yield self.opened(1)
        self.assertEqual(str(event["ip"]), self.lab.client_address(1))
        got = yield self.smtp("c1", self.server)
        self.assertEqual(got, "connected 220")

    @inlineCallbacks
    def test_close_mailbox(self):
        """
        /smtpgate/close (what the stats service sends on an SMTP burst)
        closes the window at once.
        """
        yield self.opened(1)
        answer = yield self.gate_bus.send("/smtpgate/close", {
            "ip": self.lab.client_address(1), "reason": "smtp-burst"})
        self.assertTrue(answer["closed"])
        yield self.assertRefusedFast("c1", self.server)
