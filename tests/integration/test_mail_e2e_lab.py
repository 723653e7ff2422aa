"""
The mail proxy and the SMTP gate end to end, in a lab, with the real
pieces as an operator runs them: three twistd processes in the access
point's namespace, each its own unit (etc/systemd): the firewall
(C{twistd netsuite}, process "ap", with C{tproxy_port} and
C{tproxy_ports} 110, 143, 993 and 995), C{twistd netsuite-mailproxy}
(process "mailproxy") and C{twistd netsuite-smtpgate} (process
"smtpgate"). Upstream, one dovecot with TLS (IMAP, POP3, IMAPS, POP3S)
and one SMTP sink, both answering on two addresses (the "internet" and
the upstream's WAN address: two servers). The test stands in for the
portal only (it serves the process "portal" and publishes
C{/portal/logout} as the portal does). Clients are real: curl and the
standard library's imaplib, poplib and smtplib
(tests/integration/mailclients.py), run in the clients' namespaces.
"""

import hashlib
import json
import os
import re
import sys
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import SmtpPeer

from ..lab.labs import lab_name, need
from ..mailproxy.record import TlsDovecot
from .procs import ROOT, TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import need_lab
from .test_smtpgate_lab import Standin, until

PROXY_PORT = 22143  # the proxy's listener in the access point (firewall.tproxy_port)
TABLE = 100  # firewall.tproxy_table
CLIENTS = os.path.join(ROOT, "tests", "integration", "mailclients.py")
USERS = {"alice": "secret", "bob": "hunter2"}
SERVER_NAME = "mail.mli.test"
ATTACHED = r"attached \d+ listeners and watches to mailproxy$"
CURL = ["curl", "--silent", "--show-error", "--max-time", "10"]

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 1.0
lock_dir = "{locks}"
tproxy_port = {port}
tproxy_ports = [110, 143, 993, 995]
tproxy_table = {table}

[mailproxy]
port = {port}
connect_timeout = 5.0

