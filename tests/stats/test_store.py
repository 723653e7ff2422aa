"""
Tests for L{netsuite.stats.store}: real rrdtool files in a temp dir,
written through a SyncRunner or a HeldRunner.
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from netsuite.stats import layout
from netsuite.stats.model import Totals, Traffic
from netsuite.stats.store import KEEP_SECONDS, Store, StoreService
from netsuite.testing import HeldRunner, SyncRunner

try:
    import rrdtool
except ImportError:  # pragma: no cover
    rrdtool = None

T = 1_700_000_000
MAC_A, MAC_B = "02:4e:00:00:00:0b", "02:4e:00:00:00:0c"


def reading(mac, down, up=0, packets=0):
    return (mac, Totals(up, down, packets, packets))


class StoreTests(SynchronousTestCase):
    if rrdtool is None:
        skip = "the rrdtool module is not installed (scripts/setup.sh links it into .venv)"

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="statscore-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.traffic = Traffic()
        self.runner = SyncRunner()
        self.store = Store(self.directory, 10, self.runner)
        self.store.subscribe(self.traffic)

    def file(self, mac):
        return layout.client_file(self.directory, mac)

    def rates(self, path, start, end):
        (first, _, step), names, rows = rrdtool.fetch(path, "AVERAGE", "-r", "10",
                                                      "-s", str(start), "-e", str(end))
        return {first + step * (i + 1): row for i, row in enumerate(rows)}

    def test_files_and_rates(self):
        """
        Each client's raw counters go to its MAC's file, the uplink's to
        uplink.rrd; rrdtool makes the rates (DERIVE).
        """
        self.traffic.update(T, {"10.89.0.11": reading(MAC_A, 0), "10.89.0.12": reading(MAC_B, 0)},
                            uplink=Totals(0, 0, 0, 0))
        self.traffic.update(T + 10, {"10.89.0.11": reading(MAC_A, 40_000, 1000, 20),
                                     "10.89.0.12": reading(MAC_B, 0)},
                            uplink=Totals(2000, 80_000, 30, 60))
        self.assertTrue(os.path.exists(self.file(MAC_A)))
        self.assertTrue(os.path.exists(layout.uplink_file(self.directory)))
        self.assertEqual(rrdtool.lastupdate(self.file(MAC_A))["ds"],
                         {"bytes_up": 1000.0, "bytes_down": 40_000.0, "packets_up": 20.0,
                          "packets_down": 20.0})
        row = self.rates(self.file(MAC_A), T, T + 10)[T + 10]
        self.assertEqual(row, (100.0, 4000.0, 2.0, 2.0))
        self.assertEqual(self.rates(self.file(MAC_B), T, T + 10)[T + 10], (0.0, 0.0, 0.0, 0.0))
        self.assertEqual(self.rates(layout.uplink_file(self.directory), T, T + 10)[T + 10],
                         (200.0, 8000.0, 3.0, 6.0))
        self.assertEqual(self.store.counters["created"], 3)
        self.assertEqual(self.store.counters["batches"], 2)
        self.assertEqual(self.runner.calls, 2)
        self.assertEqual(self.store.counters["errors"], 0)

    def test_size_bounded(self):
        """A file's size is fixed: its values and a few KB of header."""
        self.traffic.update(T, {"10.89.0.11": reading(MAC_A, 0)})
        size = os.path.getsize(self.file(MAC_A))
        self.assertGreaterEqual(size, layout.BYTES_PER_FILE)
        self.assertLess(size, layout.BYTES_PER_FILE + 8192)
        for i in range(1, 50):
            self.traffic.update(T + 10 * i, {"10.89.0.11": reading(MAC_A, i * 1000)})
        self.assertEqual(os.path.getsize(self.file(MAC_A)), size)

    def test_reset_is_unknown_not_a_spike(self):
        """A counter that went back (a firewall restart) is an unknown step."""
        for i, down in enumerate([0, 10_000, 20_000, 500, 10_500]):
            self.traffic.update(T + 10 * i, {"10.89.0.11": reading(MAC_A, down)})
        rows = self.rates(self.file(MAC_A), T, T + 40)
        self.assertEqual(rows[T + 20][1], 1000.0)
        self.assertIsNone(rows[T + 30][1])
        self.assertEqual(rows[T + 40][1], 1000.0)

    def test_restart_keeps_history(self):
        """
        A new store (a restart) keeps an existing file and writes on;
        values not newer than its last update (a clock that went back) are
        skipped and counted, not errors.
        """
        for i in range(3):
            self.traffic.update(T + 10 * i, {"10.89.0.11": reading(MAC_A, 1000 * i)})
        store = Store(self.directory, 10, SyncRunner())
        store.add(T + 10, [self.traffic.clients["10.89.0.11"]])
        self.assertEqual(store.counters, dict(store.counters, stale=1, errors=0, created=0))
        self.traffic.clients["10.89.0.11"].raw = Totals(0, 4000, 0, 0)
        store.add(T + 40, [self.traffic.clients["10.89.0.11"]])
        self.assertEqual(rrdtool.last(self.file(MAC_A)), T + 40)
        rows = self.rates(self.file(MAC_A), T, T + 40)
        self.assertEqual(rows[T + 20][1], 100.0)
        self.assertEqual(rows[T + 40][1], 100.0)

    def test_one_batch_at_a_time(self):
        """
        Samples that come while a batch is written wait and go in the next
        batch together (a file takes several values at once); past
        max_waiting, the oldest is dropped and counted.
        """
        runner = HeldRunner()
        store = Store(self.directory, 10, runner, max_waiting=2)
        traffic = Traffic()
        store.subscribe(traffic)
        for i in range(5):
            traffic.update(T + 10 * i, {"10.89.0.11": reading(MAC_A, 1000 * i)})
        self.assertEqual(len(runner.calls), 1)
        self.assertEqual(store.counters["dropped"], 2)
        done = store.flush()
        runner.run_next()
        self.assertEqual(len(runner.calls), 1)
        self.assertNoResult(done)
        runner.run_next()
        self.successResultOf(done)
        self.assertEqual(store.counters["batches"], 2)
        rows = self.rates(self.file(MAC_A), T, T + 40)
        # T, then T + 30 and T + 40 together (T + 10 and T + 20 dropped,
        # within the heartbeat: rrdtool spreads the rate over the gap).
        self.assertEqual([rows[T + 10 * i][1] for i in range(1, 5)], [100.0] * 4)

    def test_broken_file(self):
        """
        A file rrdtool cannot write is counted and logged once; the other
        files are written; it is retried at the next sample.
        """
        os.makedirs(os.path.dirname(self.file(MAC_A)))
        with open(self.file(MAC_A), "w") as f:
            f.write("not an rrd")
        for i in range(2):
            self.traffic.update(T + 10 * i, {"10.89.0.11": reading(MAC_A, 0),
                                             "10.89.0.12": reading(MAC_B, 0)})
        self.assertEqual(self.store.counters["errors"], 2)
        self.assertEqual(rrdtool.last(self.file(MAC_B)), T + 10)
        os.unlink(self.file(MAC_A))
        self.traffic.update(T + 20, {"10.89.0.11": reading(MAC_A, 0)})
        self.assertEqual(rrdtool.last(self.file(MAC_A)), T + 20)
        self.assertEqual(self.store.counters["errors"], 2)

    def test_prune(self):
        """
        Files not written for longer than the longest archive are removed
        (they hold nothing), others kept; the service prunes and, at
        stop, waits for the writes.
        """
        self.traffic.update(T, {"10.89.0.11": reading(MAC_A, 0), "10.89.0.12": reading(MAC_B, 0)})
        os.utime(self.file(MAC_A), (T - KEEP_SECONDS - 1, T - KEEP_SECONDS - 1))
        from twisted.internet.task import Clock
        clock = Clock()
        clock.advance(T)
        service = StoreService(self.store, clock)
        service.startService()
        clock.advance(60)
        self.assertFalse(os.path.exists(self.file(MAC_A)))
        self.assertTrue(os.path.exists(self.file(MAC_B)))
        self.assertEqual(self.store.counters["pruned"], 1)
        self.successResultOf(service.stopService())
