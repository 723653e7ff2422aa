# -*- test-case-name: tests.mailproxy.test_pop3 -*-
"""
POP3 login detection (RFC 1939, RFC 2449, RFC 5034): a protocol module for
L{netsuite.proxy.filters}, pure (no I/O, no clock).

L{pop3} gives a connection's two filters, which share one L{Pop3Session}.
They pass every byte on unchanged as it arrives and keep only their parse
state. POP3 answers commands in order (RFC 2449 C{PIPELINING}): the
client's side queues each command, the server's side takes one off the
queue per C{+OK} or C{-ERR} and skips the multi-line answers (C{CAPA},
C{LIST} and C{UIDL} without argument, C{RETR}, C{TOP}, a bare C{AUTH}) up
to their C{.} line, so message data is never read as a status.

  - a login succeeded only on the C{+OK} that answers C{PASS} (after
    C{USER}), C{APOP}, or the last step of C{AUTH} (PLAIN or LOGIN, with an
    initial response or after C{+} continuations); C{-ERR} is a failure,
    but C{-ERR [IN-USE]} (RFC 2449) means right credentials and a locked
    mailbox: outcome C{in-use}. A cancelled C{AUTH} (C{*}), or one refused
    before any response (an unknown mechanism), is no event.
  - the user is C{USER}'s or C{APOP}'s argument, or the authcid of PLAIN,
    or LOGIN's first response. No password is kept.

Once a login succeeded, C{STLS} was accepted, or after C{max_failures}
failed logins, both filters are done. A server whose first bytes are not
C{+OK} or C{-ERR} is no POP3 server: an event C{not-protocol}, and both
filters are done. A line longer than C{max_line} bytes cuts the connection.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

from netsuite.proxy.filters import Connection, Event

from ._lines import MAX_LINE, Side, WatchedSession, b64, user_text

__all__ = ["pop3", "Pop3Session", "MAX_FAILURES", "MAX_PENDING"]

PROTOCOL = "pop3"

MAX_FAILURES = 5
"""Failed logins after which a connection is no longer inspected."""

MAX_PENDING = 1024
"""Commands awaiting their answer at once (pipelined); past that, the
connection is no longer inspected (event C{too-many})."""

GREETINGS = (b"+OK", b"-ERR")

_MULTILINE_ALWAYS = frozenset((b"CAPA", b"RETR", b"TOP"))
_MULTILINE_BARE = frozenset((b"LIST", b"UIDL", b"AUTH"))  # without argument


class _Command:
    """A command awaiting its answer: its name, and for a login the user."""

    def __init__(self, name: bytes, multiline: bool = False,
                 user: Optional[bytes] = None) -> None:
        self.name = name
        self.multiline = multiline
        self.user = user

    def __repr__(self) -> str:
        return f"<_Command {self.name!r}>"


class _Auth(_Command):
    """An AUTH exchange: mechanism, responses seen, the user found."""

    def __init__(self, mechanism: bytes) -> None:
        super().__init__(b"AUTH")
        self.mechanism = mechanism
        self.responses = 0
        self.cancelled = False
        self.challenges = 0  # continuation requests the client has yet to answer

    def __repr__(self) -> str:
        return f"<_Auth {self.mechanism!r}>"

    def response(self, line: bytes) -> None:
        """One SASL response (or the initial one): find the user, keep no password."""
        if line == b"*":
            self.cancelled = True
            return
        index, self.responses = self.responses, self.responses + 1
        decoded = b"" if line == b"=" else b64(line)
        if decoded is None or index != 0:
            return
        if self.mechanism == b"PLAIN":
            parts = decoded.split(b"\0")
            if len(parts) == 3:
                self.user = parts[1]
        elif self.mechanism == b"LOGIN":
            self.user = decoded


class Pop3Session(WatchedSession):
    """
    The parse state of one POP3 connection, shared by its two filters.

    @ivar failures: failed logins so far.
    """

    protocol = PROTOCOL
    greetings = GREETINGS

    def __init__(self, max_failures: int = MAX_FAILURES, max_line: int = MAX_LINE) -> None:
        super().__init__(max_failures, max_line)
        self._greeted = False
        self._queue: Deque[_Command] = deque()
        self._auth: Optional[_Auth] = None
        self._user: Optional[bytes] = None
        self._multiline = False

    def __repr__(self) -> str:
        return (f"<Pop3Session done={self.done} failures={self.failures} "
                f"pending={len(self._queue)}>")

    # the client: commands

    def _client_line(self, line: bytes) -> None:
        auth = self._auth
        if auth is not None and auth.challenges > 0:
            auth.challenges -= 1
            auth.response(line)
            return
        name, _, rest = line.partition(b" ")
        name = name.upper()
        argument = rest.strip()
        if name == b"USER":
            self._user = argument
            command = _Command(name)
        elif name == b"PASS":
            command = _Command(name, user=self._user)
        elif name == b"APOP":
            command = _Command(name, user=argument.rpartition(b" ")[0] or argument)
        elif name == b"AUTH" and argument:
            mechanism, _, initial = argument.partition(b" ")
            auth = _Auth(mechanism.upper())
            if initial:
                auth.response(initial.strip())
            self._auth = command = auth
        else:
            command = _Command(name, name in _MULTILINE_ALWAYS
                               or (name in _MULTILINE_BARE and not argument))
        if len(self._queue) >= MAX_PENDING:
            self._events.append(Event("too-many", {"protocol": PROTOCOL,
                                                   "pending": len(self._queue)}))
            self._finish()
            return
        self._queue.append(command)

    # the server: answers

    def _server_line(self, line: bytes) -> None:
        if self._multiline:
            self._multiline = line != b"."
            return
        status = line[:4].upper()
        if not self._greeted:
            self._greeted = True  # +OK or -ERR, checked by the greeting
            return
        if status[:3] == b"+OK":
            ok = True
        elif status == b"-ERR":
            ok = False
        elif line[:1] == b"+":
            if self._auth is not None:
                self._auth.challenges += 1
            return
        else:
            return  # not an answer: ignored
        if not self._queue:
            return  # an answer to nothing: ignored
        command = self._queue.popleft()
        if ok and command.multiline:
            self._multiline = True
        if isinstance(command, _Auth):
            self._auth = None
            if not command.cancelled and (ok or command.responses > 0):
                self._outcome(command.user, ok, line)  # else: no password tried
        elif command.name in (b"PASS", b"APOP"):
            self._outcome(command.user, ok, line)
        elif command.name == b"STLS" and ok:
            self._events.append(Event("tls", {"protocol": PROTOCOL}))
            self._finish()

    def _outcome(self, user: Optional[bytes], ok: bool, line: bytes) -> None:
        name = user_text(user or b"")
        if ok:
            self._login(name, "success")
        elif line[4:].lstrip().upper().startswith(b"[IN-USE]"):
            self._login(name, "in-use")
        else:
            self._login(name, "failure")


def pop3(conn: Connection, max_failures: int = MAX_FAILURES,
         max_line: int = MAX_LINE) -> Tuple[Side, Side]:
    """
    The (client to server, server to client) filters of a new POP3
    connection, sharing one L{Pop3Session}.
    """
    return Pop3Session(max_failures, max_line).sides()
