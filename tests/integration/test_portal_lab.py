"""
The captive portal in a real lab: netsuite runs the firewall and the
portal in the access point's namespace (the all-in-one C{twistd netsuite}); clients
use curl: redirected, log in through the form, reach upstream, log out,
time out, log in again from a script (examples/portal-login.sh).
"""

import os
import re
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer, missing
from netsuite.portal.auth import hash_password

from .procs import ROOT, TWISTD, socket_dir, spawn, write_config
from ..lab.labs import lab_name

UPSTREAM_BODY = "the internet"
LOGIN_SCRIPT = os.path.join(ROOT, "examples", "portal-login.sh")
PORT = 5280

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
check_interval = 1.0
shaping = false
keep_clients = {keep}
{firewall_more}
[portal]
enabled = true
port = {port}
interface_address = "{ap}"
idle_timeout = {idle}
sample_interval = 1.0
session_file = "{sessions}"
policy_text = "Be nice."
firewall_process = "{firewall}"
"""


def need_lab():
    if os.getuid() != 0:
        raise SkipTest("needs root to build network namespaces and change their firewall")
    absent = missing("curl", "ipset", "iptables-legacy-save")
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


class PortalLab(TestCase):
    """
    A lab with netsuite (firewall and portal in one process) in the AP.
    """

    timeout = 120
    idle = 600.0
    keep_clients = False
    firewall_process = ""  # else the firewall and the portal run apart
    lab_prefix = "t"  # the lab's name starts with it (lab_name)

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self, prefix=self.lab_prefix), clients=2)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        yield self.start_peers()
        self.sockets = socket_dir(self)
        self.tmp = tempfile.mkdtemp(prefix="nsportal-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.config = write_config(self, CONFIG.format(
            port=PORT, ap=self.lab.ap_address, idle=self.idle,
            keep="true" if self.keep_clients else "false", firewall=self.firewall_process,
            sessions=self.session_file(), firewall_more=self.firewall_more()) + self.more_config())
        yield self.start()
        self.bus = connect(self.name, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        self.portal = f"http://{self.lab.ap_address}:{PORT}"
        self.internet = f"http://{self.lab.internet}/"

    @property
    def name(self):
        """The process of the portal."""
        return "portal" if self.firewall_process else "ap"

    def spawn_daemon(self, plugin, name):
        return spawn(self, name, [
            *TWISTD, "-n", "--pidfile=", plugin, "--name", name, "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))

    @inlineCallbacks
    def start(self):
        """
        Start netsuite in the AP (and the firewall's process, the first
        time, when apart); fire once the firewall and the portal are ready.
        """
        if not self.firewall_process:
            self.daemon = self.spawn_daemon("netsuite", "ap")
            yield self.daemon.when_line("firewall ready")
        else:
            if getattr(self, "firewall", None) is None:
                self.firewall = self.spawn_daemon("netsuite-firewall", self.firewall_process)
                yield self.firewall.when_line("firewall ready")
            self.daemon = self.spawn_daemon("netsuite-portal", self.name)
        yield self.daemon.when_line("portal ready")

    @inlineCallbacks
    def restart(self):
        """
        Stop netsuite cleanly (SIGTERM), start it again, connect anew.
        """
        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        self.bus.close()
        yield self.start()
        self.bus = connect(self.name, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)

    @inlineCallbacks
    def start_peers(self):
        """
        Start the servers of the upstream (before netsuite): the web.
        """
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, UPSTREAM_BODY)
        self.addCleanup(self.upstream.stop)
        yield deferToThread(self.upstream.start)

    def firewall_more(self):
        """
        TOML added to the [firewall] section.
        """
        return ""

    def more_config(self):
        """
        TOML added to the config, after the [portal] section (files it
        names go in C{self.tmp}).
        """
        return ""

    def session_file(self):
        """
        Where the portal keeps its sessions.
        """
        return os.path.join(self.tmp, "sessions.sqlite")

    def curl(self, client, *args, seconds=3):
        """
        Fire with (curl exit code, output) of curl in a client namespace.
        """
        def run():
            done = self.lab.exec(client, ["curl", "-s", "--max-time", str(seconds), *args])
            return done.returncode, done.stdout
        return deferToThread(run)

    @inlineCallbacks
    def login(self, client):
        jar = os.path.join(self.tmp, f"{client}.jar")
        code, page = yield self.curl(client, "-c", jar, "-b", jar,
                                     f"{self.portal}/login?url=http%3A%2F%2Fexample.com%2F")
        self.assertEqual(code, 0)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, out = yield self.curl(
            client, "-c", jar, "-b", jar, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
            "--data", f"csrf={token}&url=http%3A%2F%2Fexample.com%2F&accept=1",
            f"{self.portal}/login")
        return code, out, jar, token

    def login_script(self, *curl_args):
        """
        Fire with the run of examples/portal-login.sh in c1.
        """
        return deferToThread(self.lab.exec, "c1", ["sh", LOGIN_SCRIPT, self.portal, *curl_args],
                             timeout=30)

    @inlineCallbacks
    def assertRedirected(self, client):
        code, out = yield self.curl(client, "-i", self.internet)
        self.assertEqual(code, 0)
        self.assertIn("307", out.splitlines()[0])
        self.assertIn(f"Location: {self.portal}/login?url=http%3A%2F%2F", out)
        self.assertNotIn(UPSTREAM_BODY, out)


class PortalLabTests(PortalLab):

    @inlineCallbacks
    def test_login_logout(self):
        """
        Redirected before login; through after; the other client (and
        one forging the first one's address) still redirected; logout:
        redirected again.
        """
        yield self.assertRedirected("c1")
        code, out, jar, token = yield self.login("c1")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        yield self.assertRedirected("c2")
        sessions = yield self.bus.send("/portal/sessions")
        self.assertEqual([str(s["ip"]) for s in sessions], [self.lab.client_address(1)])
        self.assertEqual(str(sessions[0]["mac"]), self.lab.client_mac(1))

        code, out = yield self.curl("c1", "-c", jar, "-b", jar, "-o", "/dev/null", "-w",
                                    "%{http_code}", "--data", f"csrf={token}",
                                    f"{self.portal}/logout")
        self.assertEqual((code, out), (0, "303"))
        yield self.assertRedirected("c1")

    @inlineCallbacks
    def test_scripted_relogin(self):
        """
        examples/portal-login.sh (curl, as docs/portal.md shows it) logs c1
        in: 303, the internet. Run again (a new cookie jar) it is a 303
        too, and the session goes on: the same one, from the same start.
        A login that skips the token is still refused (403).
        """
        with open(os.path.join(ROOT, "docs", "portal.md")) as f:
            docs = f.read()
        with open(LOGIN_SCRIPT) as f:
            script = f.read()
        body = script.split("set -eu\n", 1)[1]
        self.assertIn(body, docs, "docs/portal.md shows examples/portal-login.sh")

        login = self.login_script
        done = yield login()
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        [first] = yield self.bus.send("/portal/sessions")

        done = yield login()
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        code, page = yield self.curl("c1", f"{self.portal}/login")
        self.assertIn("This device is connected", page)
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        [again] = yield self.bus.send("/portal/sessions")
        self.assertEqual((str(again["ip"]), again["started"]),
                         (self.lab.client_address(1), first["started"]))

        code, out = yield self.curl("c1", "-o", "/dev/null", "-w", "%{http_code}",
                                    "--data", "accept=1", f"{self.portal}/login")
        self.assertEqual((code, out), (0, "403"))

    @inlineCallbacks
    def test_forged_address(self):
        """
        Another client taking the logged-in client's address gets nothing.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual(code, 0)
        victim = self.lab.client_address(1)
        self.lab.exec("c1", ["ip", "addr", "flush", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "addr", "flush", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "addr", "add", f"{victim}/24", "dev", "eth0"], check=True)
        self.lab.exec("c2", ["ip", "route", "add", "default", "via", self.lab.ap_address],
                      check=False)
        self.lab.exec("ap", ["ip", "neigh", "flush", "all"], check=False)
        code, body = yield self.curl("c2", self.internet)
        self.assertNotEqual(body, UPSTREAM_BODY)


class PortalPasswordLabTests(PortalLab):
    """
    The portal with a users file: the password form, from a script.
    """

    def more_config(self):
        users = os.path.join(self.tmp, "users")
        with open(users, "w") as f:
            for name, password in (("alice", "wonder land"), ("bob", "builder")):
                f.write(f"{name}:{hash_password(password, n=16, r=1, p=1)}\n")
        return f'\n[portal.auth]\nusers_file = "{users}"\n'

    @inlineCallbacks
    def test_scripted_password_relogin(self):
        """
        examples/portal-login.sh with the user's fields: a wrong password
        is a 403 (the script fails), the right one a 303; logging in
        again as another user replaces the session (alice's ends, reason
        replaced; bob's starts).
        """
        done = yield self.login_script("--data-urlencode", "username=alice",
                                       "--data-urlencode", "password=wrong")
        self.assertEqual((done.returncode, done.stdout), (1, "403\n"))
        done = yield self.login_script("--data-urlencode", "username=alice",
                                       "--data-urlencode", "password=wonder land")
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))

        logout = self.bus.wait_for("/portal/logout", timeout=15)
        done = yield self.login_script("--data-urlencode", "username=bob",
                                       "--data-urlencode", "password=builder")
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        message = yield logout
        self.assertEqual(message["reason"], "replaced")
        [session] = yield self.bus.send("/portal/sessions")
        self.assertEqual((str(session["ip"]), session["username"]),
                         (self.lab.client_address(1), "bob"))
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))


