"""
The round-robin files' layout (L{netsuite.stats.layout}).
"""

from twisted.trial.unittest import SynchronousTestCase

from netsuite.stats import layout


class LayoutTests(SynchronousTestCase):
    def test_valid_step(self):
        self.assertEqual([s for s in range(0, 400) if layout.valid_step(s)],
                         [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 25, 30, 50, 60, 75, 100, 150, 300])
        self.assertFalse(layout.valid_step(10.0))

    def test_create_args_at_ten_seconds(self):
        self.assertEqual(layout.create_args(10), [
            "DS:bytes_up:DERIVE:30:0:U", "DS:bytes_down:DERIVE:30:0:U",
            "DS:packets_up:DERIVE:30:0:U", "DS:packets_down:DERIVE:30:0:U",
            "RRA:AVERAGE:0.5:1:1080",
            "RRA:AVERAGE:0.5:30:2304", "RRA:MAX:0.5:30:2304",
            "RRA:AVERAGE:0.5:360:840", "RRA:MAX:0.5:360:840",
            "RRA:AVERAGE:0.5:8640:400", "RRA:MAX:0.5:8640:400"])

    def test_size_is_fixed(self):
        self.assertEqual(layout.ROWS, 1080 + 2 * 2304 + 2 * 840 + 2 * 400)
        self.assertEqual(layout.BYTES_PER_FILE, layout.ROWS * 4 * 8)
        # A longer step keeps the same history in fewer raw rows.
        self.assertEqual(layout.rows(60), 180 + 2 * 2304 + 2 * 840 + 2 * 400)

    def test_bad_step(self):
        self.assertRaises(ValueError, layout.create_args, 7)

    def test_files(self):
        self.assertEqual(layout.client_file("/s", "02:00:00:00:00:0a"),
                         "/s/clients/02-00-00-00-00-0a.rrd")
        self.assertEqual(layout.uplink_file("/s"), "/s/uplink.rrd")
        for bad in ("02:00:00:00:00:0A", "../../etc", "02-00-00-00-00-0a", ""):
            self.assertRaises(ValueError, layout.client_file, "/s", bad)
