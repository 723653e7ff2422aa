"""
The README's main command: the demo runs end to end and shows what it says.
"""

import json
import os
import re
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
        refused because of the hook script, and accepted once it exited;
        c1's SMTP refused (a reset) until its IMAP login through the mail
        proxy, the /mailproxy/login and /smtpgate/opened events of that
        login (no password in them), c1's message then delivered to the
        sink, c1's SMTP to another server and c2's still refused; c1
        captive again after the operator's logout over the bus; and it
        exits 0.
        """
        if os.getuid() != 0:
            raise SkipTest("the demo builds network namespaces: needs root")
        if missing("curl", "udhcpc", "dig", "dovecot"):
            raise SkipTest("not installed: curl, udhcpc, dig, dovecot")
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
        self.assertEqual(replies[11], "-> 303 http://198.51.100.1/")  # the hook exited
        # the SMTP gate
        refused = "Couldn't connect to server"  # curl's (7): a reset, not a time-out
        self.assertIn("port 25", replies[12])
        self.assertIn(refused, replies[12])
        self.assertEqual(replies[13], '-> * LIST (\\HasNoChildren) "." INBOX')
        login = self.event(replies[14], "ap:/mailproxy/login")
        self.assertRegex(login.pop("mac"), r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
        self.assertEqual(login, {"ip": "10.89.0.100", "server": "198.51.100.1", "port": 143,
                                 "protocol": "imap", "user": "alice", "outcome": "success",
                                 "evidence": "seen"})
        self.assertNotIn("secret", replies[14])
        self.assertEqual(self.event(replies[15], "ap:/smtpgate/opened"), {
            "ip": "10.89.0.100", "servers": ["198.51.100.1"], "seconds": 900,
            "reason": "server"})
        self.assertEqual(replies[16:18], [
            "-> sent", "-> the SMTP sink upstream stored 0001 from=c1@lan.test "
            "to=bob@upstream.test (Subject: hello from c1)"])
        self.assertIn("Failed to connect to 192.0.2.1 port 25", replies[18])  # another server
        self.assertIn(refused, replies[18])
        self.assertIn("Failed to connect to 198.51.100.1 port 25", replies[19])  # c2
        self.assertIn(refused, replies[19])
        self.assertEqual(replies[20], '-> {"deauthorized": true, "ip": "10.89.0.100"}')
        self.assertEqual(replies[21], "-> HTTP/1.1 307 Temporary Redirect")
        self.assertEqual(len(replies), 22, out)

    def event(self, reply, path):
        """The message of a C{-> PROC:/path {json}} line the demo printed."""
        match = re.fullmatch(r"-> (\S+) (\{.*\})", reply)
        self.assertIsNotNone(match, reply)
        self.assertEqual(match.group(1), path)
        return json.loads(match.group(2))
