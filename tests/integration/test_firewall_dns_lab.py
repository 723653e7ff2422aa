"""
The firewall adapter's part of DNS before login, in a real lab: port 53 of
an unauthorized client goes to the access point's resolver and nowhere
else (no tunnel through port 53), the resolver gone means no DNS (fail
closed), and the garden set opens addresses for a while.

The access point's resolver here is a stand-in (a few lines answering any
query with one address); netsuite-dns itself is tested in its own lab.
"""

import hashlib
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer

from .procs import TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import DNS_ADDRESS, DNS_CLIENT, DNS_NAME, DNS_SERVER, need_lab

DNS_PORT = 19053
STANDIN_ADDRESS = "192.0.2.99"
UPSTREAM_BODY = "the internet"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
dns_port = {dns_port}
garden_min_ttl = 1
check_interval = 1.0
shaping = false
lock_dir = "{locks}"
"""

# Upstream, on UDP and TCP port 53 of an address (bound to it, so that UDP
# answers come from it): echoes whatever comes, a line per packet.
ECHO_53 = """
import socket, sys, threading
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((sys.argv[1], 53))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 53)); srv.listen(5)
def tcp():
    while True:
        c, _ = srv.accept()
        data = c.recv(100)
        print("got tcp", data.decode(errors="replace"), flush=True)
        c.sendall(data); c.close()
threading.Thread(target=tcp, daemon=True).start()
print("listening", flush=True)
while True:
    data, peer = udp.recvfrom(512)
    print("got udp", data.decode(errors="replace"), flush=True)
    udp.sendto(data, peer)
"""

# From a client: a payload that is no DNS to host:53; prints the reply or
# the error's name.
RAW_53 = """
import socket, sys
host, proto = sys.argv[1:3]
payload = b"tunnel packet"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.connect((host, 53)); s.send(payload); print(s.recv(100).decode())
    else:
        s = socket.create_connection((host, 53), timeout=2)
        s.sendall(payload); print(s.recv(100).decode() or "closed")
except OSError as e:
    print(type(e).__name__)
"""

# The access point's resolver, stood in for: any query, UDP or TCP, on
# (address, port) is answered with one A record.
RESOLVER_STANDIN = """
import socket, struct, sys, threading
address, port, answer = sys.argv[1], int(sys.argv[2]), socket.inet_aton(sys.argv[3])
def reply(q):
    i = 12
    while q[i]:
        i += 1 + q[i]
    print("query", flush=True)
    return (q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:i + 5]
            + struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer)
def tcp(srv):
    while True:
        c, _ = srv.accept()
        n = struct.unpack("!H", c.recv(2, socket.MSG_WAITALL))[0]
        r = reply(c.recv(n, socket.MSG_WAITALL))
        c.sendall(struct.pack("!H", len(r)) + r); c.close()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((address, port))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((address, port)); srv.listen(5)
threading.Thread(target=tcp, args=(srv,), daemon=True).start()
print("listening", flush=True)
while True:
    q, peer = udp.recvfrom(512)
    udp.sendto(reply(q), peer)
"""


def dfw_name(test):
    """A lab name with this helper's prefix, unique to the test and process."""
    return "dfw" + hashlib.sha1(f"{test.id()}:{os.getpid()}".encode()).hexdigest()[:8]


