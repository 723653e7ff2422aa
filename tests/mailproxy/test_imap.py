# -*- test-case-name: tests.mailproxy.test_imap -*-
"""
Tests for L{netsuite.mailproxy.imap}: IMAP logins seen by two filters fed
transcripts split at every byte boundary (and where hypothesis splits).
"""

from __future__ import annotations

import base64
from functools import partial
from typing import Any, Dict, List, Sequence, Tuple, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netsuite.mailproxy.imap import ImapSession, imap, tokens
from netsuite.proxy.filters import CLIENT as C
from netsuite.proxy.filters import SERVER as S

from .session import CONNECTION, Chunk, TranscriptTests, literal, play, values

BOUNDED = settings(max_examples=200, deadline=None, database=None)

GREETING = (S, b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE "
               b"LITERAL+ AUTH=PLAIN AUTH=LOGIN] Dovecot ready.\r\n")
LOGGED_IN = b" OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE SORT LITERAL+ MOVE] Logged in\r\n"
FAILED = b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"


def login(user: str, outcome: str) -> Tuple[str, Dict[str, Any]]:
    return ("login", {"protocol": "imap", "user": user, "outcome": outcome,
                      "evidence": "seen"})


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class LoginTests(TranscriptTests, SynchronousTestCase):
    make = staticmethod(imap)
    secrets = (b"secret", b"wrong", b"hunter2")

    def test_wrong_then_right_password(self) -> None:
        """
        A tagged NO answering a LOGIN is one failure, the tagged OK
        answering the next one a success; quoted strings are unescaped.
        """
        self.check([GREETING,
                    (C, b"a1 LOGIN alice wrong\r\n"), (S, b"a1" + FAILED),
                    (C, b'a2 LOGIN "alice" "se\\"cret"\r\n'), (S, b"a2" + LOGGED_IN)],
                   [login("alice", "failure"), login("alice", "success")])

    def test_done_after_success(self) -> None:
        """After a success both filters are done: what follows is not read."""
        events, client, server = play(imap, [GREETING, (C, b"a1 LOGIN alice secret\r\n"),
                                             (S, b"a1" + LOGGED_IN)])
        self.assertEqual(values(events), [login("alice", "success")])
        self.assertTrue(client.done)
        self.assertTrue(server.done)

    def test_bad_is_a_failure(self) -> None:
        """A tagged BAD answering a LOGIN is a failure too."""
        self.check([GREETING, (C, b"a1 LOGIN alice\r\n"), (S, b"a1 BAD Missing password\r\n")],
                   [login("alice", "failure")])

    def test_literals(self) -> None:
        """
        A user and a password as synchronizing literals, sent after the
        server's continuation; the password literal holds lines that read
        like commands, and are not.
        """
        self.check([GREETING, (C, b"x LOGIN " + b"{5}\r\n"), (S, b"+ OK\r\n"),
                    (C, b"alice {18}\r\n"), (S, b"+ OK\r\n"),
                    (C, b"y STARTTLS\r\nsecret\r\n"), (S, b"x" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_non_synchronizing_literals(self) -> None:
        """{n+} literals come at once: the user is one, CRLF and all."""
        self.check([GREETING,
                    (C, b"a1 LOGIN " + literal(b"al ice\r\n", True) + b" "
                     + literal(b"hunter2", True) + b"\r\n"),
                    (S, b"a1" + LOGGED_IN)],
                   [login("al ice\r\n", "success")])

    def test_refused_literal(self) -> None:
        """
        A server that answers a synchronizing literal's command with a tagged
        BAD gets no literal: the client's next line is a command again.
        """
        self.check([GREETING, (C, b"a1 LOGIN {500}\r\n"), (S, b"a1 BAD Literal too big\r\n"),
                    (C, b"a2 LOGIN alice secret\r\n"), (S, b"a2" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_client_literal_never_a_command(self) -> None:
        """
        An APPEND's message reads like a LOGIN; a tagged OK for that tag is
        not a login (the server never saw such a command).
        """
        message = b"Subject: hi\r\n\r\na2 LOGIN mallory secret\r\n"
        self.check([GREETING, (C, b"a1 APPEND INBOX " + literal(message, True) + b"\r\n"),
                    (S, b"a1 OK APPEND completed\r\n"), (S, b"a2 OK LOGIN completed\r\n")],
                   [])

    def test_server_literal_never_a_response(self) -> None:
        """
        Message data (a literal) that reads as "a1 OK LOGIN completed" while
        a1 LOGIN waits for its answer is no success; untagged responses
        and quoted strings are not either; the tagged NO is the answer.
        """
        body = b"From: x\r\n\r\na1 OK LOGIN completed\r\n"
        self.check([GREETING, (C, b"a1 LOGIN alice wrong\r\n"),
                    (S, b"* 1 FETCH (UID 7 BODY[] " + literal(body) + b")\r\n"),
                    (S, b'* 2 FETCH (ENVELOPE ("a1 OK LOGIN completed" NIL))\r\n'),
                    (S, b"* OK a1 OK LOGIN completed\r\n"),
                    (S, b"a1" + FAILED)],
                   [login("alice", "failure")])

    def test_select_fetch_after_failure(self) -> None:
        """
        A SELECT and a FETCH whose data holds "a3 OK LOGIN completed" after
        a failed LOGIN, then the right one: one failure, one success.
        """
        body = b"a3 OK LOGIN completed\r\n"
        self.check([GREETING, (C, b"a1 LOGIN alice wrong\r\n"), (S, b"a1" + FAILED),
                    (C, b"a2 SELECT INBOX\r\n"), (S, b"* 1 EXISTS\r\n* 0 RECENT\r\n"),
                    (S, b"a2 OK [READ-WRITE] Select completed.\r\n"),
                    (C, b"a3 LOGIN alice wrong\r\na4 FETCH 1 BODY[]\r\n"),
                    (S, b"* 1 FETCH (BODY[] " + literal(body) + b")\r\na4 OK done\r\n"),
                    (S, b"a3" + FAILED),
                    (C, b"a5 LOGIN alice secret\r\n"), (S, b"a5" + LOGGED_IN)],
                   [login("alice", "failure"), login("alice", "failure"),
                    login("alice", "success")])

    def test_pipelined(self) -> None:
        """
        Pipelined commands are told apart by tag: an OK for another tag is
        not the LOGIN's answer.
        """
        self.check([GREETING,
                    (C, b"a1 CAPABILITY\r\na2 LOGIN alice secret\r\na3 NOOP\r\n"),
                    (S, b"* CAPABILITY IMAP4rev1\r\na1 OK done\r\na3 OK NOOP done\r\n"),
                    (S, b"a2" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_pipelined_logins(self) -> None:
        """Two pipelined LOGINs, answered out of order, are both seen."""
        self.check([GREETING, (C, b"a1 LOGIN bob wrong\r\na2 LOGIN alice secret\r\n"),
                    (S, b"a1" + FAILED + b"a2" + LOGGED_IN)],
                   [login("bob", "failure"), login("alice", "success")])

    def test_authenticate_plain_initial_response(self) -> None:
        """AUTHENTICATE PLAIN with SASL-IR: the user is the authcid."""
        self.check([GREETING,
                    (C, b"a1 AUTHENTICATE PLAIN " + b64(b"admin\0alice\0secret") + b"\r\n"),
                    (S, b"a1" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_authenticate_plain_continuation(self) -> None:
        """AUTHENTICATE PLAIN answered after the server's empty challenge."""
        self.check([GREETING, (C, b"a1 authenticate plain\r\n"), (S, b"+ \r\n"),
                    (C, b64(b"\0alice\0wrong") + b"\r\n"), (S, b"a1" + FAILED),
                    (C, b"a2 AUTHENTICATE PLAIN\r\n"), (S, b"+\r\n"),
                    (C, b64(b"\0alice\0secret") + b"\r\n"), (S, b"a2" + LOGGED_IN)],
                   [login("alice", "failure"), login("alice", "success")],
                   secrets=[b64(b"\0alice\0secret")])

    def test_authenticate_login(self) -> None:
        """AUTHENTICATE LOGIN: the first response is the user."""
        self.check([GREETING, (C, b"a1 AUTHENTICATE LOGIN\r\n"), (S, b"+ VXNlcm5hbWU6\r\n"),
                    (C, b64(b"alice") + b"\r\n"), (S, b"+ UGFzc3dvcmQ6\r\n"),
                    (C, b64(b"secret") + b"\r\n"), (S, b"a1" + LOGGED_IN)],
                   [login("alice", "success")], secrets=[b64(b"secret")])

    def test_authenticate_login_initial_response(self) -> None:
        """AUTHENTICATE LOGIN with the user as initial response."""
        self.check([GREETING, (C, b"a1 AUTHENTICATE LOGIN " + b64(b"alice") + b"\r\n"),
                    (S, b"+ UGFzc3dvcmQ6\r\n"), (C, b64(b"wrong") + b"\r\n"),
                    (S, b"a1" + FAILED)],
                   [login("alice", "failure")])

    def test_authenticate_cancelled(self) -> None:
        """A cancelled AUTHENTICATE (*) tried no password: no event."""
        self.check([GREETING, (C, b"a1 AUTHENTICATE PLAIN\r\n"), (S, b"+ \r\n"),
                    (C, b"*\r\n"), (S, b"a1 BAD Authentication aborted by client.\r\n"),
                    (C, b"a2 AUTHENTICATE LOGIN\r\n"), (S, b"+ VXNlcm5hbWU6\r\n"),
                    (C, b64(b"alice") + b"\r\n"), (S, b"+ UGFzc3dvcmQ6\r\n"),
                    (C, b"*\r\n"), (S, b"a2 BAD Authentication aborted by client.\r\n"),
                    (C, b"a3 LOGIN alice secret\r\n"), (S, b"a3" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_authenticate_unknown_mechanism(self) -> None:
        """An AUTHENTICATE refused before any response tried no password: no event."""
        self.check([GREETING, (C, b"a1 AUTHENTICATE CRAM-MD5\r\n"),
                    (S, b"a1 NO Unsupported authentication mechanism.\r\n"),
                    (C, b"a2 AUTHENTICATE PLAIN\r\n"), (S, b"+ \r\n"),
                    (C, b64(b"\0alice\0secret") + b"\r\n"), (S, b"a2" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_authenticate_pipelined_after_initial_response(self) -> None:
        """
        A command after a complete initial response is a command, not a SASL
        response: only a continuation request asks for one.
        """
        self.check([GREETING,
                    (C, b"a1 AUTHENTICATE PLAIN " + b64(b"\0alice\0secret")
                     + b"\r\na2 LOGIN bob wrong\r\n"),
                    (S, b"a1" + FAILED + b"a2" + FAILED)],
                   [login("alice", "failure"), login("bob", "failure")])

    def test_bad_base64(self) -> None:
        """A response that is not base64 gives no user, and no crash."""
        self.check([GREETING, (C, b"a1 AUTHENTICATE PLAIN not*base64\r\n"),
                    (S, b"a1 BAD Invalid base64 data in initial response\r\n")],
                   [login("", "failure")])

    def test_preauth(self) -> None:
        """A PREAUTH greeting: no login to watch, both filters done."""
        events, client, server = play(imap, [(S, b"* PREAUTH [CAPABILITY IMAP4rev1] "
                                                 b"Logged in as alice\r\n"),
                                             (C, b"a1 LOGIN alice secret\r\n"),
                                             (S, b"a1 OK\r\n")])
        self.assertEqual(values(events), [("preauth", {"protocol": "imap"})])
        self.assertTrue(client.done and server.done)

    def test_bye_greeting(self) -> None:
        """A BYE greeting is IMAP: no event."""
        self.check([(S, b"* BYE Too many connections\r\n")], [])

    def test_starttls(self) -> None:
        """STARTTLS accepted: an event tls, both done, the TLS bytes pass."""
        hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
        events, client, server = play(imap, [GREETING, (C, b"a1 STARTTLS\r\n"),
                                             (S, b"a1 OK Begin TLS negotiation now.\r\n"),
                                             (C, hello)])
        self.assertEqual(values(events), [("tls", {"protocol": "imap"})])
        self.assertTrue(client.done and server.done)

    def test_starttls_refused(self) -> None:
        """STARTTLS refused: the session goes on in the clear and is watched."""
        self.check([GREETING, (C, b"a1 STARTTLS\r\n"),
                    (S, b"a1 BAD TLS support isn't enabled.\r\n"),
                    (C, b"a2 LOGIN alice secret\r\n"), (S, b"a2" + LOGGED_IN)],
                   [login("alice", "success")])

    def test_capabilities(self) -> None:
        """The session knows the capabilities of the greeting, then of the login's OK."""
        client, server = imap(CONNECTION)
        session = cast(ImapSession, client.session)
        server.feed(GREETING[1])
        self.assertIn(b"AUTH=PLAIN", session.capabilities)
        server.feed(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n")
        self.assertEqual(session.capabilities, {b"IMAP4REV1", b"STARTTLS"})
        client.feed(b"a1 LOGIN alice secret\r\n")
        server.feed(b"a1" + LOGGED_IN)
        self.assertIn(b"MOVE", session.capabilities)
        self.assertNotIn(b"AUTH=PLAIN", session.capabilities)

    def test_too_many_failures(self) -> None:
        """After max_failures failed logins, the connection is no longer inspected."""
        chunks: List[Chunk] = [GREETING]
        for n in range(3):
            chunks += [(C, b"a%d LOGIN alice wrong\r\n" % n), (S, b"a%d" % n + FAILED)]
        chunks += [(C, b"b LOGIN alice secret\r\n"), (S, b"b" + LOGGED_IN)]
        self.check(chunks, [login("alice", "failure")] * 2, make=partial(imap, max_failures=2))

    def test_client_first(self) -> None:
        """A client that speaks before the greeting is read all the same."""
        self.check([(C, b"a1 LOGIN alice secret\r\n"), GREETING, (S, b"a1" + LOGGED_IN)],
                   [login("alice", "success")])


class WatchTests(SynchronousTestCase):
    """Watch before cutting in, and the bounds."""

    def test_not_imap(self) -> None:
        """
        A server whose first bytes are no IMAP greeting: an event
        not-protocol with a printable prefix, both filters done, every byte
        passed on.
        """
        for first in [b"220 mail.example ESMTP Postfix\r\n", b"+OK POP3 ready\r\n",
                      b"\x16\x03\x03\x00\x7a\x02\x00", b"*  OK\r\n", b"\r\n"]:
            events, client, server = play(imap, [(S, first), (C, b"a1 LOGIN a b\r\n"),
                                                 (S, b"a1 OK\r\n")])
            self.assertEqual(values(events), [("not-protocol", {
                "protocol": "imap",
                "first": "".join(chr(b) if 32 <= b < 127 else "." for b in first)})])
            self.assertTrue(client.done and server.done)

    def test_not_imap_byte_by_byte(self) -> None:
        """The greeting is decided on as few bytes as it takes."""
        client, server = imap(CONNECTION)
        self.assertEqual(server.feed(b"*").events, [])
        self.assertEqual(server.feed(b" ").events, [])
        self.assertEqual(values(server.feed(b"X").events),
                         [("not-protocol", {"protocol": "imap", "first": "* X"})])
        self.assertTrue(client.done)

    def test_line_too_long(self) -> None:
        """A line longer than max_line without CRLF cuts the connection."""
        for direction in (C, S):
            for chunks in ([(direction, b"a" * 201)], [(direction, b"a" * 70)] * 3):
                events, _, _ = play(partial(imap, max_line=200), [GREETING] + chunks)
                self.assertEqual(values(events), [
                    ("too-long", {"protocol": "imap", "direction": direction}), ("cut", {})])

    def test_default_bound(self) -> None:
        """The default bound is 64 KiB: a longer line is cut, a long literal is not."""
        events, _, _ = play(imap, [GREETING, (C, b"a1 APPEND INBOX {1048576+}\r\n"),
                                   (C, b"x" * 1048576 + b"\r\n"), (S, b"a1 OK\r\n")])
        self.assertEqual(events, [])
        events, _, _ = play(imap, [GREETING, (C, b"a1 NOOP " + b"x" * 65536 + b"\r\n")])
        self.assertEqual(values(events), [("too-long", {"protocol": "imap", "direction": C}),
                                          ("cut", {})])

    def test_long_user_literal(self) -> None:
        """A user literal longer than max_line is skipped, not kept."""
        events, _, _ = play(partial(imap, max_line=200),
                            [GREETING, (C, b"a1 LOGIN " + literal(b"u" * 300, True)
                                        + b" secret\r\n"), (S, b"a1" + LOGGED_IN)])
        self.assertEqual(values(events), [login("", "success")])

    def test_user_bounded(self) -> None:
        """A user name in an event is at most 256 characters."""
        events, _, _ = play(imap, [GREETING, (C, b"a1 LOGIN " + b"u" * 1000 + b" pw\r\n"),
                                   (S, b"a1" + FAILED)])
        self.assertEqual(values(events), [login("u" * 256, "failure")])

    def test_set_done(self) -> None:
        """A proxy that sets one filter done stops both."""
        client, server = imap(CONNECTION)
        client.done = True
        self.assertTrue(server.done)
        self.assertEqual(server.feed(b"220 not imap\r\n").events, [])

    def test_end(self) -> None:
        """Nothing is held: end() flushes nothing."""
        client, server = imap(CONNECTION)
        server.feed(b"* OK hi")
        self.assertEqual((server.end().data, client.end().data), (b"", b""))


class TokenTests(SynchronousTestCase):
    def test_tokens(self) -> None:
        """A command line's atoms, quoted strings and the literal it ends with."""
        self.assertEqual(tokens(b'a1 LOGIN "al\\"ice" {5}'),
                         ([b"a1", b"LOGIN", b'al"ice'], (5, True)))
        self.assertEqual(tokens(b"a1 APPEND INBOX ~{12+}"),
                         ([b"a1", b"APPEND", b"INBOX"], (12, False)))
        self.assertEqual(tokens(b"{0}"), ([], (0, True)))
        for line in (b"a1 LOGIN alice{5}", b"a1 LOGIN {5}x", b"a1 LOGIN {x}", b'a1 "{5}"'):
            self.assertIsNone(tokens(line)[1], line)
        self.assertEqual(tokens(b'a "unterminated'), ([b"a", b"unterminated"], None))


def splits(draw: Any, chunks: Sequence[Chunk]) -> List[Chunk]:
    out: List[Chunk] = []
    for direction, data in chunks:
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=8)))
        last = 0
        for at in cuts + [len(data)]:
            if at > last:
                out.append((direction, data[last:at]))
                last = at
    return out


SESSION = [GREETING, (C, b"a0 CAPABILITY\r\n"), (S, b"* CAPABILITY IMAP4rev1\r\na0 OK\r\n"),
           (C, b"a1 LOGIN {5+}\r\nalice " + literal(b"wrong\r\na9 OK", True) + b"\r\n"),
           (S, b"* 1 FETCH (BODY[] " + literal(b"a1 OK LOGIN\r\n") + b")\r\na1" + FAILED),
           (C, b"a2 AUTHENTICATE PLAIN\r\n"), (S, b"+ \r\n"), (C, b"*\r\n"),
           (S, b"a2 BAD aborted\r\n"),
           (C, b"a3 AUTHENTICATE LOGIN\r\n"), (S, b"+ VXNlcm5hbWU6\r\n"),
           (C, b64(b"alice") + b"\r\n"), (S, b"+ UGFzc3dvcmQ6\r\n"),
           (C, b64(b"secret") + b"\r\n"), (S, b"a3" + LOGGED_IN)]


class RandomSplitTests(SynchronousTestCase):
    @BOUNDED
    @given(st.data())
    def test_random_splits(self, data: Any) -> None:
        """Wherever the reads fall, one session gives the same events."""
        events, _, _ = play(imap, data.draw(st.composite(lambda d: splits(d, SESSION))()))
        self.assertEqual(values(events), [login("alice", "failure"), login("alice", "success")])

    @BOUNDED
    @given(st.lists(st.tuples(st.sampled_from([C, S]), st.binary(max_size=80)), max_size=20))
    def test_garbage(self, chunks: List[Chunk]) -> None:
        """Any bytes either way after a greeting: no crash, every byte passed on."""
        play(partial(imap, max_line=200), [GREETING] + chunks)
