# -*- test-case-name: tests.bus.test_framing -*-
"""
The error codes of the bus (docs/bus-protocol.md, section 6).

Every command declares L{ERRORS}, so that a failure reaches the other side
with its type. L{known_error} does the same for the answers the bus reads
by hand (L{netsuite.bus.framing}).
"""

from __future__ import annotations

from typing import Dict, Type

from twisted.protocols import amp
from twisted.python.failure import Failure

from ..registry.interfaces import (InvalidAddress, ListenerError, MailboxExists, NotRunning,
                                   UnknownMailbox)
from ..registry.values import InvalidValue

__all__ = ["DuplicateId", "UnknownId", "NotPermitted", "ERRORS", "BAD_REQUEST", "error_code",
           "known_error"]


class DuplicateId(ValueError):
    """
    A peer reused a listener or watch id that is still in use on its connection.
    """


class UnknownId(KeyError):
    """
    No listener or watch with that id exists on this connection.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown id"


class NotPermitted(PermissionError):
    """
    The peer may not do this (send to, hook or watch this mailbox): no
    C{bus.grant} gives it that (docs/bus-protocol.md, section 1). The
    connection stays open.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not permitted"


ERRORS: Dict[Type[Exception], bytes] = {
    UnknownMailbox: b"UNKNOWN_MAILBOX",
    InvalidValue: b"INVALID_VALUE",
    InvalidAddress: b"INVALID_ADDRESS",
    MailboxExists: b"MAILBOX_EXISTS",
    DuplicateId: b"DUPLICATE_ID",
    UnknownId: b"UNKNOWN_ID",
    ListenerError: b"LISTENER_ERROR",
    NotRunning: b"NOT_RUNNING",
    NotPermitted: b"NOT_PERMITTED",
}

BAD_REQUEST = b"BAD_REQUEST"
"""The error code of a command that failed in a way no other code names
(a missing or malformed argument, say); the connection stays open."""

_TYPES = {code: kind for kind, code in ERRORS.items()}


def error_code(error: BaseException) -> bytes:
    """
    The code of C{error}'s type, else C{LISTENER_ERROR}: what a peer answers
    when one of its listeners cannot give a verdict.
    """
    return next((code for kind, code in ERRORS.items() if isinstance(error, kind)),
                ERRORS[ListenerError])


def known_error(failure: Failure) -> Failure:
    """
    A peer's error code back as its exception type, as AMP does for a
    command's declared errors; other failures unchanged.
    """
    if failure.check(amp.RemoteAmpError) and failure.value.errorCode in _TYPES:
        return Failure(_TYPES[failure.value.errorCode](failure.value.description))
    return failure