class FirewallDnsLabTests(TestCase):
    """
    Port 53 and the garden set, for real traffic.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(dfw_name(self), clients=2)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.sockets = socket_dir(self)
        self.locks = os.path.abspath(self.mktemp())
        yield self.start_daemon()
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def start_daemon(self, extra=""):
        config = write_config(self, CONFIG.format(dns_port=DNS_PORT, locks=self.locks) + extra)
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", config], netns=self.lab.netns("ap"))
        return self.daemon.when_line("firewall ready")

    def run_in(self, client, argv, timeout=20):
        def run():
            done = self.lab.exec(client, argv, timeout=timeout)
            return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1]
        return deferToThread(run)

    def raw(self, client, proto):
        return self.run_in(client, [sys.executable, "-c", RAW_53, self.lab.internet, proto])

    def dns(self, client, proto):
        return self.run_in(client, [sys.executable, "-c", DNS_CLIENT, self.lab.internet,
                                    DNS_NAME, proto])

    def curl(self, client, url, seconds=2):
        def run():
            done = self.lab.exec(client, ["curl", "-s", "--max-time", str(seconds), url])
            return done.returncode, done.stdout
        return deferToThread(run)

    def authorize(self, index):
        return self.bus.send("/firewall/authorize", {
            "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})

    def standin(self):
        resolver = spawn(self, "resolver stand-in", [
            sys.executable, "-u", "-c", RESOLVER_STANDIN, self.lab.ap_address, str(DNS_PORT),
            STANDIN_ADDRESS], netns=self.lab.netns("ap"))
        return resolver.when_line("^listening$", timeout=10).addCallback(lambda _: resolver)

    @inlineCallbacks
    def test_no_tunnel_through_port_53(self):
        """
        Before login, a payload that is no DNS sent to an upstream host's
        port 53 (a VPN or tunnel server there) gets nothing back over UDP
        or TCP, and the server sees nothing: it went to the access point's
        resolver (here none). After login it goes through, both ways.
        """
        echo = spawn(self, "echo 53", [sys.executable, "-u", "-c", ECHO_53, self.lab.internet],
                     netns=self.lab.netns("up"))
        yield echo.when_line("^listening$", timeout=10)
        for proto in ("udp", "tcp"):
            got = yield self.raw("c1", proto)
            self.assertNotEqual(got, "tunnel packet", proto)
            self.assertIn(got, ("TimeoutError", "ConnectionRefusedError"), proto)
        self.assertEqual(echo.lines(after=1), [])

        yield self.authorize(1)
        for proto in ("udp", "tcp"):
            self.assertEqual((yield self.raw("c1", proto)), "tunnel packet", proto)
            yield echo.when_line(f"^got {proto} tunnel packet$", timeout=5)
        # another client, still unauthorized, still gets nothing
        self.assertNotEqual((yield self.raw("c2", "udp")), "tunnel packet")

    @inlineCallbacks
    def test_dns_goes_to_the_access_point(self):
        """
        Before login a query to the upstream resolver is answered by the
        access point's resolver (the stand-in's address), over UDP and TCP,
        and the upstream resolver sees none. With the resolver gone the
        query gets no answer (fail closed). After login the client's
        queries reach the upstream resolver directly (dns_after_login =
        "direct", the default).
        """
        upstream = spawn(self, "upstream dns", [
            sys.executable, "-u", "-c", DNS_SERVER, self.lab.internet, DNS_NAME, DNS_ADDRESS],
            netns=self.lab.netns("up"))
        yield upstream.when_line("^listening$", timeout=10)
        resolver = yield self.standin()
        for proto in ("udp", "tcp"):
            self.assertEqual((yield self.dns("c1", proto)), STANDIN_ADDRESS, proto)
        self.assertEqual(resolver.lines().count("query"), 2)
        self.assertEqual(upstream.lines(after=1), [])

        resolver.signal("KILL")
        yield resolver.when_ended()
        for proto in ("udp", "tcp"):
            got = yield self.dns("c1", proto)
            self.assertIn(got, ("TimeoutError", "ConnectionRefusedError"), proto)
        self.assertEqual(upstream.lines(after=1), [])

        yield self.authorize(1)
        for proto in ("udp", "tcp"):
            self.assertEqual((yield self.dns("c1", proto)), DNS_ADDRESS, proto)
            yield upstream.when_line(f"^query {proto} {DNS_NAME}$", timeout=5)
        got = yield self.dns("c2", "udp")  # still unauthorized, still no resolver
        self.assertIn(got, ("TimeoutError", "ConnectionRefusedError"))

    @inlineCallbacks
    def test_dns_after_login_through_netsuite(self):
        """
        With dns_after_login = "netsuite" an authorized client's queries to
        an upstream resolver are answered by the access point's resolver
        too.
        """
        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        yield self.start_daemon('dns_after_login = "netsuite"\n')
        resolver = yield self.standin()
        yield self.authorize(1)
        for proto in ("udp", "tcp"):
            self.assertEqual((yield self.dns("c1", proto)), STANDIN_ADDRESS, proto)
        self.assertEqual(resolver.lines().count("query"), 2)

    @inlineCallbacks
    def test_garden_entry_expires(self):
        """
        An address added to the garden for 2 seconds is reachable before
        login (HTTP to the upstream web server; without a portal port
        nothing is redirected) and is dropped again once the kernel expired
        the entry.
        """
        web = HttpPeer(self.lab.netns("up"), None, 80, UPSTREAM_BODY)
        yield deferToThread(web.start)
        self.addCleanup(web.stop)
        url = f"http://{self.lab.internet}/"
        code, _ = yield self.curl("c1", url)
        self.assertEqual(code, 28)  # dropped: time-out

        answer = yield self.bus.send("/firewall/garden/add",
                                     {"ips": [self.lab.internet], "seconds": 2})
        self.assertEqual(answer, {"added": 1, "refused": 0})
        code, body = yield self.curl("c1", url)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        garden = yield self.bus.send("/firewall/garden")
        self.assertIn(garden.get(self.lab.internet), (0, 1, 2))
        saved = self.lab.exec("ap", ["ipset", "list", "ns-garden"], check=True).stdout
        self.assertIn(self.lab.internet, saved)

        for _ in range(50):  # bounded: 5 s for an entry of 2 s
            garden = yield self.bus.send("/firewall/garden")
            if not garden:
                break
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(garden, {})
        code, _ = yield self.curl("c1", url)
        self.assertEqual(code, 28)
