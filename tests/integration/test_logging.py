"""
The JSON log of a real twistd daemon: C{[log] json_file = "-"} writes
each event once to the process's standard output, whether twistd logs to
a file or to standard output itself.
"""

import json
import os
import signal

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from netsuite.bus import connect

from .procs import TWISTD, socket_dir, spawn, write_config


class JsonToStandardOutputTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def run_daemon(self, *log_argv):
        sockets = socket_dir(self)
        config = write_config(self, '[log]\njson_file = "-"\n')
        daemon = spawn(self, "netsuite", TWISTD + ["-n", "--pidfile=", *log_argv, "netsuite",
                                                   "--config", config, "--name", "jl",
                                                   "--socket-dir", sockets])
        yield daemon.when_line(r'"netsuite_event": "ready"', timeout=30)
        bus = connect("jl", socket_dir=sockets, reactor=reactor)
        self.addCleanup(bus.close)
        yield bus.send("/system/log", {"text": "one line from a peer", "level": "warn"})
        yield daemon.when_line("one line from a peer", timeout=10)
        daemon.signal("TERM")
        code = yield daemon.when_ended()
        self.assertEqual(code, -signal.SIGTERM)  # twistd ends by the signal that stopped it
        return daemon

    @inlineCallbacks
    def test_with_a_log_file(self):
        """
        With C{-l FILE}, standard output has the JSON lines, each event
        once, and the text log stays small (before, each JSON line was
        logged again, escaped again: gigabytes in seconds).
        """
        logfile = os.path.abspath(self.mktemp())
        daemon = yield self.run_daemon("-l", logfile)
        events = [json.loads(line) for line in daemon.lines()]
        texts = [e.get("text") for e in events]
        self.assertEqual(texts.count("one line from a peer"), 1)
        self.assertLess(len(events), 40)
        self.assertLess(os.path.getsize(logfile), 64 * 1024)
        with open(logfile) as f:
            self.assertIn("one line from a peer", f.read())

    @inlineCallbacks
    def test_with_the_log_on_standard_output(self):
        """
        Without C{-l}, twistd's text log and the JSON lines share standard
        output, each event once in each form.
        """
        daemon = yield self.run_daemon()
        lines = daemon.lines()
        json_lines = [json.loads(line) for line in lines if line.startswith("{")]
        self.assertEqual([e.get("text") for e in json_lines].count("one line from a peer"), 1)
        self.assertEqual(len([line for line in lines if "one line from a peer" in line]), 2)
        self.assertLess(len(lines), 80)
