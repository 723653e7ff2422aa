"""
Interception in a lab: a client in its namespace connects to a server
upstream; the access point's rules hand the connection to a proxy
(C{python -m netsuite.proxy.run}) in the AP's namespace, which finds the
original destination, connects out to it (from its own address, or from
the client's with TPROXY) and relays. Checked: the destination the proxy
saw, the source the server saw, and the bytes both ways (sha256), with
half-close. IPv4 TPROXY and REDIRECT; IPv6 TPROXY in a lab of its own.

The TPROXY routing is the firewall adapter's (L{KernelNetwork}); the few
mangle/nat rules are the test's own (the firewall's, in
netsuite/firewall/rules.py, also need its sets of authorized clients).
"""

import hashlib
import json
import random

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.firewall.netlink import KernelNetwork
from netsuite.lab import Lab
from netsuite.lab.child import PYTHON
from netsuite.lab.nsutil import in_netns

from ..lab.labs import lab_name, need, need_root
from .procs import spawn

SERVER_PORT = 49143
TPROXY_PORT = 49100
REDIRECT_PORT = 49101
UP, DOWN = 3 * 1024 * 1024, 2 * 1024 * 1024

# For each connection: "peer HOST PORT", then, once the client has
# half-closed, "got SHA256 N", and it sends DOWN bytes back and closes.
SERVER = """
import hashlib, random, socket, sys, threading
host, port, down = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port)); srv.listen(5)
answer = random.Random(2).randbytes(down)
print("listening", flush=True)
def serve(c, peer):
    print("peer", peer[0], peer[1], flush=True)
    c.settimeout(20)
    h, n = hashlib.sha256(), 0
    while True:
        data = c.recv(65536)
        if not data: break
        h.update(data); n += len(data)
    print("got", h.hexdigest(), n, flush=True)
    c.sendall(answer); c.close()
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""

CLIENT = """
import hashlib, random, socket, sys
host, port, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    s = socket.create_connection((host, port), timeout=20)
    s.sendall(random.Random(1).randbytes(up)); s.shutdown(socket.SHUT_WR)
    h, n = hashlib.sha256(), 0
    while True:
        data = s.recv(65536)
        if not data: break
        h.update(data); n += len(data)
    print("client", h.hexdigest(), n, flush=True)
except OSError as e:
    print("client error", e, flush=True)
"""


def digest(size: int, seed: int) -> str:
    return hashlib.sha256(random.Random(seed).randbytes(size)).hexdigest()


class ProxyLab(TestCase):
    timeout = 60
    ipv6 = False

    def setUp(self):  # type: ignore[no-untyped-def]
        need_root()
        need("iptables-legacy", "ip6tables-legacy")
        self.lab = Lab(lab_name(self, prefix="pxc"), clients=1, ipv6=self.ipv6)
        self.addCleanup(self.lab.down)
        self.lab.up(addresses=True)
        # TPROXY on a bridge port needs bridge netfilter off (KERNEL-FACTS.md)
        self.lab.bridge_nf_call_iptables(False)
        self.lab.sysctl("ap", "net.bridge.bridge-nf-call-ip6tables", 0)

    def ap(self, *argv: str) -> None:
        self.lab.exec("ap", list(argv), check=True)

    def tproxy_rules(self, iptables: str, on_ip: str) -> None:
        mangle = [iptables, "-t", "mangle", "-A", "PREROUTING"]
        # the proxy's own transparent sockets (spoofed connections' answers)
        self.ap(*mangle, "-p", "tcp", "-m", "socket", "--transparent",
                "-j", "MARK", "--set-xmark", "0x1/0x1")
        self.ap(*mangle, "-p", "tcp", "-m", "mark", "--mark", "0x1/0x1", "-j", "ACCEPT")
        self.ap(*mangle, "-i", "br-lan", "-p", "tcp", "--dport", str(SERVER_PORT),
                "-j", "TPROXY", "--on-port", str(TPROXY_PORT), "--on-ip", on_ip,
                "--tproxy-mark", "0x1/0x1")

    @inlineCallbacks
    def start(self, *args: str, server_host: str):  # type: ignore[no-untyped-def]
        server = spawn(self, "upstream", [PYTHON, "-u", "-c", SERVER, server_host,
                                          str(SERVER_PORT), str(DOWN)],
                       netns=self.lab.netns("up"))
        proxy = spawn(self, "proxy", [PYTHON, "-u", "-m", "netsuite.proxy.run", *args],
                      netns=self.lab.netns("ap"))
        yield server.when_line("^listening", timeout=20)
        yield proxy.when_line("^listening", timeout=20)
        return server, proxy

    @inlineCallbacks
    def connect(self, server, proxy, host: str, port: int = SERVER_PORT):  # type: ignore
        client = spawn(self, "client", [PYTHON, "-u", "-c", CLIENT, host, str(port), str(UP)],
                       netns=self.lab.netns("c1"))
        line = yield client.when_line("^client", timeout=30)
        return line

    @inlineCallbacks
    def relayed(self, *args: str, server_host: str, to: str):  # type: ignore[no-untyped-def]
        """A client's connection to (to, SERVER_PORT), through the proxy: what each saw."""
        server, proxy = yield self.start(*args, server_host=server_host)
        line = yield self.connect(server, proxy, to)
        self.assertEqual(line, f"client {digest(DOWN, 2)} {DOWN}")
        got = yield server.when_line("^got", timeout=10)
        self.assertEqual(got, f"got {digest(UP, 1)} {UP}")
        peer = (yield server.when_line("^peer", timeout=10)).split()
        opened = json.loads((yield proxy.when_line("^open", timeout=10)).split(" ", 1)[1])
        return peer[1], opened


