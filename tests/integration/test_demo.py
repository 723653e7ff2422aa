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
        The demo shows c1 getting an address from netsuite-dhcp, redirected
        to the portal, its DNS (asked of an upstream resolver) answered by
        netsuite-dns and a tunnel's TXT query refused, logging in and
        reaching the internet; c2's login
        refused because of the hook script; c1 captive again after the
        operator's logout over the bus; and it exits 0.
        """
        if os.getuid() != 0:
            raise SkipTest("the demo builds network namespaces: needs root")
        if missing("curl", "udhcpc", "dig"):
            raise SkipTest("not installed: curl, udhcpc, dig")
        demo = spawn(self, "demo", [sys.executable, "-m", "netsuite.lab.demo",
                                    "--name", lab_name(self)])
        code = yield demo.when_ended()
        out = demo.output()
        self.assertEqual(code, 0, out)
        replies = [line.strip() for line in out.splitlines() if line.strip().startswith("->")]
        self.assertEqual(replies[0], "-> eth0 got 10.89.0.100 from netsuite-dhcp "
                                     "(router 10.89.0.1, lease 3600 s)")
        self.assertEqual(replies[1], "-> HTTP/1.1 307 Temporary Redirect; Location: "
                                     "http://10.89.0.1:5280/login?url=http%3A%2F%2F198.51.100.1%2F")
        self.assertIn("Couldn't connect to server", replies[2])
        self.assertEqual(replies[3:5], ["-> NOERROR 198.51.100.1", "-> REFUSED"])
        self.assertEqual(replies[5:7], ["-> 303 http://198.51.100.1/",
                                        "-> hello from the internet"])
        self.assertEqual(replies[8], "-> 403")
        self.assertEqual(replies[9], "-> HTTP/1.1 307 Temporary Redirect (still captive)")
        self.assertEqual(replies[11], '-> {"deauthorized": true, "ip": "10.89.0.100"}')
        self.assertEqual(replies[12], "-> HTTP/1.1 307 Temporary Redirect")
