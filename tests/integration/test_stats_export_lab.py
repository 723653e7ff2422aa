"""
The accounting log and the Prometheus metrics in a real lab: netsuite runs
the firewall and the portal in the access point's namespace (process
"ap"), netsuite-stats runs there too in a process of its own ("stats"),
sampling the firewall's counters over the bus. Two clients log in through
the portal with curl; one downloads a body of known size from the
upstream and logs out, the other stays idle. The accounting log then holds
the session with its bytes, and /metrics (curl in the AP's namespace, on
loopback where it listens) shows the bytes of both clients by IP and MAC,
and the mailbox counters of both processes.
"""

import json
import os
import re
import shutil
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.lab import Lab
from netsuite.lab.peers import HttpPeer

from .procs import TWISTD, socket_dir, spawn, write_config
from .test_portal_lab import need_lab
from ..lab.labs import lab_name

SIZE = 4_000_000  # the download, in bytes
INTERVAL = 2
METRICS_PORT = 9420

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 5280
check_interval = 1.0
shaping = false

[portal]
enabled = true
port = 5280
interface_address = "{ap}"
idle_timeout = 600.0
session_file = "{tmp}/sessions.sqlite"

[stats]
interval = {interval}
directory = "{tmp}/stats"
firewall_process = "ap"
portal_process = "ap"

[stats.accounting]
path = "{tmp}/log/accounting.jsonl"