class PortalIdleLabTests(PortalLab):
    idle = 3.0

    @inlineCallbacks
    def test_idle_timeout(self):
        """
        A client without traffic for idle_timeout seconds is logged out.
        """
        logout = self.bus.wait_for("/portal/logout", timeout=15)
        code, out, _, _ = yield self.login("c1")
        self.assertEqual(out, "303 http://example.com/")
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual(body, UPSTREAM_BODY)
        message = yield logout
        self.assertEqual(message["reason"], "idle-timeout")
        yield self.assertRedirected("c1")


class PortalStopLabTests(PortalLab):
    """
    A clean stop (SIGTERM) and a start again, with [firewall] keep_clients
    = false (the default) and [portal] keep_sessions following it.
    """

    @inlineCallbacks
    def test_sessions_end_at_stop(self):
        """
        A client logged in before the stop is not authorized after the
        start: it is redirected to the portal again, and has no session.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual(out, "303 http://example.com/")
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        yield self.restart()
        self.assertEqual((yield self.bus.send("/portal/sessions")), [])
        self.assertEqual((yield self.bus.send("/firewall/clients")), [])
        yield self.assertRedirected("c1")


class PortalKeepLabTests(PortalLab):
    """
    The same with keep_clients = true: the session survives the stop.
    """

    keep_clients = True

    @inlineCallbacks
    def test_sessions_survive_stop(self):
        """
        With keep_clients = true the session, and the client's way out,
        survive a clean stop and start.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual(out, "303 http://example.com/")
        yield self.restart()
        sessions = yield self.bus.send("/portal/sessions")
        self.assertEqual([str(s["ip"]) for s in sessions], [self.lab.client_address(1)])
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))


