# -*- test-case-name: tests.mailproxy.test_golden -*-
"""
The golden transcripts (C{transcripts/*.txt}, recorded from the lab's real
dovecot by C{tests/mailproxy/record.py}) replayed through the IMAP and POP3
watchers, as recorded and split at every byte boundary.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.imap import imap
from netsuite.mailproxy.pop3 import pop3

from .session import HERE, TranscriptTests, load, play, values


def login(protocol: str, outcome: str) -> Tuple[str, Dict[str, Any]]:
    return ("login", {"protocol": protocol, "user": "alice", "outcome": outcome,
                      "evidence": "seen"})


EXPECTED: Dict[str, Tuple[Any, List[Tuple[str, Dict[str, Any]]]]] = {
    "imap-login.txt": (imap, [login("imap", "failure"), login("imap", "success")]),
    "imap-literals.txt": (imap, [login("imap", "failure"), login("imap", "success")]),
    "imap-authenticate.txt": (imap, [login("imap", "failure"), login("imap", "success")]),
    "imap-pipelined.txt": (imap, [login("imap", "failure"), login("imap", "success")]),
    "pop3-user.txt": (pop3, [login("pop3", "failure"), login("pop3", "success")]),
    "pop3-auth.txt": (pop3, [login("pop3", "failure"), login("pop3", "success")]),
    "pop3-pipelined.txt": (pop3, [login("pop3", "failure"), login("pop3", "success")]),
    "pop3-in-use.txt": (pop3, [login("pop3", "in-use")]),
    "curl-imap-plain.txt": (imap, [login("imap", "success")]),
    "curl-imap-plain-wrong.txt": (imap, [login("imap", "failure")]),
    "curl-imap-sasl-ir.txt": (imap, [login("imap", "success")]),
    "curl-pop3-plain.txt": (pop3, [login("pop3", "success")]),
    "curl-pop3-login-wrong.txt": (pop3, [login("pop3", "failure")]),
    "curl-pop3-apop.txt": (pop3, [login("pop3", "success")]),
}


class GoldenTests(TranscriptTests, SynchronousTestCase):
    secrets = (b"secret", b"wrong")

    def test_transcripts(self) -> None:
        """Each recorded session gives its events however its reads are split."""
        for name, (make, expected) in sorted(EXPECTED.items()):
            self.check(load(name), expected, make=make)

    def test_other_protocol(self) -> None:
        """
        An IMAP server seen by the POP3 watcher, a POP3 one by the IMAP
        watcher, and an SMTP server by both: not-protocol (with the first
        32 bytes, printable), no login, both filters done.
        """
        for name, make, protocol in [("imap-login.txt", pop3, "pop3"),
                                     ("pop3-user.txt", imap, "imap"),
                                     ("smtp-greeting.txt", imap, "imap"),
                                     ("smtp-greeting.txt", pop3, "pop3")]:
            chunks = load(name)
            events, client, server = play(make, chunks)
            first = chunks[0][1][:32].replace(b"\r", b".").replace(b"\n", b".").decode()
            self.assertEqual(values(events), [("not-protocol", {"protocol": protocol,
                                                                "first": first})], name)
            self.assertTrue(client.done and server.done)

    def test_all_replayed(self) -> None:
        """Every recorded transcript is checked here."""
        self.assertEqual(sorted(os.listdir(HERE)),
                         sorted(list(EXPECTED) + ["smtp-greeting.txt"]))
