"""
Tests for netsuite.lab.peers: each real server starts in the lab's
upstream, answers a real client in a client namespace, and stops leaving
no process and no directory.
"""

import os
import subprocess
import sys
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from netsuite.lab.dnspeers import IodinedPeer, UnboundPeer, iodine_tunnel
from netsuite.lab.peers import DovecotPeer, HttpPeer, PeerError, SlapdPeer, SmtpPeer

from .labs import make_lab, need


class PeerTests(SynchronousTestCase):
    def setUp(self):
        self.lab = make_lab(self, clients=2, addresses=True)

    def start(self, peer):
        self.addCleanup(peer.stop)
        peer.start()
        self.assertLess(peer.started_in, 5)
        self.assertTrue(peer.running)
        return peer

    def assertStopsCleanly(self, peer):
        pid, directory = peer.pid, peer.directory
        self.assertTrue(os.path.isdir(directory))
        peer.stop()
        self.assertFalse(peer.running)
        self.assertFalse(os.path.exists(directory))
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
        self.assertEqual(self.lab.pids("up"), [])
        peer.stop()

    def client(self, argv, role="c1", timeout=10, input=None):
        kwargs = {} if input is None else {"input": input}
        return self.lab.exec(role, argv, timeout=timeout, **kwargs)

    def test_http(self):
        """
        The HTTP peer answers curl from a client with its body and records
        the request, with the client's own (un-NATed) address.
        """
        need("curl")
        web = self.start(HttpPeer(self.lab.netns("up"), self.lab.internet, body="known body\n"))
        result = self.client(["curl", "-sS", "-m", "5", web.url + "probe"])
        self.assertEqual((result.returncode, result.stdout), (0, "known body\n"), result.stderr)
        self.assertEqual(web.requests(), [{"method": "GET", "path": "/probe",
                                           "host": self.lab.internet,
                                           "client": self.lab.client_address(1)}])
        self.assertStopsCleanly(web)

    def test_smtp(self):
        """
        The SMTP sink stores one message per DATA with its envelope, and
        the test can wait for it.
        """
        need("curl")
        sink = self.start(SmtpPeer(self.lab.netns("up"), self.lab.internet))
        message = "From: a@lan.test\r\nSubject: hello\r\n\r\nbody line\r\n"
        result = self.client(["curl", "-sS", "-m", "5", f"smtp://{self.lab.internet}",
                              "--mail-from", "a@lan.test", "--mail-rcpt", "b@up.test",
                              "--mail-rcpt", "c@up.test", "-T", "-"], role="c2",
                             input=message)
        self.assertEqual(result.returncode, 0, result.stderr)
        [stored] = sink.wait_for_messages(1)
        self.assertEqual(stored["mail_from"], "a@lan.test")
        self.assertEqual(stored["rcpt_to"], ["b@up.test", "c@up.test"])
        self.assertEqual(stored["client"], self.lab.client_address(2))
        self.assertIn(b"Subject: hello\r\n", stored["data"])
        self.assertIn(b"body line", stored["data"])
        self.assertStopsCleanly(sink)

    def test_smtp_smtplib(self):
        """
        A Python smtplib client in a client namespace delivers too.
        """
        script = textwrap.dedent(f"""
            import smtplib
            with smtplib.SMTP("{self.lab.internet}", 25, timeout=5) as s:
                s.sendmail("x@lan.test", ["y@up.test"], "Subject: lib\\r\\n\\r\\nhi\\r\\n")
        """)
        sink = self.start(SmtpPeer(self.lab.netns("up"), self.lab.internet))
        result = self.client([sys.executable, "-c", script])
        self.assertEqual(result.returncode, 0, result.stderr)
        [stored] = sink.wait_for_messages(1)
        self.assertEqual(stored["rcpt_to"], ["y@up.test"])

    def test_dovecot(self):
        """
        dovecot serves a delivered message over POP3 and IMAP to the test
        user, refuses a wrong password, and stops with all its children.
        """
        need("curl", "dovecot")
        mail = self.start(DovecotPeer(self.lab.netns("up"), users={"alice": "secret"},
                                      auth_failure_delay=0))
        mail.add_message("alice", "From: b@up.test\nSubject: first\n\nhello alice\n")
        host = self.lab.internet
        pop = self.client(["curl", "-sS", "-m", "5", f"pop3://alice:secret@{host}/1"])
        self.assertEqual(pop.returncode, 0, pop.stderr)
        self.assertIn("hello alice", pop.stdout)
        imap = self.client(["curl", "-sS", "-m", "5", f"imap://alice:secret@{host}/INBOX",
                            "-X", "EXAMINE INBOX"], role="c2")
        self.assertEqual(imap.returncode, 0, imap.stderr)
        self.assertIn("* 1 EXISTS", imap.stdout)
        wrong = self.client(["curl", "-sS", "-m", "5", f"pop3://alice:wrong@{host}/1"])
        self.assertEqual(wrong.returncode, 67, wrong.stderr)  # login denied
        self.assertGreater(len(self.lab.pids("up")), 1)  # master + children
        self.assertStopsCleanly(mail)

    def test_slapd(self):
        """
        slapd answers ldapsearch for host entries loaded at start or added
        later; paused, it accepts and never answers; resumed, it answers.
        """
        need("ldapsearch", "ldapadd", "slapd", "slapadd")
        lab = self.lab
        ldap = self.start(SlapdPeer(lab.netns("up"), lab.internet,
                                    hosts=[("c1", lab.client_mac(1), lab.client_address(1))]))
        ldap.add_host("c2", lab.client_mac(2), lab.client_address(2))

        def search(mac, timeout=10):
            return self.client(["ldapsearch", "-x", "-LLL", "-H", ldap.url, "-b",
                                ldap.hosts_dn, f"(macAddress={mac})", "ipHostNumber"],
                               role="c2", timeout=timeout)
        for i in (1, 2):
            result = search(lab.client_mac(i))
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn(f"ipHostNumber: {lab.client_address(i)}", result.stdout)
        ldap.pause()
        self.assertRaises(subprocess.TimeoutExpired, search, lab.client_mac(1), 1)
        ldap.resume()
        self.assertEqual(search(lab.client_mac(1)).returncode, 0)
        ldap.pause()  # stop() must end a paused server too
        self.assertStopsCleanly(ldap)

    def test_unbound(self):
        """
        unbound answers its names with their addresses and TTL, another
        name under test. with NXDOMAIN at once, and logs each query with
        the client's address.
        """
        need("unbound", "dig")
        up = self.lab.layout.wan_up_address
        dns = self.start(UnboundPeer(self.lab.netns("up"), up, ttl=60,
                                     names={"x.test": self.lab.internet,
                                            "two.test": ["198.51.100.7", "198.51.100.8"]},
                                     wildcards={"any.test": "198.51.100.9"}))
        dig = ["dig", "+time=2", "+tries=1", "+noall", "+answer", "+comments", f"@{up}"]
        result = self.client([*dig, "x.test"])
        self.assertIn(f"x.test.\t\t\t60\tIN\tA\t{self.lab.internet}", result.stdout)
        result = self.client([*dig, "+short", "two.test"])
        self.assertEqual(sorted(result.stdout.split()), ["198.51.100.7", "198.51.100.8"])
        result = self.client([*dig, "+tcp", "nothing.test"])
        self.assertIn("status: NXDOMAIN", result.stdout)
        result = self.client([*dig, "+short", "q1234.any.test"])
        self.assertEqual(result.stdout.split(), ["198.51.100.9"])
        self.assertEqual(dns.queries(), [(self.lab.client_address(1), "x.test", "A"),
                                         (self.lab.client_address(1), "two.test", "A"),
                                         (self.lab.client_address(1), "nothing.test", "A"),
                                         (self.lab.client_address(1), "q1234.any.test", "A")])
        self.assertStopsCleanly(dns)

    def test_iodine(self):
        """
        The iodine client in a client namespace gets a working tunnel to
        iodined through the upstream resolver that delegates the tunnel's
        domain to it, and is gone afterwards; with the wrong password
        there is no tunnel (within the time allowed).
        """
        need("unbound", "iodine", "iodined")
        up = self.lab.layout.wan_up_address
        tunnel = self.start(IodinedPeer(self.lab.netns("up"), self.lab.internet,
                                        password="right"))
        dns = self.start(UnboundPeer(self.lab.netns("up"), up,
                                     delegate={"t.test": self.lab.internet}))
        got = iodine_tunnel(self.lab.netns("c1"), up, password="right")
        self.assertTrue(got.working, got.output)
        self.assertIn((self.lab.client_address(1), "NULL"),
                      [(client, kind) for client, _, kind in dns.queries()])
        self.assertEqual(self.lab.pids("c1"), [])
        got = iodine_tunnel(self.lab.netns("c1"), up, password="wrong", timeout=5)
        self.assertFalse(got.up, got.output)
        self.assertEqual(self.lab.pids("c1"), [])
        tunnel.stop()
        self.assertStopsCleanly(dns)

    def test_start_failure(self):
        """
        A peer that cannot bind fails start() with its output, leaving
        nothing behind.
        """
        first = self.start(HttpPeer(self.lab.netns("up"), self.lab.internet, port=8080))
        second = HttpPeer(self.lab.netns("up"), self.lab.internet, port=8080)
        error = self.assertRaises(PeerError, second.start)
        self.assertIn("Address already in use", str(error))
        self.assertIsNone(second.directory)
        self.assertFalse(second.running)
        self.assertEqual(self.lab.pids("up"), [first.pid])

    def test_wait_bounded(self):
        """
        Waiting for a line that never comes fails at the deadline.
        """
        sink = self.start(SmtpPeer(self.lab.netns("up"), self.lab.internet))
        error = self.assertRaises(PeerError, sink.wait_for_messages, 1, 0.2)
        self.assertIn("stayed silent", str(error))

    def test_signal_needs_running(self):
        """
        pause() on a peer that is not running says so.
        """
        self.assertRaises(PeerError, SlapdPeer(self.lab.netns("up")).pause)
