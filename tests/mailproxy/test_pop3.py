# -*- test-case-name: tests.mailproxy.test_pop3 -*-
"""
Tests for L{netsuite.mailproxy.pop3}: POP3 logins seen by two filters fed
transcripts split at every byte boundary (and where hypothesis splits).
"""

from __future__ import annotations

import base64
import hashlib
from functools import partial
from typing import Any, Dict, List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.pop3 import pop3
from netsuite.proxy.filters import CLIENT as C
from netsuite.proxy.filters import SERVER as S

from .session import CONNECTION, Chunk, TranscriptTests, play, values
from .test_imap import splits

BOUNDED = settings(max_examples=200, deadline=None, database=None)

GREETING = (S, b"+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n")
FAILED = b"-ERR [AUTH] Authentication failed.\r\n"
CAPA = (b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nUSER\r\n"
        b"SASL PLAIN LOGIN\r\n.\r\n")


def login(user: str, outcome: str) -> Tuple[str, Dict[str, Any]]:
    return ("login", {"protocol": "pop3", "user": user, "outcome": outcome,
                      "evidence": "seen"})


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class LoginTests(TranscriptTests, SynchronousTestCase):
    make = staticmethod(pop3)
    secrets = (b"secret", b"wrong", b"tanstaaf")

    def test_user_pass_wrong_then_right(self) -> None:
        """-ERR to PASS is a failure, +OK to the next PASS a success."""
        self.check([GREETING, (C, b"CAPA\r\n"), (S, CAPA),
                    (C, b"USER alice\r\n"), (S, b"+OK\r\n"),
                    (C, b"PASS wrong\r\n"), (S, FAILED),
                    (C, b"user alice\r\n"), (S, b"+OK\r\n"),
                    (C, b"pass secret\r\n"), (S, b"+OK Logged in.\r\n")],
                   [login("alice", "failure"), login("alice", "success")])

    def test_done_after_success(self) -> None:
        """After a success both filters are done."""
        events, client, server = play(pop3, [GREETING, (C, b"USER alice\r\nPASS secret\r\n"),
                                             (S, b"+OK\r\n+OK Logged in.\r\n")])
        self.assertEqual(values(events), [login("alice", "success")])
        self.assertTrue(client.done and server.done)

    def test_pipelined(self) -> None:
        """Pipelined commands are answered in order: +OK to USER is no login."""
        self.check([GREETING, (C, b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n"),
                    (S, CAPA + b"+OK\r\n"), (S, b"+OK Logged in.\r\n+OK 0 0\r\n")],
                   [login("alice", "success")])

    def test_multiline_data_never_a_status(self) -> None:
        """
        The lines of a multi-line answer (a CAPA, a bare AUTH's list, a
        message) are no answers, even when they read "+OK"; a bare LIST
        and UIDL are multi-line, with an argument they are not.
        """
        self.check([GREETING, (C, b"CAPA\r\nAUTH\r\nLIST\r\nLIST 1\r\nUIDL\r\n"
                               b"USER alice\r\nPASS wrong\r\n"),
                    (S, b"+OK\r\n+OK Logged in.\r\n.\r\n"),
                    (S, b"+OK\r\nPLAIN\r\n+OK\r\n.\r\n"),
                    (S, b"+OK 1 messages:\r\n1 +OK\r\n..+OK\r\n.\r\n"),
                    (S, b"+OK 1 120\r\n"),
                    (S, b"+OK\r\n1 +OK\r\n.\r\n"),
                    (S, b"+OK\r\n"), (S, FAILED)],
                   [login("alice", "failure")])

    def test_retr_top(self) -> None:
        """A message (RETR, TOP) that holds "+OK" lines, dot-stuffed or not, is data."""
        message = b"Subject: x\r\n\r\n+OK Logged in.\r\n..\r\n.+OK\r\n.\r\n"
        self.check([GREETING, (C, b"RETR 1\r\nTOP 1 0\r\nUSER alice\r\nPASS wrong\r\n"),
                    (S, b"+OK 40 octets\r\n" + message),
                    (S, b"+OK\r\n" + message), (S, b"+OK\r\n" + FAILED)],
                   [login("alice", "failure")])

    def test_apop(self) -> None:
        """APOP: the user is its first argument."""
        digest = hashlib.md5(b"<1896.697170952@dbc.mtview.ca.us>tanstaaf").hexdigest().encode()
        self.check([GREETING, (C, b"APOP mrose " + digest + b"\r\n"), (S, FAILED),
                    (C, b"APOP mrose " + digest + b"\r\n"),
                    (S, b"+OK maildrop has 1 message (369 octets)\r\n")],
                   [login("mrose", "failure"), login("mrose", "success")])

    def test_in_use(self) -> None:
        """-ERR [IN-USE]: right credentials, the mailbox is locked; watched on."""
        self.check([GREETING, (C, b"USER alice\r\nPASS secret\r\n"),
                    (S, b"+OK\r\n-ERR [IN-USE] Couldn't open INBOX: Mailbox is locked\r\n"),
                    (C, b"PASS secret\r\n"), (S, b"+OK Logged in.\r\n")],
                   [login("alice", "in-use"), login("alice", "success")])

    def test_auth_plain_initial_response(self) -> None:
        """AUTH PLAIN with an initial response: the user is the authcid."""
        self.check([GREETING, (C, b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\n"),
                    (S, b"+OK Logged in.\r\n")],
                   [login("alice", "success")], secrets=[b64(b"\0alice\0secret")])

    def test_auth_plain_continuation(self) -> None:
        """AUTH PLAIN answered after the server's empty challenge."""
        self.check([GREETING, (C, b"AUTH PLAIN\r\n"), (S, b"+ \r\n"),
                    (C, b64(b"alice\0alice\0wrong") + b"\r\n"), (S, FAILED),
                    (C, b"AUTH PLAIN\r\n"), (S, b"+\r\n"),
                    (C, b64(b"\0alice\0secret") + b"\r\n"), (S, b"+OK Logged in.\r\n")],
                   [login("alice", "failure"), login("alice", "success")])

    def test_auth_login(self) -> None:
        """AUTH LOGIN, with and without the user as initial response."""
        self.check([GREETING, (C, b"AUTH LOGIN\r\n"), (S, b"+ VXNlcm5hbWU6\r\n"),
                    (C, b64(b"alice") + b"\r\n"), (S, b"+ UGFzc3dvcmQ6\r\n"),
                    (C, b64(b"wrong") + b"\r\n"), (S, FAILED),
                    (C, b"AUTH LOGIN " + b64(b"alice") + b"\r\n"), (S, b"+ UGFzc3dvcmQ6\r\n"),
                    (C, b64(b"secret") + b"\r\n"), (S, b"+OK Logged in.\r\n")],
                   [login("alice", "failure"), login("alice", "success")],
                   secrets=[b64(b"secret"), b64(b"wrong")])

    def test_auth_cancelled(self) -> None:
        """A cancelled AUTH (*) tried no password: no event."""
        self.check([GREETING, (C, b"AUTH PLAIN\r\n"), (S, b"+ \r\n"), (C, b"*\r\n"),
                    (S, b"-ERR Authentication aborted by client.\r\n"),
                    (C, b"AUTH LOGIN\r\n"), (S, b"+ VXNlcm5hbWU6\r\n"), (C, b"*\r\n"),
                    (S, b"-ERR Authentication aborted by client.\r\n"),
                    (C, b"USER alice\r\nPASS secret\r\n"), (S, b"+OK\r\n+OK Logged in.\r\n")],
                   [login("alice", "success")])

    def test_auth_unknown_mechanism(self) -> None:
        """An AUTH refused before any response tried no password: no event."""
        self.check([GREETING, (C, b"AUTH CRAM-MD5\r\n"),
                    (S, b"-ERR Unsupported authentication mechanism.\r\n"),
                    (C, b"AUTH PLAIN " + b64(b"\0alice\0wrong") + b"\r\n"), (S, FAILED)],
                   [login("alice", "failure")])

    def test_stls(self) -> None:
        """STLS accepted: an event tls, both filters done."""
        events, client, server = play(pop3, [GREETING, (C, b"STLS\r\n"),
                                             (S, b"+OK Begin TLS negotiation now.\r\n"),
                                             (C, b"\x16\x03\x01\x00\xa5\x01")])
        self.assertEqual(values(events), [("tls", {"protocol": "pop3"})])
        self.assertTrue(client.done and server.done)

    def test_stls_refused(self) -> None:
        """STLS refused: the clear session is watched on."""
        self.check([GREETING, (C, b"STLS\r\n"), (S, b"-ERR TLS support isn't enabled.\r\n"),
                    (C, b"USER alice\r\nPASS secret\r\n"), (S, b"+OK\r\n+OK Logged in.\r\n")],
                   [login("alice", "success")])

    def test_error_greeting(self) -> None:
        """A -ERR greeting is POP3 (a refusal): no event."""
        self.check([(S, b"-ERR [SYS/TEMP] Server shutting down.\r\n")], [])

    def test_answer_to_nothing(self) -> None:
        """A +OK no command asked for is ignored."""
        self.check([GREETING, (S, b"+OK\r\n"), (C, b"PASS secret\r\n"), (S, FAILED)],
                   [login("", "failure")])

    def test_too_many_failures(self) -> None:
        """After max_failures failed logins, the connection is no longer inspected."""
        chunks: List[Chunk] = [GREETING]
        for n in range(3):
            chunks += [(C, b"USER alice\r\nPASS wrong\r\n"), (S, b"+OK\r\n" + FAILED)]
        chunks += [(C, b"USER alice\r\nPASS secret\r\n"), (S, b"+OK\r\n+OK\r\n")]
        self.check(chunks, [login("alice", "failure")] * 2, make=partial(pop3, max_failures=2))


class WatchTests(SynchronousTestCase):
    def test_not_pop3(self) -> None:
        """No POP3 greeting: an event not-protocol, both done, every byte passed on."""
        for first in [b"* OK IMAP4rev1 ready\r\n", b"220 smtp ESMTP\r\n", b"+o+", b"\x00\xff"]:
            events, client, server = play(pop3, [(S, first), (C, b"USER a\r\nPASS b\r\n"),
                                                 (S, b"+OK\r\n+OK\r\n")])
            self.assertEqual(values(events), [("not-protocol", {
                "protocol": "pop3",
                "first": "".join(chr(b) if 32 <= b < 127 else "." for b in first)})])
            self.assertTrue(client.done and server.done)

    def test_greeting_split(self) -> None:
        """A greeting read a byte at a time, in any case, is POP3."""
        events, _, _ = play(pop3, [(S, b"+"), (S, b"o"), (S, b"k hi\r\n"),
                                   (C, b"USER a\r\nPASS b\r\n"), (S, b"+OK\r\n+OK\r\n")])
        self.assertEqual(values(events), [login("a", "success")])

    def test_line_too_long(self) -> None:
        """A line longer than max_line without CRLF cuts the connection."""
        for direction in (C, S):
            events, _, _ = play(partial(pop3, max_line=100), [GREETING, (direction, b"a" * 101)])
            self.assertEqual(values(events), [
                ("too-long", {"protocol": "pop3", "direction": direction}), ("cut", {})])

    def test_too_many_pending(self) -> None:
        """Past MAX_PENDING unanswered commands, the connection is no longer inspected."""
        events, client, _ = play(pop3, [GREETING, (C, b"NOOP\r\n" * 1025)])
        self.assertEqual(values(events), [("too-many", {"protocol": "pop3", "pending": 1024})])
        self.assertTrue(client.done)

    def test_repr(self) -> None:
        """A filter's repr shows its state, no bytes."""
        client, server = pop3(CONNECTION)
        server.feed(GREETING[1])
        client.feed(b"USER alice\r\nPASS sec")
        self.assertEqual(repr(client),
                         "<client filter of <Pop3Session done=False failures=0 pending=1>>")


SESSION = [GREETING, (C, b"CAPA\r\nUSER alice\r\nPASS wrong\r\n"), (S, CAPA + b"+OK\r\n" + FAILED),
           (C, b"AUTH PLAIN\r\n"), (S, b"+ \r\n"), (C, b"*\r\n"), (S, b"-ERR aborted\r\n"),
           (C, b"AUTH PLAIN " + b64(b"\0alice\0secret") + b"\r\n"), (S, b"+OK Logged in.\r\n")]


class RandomSplitTests(SynchronousTestCase):
    @BOUNDED
    @given(st.data())
    def test_random_splits(self, data: Any) -> None:
        """Wherever the reads fall, one session gives the same events."""
        events, _, _ = play(pop3, data.draw(st.composite(lambda d: splits(d, SESSION))()))
        self.assertEqual(values(events), [login("alice", "failure"), login("alice", "success")])

    @BOUNDED
    @given(st.lists(st.tuples(st.sampled_from([C, S]), st.binary(max_size=80)), max_size=20))
    def test_garbage(self, chunks: List[Chunk]) -> None:
        """Any bytes either way after a greeting: no crash, every byte passed on."""
        play(partial(pop3, max_line=100), [GREETING] + chunks)
