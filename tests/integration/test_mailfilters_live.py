"""
The IMAP and POP3 watchers, and the TLS heuristic's, on sessions with the
lab's real dovecot run now (not the golden transcripts of
tests/mailproxy/transcripts, recorded once): each scenario of
tests/mailproxy/record.py, against dovecot (with and without TLS) and the
SMTP sink on loopback (the recording's ports plus 200: 50343, 50310, 50325,
50346, 50311, 51193, 51195), replayed through the
filters, gives the events the golden test expects. A dovecot (or curl)
that changed its ways fails here first.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.lab.labs import need
from tests.mailproxy.record import CURL_SCENARIOS, SCENARIOS, Recorder
from tests.mailproxy.session import every_split, play, values
from tests.mailproxy.test_golden import EXPECTED, TLS_EXPECTED, check_tls
from netsuite.mailproxy.imap import imap
from netsuite.mailproxy.pop3 import pop3


class LiveDovecotTests(SynchronousTestCase):
    def test_scenarios(self):
        """Every recorded scenario, run now, gives its golden events however split."""
        need("dovecot", "curl")
        recorder = Recorder(offset=200)
        with recorder:
            for name in sorted(EXPECTED):
                make, expected = EXPECTED[name]
                chunks = recorder.capture(name)
                for variant in every_split(chunks):
                    events, _, _ = play(make, variant)
                    self.assertEqual(values(events), expected, (name, variant))
            for name in sorted(TLS_EXPECTED):
                check_tls(self, name, recorder.capture(name))
            greeting = recorder.capture("smtp-greeting.txt")
        for make in (imap, pop3):
            events, client, server = play(make, greeting)
            self.assertEqual([e.name for e in events], ["not-protocol"])
        self.assertEqual(sorted(list(EXPECTED) + list(TLS_EXPECTED) + ["smtp-greeting.txt"]),
                         sorted(list(SCENARIOS) + list(CURL_SCENARIOS)))
        self.assertFalse(recorder.dovecot.running or recorder.tls_dovecot.running)
