# -*- test-case-name: tests.bus.test_bus -*-
"""
The AMP commands of the netsuite bus (specified in docs/bus-protocol.md).

Peer to owner: L{Send}, L{AddListener}, L{RemoveListener}, L{Watch},
L{Unwatch}, L{Describe}. Owner to peer: L{CallListener}, L{Notify}.

Messages and results travel as L{Typed} arguments: the typed-value JSON of
L{netsuite.registry.values}, split over several keys when longer than one AMP
value can hold. They are decoded by the responders, not by AMP, so that a
malformed value is answered with C{INVALID_VALUE} and a clear description.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.protocols import amp

from ..registry.interfaces import (InvalidAddress, ListenerError, MailboxExists, NotRunning,
                                   UnknownMailbox)
from ..registry.values import InvalidValue

__all__ = [
    "Typed", "Send", "AddListener", "RemoveListener", "Watch", "Unwatch",
    "Describe", "CallListener", "Notify", "DuplicateId", "UnknownId",
    "ERRORS", "put_chunks", "take_chunks",
]

CHUNK = amp.MAX_VALUE_LENGTH


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


def put_chunks(box: Dict[bytes, bytes], name: bytes, data: bytes) -> None:
    """
    Put C{data} in C{box} under C{name}, C{name.2}, ... (65,535 bytes each).
    """
    box[name] = data[:CHUNK]
    for index, start in enumerate(range(CHUNK, len(data), CHUNK), start=2):
        box[b"%s.%d" % (name, index)] = data[start:start + CHUNK]


def take_chunks(box: Dict[bytes, bytes], name: bytes) -> bytes:
    """
    Take the value that L{put_chunks} spread over C{box} (KeyError if absent).
    """
    parts = [box.pop(name)]
    index = 2
    while b"%s.%d" % (name, index) in box:
        parts.append(box.pop(b"%s.%d" % (name, index)))
        index += 1
    return b"".join(parts)


class Typed(amp.Argument):
    """
    Bytes of any length (typed-value JSON), split into keys C{name},
    C{name.2}, C{name.3}, ... of at most 65,535 bytes each.
    """

    def toBox(self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any],
              proto: Any) -> None:
        key = amp._wireNameToPythonIdentifier(name)  # type: ignore[attr-defined]
        data = objects.pop(key, None) if self.optional else objects.pop(key)
        if self.optional and data is None:
            return
        put_chunks(strings, name, data)

    def fromBox(self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any],
                proto: Any) -> None:
        key = amp._wireNameToPythonIdentifier(name)  # type: ignore[attr-defined]
        if name not in strings and self.optional:
            objects[key] = None
            return
        objects[key] = take_chunks(strings, name)


ERRORS = {
    UnknownMailbox: b"UNKNOWN_MAILBOX",
    InvalidValue: b"INVALID_VALUE",
    InvalidAddress: b"INVALID_ADDRESS",
    MailboxExists: b"MAILBOX_EXISTS",
    DuplicateId: b"DUPLICATE_ID",
    UnknownId: b"UNKNOWN_ID",
    ListenerError: b"LISTENER_ERROR",
    NotRunning: b"NOT_RUNNING",
}

BAD_REQUEST = b"BAD_REQUEST"
"""The error code of a command that failed in a way no other code names
(a missing or malformed argument, say); the connection stays open."""


class Send(amp.Command):
    """
    Send a message to a mailbox of the owner and wait for the result.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"message", Typed())]
    response = [(b"answered", amp.Boolean()), (b"result", Typed())]
    errors = ERRORS


class AddListener(amp.Command):
    """
    Put a stand-in for one of the peer's listeners on a mailbox.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"listener", amp.Unicode()),
                 (b"first", amp.Boolean()), (b"deadline", amp.Float()),
                 (b"tags", Typed()), (b"remember_by", Typed(optional=True))]
    response = [(b"id", amp.Unicode())]
    errors = ERRORS


class RemoveListener(amp.Command):
    arguments = [(b"listener", amp.Unicode())]
    response: list = []
    errors = ERRORS


class Watch(amp.Command):
    """
    Have every message sent to a mailbox copied to the peer with L{Notify}.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"watch", amp.Unicode())]
    response: list = []
    errors = ERRORS


class Unwatch(amp.Command):
    arguments = [(b"watch", amp.Unicode())]
    response: list = []
    errors = ERRORS


class Describe(amp.Command):
    """
    The owner's name, mailboxes under a prefix, listeners and counters.
    """

    arguments = [(b"prefix", amp.Unicode())]
    response = [(b"process", amp.Unicode()), (b"mailboxes", Typed())]
    errors = ERRORS


class CallListener(amp.Command):
    """
    The owner asks the peer's listener for its verdict on a message.
    """

    arguments = [(b"listener", amp.Unicode()), (b"mailbox", amp.Unicode()),
                 (b"message", Typed())]
    response = [(b"verdict", amp.Unicode()), (b"result", Typed(optional=True)),
                (b"remember", amp.Float(optional=True))]
    errors = ERRORS


class Notify(amp.Command):
    """
    A message was sent to a watched mailbox.
    """

    arguments = [(b"watch", amp.Unicode()), (b"mailbox", amp.Unicode()),
                 (b"message", Typed())]
    requiresAnswer = False
