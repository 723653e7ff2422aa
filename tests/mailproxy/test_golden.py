# -*- test-case-name: tests.mailproxy.test_golden -*-
"""
The golden transcripts (C{transcripts/*.txt}, recorded from the lab's real
dovecot by C{tests/mailproxy/record.py}) replayed through the IMAP and POP3
watchers and the TLS heuristic's, as recorded and split at every byte
boundary.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.imap import imap
from netsuite.mailproxy.pop3 import pop3
from netsuite.mailproxy.tls import tls_login
from netsuite.proxy.filters import CLIENT, SERVER, Connection

from .record import SERVER_NAME
from .session import CONNECTION, HERE, Chunk, TranscriptTests, every_split, load, play, values


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
    "imap-starttls.txt": (imap, [("tls", {"protocol": "imap"})]),
    "pop3-stls.txt": (pop3, [("tls", {"protocol": "pop3"})]),
}

TLS_EXPECTED: Dict[str, Tuple[int, str]] = {
    "imaps.txt": (993, "imap"),
    "pop3s.txt": (995, "pop3"),
}
"""The TLS sessions the heuristic's watch reads: their port and protocol."""


def check_tls(test: SynchronousTestCase, name: str, chunks: List[Chunk]) -> None:
    """
    C{chunks} (a recorded IMAPS or POP3S session) give one tls-session with
    the name the client asked for, however split, and both filters done.
    """
    port, protocol = TLS_EXPECTED[name]
    conn = Connection(CONNECTION.client, (CONNECTION.server[0], port))
    totals = {d: sum(len(data) for w, data in chunks if w == d) for d in (CLIENT, SERVER)}
    for variant in every_split(chunks):
        events, client, server = play(tls_login, variant, conn)
        test.assertEqual([(e.name, e.values["protocol"], e.values["server_name"])
                          for e in events], [("tls-session", protocol, SERVER_NAME)], name)
        for key, direction in (("client_bytes", CLIENT), ("server_bytes", SERVER)):
            test.assertTrue(0 < events[0].values[key] < totals[direction])
        test.assertTrue(client.done and server.done)


class GoldenTests(TranscriptTests, SynchronousTestCase):
    secrets = (b"secret", b"wrong")

    def test_transcripts(self) -> None:
        """Each recorded session gives its events however its reads are split."""
        for name, (make, expected) in sorted(EXPECTED.items()):
            self.check(load(name), expected, make=make)

    def test_tls_sessions(self) -> None:
        """The heuristic's watch reads the recorded IMAPS and POP3S sessions."""
        for name in sorted(TLS_EXPECTED):
            check_tls(self, name, load(name))

    def test_other_protocol(self) -> None:
        """
        An IMAP server seen by the POP3 watcher, a POP3 one by the IMAP
        watcher, an SMTP server, IMAPS and POP3S by both: not-protocol
        (with the server's first 32 bytes, printable), no login, both
        filters done.
        """
        for name, make, protocol in [("imap-login.txt", pop3, "pop3"),
                                     ("pop3-user.txt", imap, "imap"),
                                     ("smtp-greeting.txt", imap, "imap"),
                                     ("smtp-greeting.txt", pop3, "pop3"),
                                     ("imaps.txt", imap, "imap"),
                                     ("pop3s.txt", pop3, "pop3")]:
            chunks = load(name)
            events, client, server = play(make, chunks)
            first = "".join(chr(b) if 32 <= b < 127 else "."
                            for b in next(d for w, d in chunks if w == SERVER)[:32])
            self.assertEqual(values(events), [("not-protocol", {"protocol": protocol,
                                                                "first": first})], name)
            self.assertTrue(client.done and server.done)

    def test_all_replayed(self) -> None:
        """Every recorded transcript is checked here."""
        self.assertEqual(sorted(os.listdir(HERE)),
                         sorted(list(EXPECTED) + list(TLS_EXPECTED) + ["smtp-greeting.txt"]))
