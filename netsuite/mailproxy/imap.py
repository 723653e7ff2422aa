# -*- test-case-name: tests.mailproxy.test_imap -*-
"""
IMAP login detection (RFC 9051, RFC 3501): a protocol module for
L{netsuite.proxy.filters}, pure (no I/O, no clock).

L{imap} gives a connection's two filters, which share one L{ImapSession}.
They pass every byte on unchanged as it arrives and keep only their parse
state. The client's side reads commands: tags, atoms, quoted strings and
literals (C{{n}}, C{{n+}} and C{~{n}}), whose bytes are never read as
commands; C{LOGIN}, C{AUTHENTICATE} (PLAIN and LOGIN, with or without an
initial response, RFC 4959; cancelled with C{*}) and C{STARTTLS} are
remembered by tag, so that pipelined commands are told apart. The server's
side reads responses (literals skipped the same way) and decides:

  - a login succeeded only when the server's I{tagged} C{OK} answers that
    C{LOGIN} or C{AUTHENTICATE}; a tagged C{NO} or C{BAD} is a failure. An
    untagged response, a literal (message data) or a line that merely
    reads C{a1 OK LOGIN} anywhere else never counts. A cancelled
    C{AUTHENTICATE}, or one refused before any response (an unknown
    mechanism), tried no password: it is no event.
  - the user is C{LOGIN}'s first argument, or the authentication identity
    (authcid) of PLAIN, or LOGIN's first response (base64). No password is
    kept: it is skipped where it is parsed.

Once a login succeeded, C{STARTTLS} was accepted (the rest is TLS), the
greeting was C{PREAUTH} (no login will come) or after C{max_failures}
failed logins, both filters are done. A server whose first bytes are not
an IMAP greeting (C{* OK}, C{* PREAUTH}, C{* BYE}) is no IMAP server: an
event C{not-protocol}, and both filters are done. A line longer than
C{max_line} bytes (outside a literal) cuts the connection.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, List, Optional, Tuple

from netsuite.proxy.filters import Connection, Event

from ._lines import MAX_LINE, Side, WatchedSession, b64, user_text

__all__ = ["imap", "ImapSession", "MAX_FAILURES", "MAX_PENDING"]

PROTOCOL = "imap"

MAX_FAILURES = 5
"""Failed logins after which a connection is no longer inspected."""

MAX_PENDING = 32
"""LOGIN, AUTHENTICATE and STARTTLS commands awaiting their answer at once
(pipelined); past that, the connection is no longer inspected (event
C{too-many})."""

GREETINGS = (b"* OK", b"* PREAUTH", b"* BYE")

_LITERAL = re.compile(rb"~?\{([0-9]{1,20})(\+)?\}\Z")
_STATUS = frozenset((b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"))
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)


def trailing_literal(line: bytes) -> Optional["re.Match[bytes]"]:
    """The literal announced at the end of C{line}, if any (cheap when none)."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start > 0 and line[start - 1:start] == b"~":
        start -= 1
    return _LITERAL.match(line, max(start, 0))


def tokens(fragment: bytes) -> Tuple[List[bytes], Optional[Tuple[int, bool]]]:
    """
    The arguments of one line of a command (up to a literal): atoms and
    quoted strings (unescaped), and, when the line ends with a literal
    C{{n}}, C{{n+}} or C{~{n}}, C{(n, synchronizing)} as its second value.
    A parenthesized list or other syntax comes back as its atoms, which is
    all the commands watched here need.
    """
    literal = None
    found = trailing_literal(fragment)
    if found is not None and (found.start() == 0 or fragment[found.start() - 1:found.start()]
                              in (b" ", b"(")):
        literal = (int(found.group(1)), found.group(2) is None)
        fragment = fragment[:found.start()]
    out: List[bytes] = []
    i, n = 0, len(fragment)
    while i < n:
        c = fragment[i:i + 1]
        if c == b" ":
            i += 1
        elif c == b'"':
            value = bytearray()
            i += 1
            while i < n and fragment[i:i + 1] != b'"':
                if fragment[i:i + 1] == b"\\" and i + 1 < n:
                    i += 1
                value += fragment[i:i + 1]
                i += 1
            out.append(bytes(value))
            i += 1
        else:
            end = fragment.find(b" ", i)
            end = n if end < 0 else end
            out.append(fragment[i:end])
            i = end
    return out, literal


class _Command:
    """A client command being read (its first line carried tag and name)."""

    def __init__(self, tag: bytes, name: bytes) -> None:
        self.tag = tag
        self.name = name
        self.arguments = 0
        self.user: Optional[bytes] = None
        self.sync_literal = False

    def __repr__(self) -> str:
        return f"<_Command {self.name!r} tag={self.tag!r}>"


class _Authenticate:
    """An AUTHENTICATE exchange: mechanism, responses seen, the user found."""

    def __init__(self, tag: bytes, mechanism: bytes) -> None:
        self.tag = tag
        self.mechanism = mechanism
        self.responses = 0
        self.user: Optional[bytes] = None
        self.cancelled = False
        self.challenges = 0  # continuation requests the client has yet to answer

    def __repr__(self) -> str:
        return f"<_Authenticate {self.mechanism!r} tag={self.tag!r}>"

    def response(self, line: bytes) -> None:
        """One SASL response (or the initial one): find the user, keep no password."""
        if line == b"*":
            self.cancelled = True
            return
        index, self.responses = self.responses, self.responses + 1
        decoded = b"" if line == b"=" else b64(line)
        if decoded is None:
            return
        if self.mechanism == b"PLAIN" and index == 0:
            parts = decoded.split(b"\0")
            if len(parts) == 3:
                self.user = parts[1]
        elif self.mechanism == b"LOGIN" and index == 0:
            self.user = decoded


