"""
The portal's redirect front against a hostile client in a real lab: a
raw socket in a client namespace sends pipelined GETs and never reads,
and opens more connections than a client may hold. The daemon's memory
and connections stay bounded, it says so once in its log, and another
client is still redirected meanwhile.
"""

import json
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from .procs import spawn
from .test_portal_lab import PORT, PortalLab

# Run in the client's namespace: pipeline GETs for SECONDS without reading
# (as fast as the portal takes them, until it cuts the connection), then
# open CONNECTIONS more and count those the portal keeps open (the first
# one included).
FLOOD = r"""
import json, socket, sys, time
host, port, seconds, connections = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
request = b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
chunk = request * (54000 // len(request))
s = socket.create_connection((host, port), timeout=2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sent, cut, end = 0, False, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        sent += s.send(chunk)
    except socket.timeout:
        continue
    except OSError:
        cut = True
        break
held = []
for _ in range(connections):
    c = socket.create_connection((host, port), timeout=2)
    held.append(c)
kept = 0
for c in held:  # a connection the portal kept answers; one it cut is at its end
    try:
        c.sendall(b"GET /k HTTP/1.1\r\nHost: a.example\r\n\r\n")
        kept += c.recv(1) != b""
    except OSError:
        pass
print(json.dumps({"sent": sent, "cut": cut, "kept": kept + (not cut)}))
"""

# Run in the client's namespace: send 54 KB of pipelined GETs for one of the
# portal's own pages (answered by twisted.web, after the front's hand-over),
# never read until told to (a line on stdin), then read the first answer.
PAGES = r"""
import json, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
request = b"GET /login HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host.encode(), port)
chunk = request * (54000 // len(request))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(5)
s.connect((host, port))
s.sendall(chunk)
print("sent", flush=True)
sys.stdin.readline()
s.settimeout(1)
first = s.recv(64).split(b"\r\n")[0].decode()
print(json.dumps({"requests": chunk.count(b"GET "), "first": first}))
"""


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class FrontLimitsLabTests(PortalLab):

    def more_config(self):
        return "max_connections_per_client = 4\n"

    @inlineCallbacks
    def test_client_that_never_reads(self):
        """
        A client pipelining GETs without reading gets no further than the
        socket buffers: the portal stops reading while its answers wait
        (before, it read 35 MB in 8 s and its memory grew by over a GiB);
        the daemon's memory grows by less than 30 MiB. Of 10 more
        connections from that client the portal keeps 4 in all, and logs
        the cap once; c2 is still redirected.
        """
        before = rss_mib(self.daemon.pid)
        done = yield deferToThread(
            self.lab.exec, "c1", [sys.executable, "-c", FLOOD, self.lab.ap_address, str(PORT),
                                  "8", "10"], timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        result = json.loads(done.stdout)
        self.assertLess(result["sent"], 4 * 2**20, result)
        self.assertLess(rss_mib(self.daemon.pid) - before, 30, result)
        self.assertEqual(result["kept"], 4, result)
        yield self.daemon.when_line("portal refused .*client-cap", timeout=10)
        yield self.assertRedirected("c2")
        self.assertEqual(len([line for line in self.daemon.lines()
                              if "client-cap" in line]), 1)

    @inlineCallbacks
    def until_front_waits(self, seconds=10.0):
        """
        Wait (bounded) until /portal/front counts a connection waiting for
        its client to read: the front has stopped answering and reading it.
        """
        deadline = reactor.seconds() + seconds
        while (yield self.bus.send("/portal/front", {}))["waiting"] < 1:
            self.assertLess(reactor.seconds(), deadline, "no connection waits for its client")
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_pages_to_a_client_that_never_reads(self):
        """
        54 KB of pipelined GETs for a portal page, never read: twisted.web
        is given one request at a time while the answers wait, so the
        daemon answers no more than the socket buffers and the front's
        bound hold (access log), and its memory hardly grows (before: it
        answered all 1,100 at once, 1.7 MB held in its write buffer).
        """
        before = rss_mib(self.daemon.pid)
        logged = len(self.daemon.lines())
        client = spawn(self, "pages", [sys.executable, "-c", PAGES, self.lab.ap_address,
                                       str(PORT)], netns=self.lab.netns("c1"), stdin=True)
        yield client.when_line("^sent$", timeout=10)
        yield self.until_front_waits()
        grown = rss_mib(self.daemon.pid) - before
        answered = len([line for line in self.daemon.lines()[logged:]
                        if '"GET /login HTTP/1.1" 200' in line])
        client.send("read\n")
        result = json.loads((yield client.when_line("^{", timeout=10)))
        self.assertEqual((yield client.when_ended()), 0, client.output())
        print(f"\nanswered {answered} of {result['requests']} while not read; "
              f"RSS +{grown:.1f} MiB", file=sys.stderr)
        self.assertEqual(result["first"], "HTTP/1.1 200 OK", result)
        self.assertGreater(answered, 0)
        self.assertLess(answered, result["requests"] // 4, result)
        self.assertLess(grown, 2, result)