[smtpgate]
window = {window}
firewall_process = "ap"
mailproxy_process = "mailproxy"
portal_process = "portal"
"""

MESSAGE = ("From: bob@example.test\nTo: alice@example.test\nSubject: mli\n\n"
           "a3 OK LOGIN completed\n+OK Logged in.\nline three\n")


class MailLab:
    """
    The lab, its peers and the three daemons; one per test (each test
    builds its own: about 3 s).
    """

    timeout = 120
    window = 600

    @inlineCallbacks
    def setUp(self):
        need_lab()
        need("dovecot", "curl")
        self.lab = Lab(lab_name(self, prefix="mli"), clients=2)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.server = self.lab.internet  # where the users log in and send
        self.other = self.lab.wan_up_address  # another server (same peers)
        self.sink = SmtpPeer(self.lab.netns("up"), None, 25)
        self.dovecot = TlsDovecot(self.lab.netns("up"), None, users=USERS, imaps_port=993,
                                  pop3s_port=995, auth_failure_delay=0)
        for peer in (self.sink, self.dovecot):
            yield deferToThread(peer.start)
            self.addCleanup(peer.stop)
        self.message = self.dovecot.add_message("alice", MESSAGE)
        path = os.path.join(self.dovecot.directory, "home", "alice", "Maildir", "new",
                            self.message)
        with open(path, "rb") as f:
            self.message_bytes = f.read()
        self.sockets = socket_dir(self)
        self.portal = Standin(self, "portal", "/portal/logout", self.sockets)
        locks = os.path.abspath(self.mktemp())
        self.config = write_config(self, CONFIG.format(
            locks=locks, port=PROXY_PORT, table=TABLE, window=self.window))
        yield self.start_firewall()
        for index in (1, 2):
            yield self.bus.send("/firewall/authorize", {
                "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})
        yield self.start_proxy()
        yield self.start_gate()
        yield self.portal.watched()

    def twistd(self, plugin, name):
        return spawn(self, name, [
            *TWISTD, "-n", "--pidfile=", plugin, "--name", name, "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))

    @inlineCallbacks
    def start_firewall(self):
        self.firewall = self.twistd("netsuite", "ap")
        yield self.firewall.when_line("firewall ready", timeout=30)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    @inlineCallbacks
    def start_proxy(self):
        self.proxy = self.twistd("netsuite-mailproxy", "mailproxy")
        yield self.proxy.when_line("mailproxy ready", timeout=30)
        self.proxy_bus = connect("mailproxy", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.proxy_bus.close)
        self.logins = []
        yield self.proxy_bus.watch("/mailproxy/login", self.logins.append).attached

    @inlineCallbacks
    def start_gate(self):
        self.gate = self.twistd("netsuite-smtpgate", "smtpgate")
        yield self.gate.when_line("smtpgate ready", timeout=30)
        yield self.gate.when_line(ATTACHED, timeout=20)  # or it misses the first logins
        self.gate_bus = connect("smtpgate", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.gate_bus.close)
        self.events = []
        for path in ("/smtpgate/opened", "/smtpgate/closed"):
            yield self.gate_bus.watch(
                path, lambda m, path=path: self.events.append((path, m))).attached

    # clients

    def execute(self, client, argv, check=True):
        """Fire with C{argv}'s completed run in client C{client}'s namespace."""
        def run():
            done = self.lab.exec(client, argv, timeout=60)
            if check and done.returncode:
                raise AssertionError(f"{client}: {argv}: {done.returncode}: {done.stderr}")
            return done
        return deferToThread(run)

    @inlineCallbacks
    def mail(self, client, action, *args):
        """Fire with what mailclients.py ACTION printed (a dict)."""
        done = yield self.execute(client, [sys.executable, CLIENTS, action, *map(str, args)])
        return json.loads(done.stdout.strip().splitlines()[-1])

    @inlineCallbacks
    def smtp(self, client, server):
        """What a connection to C{server}:25 got: "refused" (a reset, and how fast) or the banner."""
        done = yield self.execute(client, [sys.executable, "-c", CONNECT, server])
        return done.stdout.strip()

    @inlineCallbacks
    def assertRefusedFast(self, client, server):
        got = yield self.smtp(client, server)
        self.assertTrue(got.startswith("refused "), f"{client} -> {server}:25: {got}")
        self.assertLess(float(got.split()[1]), 1.0)

    @inlineCallbacks
    def assertOpen(self, client, server):
        got = yield self.smtp(client, server)
        self.assertEqual(got, "connected 220", f"{client} -> {server}:25")

    @inlineCallbacks
    def login_event(self, index, count=1):
        """Fire with the C{count}th /mailproxy/login of client C{index} (10 s at most)."""
        ip = self.lab.client_address(index)

        def found():
            return [m for m in self.logins if str(m["ip"]) == ip]
        yield until(lambda: len(found()) >= count, f"login {count} of {ip}")
        return dict(found()[count - 1])

    @inlineCallbacks
    def counters(self, key, n):
        """Fire with the gate's counters once C{key} reached C{n} (10 s at most)."""
        for _ in range(200):
            counters = yield self.gate_bus.send("/smtpgate/counters", {})
            if counters[key] >= n:
                return counters
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"{key} never reached {n}: {counters}")

    @inlineCallbacks
    def event(self, path, index, before):
        """Fire with the gate's first event C{path} about client C{index} after C{before}."""
        ip = self.lab.client_address(index)

        def found():
            return [m for p, m in self.events[before:] if p == path and str(m["ip"]) == ip]
        yield until(found, f"{path} for {ip}")
        return found()[0]


class ImapTests(MailLab, TestCase):
    window = 6

    @inlineCallbacks
    def test_imap_login_opens_for_that_client_and_server(self):
        """
        Before any login SMTP is reset at once; a wrong IMAP password
        (imaplib) opens nothing; a right one (curl imap://) opens SMTP for
        that client, towards that server only; a message then reaches the
        sink; the window closes by itself.
        """
        yield self.assertRefusedFast("c1", self.server)
        got = yield self.mail("c1", "imap_login", self.server, "alice", "wrong")
        self.assertEqual(got["outcome"], "failure")
        login = yield self.login_event(1)
        self.assertEqual(login, {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1).lower(),
            "server": self.server, "port": 143, "protocol": "imap", "user": "alice",
            "outcome": "failure", "evidence": "seen"})
        counters = yield self.counters("logins", 1)
        self.assertEqual((counters["failures"], counters["opened"]), (1, 0))
        yield self.assertRefusedFast("c1", self.server)
        before = len(self.events)
        yield self.execute("c1", CURL + ["-u", "alice:secret", f"imap://{self.server}/INBOX"])
        event = yield self.event("/smtpgate/opened", 1, before)
        opened_at = time.monotonic()
        self.assertEqual([str(s) for s in event["servers"]], [self.server])
        self.assertEqual(event["seconds"], self.window)
        login = yield self.login_event(1, 2)
        self.assertEqual((login["outcome"], login["user"]), ("success", "alice"))
        got = yield self.mail("c1", "smtp_send", self.server, "c1")
        messages = yield deferToThread(self.sink.wait_for_messages, 1)
        self.assertIn(b"hello from c1", messages[0]["data"])
        yield self.assertRefusedFast("c1", self.other)
        yield self.assertRefusedFast("c2", self.server)
        self.assertLess(time.monotonic() - opened_at, self.window)  # all that was inside it
        yield deferLater(reactor, self.window + 0.5 - (time.monotonic() - opened_at),
                         lambda: None)
        yield self.assertRefusedFast("c1", self.server)