class PortalApartStopLabTests(PortalLab):
    """
    The portal in a process of its own, the firewall in another
    (keep_clients = false): stopping only the portal logs its clients out
    of the firewall, and its next start lets nobody in again.
    """

    firewall_process = "fw"

    @inlineCallbacks
    def test_portal_stop_deauthorizes(self):
        """
        A clean stop of the portal alone deauthorizes its session in the
        firewall's process, which goes on running; the portal's next start
        authorizes nobody; the client is redirected to the portal again.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual(out, "303 http://example.com/")
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))
        firewall = connect(self.firewall_process, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(firewall.close)
        self.assertEqual(len((yield firewall.send("/firewall/clients"))), 1)
        self.daemon.signal("TERM")
        yield self.daemon.when_ended()
        self.assertEqual((yield firewall.send("/firewall/clients")), [])
        code, body = yield self.curl("c1", self.internet, seconds=2)
        self.assertNotIn(UPSTREAM_BODY, body)
        self.bus.close()
        yield self.start()
        self.bus = connect(self.name, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        self.assertEqual((yield self.bus.send("/portal/sessions")), [])
        self.assertEqual((yield firewall.send("/firewall/clients")), [])
        yield self.assertRedirected("c1")



# Run in a client: one connection (A) to upstream opened while logged in;
# told to (after the logout), one (B) to upstream, redirected to the
# portal, with the start of a request head; told again (after the
# firewall's cut), it waits for the portal's answer on B (the front resets
# an unfinished head after [portal] head_timeout), then asks on A.
HELD_CONNECTIONS = r"""
import socket, sys
def answer(sock, request, seconds):
    sock.settimeout(seconds)
    try:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0].decode() or "closed"
    except OSError as e:
        return type(e).__name__