class ImapSession(WatchedSession):
    """
    The parse state of one IMAP connection, shared by its two filters.

    @ivar capabilities: the server's last announced capabilities (upper
        case), from C{CAPABILITY} responses and C{[CAPABILITY ...]} codes.
    @ivar failures: failed logins so far.
    """

    protocol = PROTOCOL
    greetings = GREETINGS

    def __init__(self, max_failures: int = MAX_FAILURES, max_line: int = MAX_LINE) -> None:
        super().__init__(max_failures, max_line, self._client_literal)
        self.capabilities: FrozenSet[bytes] = frozenset()
        self._command: Optional[_Command] = None
        self._pending: Dict[bytes, object] = {}  # tag -> _Command or _Authenticate
        self._auth: Optional[_Authenticate] = None
        self._server_in_response = False  # the server's line continues a response after a literal

    def __repr__(self) -> str:
        return (f"<ImapSession done={self.done} failures={self.failures} "
                f"pending={sorted(self._pending)!r}>")

    # the client: commands

    def _client_line(self, line: bytes) -> None:
        auth = self._auth
        if self._command is None and auth is not None and auth.challenges > 0:
            auth.challenges -= 1
            auth.response(line)
            return
        if self._command is None:
            args, literal = tokens(line)
            if len(args) < 2 or not args[0] or not args[1]:
                return  # an empty or broken line: the server will say BAD
            command = _Command(args[0], args[1].upper())
            self._command = command
            args = args[2:]
        else:
            command = self._command
            args, literal = tokens(line)
        if command.name == b"LOGIN":
            for arg in args:
                if command.arguments == 0:
                    command.user = arg
                command.arguments += 1
        elif command.name == b"AUTHENTICATE" and command.arguments == 0 and args:
            command.arguments = len(args)
            auth = _Authenticate(command.tag, args[0].upper())
            if len(args) > 1:
                auth.response(args[1])
            self._expect(command.tag, auth)
            self._auth = auth
        if literal is not None:
            count, command.sync_literal = literal
            keep = command.name == b"LOGIN" and command.arguments == 0
            command.arguments += 1
            if not self._client.skip(count, keep):
                self._client.skip(count)  # a user longer than a line: not kept
            return
        self._command = None
        if command.name == b"LOGIN" or command.name == b"STARTTLS":
            self._expect(command.tag, command)

    def _client_literal(self, data: bytes) -> None:
        if self._command is not None:
            self._command.user = data

    def _expect(self, tag: bytes, what: object) -> None:
        if len(self._pending) >= MAX_PENDING and tag not in self._pending:
            self._events.append(Event("too-many", {"protocol": PROTOCOL,
                                                   "pending": len(self._pending)}))
            self._finish()
            return
        self._pending[tag] = what

    # the server: responses

    def _server_line(self, line: bytes) -> None:
        if self._server_in_response:
            self._server_in_response = False
            self._maybe_literal(line)
            return
        head, _, rest = line.partition(b" ")
        if line[:1] == b"+":
            self._continuation()
        elif head == b"*":
            status, _, text = rest.partition(b" ")
            status = status.upper()
            if status in _STATUS:
                self._capability_code(text)
                if status == b"PREAUTH":
                    self._events.append(Event("preauth", {"protocol": PROTOCOL}))
                    self._finish()
            else:
                if status == b"CAPABILITY":
                    self.capabilities = frozenset(text.upper().split())
                self._maybe_literal(line)
        else:
            status, _, text = rest.partition(b" ")
            self._tagged(head, status.upper(), text)

    def _maybe_literal(self, line: bytes) -> None:
        found = trailing_literal(line)
        if found is not None:
            self._server.skip(int(found.group(1)))
            self._server_in_response = True

    def _capability_code(self, text: bytes) -> None:
        found = _CAPABILITY_CODE.match(text)
        if found is not None:
            self.capabilities = frozenset(found.group(1).upper().split())

    def _continuation(self) -> None:
        command = self._command
        if command is not None and command.sync_literal:
            return  # go ahead with the literal: the client side expects it already
        if self._auth is not None:
            self._auth.challenges += 1

    def _tagged(self, tag: bytes, status: bytes, text: bytes) -> None:
        self._capability_code(text)
        command = self._command
        if command is not None and command.tag == tag and command.sync_literal:
            # refused before its literal was sent: the client sends none
            self._client.cancel_literal()
            self._command = None
        what = self._pending.pop(tag, None)
        if what is None:
            return
        if isinstance(what, _Authenticate):
            self._auth = None
            if what.cancelled or (what.responses == 0 and status != b"OK"):
                return  # no password tried (an unknown mechanism, say)
            self._outcome(what.user, status)
        elif isinstance(what, _Command) and what.name == b"STARTTLS":
            if status == b"OK":
                self._events.append(Event("tls", {"protocol": PROTOCOL}))
                self._finish()
        elif isinstance(what, _Command):
            self._outcome(what.user, status)

    def _outcome(self, user: Optional[bytes], status: bytes) -> None:
        name = user_text(user or b"")
        if status == b"OK":
            self._login(name, "success")
        elif status in (b"NO", b"BAD"):
            self._login(name, "failure")


def imap(conn: Connection, max_failures: int = MAX_FAILURES,
         max_line: int = MAX_LINE) -> Tuple[Side, Side]:
    """
    The (client to server, server to client) filters of a new IMAP
    connection, sharing one L{ImapSession}.
    """
    return ImapSession(max_failures, max_line).sides()
