"""
Issue 16 in a real lab: DNS before login goes only through netsuite-dns.

The upstream namespace runs unbound (the resolver the AP forwards to, and
the one a client may have been given by some other DHCP: 192.0.2.1), which
answers the test names and delegates C{t.test} to iodined (a DNS tunnel
server) on the "internet" address. The AP runs netsuite (firewall, portal
and, once issue 16 is in, the DNS service from C{[dns]}); the clients are
unauthorized unless a test logs them in.

Each test failed before issue 16 (no netsuite-dns, port 53 open to any
host): the iodine tunnel came up, junk went both ways on port 53, names
resolved upstream without netsuite.
"""

import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from netsuite.lab.dnspeers import IodinedPeer, UnboundPeer, iodine_tunnel
from netsuite.lab.peers import HttpPeer

from .procs import spawn
from .test_portal_lab import UPSTREAM_BODY, PortalLab
from ..lab.labs import need

GARDEN_IP = "198.51.100.2"   # garden.test
OTHER_IP = "198.51.100.3"    # other.test
ECHO_IP = "198.51.100.4"     # a non-DNS listener on port 53 (udp and tcp)
TUNNEL_PASSWORD = "dnspeers-tunnel"


DNS_SECTION = """
[dns]
enabled = {enabled}
listen = ["{ap}"]
port = 53
upstreams = ["{upstream}:53"]
firewall_process = "{firewall}"
garden_names = {garden}
"""

# Run in the upstream: echoes whatever comes on udp and tcp port 53 of
# ECHO_IP, prefixed with "echo:" (not DNS: a VPN or any other protocol).
ECHO_53 = r"""
import socket, sys, threading
address = (sys.argv[1], 53)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(address)
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(address)
tcp.listen(8)
def serve_tcp():
    while True:
        conn, _ = tcp.accept()
        conn.settimeout(5)
        try:
            data = conn.recv(4096)
            conn.sendall(b"echo:" + data)
        except OSError:
            pass
        conn.close()
threading.Thread(target=serve_tcp, daemon=True).start()
print("listening on", address, flush=True)
while True:
    data, peer = udp.recvfrom(4096)
    udp.sendto(b"echo:" + data, peer)
"""

# Run in a client: sends junk to ECHO_IP:53 over udp and over tcp; prints
# what came back (or the error) for each.
JUNK_53 = r"""
import socket, sys
payload = b"GET / HTTP/1.0 -- not a DNS message at all\r\n\r\n"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
try:
    u.sendto(payload, (sys.argv[1], 53))
    print("udp", u.recv(4096)[:5])
except OSError as e:
    print("udp", type(e).__name__)
try:
    t = socket.create_connection((sys.argv[1], 53), timeout=2)
    t.settimeout(2)
    t.sendall(payload)
    print("tcp", t.recv(4096)[:5] or b"closed")
except OSError as e:
    print("tcp", type(e).__name__)
"""