a = socket.create_connection((sys.argv[1], 80), timeout=5)
print("open A", flush=True)
sys.stdin.readline()
b = socket.create_connection((sys.argv[1], 80), timeout=5)
b.sendall(b"GET / HTTP/1.1\r\n")
print("open B", flush=True)
sys.stdin.readline()
print("B:", answer(b, b"", 30), flush=True)
print("A:", answer(a, b"GET / HTTP/1.0\r\nHost: upstream\r\n\r\n", 3), flush=True)
"""


class PortalLogoutRedirectLabTests(PortalLab):
    """
    A connection a client opens just after its logout (redirected to the
    portal) survives the cut of its flows; those it had open are cut.
    """

    def more_config(self):
        return "head_timeout = 1.0\n"

    @inlineCallbacks
    def test_redirect_opened_before_cut(self):
        """
        Twice: c1, logged in, holds a connection A to upstream; logged out,
        it opens B (redirected to the portal) and starts a request. After
        the firewall's cut, the portal's answer on B (it resets the
        connection whose head never finishes) still reaches c1, translated back; A gets nothing.
        Before the cut spared them, the portal's packets went out
        untranslated (the entry holding the REDIRECT was gone) and c1 waited
        for its time-out.
        """
        ip, mac = self.lab.client_address(1), self.lab.client_mac(1)
        for round in range(2):
            answer = yield self.bus.send("/portal/authorize", {"ip": ip, "mac": mac})
            self.assertTrue(answer["authorized"], answer)
            client = spawn(self, f"held{round}", ["python3", "-c", HELD_CONNECTIONS,
                                                  self.lab.internet],
                           netns=self.lab.netns("c1"), stdin=True)
            yield client.when_line("open A", timeout=20)
            cuts = self.daemon.line_count
            answer = yield self.bus.send("/portal/deauthorize", {"ip": ip})
            self.assertTrue(answer["deauthorized"], answer)
            client.send("\n")
            yield client.when_line("open B", timeout=20)
            yield self.daemon.when_line("cut [0-9]+ connections", timeout=20, after=cuts)
            client.send("\n")
            b = yield client.when_line("^B:", timeout=40)
            self.assertEqual(b, "B: ConnectionResetError", f"round {round}")
            a = yield client.when_line("^A:", timeout=20)
            self.assertNotIn("200", a, f"round {round}")
            yield client.when_ended()
