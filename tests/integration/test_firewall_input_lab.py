"""
NS-INPUT beside the operator's own INPUT rules, in a real lab: netsuite
(firewall, DHCP server and portal in one process) in the access point,
whose INPUT chain an operator has set up with legacy iptables. What the
clients need before login (DHCP, the portal) works under an INPUT policy of
DROP; the rest of what the LAN starts is dropped; what comes in on the WAN
goes on to the operator's rules, established flows included.
"""

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, missing

from .procs import TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORT = 5280
UPSTREAM_BODY = "the internet"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
check_interval = 1.0
shaping = false
lock_dir = "{work}"

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{work}/leases.sqlite"

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.150"
server = "10.89.0.1"
router = "10.89.0.1"
dns = ["10.89.0.1"]
lease_time = 600
interface = "br-lan"

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
session_file = "{work}/sessions.sqlite"
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound) ip addr add "$ip/$mask" dev "$interface"; ip route add default via "$router" ;;
esac
"""

# Something listening on the access point's port 22, as sshd would.
LISTENER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 22)); s.listen(5)
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""


# A UDP echo server upstream, and one question from the access point: prints
# "answered" or "no answer".
UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 7007))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
"""
UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(b"hello", (sys.argv[1], 7007))
try:
    s.recv(100); print("answered")
except OSError:
    print("no answer")
"""

# The access point asks the upstream (which does not answer) and prints
# its port, then what it got in 3 s and from whom.
UDP_WAIT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"question", (sys.argv[1], 7007))
print("port", s.getsockname()[1], flush=True)
try:
    data, peer = s.recvfrom(100); print("got", data.decode(), "from", peer[0], flush=True)
except OSError:
    print("nothing", flush=True)
"""
# A LAN client forging the upstream's answer: from its address, port 7007.
UDP_FORGE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 7007))
s.sendto(b"forged", (sys.argv[2], int(sys.argv[3])))
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces, bind port 67 and change "
                       "their firewall")
    absent = missing("curl", "udhcpc", "ipset", "iptables-legacy",
                     "iptables-legacy-save")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class InputLabTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self), clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, False)
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, UPSTREAM_BODY)
        yield deferToThread(self.upstream.start)
        self.addCleanup(self.upstream.stop)
        self.work = tempfile.mkdtemp(prefix="nsinput-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.sockets = socket_dir(self)
        self.config = write_config(self, CONFIG.format(port=PORT, ap=self.lab.ap_address,
                                                       work=self.work))

    @inlineCallbacks
    def start(self):
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        for line in ("firewall ready", "dhcp ready", "portal ready"):
            yield self.daemon.when_line(line)
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    def run_in(self, role, argv, timeout=30):
        return deferToThread(self.lab.exec, role, argv, timeout=timeout)

    @inlineCallbacks
    def iptables(self, *argv):
        done = yield self.run_in("ap", ["iptables-legacy", *argv])
        self.assertEqual(done.returncode, 0, done.stderr)

    @inlineCallbacks
    def curl(self, *args, seconds=3):
        done = yield self.run_in("c1", ["curl", "-s", "--max-time", str(seconds), *args])
        return done.returncode, done.stdout

    @inlineCallbacks
    def udhcpc(self):
        script = os.path.join(self.work, "udhcpc.sh")
        with open(script, "w") as f:
            f.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
        done = yield self.run_in("c1", ["udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1",
                                        "-i", "eth0", "-s", script])
        self.assertEqual(done.returncode, 0, done.stderr)

    @inlineCallbacks
    def test_policy_drop(self):
        """
        With INPUT policy DROP and the operator's DROP of tcp/22 from the
        LAN: a client gets its address by DHCP, is redirected to the
        portal and gets its login page; port 22 of the access point stays
        closed to it, before login and after.
        """
        yield self.iptables("-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
        yield self.iptables("-A", "INPUT", "-i", "br-lan", "-p", "tcp", "--dport", "22",
                            "-j", "DROP")
        yield self.iptables("-P", "INPUT", "DROP")
        listener = spawn(self, "port 22", ["python3", "-c", LISTENER],
                         netns=self.lab.netns("ap"))
        yield listener.when_line("listening")
        yield self.start()
        yield self.udhcpc()
        code, out = yield self.curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                    f"http://{self.lab.internet}/")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith(f"307 http://{self.lab.ap_address}:{PORT}/login"), out)
        code, page = yield self.curl(f"http://{self.lab.ap_address}:{PORT}/login")
        self.assertEqual(code, 0)
        self.assertIn('name="csrf"', page)
        ssh = f"telnet://{self.lab.ap_address}:22"
        code, _ = yield self.curl(ssh, seconds=2)
        self.assertEqual(code, 28)  # dropped, not refused
        [lease] = yield self.bus.send("/dhcp/leases", {})
        answer = yield self.bus.send("/firewall/authorize",
                                     {"ip": lease["ip"], "mac": lease["mac"]})
        self.assertTrue(answer["authorized"])
        code, body = yield self.curl(f"http://{self.lab.internet}/")
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        code, _ = yield self.curl(ssh, seconds=2)
        self.assertEqual(code, 28)

    @inlineCallbacks
    def test_wan_goes_to_the_operator(self):
        """
        The answers the access point gets on the WAN to its own flows are
        left to the operator's rules: the operator's DROP of UDP from the
        upstream stops the answers to the access point's own question
        (netsuite accepted every established packet, on every interface).
        """
        up = self.lab.wan_up_address
        echo = spawn(self, "udp echo", ["python3", "-c", UDP_ECHO, up],
                     netns=self.lab.netns("up"))
        yield echo.when_line("listening")
        yield self.start()
        ask = ["python3", "-c", UDP_ASK, up]
        done = yield self.run_in("ap", ask)
        self.assertEqual(done.stdout.strip(), "answered")
        yield self.iptables("-A", "INPUT", "-s", up, "-p", "udp", "-j", "DROP")
        done = yield self.run_in("ap", ask)
        self.assertEqual(done.stdout.strip(), "no answer")

    @inlineCallbacks
    def test_lan_cannot_answer_for_the_upstream(self):
        """
        A client that takes the upstream's address cannot slip an answer
        into the access point's own flow to the upstream (a resolver's
        query, say): it matches conntrack's established entry, so it got
        through before NS-INPUT dropped sources outside the LAN. Its own
        address still reaches the access point.
        """
        up = self.lab.wan_up_address
        yield self.start()
        yield self.udhcpc()
        done = yield self.run_in("c1", ["ip", "addr", "add", f"{up}/32", "dev", "eth0"])
        self.assertEqual(done.returncode, 0, done.stderr)
        waiting = spawn(self, "ap question", ["python3", "-c", UDP_WAIT, up],
                        netns=self.lab.netns("ap"))
        line = yield waiting.when_line(r"^port \d+", timeout=10)
        port = line.split()[1]
        # to the access point's WAN address, where the upstream answers
        done = yield self.run_in("c1", ["python3", "-c", UDP_FORGE, up,
                                        self.lab.wan_ap_address, port])
        self.assertEqual(done.returncode, 0, done.stderr)
        line = yield waiting.when_line(r"^(got|nothing)", timeout=10)
        self.assertEqual(line.strip(), "nothing")
        code, page = yield self.curl(f"http://{self.lab.ap_address}:{PORT}/login")
        self.assertEqual(code, 0)
        self.assertIn('name="csrf"', page)
