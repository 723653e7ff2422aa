"""
The firewall adapter in a real lab: netsuite runs in the access point's
namespace, clients in theirs make real connections to real servers
upstream, and the kernel's state is read back with iptables-legacy-save,
ipset and conntrack.
"""

import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import NO_ANSWER, connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, SmtpPeer, missing

from .procs import TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORTAL_BODY = "the portal"
UPSTREAM_BODY = "the internet"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 8080
walled_garden = ["{garden}/32"]
check_interval = 1.0
smtp_window = 600
shaping = true
lock_dir = "{locks}"
"""

# One ping for each line the test writes: it asks when it wants to know.
ECHO_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.settimeout(1.0)
n = 0
for _ in sys.stdin:
    try:
        s.sendall(b"ping\\n")
        if not s.recv(100):
            print("closed", flush=True); break
    except OSError as e:
        print("cut", type(e).__name__, flush=True); break
    n += 1
    print("ok", n, flush=True)
"""

ECHO_SERVER = """
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(5)
print("listening", flush=True)
def serve(c):
    while True:
        data = c.recv(100)
        if not data: return
        c.sendall(data)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# A resolver upstream: one A record over UDP and TCP, a line per query.
DNS_SERVER = """
import socket, struct, sys, threading
address, known, answer = sys.argv[1], sys.argv[2].lower(), socket.inet_aton(sys.argv[3])
def reply(q, proto):
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
    name = ".".join(labels).lower()
    print("query", proto, name, flush=True)
    found = name == known
    head = q[:2] + struct.pack("!HHHHH", 0x8180 if found else 0x8183, 1, int(found), 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer if found else b""
    return head + q[12:i + 5] + record
def tcp(c):
    with c:
        n = struct.unpack("!H", c.recv(2, socket.MSG_WAITALL))[0]
        r = reply(c.recv(n, socket.MSG_WAITALL), "tcp")
        c.sendall(struct.pack("!H", len(r)) + r)
def tcp_loop(srv):
    while True:
        c, _ = srv.accept()
        threading.Thread(target=tcp, args=(c,), daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((address, 53))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((address, 53)); srv.listen(5)
threading.Thread(target=tcp_loop, args=(srv,), daemon=True).start()
print("listening", flush=True)
while True:
    q, peer = udp.recvfrom(512)
    udp.sendto(reply(q, "udp"), peer)
"""

# One query (udp or tcp); prints the address answered or the error's name.
DNS_CLIENT = """
import socket, struct, sys
server, name, proto = sys.argv[1:4]
q = (struct.pack("!HHHHHH", 0x4E53, 0x0100, 1, 0, 0, 0)
     + b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
     + struct.pack("!HH", 1, 1))
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(q, (server, 53)); a = s.recv(512)
    else:
        s = socket.create_connection((server, 53), timeout=2)
        s.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))[0]
        a = s.recv(n, socket.MSG_WAITALL)
except OSError as e:
    print(type(e).__name__); sys.exit()
