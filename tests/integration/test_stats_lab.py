"""
netsuite-stats in a real lab: the firewall runs in the access point's
namespace (process "ap"), netsuite-stats in a process of its own
("stats", same namespace: it reads wan0's counters) sampling every second
into a temporary directory. Client 1 downloads a file of known size from
the upstream's web server; client 2 stays idle.
"""

import os
import shutil
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
from netsuite.stats import layout

from .procs import TWISTD, socket_dir, spawn, write_config
from .test_firewall_lab import need_lab
from ..lab.labs import lab_name

try:
    import rrdtool
except ImportError:  # pragma: no cover
    rrdtool = None

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 1.0
lock_dir = "{locks}"

[stats]
interval = 1
directory = "{directory}"
firewall_process = "ap"
"""

SIZE = 4_000_000
"""The file client 1 downloads."""


class StatsLabTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def setUp(self):
        need_lab()
        if rrdtool is None:
            self.skipTest("the rrdtool module is not installed (scripts/setup.sh links it)")
        self.lab = Lab(lab_name(self, prefix="stl"), clients=2)
        self.addCleanup(self.lab.down)
        yield deferToThread(self.lab.up, True)
        self.web = HttpPeer(self.lab.netns("up"), None, 80, "x" * SIZE)
        yield deferToThread(self.web.start)
        self.addCleanup(self.web.stop)
        self.sockets = socket_dir(self)
        self.directory = tempfile.mkdtemp(prefix="statscore-")
        self.addCleanup(shutil.rmtree, self.directory)
        locks = os.path.abspath(self.mktemp())
        self.config = write_config(self, CONFIG.format(locks=locks, directory=self.directory))
        self.firewall = spawn(self, "netsuite firewall", [
            *TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.firewall.when_line("firewall ready")
        self.bus = connect("ap", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.bus.close)
        for index in (1, 2):
            yield self.bus.send("/firewall/authorize", {
                "ip": self.lab.client_address(index), "mac": self.lab.client_mac(index)})
        yield self.start_stats()

    @inlineCallbacks
    def start_stats(self):
        self.stats = spawn(self, "netsuite-stats", [
            *TWISTD, "-n", "--pidfile=", "netsuite-stats", "--name", "stats",
            "--socket-dir", self.sockets, "--config", self.config], netns=self.lab.netns("ap"))
        yield self.stats.when_line("stats sampling")
        self.stats_bus = connect("stats", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(self.stats_bus.close)

    @inlineCallbacks
    def until(self, done, what, seconds=5.0):
        """Fire with C{done()}'s first true value, asked every 100 ms."""
        deadline = time.monotonic() + seconds
        while True:
            value = yield done()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {seconds} s")
            yield deferLater(reactor, 0.1, lambda: None)

    def usage(self, **request):
        return self.stats_bus.send("/stats/usage", request)

    def counters(self):
        return self.stats_bus.send("/stats/counters", {})

    def client_file(self, index):
        return layout.client_file(self.directory, self.lab.client_mac(index))

    def downloaded(self, rows, start, end):
        """Bytes down in a file's one-sample rows from C{start} to C{end}."""
        (first, _, step), names, values = rrdtool.fetch(
            rows, "AVERAGE", "-r", "1", "-s", str(start), "-e", str(end))
        column = names.index("bytes_down")
        return sum((row[column] or 0) * step for row in values)

    @inlineCallbacks
    def test_usage_files_and_restart(self):
        """
        Within an interval of a 4 MB download, /stats/usage shows it for
        client 1 (by its address and its MAC, within 5 % with the headers)
        and about nothing for idle client 2; client 1's file holds it. After
        a restart of netsuite-stats the files keep their rows and sampling
        goes on.
        """
        started = int(time.time()) - 1
        ip1, mac1 = self.lab.client_address(1), self.lab.client_mac(1)
        # the first sample: both clients seen, their files made
        yield self.until(lambda: self.counters().addCallback(
            lambda c: c["clients"] == 2 and c["store_created"] >= 3), "first sample")
        got = yield deferToThread(self.lab.exec, "c1", [
            "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "10",
            f"http://{self.lab.internet}/"])
        self.assertEqual(got.stdout, str(SIZE), got.stderr)
        fetched = time.monotonic()

        def shown(answer):
            return answer if answer["usage"]["total"]["bytes_down"] >= SIZE else None
        by_ip = yield self.until(lambda: self.usage(ip=ip1).addCallback(shown),
                                 "usage of the download", seconds=3)
        self.assertLess(time.monotonic() - fetched, 2.5)  # one interval and the bus
        down = by_ip["usage"]["total"]["bytes_down"]
        self.assertLess(down, SIZE * 1.05, by_ip)
        self.assertEqual(by_ip["usage"]["mac"], mac1)
        by_mac = yield self.usage(mac=mac1)
        self.assertGreaterEqual(by_mac["usage"]["total"]["bytes_down"], down)
        idle = yield self.usage(ip=self.lab.client_address(2))
        self.assertTrue(idle["found"])
        self.assertLess(idle["usage"]["total"]["bytes_down"], 10_000, idle)
        top = yield self.usage(top=1, key="total")
        self.assertEqual([u["ip"] for u in top["clients"]], [ip1])
        self.assertGreaterEqual(top["uplink"]["total"]["bytes_down"], SIZE)

        # the file holds it (the store writes each sample as it comes)
        def stored():
            last = rrdtool.lastupdate(self.client_file(1))["ds"]["bytes_down"]
            return last is not None and last >= down
        yield self.until(lambda: deferToThread(stored), "the download in the file")
        before = self.downloaded(self.client_file(1), started, int(time.time()))
        self.assertGreater(before, SIZE * 0.95)
        self.assertLess(before, SIZE * 1.05)
        self.assertLess(self.downloaded(self.client_file(2), started, int(time.time())), 10_000)
        self.assertTrue(os.path.exists(layout.uplink_file(self.directory)))
        counters = yield self.counters()
        self.assertEqual((counters["errors"], counters["store_errors"]), (0, 0), counters)

        # stop and start again: the rows are kept, sampling goes on
        stopped_at = int(time.time())
        self.stats_bus.close()
        self.stats.signal("TERM")
        yield self.stats.when_ended()
        last = rrdtool.last(self.client_file(1))
        yield self.start_stats()
        yield self.until(lambda: deferToThread(
            lambda: rrdtool.last(self.client_file(1)) > last + 1), "samples after the restart")
        counters = yield self.counters()
        self.assertEqual(counters["store_created"], 0, counters)
        self.assertEqual(counters["store_errors"], 0, counters)
        after = self.downloaded(self.client_file(1), started, stopped_at)
        self.assertAlmostEqual(after, before, delta=SIZE * 0.01)