class DnsLab(PortalLab):
    """
    PortalLab with unbound and iodined upstream beside the web, and
    netsuite in the AP with the DNS service.
    """

    timeout = 60
    garden = ["garden.test"]
    dns_apart = False  # run the DNS service in a process of its own ("dns")
    lab_prefix = "dp"

    @inlineCallbacks
    def start_peers(self):
        """
        unbound (the upstream resolver, with the test names) and iodined
        upstream, beside the web.
        """
        need("unbound", "iodine", "iodined", "dig")
        for ip in (GARDEN_IP, OTHER_IP, ECHO_IP):
            self.lab.exec("up", ["ip", "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        self.upstream_ip = self.lab.layout.wan_up_address
        up = self.lab.netns("up")
        self.upstream = HttpPeer(up, None, 80, UPSTREAM_BODY)
        self.iodined = IodinedPeer(up, self.lab.internet, password=TUNNEL_PASSWORD)
        self.resolver = UnboundPeer(up, self.upstream_ip, names={
            "x.test": self.lab.internet, "garden.test": GARDEN_IP, "other.test": OTHER_IP},
            delegate={"t.test": self.lab.internet}, ttl=60)
        for peer in (self.upstream, self.iodined, self.resolver):
            self.addCleanup(peer.stop)
            yield deferToThread(peer.start)

    def firewall_more(self):
        # no NAT: the upstream tells queries from the AP and from c1 apart
        return "masquerade = false\ndns_port = 53\n"

    def more_config(self):
        return DNS_SECTION.format(
            enabled="false" if self.dns_apart else "true", ap=self.lab.ap_address,
            upstream=self.upstream_ip, firewall="ap" if self.dns_apart else "",
            garden="[" + ", ".join(f'"{n}"' for n in self.garden) + "]")

    @inlineCallbacks
    def start(self):
        """
        netsuite (and, when apart, netsuite-dns) started; fires once the
        access point's resolver answers.
        """
        yield super().start()
        if self.dns_apart and getattr(self, "resolver_process", None) is None:
            self.resolver_process = self.spawn_daemon("netsuite-dns", "dns")
        yield self.until_resolves(self.lab.ap_address)

    @inlineCallbacks
    def until_resolves(self, server, seconds=10.0):
        """Wait (bounded) until C{server} answers x.test from c1."""
        deadline = time.monotonic() + seconds
        while True:
            answer = yield self.dig("c1", server, "x.test")
            if answer.get("answer"):
                return
            if time.monotonic() > deadline:
                self.fail(f"no DNS answer from {server} in {seconds} s: {answer}")
            yield deferLater(reactor, 0.2, lambda: None)

    def dig(self, client, server, name, *options, kind="A"):
        """
        Fire with what dig in C{client} got from C{server}: C{status}
        (NOERROR, NXDOMAIN, REFUSED... or None: no answer) and C{answer}
        (the addresses or records, sorted).
        """
        def run():
            done = self.lab.exec(client, ["dig", "+time=2", "+tries=1", "+noall",
                                          "+comments", "+answer", *options, f"@{server}",
                                          name, kind], timeout=15)
            status = None
            answer = []
            for line in done.stdout.splitlines():
                if "status:" in line:
                    status = line.split("status:")[1].split(",")[0].strip()
                elif line and not line.startswith(";"):
                    answer.append(line.split()[-1])
            return {"status": status, "answer": sorted(answer), "output": done.stdout}
        return deferToThread(run)

    def tunnel(self, client, server, timeout=20.0):
        return deferToThread(iodine_tunnel, self.lab.netns(client), server,
                             password=TUNNEL_PASSWORD, tunnel_ip=self.iodined.tunnel_ip,
                             timeout=timeout)

    @inlineCallbacks
    def junk_53(self, client):
        """Fire with {"udp": ..., "tcp": ...}: what junk to ECHO_IP:53 got back."""
        echo = spawn(self, "echo53", ["python3", "-c", ECHO_53, ECHO_IP],
                     netns=self.lab.netns("up"))
        yield echo.when_line("listening on", timeout=10)
        done = yield deferToThread(self.lab.exec, client, ["python3", "-c", JUNK_53, ECHO_IP],
                                   timeout=15)
        echo.stop(0)
        got = dict(line.split(" ", 1) for line in done.stdout.splitlines())
        return got

    def client_queries(self, client):
        """The queries unbound got straight from client C{client} (not through the AP)."""
        ip = self.lab.client_address(int(client[1:]))
        return [q for q in self.resolver.queries() if q[0] == ip]


class DnsBeforeLoginTests(DnsLab):

    @inlineCallbacks
    def test_iodine_gets_no_tunnel(self):
        """
        The attack of issue 16: c1, unauthorized (the portal redirects its
        HTTP), runs iodine through the upstream resolver, straight at
        iodined, then through the access point's own resolver: no working
        tunnel any way, and netsuite-dns announces
        the attempt (/dns/tunnel-suspect, naming c1). Before issue 16
        (no netsuite-dns, port 53 open to any host) the tunnel came up.
        """
        yield self.assertRedirected("c1")
        failures = []
        suspect = self.bus.wait_for("/dns/tunnel-suspect", timeout=40)
        suspect.addErrback(failures.append)
        through_resolver = yield self.tunnel("c1", self.upstream_ip, timeout=15)
        self.assertFalse(through_resolver.working,
                         "an unauthorized client got a DNS tunnel through the upstream "
                         "resolver:\n" + through_resolver.output)
        direct = yield self.tunnel("c1", self.lab.internet, timeout=10)
        self.assertFalse(direct.working, "an unauthorized client got a DNS tunnel straight "
                                         "to iodined:\n" + direct.output)
        through_ap = yield self.tunnel("c1", self.lab.ap_address, timeout=10)
        self.assertFalse(through_ap.working, "an unauthorized client got a DNS tunnel through "
                                             "the access point's resolver:\n" + through_ap.output)
        message = yield suspect
        if failures:
            failures[0].raiseException()
        self.assertIn(self.lab.client_address(1), {str(v) for v in message.values()},
                      message)
        self.assertEqual(self.client_queries("c1"), [],
                         "c1's queries reached the upstream resolver unfiltered")

    @inlineCallbacks
    def test_upstream_resolver_through_netsuite(self):
        """
        c1, unauthorized, whose resolver is the upstream one, resolves
        names (udp and tcp), but its queries reach unbound from the access
        point (netsuite-dns forwarding), never from c1 itself; an unknown
        name is NXDOMAIN as upstream says. Before issue 16 they went straight
        upstream.
        """
        yield self.assertRedirected("c1")
        for options in ((), ("+tcp",)):
            got = yield self.dig("c1", self.upstream_ip, "x.test", *options)
            self.assertEqual((got["status"], got["answer"]), ("NOERROR", [self.lab.internet]),
                             got["output"])
        got = yield self.dig("c1", self.upstream_ip, "missing.test")
        self.assertEqual(got["status"], "NXDOMAIN", got["output"])
        self.assertEqual(self.client_queries("c1"), [])
        sources = {q[0] for q in self.resolver.queries()}
        self.assertEqual(sources, {self.lab.layout.wan_ap_address})

    @inlineCallbacks
    def test_refused_types_before_login(self):
        """
        Before login TXT, NULL and ANY are refused (not forwarded), A is
        answered; the upstream resolver sees none of the refused ones.
        """
        for kind in ("TXT", "NULL", "ANY"):
            got = yield self.dig("c1", self.upstream_ip, "x.test", kind=kind)
            self.assertEqual(got["status"], "REFUSED", (kind, got["output"]))
        got = yield self.dig("c1", self.upstream_ip, "x.test")
        self.assertEqual(got["answer"], [self.lab.internet], got["output"])
        self.assertEqual([q for q in self.resolver.queries() if q[2] != "A"], [])

    @inlineCallbacks
    def test_non_dns_on_port_53_fails(self):
        """
        Junk (not DNS) from unauthorized c1 to port 53 of an upstream
        host, over udp and over tcp, gets nothing back from that host.
        Before issue 16 both were echoed.
        """
        got = yield self.junk_53("c1")
        self.assertNotIn("b'echo:'", got.get("udp", ""), got)
        self.assertNotIn("b'echo:'", got.get("tcp", ""), got)

    @inlineCallbacks
    def test_garden_by_name(self):
        """
        Unauthorized c1 resolves garden.test (a garden name) and reaches
        its address before login; other.test resolves but its address is
        still redirected to the portal.
        """
        got = yield self.dig("c1", self.lab.ap_address, "garden.test")
        self.assertEqual(got["answer"], [GARDEN_IP], got["output"])
        code, body = yield self.curl("c1", f"http://{GARDEN_IP}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        got = yield self.dig("c1", self.lab.ap_address, "other.test")
        self.assertEqual(got["answer"], [OTHER_IP], got["output"])
        code, out = yield self.curl("c1", "-i", f"http://{OTHER_IP}/")
        self.assertIn("307", out.splitlines()[0] if out else "", out)
        self.assertNotIn(UPSTREAM_BODY, out)


class DnsAfterLoginTests(DnsLab):

    @inlineCallbacks
    def test_after_login_everything_works(self):
        """
        Logged in, c1 gets everything as before issue 16: any resolver,
        any query type, junk on port 53 both ways, even the iodine tunnel
        (it is on the internet now); c2, still unauthorized, is redirected.
        This passes today too: issue 16 must not break it.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        got = yield self.dig("c1", self.upstream_ip, "x.test")
        self.assertEqual(got["answer"], [self.lab.internet], got["output"])
        got = yield self.dig("c1", self.upstream_ip, "x.test", kind="TXT")
        self.assertEqual(got["status"], "NOERROR", got["output"])
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        got = yield self.junk_53("c1")
        self.assertEqual((got.get("udp"), got.get("tcp")), ("b'echo:'", "b'echo:'"), got)
        tunnel = yield self.tunnel("c1", self.upstream_ip)
        self.assertTrue(tunnel.working, tunnel.output)
        yield self.assertRedirected("c2")


class DnsResolverKilledTests(DnsLab):
    """
    The DNS service in a process of its own, killed (SIGKILL).
    """

    dns_apart = True

    @inlineCallbacks
    def test_resolver_killed_fails_closed(self):
        """
        With netsuite-dns killed, unauthorized c1 gets no DNS at all (not
        from the AP, not from the upstream resolver: fail closed), while
        c2, logged in before, still resolves and reaches the internet.
        """
        code, out, _, _ = yield self.login("c2")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        got = yield self.dig("c1", self.upstream_ip, "x.test")
        self.assertEqual(got["answer"], [self.lab.internet], got["output"])
        self.resolver_process.signal("KILL")
        yield self.resolver_process.when_ended()
        for server in (self.upstream_ip, self.lab.ap_address):
            got = yield self.dig("c1", server, "x.test")
            self.assertEqual((got["status"], got["answer"]), (None, []), got["output"])
        got = yield self.dig("c2", self.upstream_ip, "x.test")
        self.assertEqual(got["answer"], [self.lab.internet], got["output"])
        code, body = yield self.curl("c2", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