class SessionTests(MailLab, TestCase):
    window = 600

    @inlineCallbacks
    def test_pop3_and_portal_logout(self):
        """
        POP3: a wrong PASS opens nothing, a right USER/PASS (poplib) opens
        for c1; AUTH PLAIN (curl pop3://) for c2; a portal logout closes
        c1's window at once, c2's stays open.
        """
        got = yield self.mail("c1", "pop3_login", self.server, "alice", "wrong")
        self.assertEqual(got["outcome"], "failure")
        login = yield self.login_event(1)
        self.assertEqual((login["protocol"], login["port"], login["outcome"], login["user"]),
                         ("pop3", 110, "failure", "alice"))
        yield self.counters("failures", 1)
        yield self.assertRefusedFast("c1", self.server)
        before = len(self.events)
        got = yield self.mail("c1", "pop3_login", self.server, "alice", "secret")
        self.assertEqual((got["outcome"], got["messages"]), ("success", 1))
        yield self.event("/smtpgate/opened", 1, before)
        done = yield self.execute("c2", CURL + ["-u", "bob:hunter2", "--sasl-ir",
                                                f"pop3://{self.server}/"])
        self.assertEqual(done.stdout.strip(), "")  # bob's mailbox is empty
        event = yield self.event("/smtpgate/opened", 2, before)
        self.assertEqual([str(s) for s in event["servers"]], [self.server])
        login = yield self.login_event(2)
        self.assertEqual((login["protocol"], login["outcome"], login["user"]),
                         ("pop3", "success", "bob"))
        yield self.assertOpen("c1", self.server)
        yield self.assertOpen("c2", self.server)
        yield self.assertRefusedFast("c2", self.other)
        before = len(self.events)
        yield self.portal.publish({"ip": self.lab.client_address(1),
                                   "mac": self.lab.client_mac(1), "reason": "logout"})
        event = yield self.event("/smtpgate/closed", 1, before)
        self.assertEqual(event["reason"], "portal-logout")
        yield self.assertRefusedFast("c1", self.server)
        yield self.assertOpen("c2", self.server)

    @inlineCallbacks
    def test_imap_session_untouched(self):
        """
        Through the proxy: SELECT, a FETCH byte-identical to the Maildir's
        file, an APPEND of 1 MiB read back identical, and IDLE told of an
        APPEND made on another connection.
        """
        got = yield self.mail("c1", "imap_session", self.server, "alice", "secret", 1 << 20)
        self.assertEqual(got["exists"], 1)
        self.assertEqual(list(got["fetched"].values()),
                         [hashlib.sha256(self.message_bytes).hexdigest()])
        self.assertEqual(got["appended"], 1 << 20)
        self.assertEqual(got["back"], got["sent"])
        got = yield self.mail("c1", "imap_idle", self.server, "alice", "secret")
        self.assertEqual((got["before"], got["after"]), (2, 3))
        self.assertLess(got["seconds"], 5)
        counters = yield self.proxy_bus.send("/mailproxy/counters")
        self.assertEqual(counters["logins"], 3)  # the session's, IDLE's and the other's
        self.assertGreaterEqual(counters["cut_through"], 3)

    @inlineCallbacks
    def test_imaps_and_pop3s_pass_untouched(self):
        """
        IMAPS and POP3S, diverted to the proxy (firewall.tproxy_ports), pass
        untouched (the TLS sessions work, the message arrives whole) and
        open nothing (the TLS heuristic is off by default).
        """
        got = yield self.mail("c1", "imaps_session", self.server, "alice", "secret",
                              SERVER_NAME)
        self.assertEqual(list(got["fetched"].values()),
                         [hashlib.sha256(self.message_bytes).hexdigest()])
        got = yield self.mail("c1", "pop3s_session", self.server, "alice", "secret",
                              SERVER_NAME)
        self.assertEqual(got["retr"], hashlib.sha256(self.message_bytes).hexdigest())
        counters = yield self.proxy_bus.send("/mailproxy/counters")
        self.assertEqual((counters["connections"], counters["logins"]), (2, 0))
        self.assertEqual(self.logins, [])
        gate = yield self.gate_bus.send("/smtpgate/counters", {})
        self.assertEqual(gate["logins"], 0)
        yield self.assertRefusedFast("c1", self.server)


