"""
The LAN's IPv6 closed by netsuite (issue 17, "Closed by default"), in a
real lab with IPv6 (C{Lab(ipv6=True)}: radvd, SLAAC, forwarding on in the
access point; docs/lab.md); a web server upstream on the internet address. Without netsuite the
client reaches it; with netsuite (the firewall alone) an unauthorized
client's TCP is reset in under a second, while netsuite runs, after a hand
flush of ip6tables (restored by the check) and after a clean stop.
"""

import os
import shutil
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab import Lab
from netsuite.lab.peers import missing

from .procs import PYTHON, TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

PORT = 20580
UDP_PORT = 20582
AP_PORT = 20583
INTERNET6 = "2001:db8:100::1"
AP6 = "2001:db8:89::1"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 20581
check_interval = 1.0
shaping = false
lock_dir = "{work}"
"""

# One TCP connection (and an HTTP request), or one UDP datagram and its
# answer, over IPv6: prints what happened and how long it took.
CONNECT = """
import socket, sys, time
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(3)
start = time.monotonic()
try:
    s.connect((host, port))
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    answer = s.recv(100).decode(errors="replace").split()
    print("answered", answer[1] if len(answer) > 1 else "-")
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - start, 3))
"""

# A TCP listener on the access point, on every IPv6 address.
LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(5)
print("listening", flush=True)
while True:
    c = s.accept()[0]; c.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n"); c.close()
"""


class IPv6ClosedLabTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self):
        if os.getuid() != 0:
            raise SkipTest("needs root to build network namespaces and change their firewall")
        absent = missing("ip", "ip6tables-legacy", "ip6tables-legacy-save", "ipset")
        if absent:
            raise SkipTest(f"not installed: {', '.join(absent)}")
        name = "v6c" + lab_name(self)[1:]
        self.lab = Lab(name, clients=1, ipv6=True)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        yield deferToThread(self.lab.client_addresses6, "c1")
        web = spawn(self, "web6", [PYTHON, "-u", "-m", "http.server", "--bind", INTERNET6,
                                   str(PORT)], netns=self.lab.netns("up"))
        yield web.when_line("Serving HTTP")
        self.work = tempfile.mkdtemp(prefix="v6c-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.sockets = socket_dir(self)
        self.config = write_config(self, CONFIG.format(work=self.work))

    @inlineCallbacks
    def connect(self, host=INTERNET6, port=PORT, proto="tcp"):
        done = yield deferToThread(self.lab.exec, "c1", [PYTHON, "-c", CONNECT, host,
                                                         str(port), proto], timeout=20)
        return done.stdout.strip()

    @inlineCallbacks
    def assert_refused(self, port=PORT, proto="tcp", error="ConnectionRefusedError"):
        """
        Refused in under a second: TCP with a reset (ConnectionRefusedError),
        UDP with ICMPv6 administratively prohibited (PermissionError).
        """
        answer = yield self.connect(port=port, proto=proto)
        log.msg(f"IPv6 {proto} to port {port}: {answer}")
        what, seconds = answer.split()
        self.assertEqual(what, error, answer)  # refused, not a time-out
        self.assertLess(float(seconds), 1.0)

    @inlineCallbacks
    def assert_closed(self):
        yield self.assert_refused()
        yield self.assert_refused(port=UDP_PORT, proto="udp", error="PermissionError")

    def rules6(self):
        saved = self.lab.exec("ap", ["ip6tables-legacy-save"], timeout=10).stdout
        return [line for line in saved.splitlines() if line.startswith(("-A", ":NS"))]

    @inlineCallbacks
    def test_closed(self):
        """
        The hole first (no netsuite: the upstream answers over IPv6); then
        reset in < 1 s with netsuite; an ip6tables flush by hand is
        restored by the periodic check; after a clean stop still reset.
        """
        self.assertEqual((yield self.connect()), "answered 200")
        # Nothing listens there: the upstream's own port unreachable.
        self.assertEqual((yield self.connect(port=UDP_PORT, proto="udp")).split()[0],
                         "ConnectionRefusedError")
        daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield daemon.when_line("firewall ready")
        yield self.assert_closed()
        running = yield deferToThread(self.rules6)
        self.assertIn("-A FORWARD -j NS6-FORWARD", running)

        seen = daemon.line_count
        done = yield deferToThread(self.lab.exec, "ap", ["ip6tables-legacy", "-F"], timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual((yield self.connect()), "answered 200")  # the hole, for a moment
        yield daemon.when_line(r"restored: .*IPv6: ", timeout=10, after=seen)
        self.assertEqual((yield deferToThread(self.rules6)), running)
        yield self.assert_closed()

        daemon.signal("TERM")
        yield daemon.when_ended()
        self.assertIn("-A NS6-FORWARD -i br-lan -p tcp -j REJECT --reject-with tcp-reset",
                      (yield deferToThread(self.rules6)))
        yield self.assert_closed()

    @inlineCallbacks
    def test_access_point(self):
        """
        Over IPv6 the access point answers a client on the portal port
        (neighbour discovery works, or nothing would) and drops the rest
        from the LAN: another port gets no answer at all.
        """
        for port in (20581, AP_PORT):
            listener = spawn(self, f"listener {port}", [PYTHON, "-c", LISTENER, str(port)],
                             netns=self.lab.netns("ap"))
            yield listener.when_line("listening")
        self.assertEqual((yield self.connect(AP6, AP_PORT)), "answered 200")
        daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield daemon.when_line("firewall ready")
        self.assertEqual((yield self.connect(AP6, 20581)), "answered 200")
        self.assertEqual((yield self.connect(AP6, AP_PORT)).split()[0], "TimeoutError")
