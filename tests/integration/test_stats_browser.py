"""
The operator's traffic graphs in a real lab, seen by a real browser:
netsuite (firewall, portal and stats, sampling every second) runs in the
access point; client c1 logs in at the portal and downloads from the
upstream at a steady rate; its status page then says what it used today
(asked of /stats/usage); headless Chromium in c1 loads the operator page
over HTTPS with the operator's credentials, and the screenshots of the
uplink's and the client's hour graphs are read back pixel by pixel: the
plotted area holds the graphs' down colour, not only background and grid.
"""

import os
import re
import shutil
import sys
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import connect
from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer
from netsuite.portal.auth import hash_password
from netsuite.portal.pages import data_size
from netsuite.stats import graphs, layout

from ..lab.labs import lab_name
from ..portal.test_tls import make_ca_and_certificate
from ..stats.png import Image, rgb
from .browser import Browser
from .procs import TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import need_lab
from .test_portal_browser import need_browser

PORT = 8444
PASSWORD = "lab-graphs"
SIZE = 6_000_000
RATE = 400_000
"""The download: SIZE bytes at RATE bytes a second (15 s: a few of the hour graph's pixels)."""

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 5280
check_interval = 1.0
shaping = false
lan_ports = [8443, {port}]
lock_dir = "{locks}"

[portal]
enabled = true
port = 5280
interface_address = "{ap}"
session_file = "{sessions}"
sample_interval = 1.0
tls_certificate = "{cert}"
tls_key = "{key}"

[portal.operator]
username = "op"
password_hash = "{hash}"
graphs_url = "https://{ap}:{port}/"

[stats]
enabled = true
interval = 1
directory = "{directory}"

[stats.operator]
enabled = true
port = {port}
interface_address = "{ap}"
tls_certificate = "{cert}"
tls_key = "{key}"
refresh = 1.0
"""

# A download at a steady rate: reads paced, and a small receive buffer so
# that the window, and so the traffic through the access point, follows
# them (curl's --limit-rate paces reads only: a 6 MB body would be in the
# kernel's buffers, and counted, in the first half second). Prints the
# body's size.
DOWNLOAD = """
import socket, sys, time
host, rate = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
s.settimeout(10)
s.connect((host, 80))
s.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n")
data, start = b"", time.monotonic()
while True:
    chunk = s.recv(16384)
    if not chunk:
        break
    data += chunk
    ahead = len(data) / rate - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(len(data.split(b"\\r\\n\\r\\n", 1)[1]))
"""

# In the page: once every image has come (or failed), the natural width of
# each (0: broken).
IMAGES_LOADED = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map(
    i => i.decode().then(() => i.naturalWidth, () => 0))).then(done);
"""


class OperatorGraphsBrowserTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self):
        need_lab()
        need_browser()
        self.lab = Lab(lab_name(self, prefix="sgb"), clients=1)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, "x" * SIZE)
        self.addCleanup(self.upstream.stop)
        yield deferToThread(self.upstream.start)
        self.tmp = tempfile.mkdtemp(prefix="statsgraphs-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        _, cert, key = make_ca_and_certificate(self.tmp, self.lab.ap_address)
        self.directory = os.path.join(self.tmp, "stats")
        self.sockets = socket_dir(self)
        self.config = write_config(self, CONFIG.format(
            port=PORT, locks=os.path.join(self.tmp, "locks"), directory=self.directory,
            hash=hash_password(PASSWORD), ap=self.lab.ap_address, cert=cert, key=key,
            sessions=os.path.join(self.tmp, "sessions.sqlite")))
        self.daemon = spawn(self, "netsuite", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.daemon.when_line("firewall ready")
        yield self.daemon.when_line("portal ready")
        yield self.daemon.when_line("stats operator page on ")
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        self.portal = f"http://{self.lab.ap_address}:5280"
        self.jar = os.path.join(self.tmp, "c1.jar")

    def curl(self, *args):
        done = self.lab.exec("c1", ["curl", "-s", "--max-time", "5", "-c", self.jar, "-b",
                                    self.jar, *args])
        return done.returncode, done.stdout

    @inlineCallbacks
    def login(self):
        """c1 accepts the policy at the portal (which authorizes it in the firewall)."""
        code, page = yield deferToThread(self.curl, f"{self.portal}/login")
        self.assertEqual(code, 0)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, out = yield deferToThread(
            self.curl, "-o", "/dev/null", "-w", "%{http_code}", "--data",
            f"csrf={token}&url=&accept=1", f"{self.portal}/login")
        self.assertEqual((code, out), (0, "303"))

    def download(self):
        done = self.lab.exec("c1", [sys.executable, "-c", DOWNLOAD, self.lab.internet,
                                    str(RATE)], timeout=45)
        return done.returncode, done.stdout.strip()

    @inlineCallbacks
    def until_known(self, ip, seconds=10.0):
        deadline = time.monotonic() + seconds
        while not (yield self.bus.send("/stats/usage", {"ip": ip}))["found"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"stats does not know {ip} after {seconds} s")
            yield deferLater(reactor, 0.2, lambda: None)

    def plotted(self, png, what):
        """
        The columns of a graph's screenshot holding at least 30 pixels of
        the down colour: the plotted area (the legend's square of that
        colour is a dozen pixels high; the grid's dashes cross the area).
        """
        image = Image(png)
        self.assertGreater(image.width, graphs.WIDTH, what)
        return sum(1 for n in image.columns(rgb(graphs.DOWN_COLOUR)) if n >= 30)

    @inlineCallbacks
    def test_graphs_after_traffic(self):
        """
        After c1's download, the operator page (HTTPS, credentials in the
        URL) shows the uplink's graphs and c1 among the top talkers; the
        uplink's hour graph and c1's hour graph (reached by its link)
        have a plotted area of the down colour in the browser's
        screenshots.
        """
        yield self.login()
        # stats knows c1 (its first reading) before the download: the
        # download is then traffic between two readings, not its first
        yield self.until_known(self.lab.client_address(1))
        code, got = yield deferToThread(self.download)
        self.assertEqual((code, got), (0, str(SIZE)))
        ended = time.time()
        # The series hold the download once both files have a sample after it.
        files = [layout.uplink_file(self.directory),
                 layout.client_file(self.directory, self.lab.client_mac(1).lower())]
        yield until_sampled(files, ended + 1)
        usage = yield self.bus.send("/stats/usage", {"ip": self.lab.client_address(1)})
        down = usage["usage"]["today"]["bytes_down"]
        self.assertGreaterEqual(down, SIZE)
        # the client's status page says so
        code, status = yield deferToThread(self.curl, f"{self.portal}/status")
        self.assertEqual(code, 0)
        self.assertIn(f"Used today: {data_size(down)} down", status)
        # the portal's operator page links to the graphs
        code, page = yield deferToThread(self.curl, "-k", "-u", f"op:{PASSWORD}",
                                         f"https://{self.lab.ap_address}:8443/operator")
        self.assertIn(f'<a href="https://{self.lab.ap_address}:{PORT}/">Traffic graphs</a>',
                      page)

        browser = yield deferToThread(Browser, self.lab, "c1")
        self.addCleanup(deferToThread, browser.close)
        yield deferToThread(browser.start, acceptInsecureCerts=True)
        yield deferToThread(browser.call, "POST", browser._s("/window/rect"),
                            {"width": 1000, "height": 1400})
        site = f"https://{self.lab.ap_address}:{PORT}/"
        yield deferToThread(browser.navigate, f"https://op:{PASSWORD}@{self.lab.ap_address}:"
                                              f"{PORT}/")
        yield deferToThread(browser.wait_for_page, site, True)
        widths = yield deferToThread(browser.execute_async, IMAGES_LOADED)
        self.assertEqual(len(widths), 3)
        self.assertTrue(all(w > graphs.WIDTH for w in widths), widths)
        text = yield deferToThread(browser.text)
        self.assertIn("Top talkers today", text)
        self.assertIn(self.lab.client_address(1), text)
        page = yield deferToThread(browser.screenshot)
        with open(os.path.join(self.tmp, "index.png"), "wb") as f:
            f.write(page)
        uplink = yield deferToThread(browser.screenshot, 'img[src="/graph/uplink/hour.png"]')
        uplink_columns = self.plotted(uplink, "uplink hour")

        yield deferToThread(browser.click, 'a[href^="/client/"]')
        mac = self.lab.client_mac(1).lower().replace(":", "-")
        yield deferToThread(browser.wait_for_page, f"{site}client/{mac}")
        widths = yield deferToThread(browser.execute_async, IMAGES_LOADED)
        self.assertEqual(len(widths), 3)
        self.assertTrue(all(w > graphs.WIDTH for w in widths), widths)
        client = yield deferToThread(browser.screenshot, f'img[src="/graph/{mac}/hour.png"]')
        client_columns = self.plotted(client, "client hour")
        # 15 s of steady traffic in a 3600 s graph 600 pixels wide: two or
        # three columns at full height (the scale's top is the peak).
        self.assertGreaterEqual(uplink_columns, 1, "uplink hour graph")
        self.assertGreaterEqual(client_columns, 1, "client hour graph")


@inlineCallbacks
def until_sampled(files, after, seconds=10.0):
    """Fire once each of C{files} exists and was last updated at C{after} or later."""
    import rrdtool

    def last(path):
        return rrdtool.last(path) if os.path.exists(path) else 0
    deadline = time.monotonic() + seconds
    while True:
        times = yield deferToThread(lambda: [last(path) for path in files])
        if min(times) >= after:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no sample after {after} in {files}: {times}")
        yield deferLater(reactor, 0.2, lambda: None)
