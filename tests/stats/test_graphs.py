"""
The operator's graphs: which file a URL names, rrdtool's arguments, and
a PNG drawn from a real round-robin file (L{netsuite.stats.graphs}).
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from netsuite.stats import graphs, layout

from .png import Image, rgb, size

T0 = 1_700_000_000
"""When the test files' traffic starts (a fixed time: the graphs end at a time of the test's)."""


def make_file(path, step=1, seconds=600, down=125_000, up=12_500, start=T0):
    """
    A file of C{layout} with C{seconds} of steady traffic from C{start}
    (bytes per second each way); none when C{seconds} is 0.
    """
    import rrdtool
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rrdtool.create(path, "--start", str(start - 1), "--step", str(step),
                   *layout.create_args(step))
    total_down = total_up = 0
    lines = []
    for t in range(start, start + seconds, step):
        lines.append(f"{t}:{total_up}:{total_down}:{t - start}:{t - start}")
        total_down += down * step
        total_up += up * step
    for at in range(0, len(lines), 500):
        rrdtool.update(path, *lines[at:at + 500])
    return path


class FileTests(SynchronousTestCase):
    def test_names(self):
        """
        A URL names the uplink or a client by its MAC (dashes or colons,
        any case); anything else names no file.
        """
        d = "/var/lib/netsuite/stats"
        self.assertEqual(graphs.graph_file(d, "uplink"), layout.uplink_file(d))
        mac = "02:4e:00:00:00:0b"
        for name in (mac, "02-4e-00-00-00-0b", "02-4E-00-00-00-0B"):
            self.assertEqual(graphs.graph_file(d, name), layout.client_file(d, mac))
        for bad in ("", "..", "../uplink", "uplink.rrd", "02-4e-00-00-00", "02-4e-00-00-00-0b/..",
                    "02:4e:00:00:00:0g", "/etc/passwd", "02-4e-00-00-00-0b\x00", "%2e%2e"):
            self.assertIsNone(graphs.graph_file(d, bad), bad)


class ArgumentTests(SynchronousTestCase):
    def test_periods(self):
        """
        Each period starts that many seconds before the end, in bits per
        second of both directions, averages and maxima.
        """
        for period, seconds in (("hour", 3600), ("day", 86400), ("week", 604800)):
            args = graphs.graph_args("/d/uplink.rrd", "Uplink", period, end=T0)
            self.assertEqual(args[args.index("--start") + 1], f"end-{seconds}")
            self.assertEqual(args[args.index("--end") + 1], str(T0))
            self.assertEqual(args[args.index("--title") + 1], "Uplink")
            self.assertIn("DEF:down_bytes=/d/uplink.rrd:bytes_down:AVERAGE", args)
            self.assertIn("DEF:up_peak=/d/uplink.rrd:bytes_up:MAX", args)
            self.assertIn("CDEF:down=down_bytes,8,*", args)
            self.assertIn(f"AREA:down#{graphs.DOWN_COLOUR}:down", args)
            self.assertIn(f"LINE2:up#{graphs.UP_COLOUR}:up  ", args)
        self.assertRaises(KeyError, graphs.graph_args, "/d/uplink.rrd", "Uplink", "year")

    def test_escaped_path(self):
        """A colon in the file's path is escaped (it separates rrdtool's fields)."""
        args = graphs.graph_args("/a:b\\c/x.rrd", "x", "hour")
        self.assertIn("DEF:down_bytes=/a\\:b\\\\c/x.rrd:bytes_down:AVERAGE", args)


class RenderTests(SynchronousTestCase):
    """
    PNGs drawn by rrdtool from files made here.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="statsgraphs-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def draw(self, path, title="10.89.0.11 (02:4e:00:00:00:0b)", period="hour", end=T0 + 600):
        answer = graphs.render(graphs.graph_args(path, title, period, end=end))
        image = answer["image"]
        self.assertEqual(size(image), (answer["image_width"], answer["image_height"]))
        self.assertEqual((answer["graph_width"], answer["graph_height"]),
                         (graphs.WIDTH, graphs.HEIGHT))
        box = (answer["graph_left"], answer["graph_top"],
               answer["graph_left"] + answer["graph_width"],
               answer["graph_top"] + answer["graph_height"])
        return answer, Image(image), box

    def test_traffic(self):
        """
        Ten minutes of traffic in the last hour: a valid PNG of the size
        rrdtool says, whose plot holds the down colour over about a sixth
        of its width (the last ten minutes) and the up line, and whose
        first five sixths hold neither.
        """
        path = make_file(layout.client_file(self.directory, "02:4e:00:00:00:0b"))
        answer, image, (left, top, right, bottom) = self.draw(path)
        self.assertGreater(answer["image_width"], graphs.WIDTH)
        down, up = rgb(graphs.DOWN_COLOUR), rgb(graphs.UP_COLOUR)
        split = left + (right - left) * 5 // 6
        recent = (split + 3, top, right, bottom)
        self.assertGreater(image.count(down, recent), (right - split - 3) * (bottom - top) // 4)
        self.assertGreater(image.count(up, recent), right - split - 10)
        self.assertEqual(image.count(down, (left, top, split - 3, bottom)), 0)
        self.assertEqual(image.count(up, (left, top, split - 3, bottom)), 0)

    def test_no_traffic(self):
        """
        A file with no samples draws an empty plot (no down colour) and
        says no traffic in its legend (not "nan").
        """
        path = make_file(layout.uplink_file(self.directory), seconds=0)
        answer, image, box = self.draw(path, "Uplink")
        self.assertEqual(image.count(rgb(graphs.DOWN_COLOUR), box), 0)
        legends = [v for k, v in answer.items() if k.startswith("legend[")]
        self.assertIn("now    0.0  b/s", legends)
        self.assertFalse([text for text in legends if "nan" in text], legends)

    def test_longer_periods(self):
        """The day and week graphs draw from the same file (its consolidated rows)."""
        path = make_file(layout.uplink_file(self.directory), step=10, seconds=3600)
        for period in ("day", "week"):
            _, image, box = self.draw(path, "Uplink", period, end=T0 + 3600)
            self.assertGreater(image.count(rgb(graphs.DOWN_COLOUR), box), 0, period)

    def test_missing_file(self):
        """A missing file is rrdtool's error."""
        import rrdtool
        self.assertRaises(rrdtool.OperationalError, graphs.render,
                          graphs.graph_args(os.path.join(self.directory, "none.rrd"), "x", "hour"))