class FailureTests(MailLab, TestCase):
    window = 600

    @inlineCallbacks
    def test_proxy_killed(self):
        """
        With the proxy killed (SIGKILL) and the firewall up, a new IMAP
        connection is refused at once (a reset, under 1 s: the nft tproxy
        finds no listener, the packet keeps the divert mark and NS-FORWARD
        resets it; docs/mailproxy.md), and SMTP stays closed (a reset).
        Restarted, the proxy serves and a login opens SMTP again.
        """
        self.proxy.signal("KILL")
        yield self.proxy.when_ended()
        got = yield self.mail("c1", "imap_connect", self.server, 5)
        self.assertEqual(got["got"], "refused")
        self.assertLess(got["seconds"], 1.0)
        yield self.assertRefusedFast("c1", self.server)
        mark = self.gate.line_count
        yield self.start_proxy()
        # the gate's bus client reconnects (backing off): logins before are not seen
        yield self.gate.when_line(ATTACHED, after=mark, timeout=20)
        got = yield self.mail("c1", "imap_connect", self.server, 2)
        self.assertEqual((got["got"], got["first"][:4]), ("greeting", "* OK"))
        before = len(self.events)
        got = yield self.mail("c1", "imap_login", self.server, "alice", "secret")
        self.assertEqual(got["outcome"], "success")
        yield self.event("/smtpgate/opened", 1, before)
        yield self.assertOpen("c1", self.server)

    @inlineCallbacks
    def test_divert_flushed(self):
        """
        netsuite's nft chain flushed by hand: meanwhile a new IMAP
        connection is refused at once (the mark alone is reset, never
        passed to the server unwatched); the firewall's periodic check
        (check_interval 1 s) restores the chain and IMAP goes through the
        proxy again.
        """
        mark = self.firewall.line_count
        yield self.execute("ap", ["nft", "flush", "chain", "ip", "ns", "divert"])
        got = yield self.mail("c1", "imap_connect", self.server, 5)
        if got["got"] != "greeting":  # the check may have been faster than the client
            self.assertEqual(got["got"], "refused")
            self.assertLess(got["seconds"], 1.0)
        yield self.firewall.when_line("TPROXY diversion restored", after=mark, timeout=10)
        connections = (yield self.proxy_bus.send("/mailproxy/counters"))["connections"]
        got = yield self.mail("c1", "imap_connect", self.server, 2)
        self.assertEqual((got["got"], got["first"][:4]), ("greeting", "* OK"))
        counters = yield self.proxy_bus.send("/mailproxy/counters")
        self.assertEqual(counters["connections"], connections + 1)

    @inlineCallbacks
    def test_gate_killed(self):
        """With the gate killed, a right login through the proxy opens nothing."""
        self.gate.signal("KILL")
        yield self.gate.when_ended()
        got = yield self.mail("c1", "imap_login", self.server, "alice", "secret")
        self.assertEqual(got["outcome"], "success")
        yield self.login_event(1)
        yield self.assertRefusedFast("c1", self.server)

    def kernel_state(self):
        """The access point's iptables (legacy), ip rules and TPROXY routes, counters off."""
        def run(argv):
            return self.lab.exec("ap", argv, check=True).stdout
        rules = [re.sub(r"\[\d+:\d+\]", "", line)
                 for line in run(["iptables-legacy-save"]).splitlines()
                 if not line.startswith("#")]
        return {"iptables": rules, "rule": run(["ip", "rule"]).splitlines(),
                "nft": run(["nft", "list", "table", "ip", "ns"]).splitlines(),
                "route": run(["ip", "route", "show", "table", str(TABLE)]).splitlines()}

    @inlineCallbacks
    def test_restart_leaves_no_duplicates(self):
        """
        The firewall's daemon killed (SIGKILL, as a crash) and started
        again, then stopped (SIGTERM) and started again: its iptables
        rules, ip rule and TPROXY route are each there once, as before;
        a login still opens SMTP.
        """
        before = yield deferToThread(self.kernel_state)
        self.assertEqual(len([r for r in before["rule"] if f"lookup {TABLE}" in r]), 1)
        self.assertEqual(len(before["route"]), 1)
        self.assertTrue([r for r in before["iptables"] if "TPROXY" in r])
        self.assertEqual(len([r for r in before["nft"] if "tproxy to" in r]), 1)
        for signal in ("KILL", "TERM"):
            self.firewall.signal(signal)
            yield self.firewall.when_ended()
            yield self.bus.close()
            yield self.start_firewall()
            after = yield deferToThread(self.kernel_state)
            self.assertEqual(after, before, signal)
        for index in (1, 2):  # as the portal does after a restart (whatever was kept)
            yield self.bus.send("/firewall/authorize", {
                "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})
        before = len(self.events)
        got = yield self.mail("c1", "imap_login", self.server, "alice", "secret")
        self.assertEqual(got["outcome"], "success")
        yield self.event("/smtpgate/opened", 1, before)
        yield self.assertOpen("c1", self.server)


# Connect to SMTP: "refused SECONDS" (a reset), "connected 220", or the error.
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