class IPv4Tests(ProxyLab):
    def setUp(self):  # type: ignore[no-untyped-def]
        super().setUp()
        in_netns(self.lab.netns("ap"), KernelNetwork("br-lan").install_tproxy_routing)

    @inlineCallbacks
    def test_tproxy(self):  # type: ignore[no-untyped-def]
        self.tproxy_rules("iptables-legacy", "0.0.0.0")
        source, opened = yield self.relayed(
            "--listen", f"0.0.0.0:{TPROXY_PORT}", "--mode", "tproxy",
            server_host="0.0.0.0", to=self.lab.internet)
        self.assertEqual(opened["server"], f"{self.lab.internet}:{SERVER_PORT}")
        self.assertTrue(opened["client"].startswith(self.lab.client_address(1) + ":"))
        self.assertEqual(source, self.lab.wan_ap_address)

    @inlineCallbacks
    def test_tproxy_from_the_clients_address(self):  # type: ignore[no-untyped-def]
        self.tproxy_rules("iptables-legacy", "0.0.0.0")
        source, opened = yield self.relayed(
            "--listen", f"0.0.0.0:{TPROXY_PORT}", "--mode", "tproxy", "--spoof",
            server_host="0.0.0.0", to=self.lab.internet)
        self.assertEqual(opened["server"], f"{self.lab.internet}:{SERVER_PORT}")
        self.assertEqual(source, self.lab.client_address(1))

    @inlineCallbacks
    def test_redirect(self):  # type: ignore[no-untyped-def]
        self.ap("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-i", "br-lan", "-p", "tcp",
                "--dport", str(SERVER_PORT), "-j", "REDIRECT", "--to-ports", str(REDIRECT_PORT))
        source, opened = yield self.relayed(
            "--listen", f"0.0.0.0:{REDIRECT_PORT}", "--mode", "redirect",
            server_host="0.0.0.0", to=self.lab.internet)
        self.assertEqual(opened["server"], f"{self.lab.internet}:{SERVER_PORT}")
        self.assertEqual(source, self.lab.wan_ap_address)

    @inlineCallbacks
    def test_redirect_without_an_original_destination(self):  # type: ignore[no-untyped-def]
        """A connection straight to the REDIRECT listener has no destination: closed."""
        self.ap("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-i", "br-lan", "-p", "tcp",
                "--dport", str(SERVER_PORT), "-j", "REDIRECT", "--to-ports", str(REDIRECT_PORT))
        server, proxy = yield self.start("--listen", f"0.0.0.0:{REDIRECT_PORT}",
                                         "--mode", "redirect", server_host="0.0.0.0")
        line = yield self.connect(server, proxy, self.lab.ap_address, REDIRECT_PORT)
        # closed while it sent (a broken pipe), or at once (nothing back)
        self.assertIn(line, [f"client {hashlib.sha256(b'').hexdigest()} 0",
                             "client error [Errno 32] Broken pipe",
                             "client error [Errno 104] Connection reset by peer"])
        proxy.stop()
        counters = yield deferToThread(proxy.wait_for_line, "^counters", 10)
        self.assertEqual(json.loads(counters[0].split(" ", 1)[1]), {"no_destination": 1})


class IPv6Tests(ProxyLab):
    ipv6 = True

    def setUp(self):  # type: ignore[no-untyped-def]
        need("radvd")
        super().setUp()
        self.ap("ip", "-6", "rule", "add", "fwmark", "0x1/0x1", "lookup", "100")
        self.ap("ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100")
        self.tproxy_rules("ip6tables-legacy", "::")

    @inlineCallbacks
    def test_tproxy(self):  # type: ignore[no-untyped-def]
        yield deferToThread(self.lab.wait_ipv6, "c1", 15)
        source, opened = yield self.relayed(
            "--listen", f"[::]:{TPROXY_PORT}", "--mode", "tproxy",
            server_host="::", to=self.lab.internet6)
        self.assertEqual(opened["server"], f"[{self.lab.internet6}]:{SERVER_PORT}")
        self.assertEqual(source, self.lab.wan_ap_address6)

    @inlineCallbacks
    def test_tproxy_from_the_clients_address(self):  # type: ignore[no-untyped-def]
        addresses = yield deferToThread(self.lab.wait_ipv6, "c1", 15)
        source, opened = yield self.relayed(
            "--listen", f"[::]:{TPROXY_PORT}", "--mode", "tproxy", "--spoof",
            server_host="::", to=self.lab.internet6)
        self.assertEqual(opened["server"], f"[{self.lab.internet6}]:{SERVER_PORT}")
        client = opened["client"].rsplit(":", 1)[0].strip("[]")
        self.assertIn(client, addresses["slaac"] + addresses["temporary"])
        self.assertEqual(source, client)