ok = a[:2] == q[:2] and struct.unpack("!H", a[6:8])[0] == 1
print(socket.inet_ntoa(a[-4:]) if ok else "no answer")
"""
# What a clean stop leaves: every forwarded packet from the LAN dropped.
CLOSED = ["-A FORWARD -j NS-FORWARD", "-A NS-FORWARD -i br-lan -j DROP"]
DNS_NAME = "portal-check.netsuite.test"
DNS_ADDRESS = "203.0.113.53"


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and change their firewall")
    absent = missing("curl", "ipset", "iptables-legacy-save", "conntrack")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class FirewallLabTests(TestCase):
    """
    Access control for real traffic.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self), clients=3)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.portal = HttpPeer(self.lab.netns("ap"), self.lab.ap_address, 8080, PORTAL_BODY)
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, UPSTREAM_BODY)
        self.smtp = SmtpPeer(self.lab.netns("up"), None, 25)
        for peer in (self.portal, self.upstream, self.smtp):
            yield deferToThread(peer.start)
            self.addCleanup(peer.stop)
        self.sockets = socket_dir(self)
        self.locks = os.path.abspath(self.mktemp())  # the daemon's cwd is not ours
        self.config = write_config(self, self.config_text())
        yield self.start_daemon()
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def config_text(self):
        return CONFIG.format(garden=self.lab.wan_up_address, locks=self.locks)

    def start_daemon(self):
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        return self.daemon.when_line("firewall ready")

    def curl(self, client, url, seconds=3):
        """
        Fire with (curl exit code, body) of a GET from a client namespace.
        """
        def run():
            done = self.lab.exec(client, ["curl", "-s", "--max-time", str(seconds), url])
            return done.returncode, done.stdout
        return deferToThread(run)

    def in_ap(self, *argv):
        return self.lab.exec("ap", list(argv), check=True).stdout

    def authorize(self, index):
        return self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})

    @inlineCallbacks
    def test_login_and_logout(self):
        """
        Unauthorized: HTTP is answered by the portal, the walled garden is
        reachable, HTTPS is refused at once, anything else is dropped.
        Authorized over the bus: the client reaches upstream, others still
        do not. De-authorized: blocked again.
        """
        internet = f"http://{self.lab.internet}/"
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, PORTAL_BODY))
        code, body = yield self.curl("c1", f"http://{self.lab.wan_up_address}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        code, _ = yield self.curl("c1", f"https://{self.lab.internet}/")
        self.assertEqual(code, 7)  # connection refused: reset, not a time-out
        code, _ = yield self.curl("c1", f"http://{self.lab.internet}:25/", seconds=2)
        self.assertEqual(code, 28)  # dropped: time-out

        answer = yield self.authorize(1)
        self.assertTrue(answer["authorized"])
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        code, body = yield self.curl("c2", internet)
        self.assertEqual((code, body), (0, PORTAL_BODY))
        counters = yield self.bus.send("/firewall/counters")
        mine = counters[self.lab.client_address(1)]
        self.assertGreater(mine["bytes_up"], 0)
        self.assertGreater(mine["bytes_down"], len(UPSTREAM_BODY))
        self.assertGreater(mine["packets_down"], 0)
        saved = self.in_ap("ipset", "list", "ns-auth")
        self.assertIn(f"{self.lab.client_address(1)},{self.lab.client_mac(1).upper()}", saved)

        answer = yield self.bus.send("/firewall/deauthorize", {"ip": self.lab.client_address(1)})
        self.assertTrue(answer["deauthorized"])
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, PORTAL_BODY))

    def dns(self, client, proto):
        """
        Fire with what a DNS query from a client namespace to the upstream
        resolver got: the address answered, or the error (TimeoutError).
        """
        def run():
            done = self.lab.exec(client, [sys.executable, "-c", DNS_CLIENT,
                                          self.lab.internet, DNS_NAME, proto], timeout=20)
            return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1]
        return deferToThread(run)

    @inlineCallbacks
    def test_preauth_dns(self):
        """
        Before login a query to a resolver upstream never reaches it, over
        UDP or TCP: with preauth_dns (the default) it is redirected to the
        access point's resolver (none runs here: refused or no answer, fail
        closed; tests/integration/test_firewall_dns_lab.py has one); with
        preauth_dns = false it is dropped (time-out). Either way the
        upstream resolver sees nothing until the client is authorized.
        """
        resolver = spawn(self, "dns", [
            sys.executable, "-u", "-c", DNS_SERVER, self.lab.internet, DNS_NAME, DNS_ADDRESS],
            netns=self.lab.netns("up"))
        yield resolver.when_line("^listening$", timeout=10)
        seen = resolver.line_count
        for proto in ("udp", "tcp"):
            answer = yield self.dns("c1", proto)
            self.assertIn(answer, ("ConnectionRefusedError", "TimeoutError"), proto)
        self.assertEqual(resolver.lines(after=seen), [])

        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        self.config = write_config(self, self.config_text() + "preauth_dns = false\n")
        yield self.start_daemon()
        seen = resolver.line_count
        for proto in ("udp", "tcp"):
            answer = yield self.dns("c1", proto)
            self.assertEqual(answer, "TimeoutError", proto)
        self.assertEqual(resolver.lines(after=seen), [])

        yield self.authorize(1)
        answer = yield self.dns("c1", "udp")
        self.assertEqual(answer, DNS_ADDRESS)

    def tc_classes(self, device):
        return self.in_ap("tc", "class", "show", "dev", device)

    @inlineCallbacks
    def test_rate_limits(self):
        """
        Limits given at authorization become HTB classes on the LAN
        (download) and the IFB (upload), read back with tc; they go with
        the de-authorization.
        """
        self.assertEqual(self.lab.sysctl("ap", "net.bridge.bridge-nf-call-iptables").strip(),
                         "0")
        answer = yield self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1),
            "up_kbit": 2000, "down_kbit": 4000})
        self.assertEqual((answer["up_kbit"], answer["down_kbit"]), (2000, 4000))
        self.assertIn("rate 4Mbit", self.tc_classes("br-lan"))
        self.assertIn("rate 2Mbit", self.tc_classes("ifb-ns0"))
        code, body = yield self.curl("c1", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        yield self.bus.send("/firewall/deauthorize", {"ip": self.lab.client_address(1)})
        self.assertNotIn("rate 4Mbit", self.tc_classes("br-lan"))
        self.assertNotIn("rate 2Mbit", self.tc_classes("ifb-ns0"))

    @inlineCallbacks
    def test_forged_address_gets_nothing(self):
        """
        When an authorized client leaves and another client takes its
        address with its own MAC, it gets nothing through; authorizing the
        address for that MAC instead lets it through (so the MAC binding is
        what stopped it).
        """
        yield self.authorize(1)
        victim = self.lab.client_address(1)
        self.lab.exec("c1", ["ip", "addr", "flush", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "addr", "flush", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "addr", "add", f"{victim}/24", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "route", "add", "default", "via", self.lab.ap_address],
                      check=True)
        self.in_ap("ip", "neigh", "flush", "dev", "br-lan")
        code, body = yield self.curl("c2", f"http://{self.lab.internet}/", seconds=2)
        self.assertEqual((code, body), (0, PORTAL_BODY))  # treated as unauthorized
        code, body = yield self.curl("c2", f"http://{self.lab.internet}:25/", seconds=2)
        self.assertEqual(code, 28)  # dropped
        yield self.bus.send("/firewall/authorize", {"ip": victim, "mac": self.lab.client_mac(2)})
        code, body = yield self.curl("c2", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))

    @inlineCallbacks
    def test_open_connection_is_cut(self):
        """
        A connection the client opened while authorized stops when it is
        de-authorized, and its conntrack entries are deleted.
        """
        server = spawn(self, "echo server", [sys.executable, "-c", ECHO_SERVER, "7000"],
                       netns=self.lab.netns("up"))
        self.assertEqual((yield server.when_line(".")), "listening")
        yield self.authorize(1)
        client = spawn(self, "echo client", [sys.executable, "-u", "-c", ECHO_CLIENT,
                                             self.lab.internet, "7000"],
                       netns=self.lab.netns("c1"), stdin=True)

        def ping() -> "Deferred[str]":
            seen = client.line_count
            client.send("\n")
            return client.when_line(".", after=seen)
        first = yield ping()
        self.assertEqual(first, "ok 1")
        conntrack = ["conntrack", "-L", "-s", self.lab.client_address(1)]
        self.assertIn("dport=7000", self.lab.exec("ap", conntrack).stdout)
        yield self.bus.send("/firewall/deauthorize", {"ip": self.lab.client_address(1)})
        last = yield ping()
        self.assertTrue(last.startswith("cut"), last)
        self.assertNotIn("dport=7000", self.lab.exec("ap", conntrack).stdout)

    @inlineCallbacks
    def test_smtp_window(self):
        """
        SMTP is refused even to an authorized client, opens for one client
        only when its window opens, and closes by itself when it expires.
        """
        yield self.authorize(1)
        yield self.authorize(2)
        smtp_url = f"http://{self.lab.internet}:25/"
        code, _ = yield self.curl("c1", smtp_url)
        self.assertEqual(code, 7)  # reset
        answer = yield self.bus.send("/firewall/smtp/open", {
            "ip": self.lab.client_address(1), "seconds": 3})
        self.assertEqual(answer, {"open": True, "seconds": 3})
        send = [sys.executable, "-c",
                "import smtplib, sys; s = smtplib.SMTP(sys.argv[1], 25, timeout=5); "
                "s.sendmail('a@lan.test', ['b@upstream.test'], 'Subject: hi\\n\\nhello'); "
                "s.quit()", self.lab.internet]
        sent = yield deferToThread(self.lab.exec, "c1", send)
        self.assertEqual(sent.returncode, 0, sent.stderr)
        self.assertEqual(len(self.smtp.wait_for_messages(1)), 1)
        code, _ = yield self.curl("c2", smtp_url)
        self.assertEqual(code, 7)
        windows = self.in_ap("ipset", "list", "ns-smtp")
        self.assertIn(self.lab.client_address(1), windows)
        yield deferLater(reactor, 3.5, lambda: None)  # the kernel's own timer
        code, _ = yield self.curl("c1", smtp_url)
        self.assertEqual(code, 7)

    def rules(self):
        return sorted(line for line in self.in_ap("iptables-legacy-save").splitlines()
                      if line.startswith("-A") and "NS-" in line)

    @inlineCallbacks
    def test_crash_restart_and_repair(self):
        """
        After kill -9 and a restart every rule is there exactly once; when
        netsuite's chains and sets are flushed by hand while it runs, they
        are restored within seconds with authorized clients still
        authorized; a clean stop leaves nothing.
        """
        installed = self.rules()
        self.assertEqual(len(installed), len(set(installed)))
        self.daemon.signal("KILL")
        yield self.daemon.when_ended()
        yield self.start_daemon()
        self.assertEqual(self.rules(), installed)

        yield self.authorize(1)
        seen = self.daemon.line_count
        for argv in (["iptables-legacy", "-F", "NS-FORWARD"],
                     ["iptables-legacy", "-t", "nat", "-F", "NS-PREROUTING"],
                     ["ipset", "flush", "ns-auth"], ["ipset", "flush", "ns-down"]):
            self.in_ap(*argv)
        # A check may run between two of the flushes (then the clients come
        # back with the next one): wait for the clients' restoration.
        yield self.daemon.when_line("authorized clients restored", after=seen)
        self.assertEqual(self.rules(), installed)
        code, body = yield self.curl("c1", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))

        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        self.assertEqual(self.rules(), CLOSED)
        self.assertEqual(self.in_ap("ipset", "list", "-n").split(), [])
        self.assertNotIn("ifb-ns0", self.in_ap("ip", "link"))
        self.assertNotIn("htb", self.in_ap("tc", "qdisc", "show", "dev", "br-lan"))
        yield self.remove_firewall()
        self.assertEqual(self.rules(), [])
        self.assertNotIn(":NS-", self.in_ap("iptables-legacy-save"))

    def remove_firewall(self):
        """
        Run the documented removal command in the access point's namespace.
        """
        def run():
            done = self.lab.exec("ap", [sys.executable, "-m", "netsuite.scripts.firewall",
                                        "--remove", "--config", self.config])
            self.assertEqual(done.returncode, 0, done.stderr)
            return done
        return deferToThread(run)

    @inlineCallbacks
    def test_clean_stop_keeps_the_lan_closed(self):
        """
        After a clean stop (keep_clients = false) neither the client that was
        authorized nor one that never logged in reaches the upstream (which
        routes the LAN back, NAT or not); only the removal command opens it,
        and then both do.
        """
        yield self.authorize(1)
        internet = f"http://{self.lab.internet}/"
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        for client in ("c1", "c2"):
            code, _ = yield self.curl(client, internet, seconds=2)
            self.assertEqual(code, 28, client)  # dropped
        self.assertEqual(self.rules(), CLOSED)
        yield self.remove_firewall()
        self.assertEqual(self.rules(), [])
        for client in ("c1", "c2"):
            code, body = yield self.curl(client, internet)
            self.assertEqual((code, body), (0, UPSTREAM_BODY), client)

    @inlineCallbacks
    def test_second_firewall_is_refused(self):
        """
        A second firewall process in the same namespace is refused at start
        with the first's pid and changes nothing, and so is the removal
        command; the first keeps working.
        """
        yield self.authorize(1)
        before = self.rules()
        second = spawn(self, "second firewall", [
            *TWISTD, "-n", "--pidfile=", "netsuite-firewall", "--name", "fw2",
            "--socket-dir", self.sockets, "--config", self.config],
            netns=self.lab.netns("ap"))
        yield second.when_line("owns the firewall of this network namespace", timeout=20)
        self.assertTrue(any(f"pid {self.daemon.pid})" in line for line in second.lines()))
        yield second.when_ended()
        self.assertEqual(self.rules(), before)
        removal = yield deferToThread(self.lab.exec, "ap", [
            sys.executable, "-m", "netsuite.scripts.firewall", "--remove",
            "--config", self.config])
        self.assertEqual(removal.returncode, 1)
        self.assertIn(f"pid {self.daemon.pid})", removal.stderr)
        self.assertEqual(self.rules(), before)
        code, body = yield self.curl("c1", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        yield self.authorize(2)
        code, body = yield self.curl("c2", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        code, body = yield self.curl("c3", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, PORTAL_BODY))

    @inlineCallbacks
    def test_refused_authorize_changes_nothing(self):
        """
        An authorize with a limit tc cannot take is refused (the listener
        fails: no answer, the error logged) and leaves the kernel's sets as
        they were: the client stays out.
        """
        yield self.authorize(1)
        before = self.in_ap("ipset", "save")
        for limits in ({"up_kbit": -1}, {"down_kbit": 10 ** 9}):
            d = self.bus.send("/firewall/authorize", dict(
                limits, ip=self.lab.client_address(2), mac=self.lab.client_mac(2)))
            self.assertIs((yield d), NO_ANSWER)
            self.assertEqual(self.in_ap("ipset", "save"), before)
        code, body = yield self.curl("c2", f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, PORTAL_BODY))

    @inlineCallbacks
    def test_operator_forward_rule_still_applies(self):
        """
        An operator's own DROP rule in FORWARD (legacy, added with
        python-iptables after netsuite's jump) keeps working for an
        authorized client: netsuite returns what it lets through instead of
        accepting it. Other authorized clients are not affected.
        """
        from iptc import easy
        from netsuite.runner import ThreadRunner
        runner = ThreadRunner(reactor, netns=self.lab.netns("ap"))
        self.addCleanup(runner.stop)
        yield self.authorize(1)
        yield self.authorize(2)
        internet = f"http://{self.lab.internet}/"
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        operator = {"src": f"{self.lab.client_address(1)}/32", "target": "DROP"}
        yield runner.run(easy.add_rule, "filter", "FORWARD", dict(operator))
        forward = [line for line in self.in_ap("iptables-legacy-save").splitlines()
                   if line.startswith("-A FORWARD")]
        self.assertEqual(forward, ["-A FORWARD -j NS-FORWARD",
                                   f"-A FORWARD -s {self.lab.client_address(1)}/32 -j DROP"])
        code, _ = yield self.curl("c1", internet, seconds=2)
        self.assertEqual(code, 28)  # dropped by the operator's rule
        code, body = yield self.curl("c2", internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        yield runner.run(easy.delete_rule, "filter", "FORWARD", dict(operator))
        code, body = yield self.curl("c1", internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