[stats.metrics]
port = {port}
processes = ["ap", "stats"]
"""


def metrics(text):
    """C{{(name, frozenset(labels)): value}} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class StatsExportLabTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self):
        need_lab()
        self.lab = Lab(lab_name(self, prefix="sx"), clients=2)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.upstream = HttpPeer(self.lab.netns("up"), None, 80, "x" * SIZE)
        self.addCleanup(self.upstream.stop)
        yield deferToThread(self.upstream.start)
        self.sockets = socket_dir(self)
        self.tmp = tempfile.mkdtemp(prefix="statsexport-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.config = write_config(self, CONFIG.format(
            ap=self.lab.ap_address, tmp=self.tmp, interval=INTERVAL, port=METRICS_PORT))
        self.ap = self.spawn("netsuite", "ap")
        yield self.ap.when_line("portal ready")
        self.stats = self.spawn("netsuite-stats", "stats")
        yield self.stats.when_line("metrics ready")
        self.portal = f"http://{self.lab.ap_address}:5280"

    def spawn(self, plugin, name):
        return spawn(self, name, [*TWISTD, "-n", "--pidfile=", plugin, "--name", name,
                                  "--socket-dir", self.sockets, "--config", self.config],
                     netns=self.lab.netns("ap"))

    def curl(self, client, *args, seconds=10):
        def run():
            done = self.lab.exec(client, ["curl", "-s", "--max-time", str(seconds), *args])
            return done.returncode, done.stdout
        return deferToThread(run)

    @inlineCallbacks
    def login(self, client):
        jar = os.path.join(self.tmp, f"{client}.jar")
        code, page = yield self.curl(client, "-c", jar, "-b", jar, f"{self.portal}/login")
        self.assertEqual(code, 0)
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        code, out = yield self.curl(client, "-c", jar, "-b", jar, "-o", "/dev/null",
                                    "-w", "%{http_code}", "--data",
                                    f"csrf={token}&accept=1", f"{self.portal}/login")
        self.assertEqual((code, out), (0, "303"))
        return jar, token

    @inlineCallbacks
    def scrape(self):
        code, text = yield self.curl("ap", f"http://127.0.0.1:{METRICS_PORT}/metrics")
        self.assertEqual(code, 0, "curl of /metrics in the AP")
        return metrics(text)

    @inlineCallbacks
    def until(self, done, what, seconds):
        """Fire with C{done()}'s first true value, looking every 0.2 s."""
        deadline = time.monotonic() + seconds
        while True:
            found = yield done()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {seconds} s")
            yield deferLater(reactor, 0.2, lambda: None)

    def records(self):
        path = os.path.join(self.tmp, "log", "accounting.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    @inlineCallbacks
    def test_download_logout(self):
        """
        The download shows in /metrics within one interval (within 5 %),
        keyed by IP and MAC; the idle client stays about zero; the
        session's record holds the download; the mailbox counters of both
        processes are there. A restarted stats adopts the idle client's
        session, and writes it at its logout.
        """
        ip1, mac1 = self.lab.client_address(1), self.lab.client_mac(1)
        ip2, mac2 = self.lab.client_address(2), self.lab.client_mac(2)
        jar, token = yield self.login("c1")
        jar2, token2 = yield self.login("c2")
        code, size = yield self.curl("c1", "-o", "/dev/null", "-w", "%{size_download}",
                                     f"http://{self.lab.internet}/file")
        self.assertEqual((code, int(size)), (0, SIZE))
        downloaded = time.monotonic()

        def down(found, ip, mac):
            return found.get(("netsuite_client_bytes_total", frozenset(
                {("ip", ip), ("mac", mac), ("direction", "down")})))

        @inlineCallbacks
        def counted():
            found = yield self.scrape()
            value = down(found, ip1, mac1)
            return found if value is not None and value >= SIZE else None
        found = yield self.until(counted, "download in /metrics", 3 * INTERVAL)
        self.assertLessEqual(time.monotonic() - downloaded, INTERVAL + 1.0)
        self.assertLess(abs(down(found, ip1, mac1) - SIZE) / SIZE, 0.05)
        idle = down(found, ip2, mac2)
        self.assertIsNotNone(idle, "the idle client is in /metrics")
        self.assertLess(idle, 0.005 * SIZE)
        # the bus figures are gathered each interval, and may be one older

        @inlineCallbacks
        def gathered():
            found = yield self.scrape()
            return found if found.get(("netsuite_portal_sessions", frozenset())) == 2 else None
        found = yield self.until(gathered, "the portal's sessions in /metrics", 3 * INTERVAL)
        self.assertEqual(found[("netsuite_portal_logins_total",
                                frozenset({("method", "click")}))], 2)
        for process, mailbox in (("ap", "/firewall/counters"), ("ap", "/portal/sessions"),
                                 ("stats", "/stats/usage")):
            key = ("netsuite_mailbox_messages_total",
                   frozenset({("process", process), ("mailbox", mailbox)}))
            self.assertIn(key, found, f"{process}:{mailbox} in /metrics")
        self.assertGreater(found[("netsuite_mailbox_messages_total", frozenset(
            {("process", "ap"), ("mailbox", "/firewall/counters")}))], 0)
        self.assertEqual(found[("netsuite_source_up", frozenset(
            {("source", "mailboxes:ap"), ("address", "ap:/system/mailboxes")}))], 1)

        code, out = yield self.curl("c1", "-c", jar, "-b", jar, "-o", "/dev/null", "-w",
                                    "%{http_code}", "--data", f"csrf={token}",
                                    f"{self.portal}/logout")
        self.assertEqual((code, out), (0, "303"))
        [record] = yield self.until(lambda: self.records(), "accounting record", 5)
        self.assertEqual((record["ip"], record["mac"], record["user"], record["method"],
                          record["reason"]), (ip1, mac1, None, "click", "logout"))
        self.assertLess(abs(record["bytes_down"] - SIZE) / SIZE, 0.05)
        self.assertLess(record["bytes_up"], 0.05 * SIZE)
        self.assertLess(record["start_epoch"], record["end_epoch"])
        self.assertLessEqual(record["end_epoch"], time.time())

        # stats restarts: the session under way (c2's) is adopted from the portal
        self.stats.signal("TERM")
        yield self.stats.when_ended()
        self.stats = self.spawn("netsuite-stats", "stats")
        yield self.stats.when_line("metrics ready")

        @inlineCallbacks
        def adopted():
            found = yield self.scrape()
            return found.get(("netsuite_accounting_open_sessions", frozenset())) == 1
        yield self.until(adopted, "the adopted session", 3 * INTERVAL)
        code, out = yield self.curl("c2", "-c", jar2, "-b", jar2, "-o", "/dev/null", "-w",
                                    "%{http_code}", "--data", f"csrf={token2}",
                                    f"{self.portal}/logout")
        self.assertEqual((code, out), (0, "303"))
        [_, again] = yield self.until(lambda: self.records()[1:] and self.records(),
                                      "the adopted session's record", 5)
        self.assertEqual((again["ip"], again["mac"], again["adopted"], again["reason"]),
                         (ip2, mac2, True, "logout"))
        self.assertLess(again["start_epoch"], record["end_epoch"])  # the portal's start
        self.assertLess(again["bytes_down"], 0.005 * SIZE)
