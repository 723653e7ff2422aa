"""
The captive portal end to end, as clients see it: headless Chromium in a
client namespace is caught, accepts the policy and reaches the internet;
the OS connectivity probes (curl) are redirected before login and reach
the real (lab) servers after it; a portal killed with SIGKILL and started
again keeps its logged-in clients online.
"""

import json
import os
import re
import sys
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

from netsuite.portal.pages import PROBES as WEB_PROBES

from .browser import Browser, missing_browser
from .procs import TWISTD, spawn
from .test_portal_lab import UPSTREAM_BODY, PortalLab

PROBE_SERVER = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUCCESS = b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
ANSWERS = {
    "/hotspot-detect.html": (200, "text/html", SUCCESS),
    "/library/test/success.html": (200, "text/html", SUCCESS),
    "/generate_204": (204, None, b""),
    "/gen_204": (204, None, b""),
    "/connecttest.txt": (200, "text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, "text/plain", b"Microsoft NCSI"),
    "/canonical.html": (200, "text/html",
        b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'),
    "/success.txt": (200, "text/plain", b"success\n"),
}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        code, kind, body = ANSWERS.get(self.path.split("?")[0], (404, "text/plain", b"no probe"))
        print("request " + json.dumps({"path": self.path, "host": self.headers.get("Host")}),
              flush=True)
        self.send_response(code)
        self.send_header("X-Lab-Probe", "upstream")
        if kind:
            self.send_header("Content-Type", kind)
        if code != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code != 204:
            self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler)
server.daemon_threads = True
print("listening", flush=True)
server.serve_forever()
'''

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>')

PROBES = [
    # (host, path, expected status after login, content type, expected body
    # after login): every path of netsuite.portal.pages.PROBES, on the hosts
    # the OSes ask.
    # Apple: iOS/macOS captive network assistant, and the older URL.
    ("captive.apple.com", "/hotspot-detect.html", 200, "text/html", APPLE_SUCCESS),
    ("www.apple.com", "/library/test/success.html", 200, "text/html", APPLE_SUCCESS),
    # Android and Chrome OS: 204 and an empty body, on several hosts.
    ("connectivitycheck.gstatic.com", "/generate_204", 204, None, ""),
    ("connectivitycheck.android.com", "/generate_204", 204, None, ""),
    ("clients3.google.com", "/generate_204", 204, None, ""),
    ("www.google.com", "/gen_204", 204, None, ""),
    # Windows NCSI, new and old.
    ("www.msftconnecttest.com", "/connecttest.txt", 200, "text/plain", "Microsoft Connect Test"),
    ("www.msftncsi.com", "/ncsi.txt", 200, "text/plain", "Microsoft NCSI"),
    # Firefox, both checks.
    ("detectportal.firefox.com", "/canonical.html", 200, "text/html", FIREFOX_CANONICAL),
    ("detectportal.firefox.com", "/success.txt", 200, "text/plain", "success\n"),
]


def need_browser():
    absent = missing_browser()
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)} "
                       "(Debian packages chromium and chromium-driver)")


class BrowserLoginTests(PortalLab):
    """
    A real browser in client c1.
    """

    timeout = 180

    def setUp(self):
        need_browser()
        return PortalLab.setUp(self)

    @inlineCallbacks
    def test_browser_click_through(self):
        """
        Chromium asks for the internet, lands on the login page (policy and
        accept button), accepts, and gets the internet page; navigating
        there again gives the internet, not the portal.
        """
        browser = yield deferToThread(Browser, self.lab, "c1")
        self.addCleanup(deferToThread, browser.close)
        yield deferToThread(browser.start)

        login = f"{self.portal}/login?url=http%3A%2F%2F"
        yield deferToThread(browser.navigate, self.internet)
        yield deferToThread(browser.wait_for_page, login, True)
        source = yield deferToThread(browser.source)
        self.assertIn("Be nice.", source)
        self.assertIn("Accept and connect", source)
        self.assertNotIn(UPSTREAM_BODY, source)

        yield deferToThread(browser.click, 'button[name="accept"]')
        yield deferToThread(browser.wait_for_page, self.internet)
        text = yield deferToThread(browser.text)
        self.assertEqual(text.strip(), UPSTREAM_BODY)

        again = self.internet + "again"
        yield deferToThread(browser.navigate, again)
        yield deferToThread(browser.wait_for_page, again)
        text = yield deferToThread(browser.text)
        self.assertEqual(text.strip(), UPSTREAM_BODY)
        self.assertEqual([r["path"] for r in self.upstream.requests()
                          if r["path"] != "/favicon.ico"], ["/", "/again"])


class ProbeTests(PortalLab):
    """
    The OS connectivity probes, with curl from c2, against a lab server
    that answers them like the real ones.
    """

    @inlineCallbacks
    def setUp(self):
        yield PortalLab.setUp(self)
        # the probe server replaces the plain upstream on port 80
        yield deferToThread(self.upstream.stop)
        fd, script = tempfile.mkstemp(prefix="probe-server-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(PROBE_SERVER)
        self.addCleanup(os.unlink, script)
        self.probes = spawn(self, "probe server", [
            sys.executable, script, self.lab.internet, "80"], netns=self.lab.netns("up"))
        yield self.probes.when_line("^listening")

    def probe(self, client, host, path):
        return self.curl(client, "-i", "--resolve", f"{host}:80:{self.lab.internet}",
                         f"http://{host}{path}")

    @inlineCallbacks
    def test_probes(self):
        """
        Before login every probe gets a 307 to the login page (with the probe
        URL); after login each one reaches the lab's server and gets what
        the real server answers; a probe that still reaches the portal
        after login (a connection opened before it) gets the same answer
        from the portal itself.
        """
        self.assertEqual(sorted({path for _, path, _, _, _ in PROBES}), sorted(WEB_PROBES))
        for host, path, _, _, _ in PROBES:
            code, out = yield self.probe("c2", host, path)
            self.assertEqual(code, 0, (host, path))
            head = out.split("\n\n", 1)[0]  # text mode: \r\n read as \n
            self.assertIn(" 307", head.splitlines()[0], (host, path, out))
            self.assertIn(f"Location: {self.portal}/login?url=http%3A%2F%2F{host}"
                          f"{path.replace('/', '%2F')}\n", head + "\n", (host, path))
            self.assertNotIn("X-Lab-Probe", head)
        self.assertFalse([line for line in self.probes.lines() if line.startswith("request ")])

        code, out, _, _ = yield self.login("c2")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        for host, path, status, kind, body in PROBES:
            code, out = yield self.probe("c2", host, path)
            self.assertEqual(code, 0, (host, path))
            head, got = self.answer(out, status, kind, host, path)
            self.assertIn("X-Lab-Probe: upstream", head, (host, path))
            self.assertEqual(got, body, (host, path))

        for host, path, status, kind, body in PROBES:
            code, out = yield self.curl("c2", "-i", "-H", f"Host: {host}",
                                        f"{self.portal}{path}")
            self.assertEqual(code, 0, (host, path))
            head, got = self.answer(out, status, kind, host, path)
            self.assertNotIn("X-Lab-Probe", head, (host, path))
            self.assertEqual(got, body, (host, path))

        # The lab server saw each probe once, after the login only (its
        # lines are in by now: it prints before it answers).
        seen = [json.loads(line.split(" ", 1)[1]) for line in self.probes.lines()
                if line.startswith("request ")]
        self.assertEqual([(r["host"], r["path"]) for r in seen],
                         [(host, path) for host, path, _, _, _ in PROBES])

    def answer(self, out, status, kind, host, path):
        """
        The head and body of curl -i's C{out}, checking its status line and
        content type (none expected for a 204).
        """
        head, _, got = out.partition("\n\n")  # text mode: \r\n read as \n
        self.assertEqual(head.splitlines()[0].split()[1], str(status), (host, path, out))
        types = re.findall(r"(?im)^content-type:\s*([^;\s]+)", head)
        self.assertEqual(types, [kind] if kind else [], (host, path, head))
        return head, got


class RestartTests(PortalLab):
    """
    A portal killed with SIGKILL and started again.
    """

    @inlineCallbacks
    def test_restart_keeps_session(self):
        """
        c1 logs in; netsuite (firewall and portal) is killed -9 and started
        with the same config; c1 still reaches the internet, c2 is still
        caught.
        """
        code, out, _, _ = yield self.login("c1")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))

        self.daemon.signal("KILL")
        yield self.daemon.when_ended()
        self.daemon = spawn(self, "netsuite again", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line("firewall ready")
        yield self.daemon.when_line("portal ready")
        yield self.daemon.when_line("portal restored 1 sessions")
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY), self.daemon.output()[-3000:])
        yield self.assertRedirected("c2")
        code, page = yield self.curl("c1", f"{self.portal}/status")
        self.assertEqual(code, 0)
        self.assertIn("Connected", page)
