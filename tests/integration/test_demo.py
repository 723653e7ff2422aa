"""
The README's main command: the demo runs end to end and shows what it says.
"""

import os
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab.peers import missing

from ..lab.labs import lab_name
from .procs import spawn


class DemoTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_demo(self):
        """
        The demo shows c1 on the portal, then on the internet once
        authorized over the bus; c2 refused by the hook script; c1 back on
        the portal after logout; and it exits 0.
        """
        if os.getuid() != 0:
            raise SkipTest("the demo builds network namespaces: needs root")
        if missing("curl"):
            raise SkipTest("not installed: curl")
        demo = spawn(self, "demo", [sys.executable, "-m", "netsuite.lab.demo",
                                    "--name", lab_name(self)])
        code = yield demo.ended
        out = demo.output()
        self.assertEqual(code, 0, out)
        replies = [line.strip() for line in out.splitlines() if line.strip().startswith("->")]
        self.assertEqual(replies[0], "-> the captive portal")
        self.assertIn("Couldn't connect to server", replies[1])
        self.assertIn('"authorized": true', replies[2])
        self.assertEqual(replies[3], "-> hello from the internet")
        self.assertEqual(replies[4], '-> {"authorized": false, "reason": "banned by deny_mac.py"}')
        self.assertEqual(replies[5], "-> the captive portal")
        self.assertEqual(replies[-1], "-> the captive portal")
