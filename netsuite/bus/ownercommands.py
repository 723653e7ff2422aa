# -*- test-case-name: tests.bus.test_framing -*-
"""
The commands a peer sends to the owner of a registry, which answers them
(docs/bus-protocol.md, section 5). Like Twisted's
C{trial/_dist/workercommands.py}, this module is named after the side that
answers; the other direction is L{netsuite.bus.peercommands}.

All of them travel through AMP's own argument machinery: the peer calls
C{callRemote}, the owner's L{netsuite.bus.server.BusResponders} answers.
"""

from __future__ import annotations

from twisted.protocols import amp

from .arguments import Typed
from .errors import ERRORS

__all__ = ["Send", "AddListener", "RemoveListener", "Watch", "Unwatch", "Describe"]


class Send(amp.Command):
    """
    Send a message to a mailbox of the owner and wait for the result.
    C{result} is always there: the typed C{None} when C{answered} is false.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"message", Typed())]
    response = [(b"answered", amp.Boolean()), (b"result", Typed())]
    errors = ERRORS


class AddListener(amp.Command):
    """
    Put a stand-in for one of the peer's listeners on a mailbox; the owner
    then asks for its verdicts with L{netsuite.bus.peercommands.CallListener}.
    Without C{remember_by} nothing is remembered; with C{fail_closed}
    true, the listener's error or time-out ends the chain with the
    mailbox's refusal.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"listener", amp.Unicode()),
                 (b"first", amp.Boolean()), (b"deadline", amp.Float()),
                 (b"tags", Typed()), (b"remember_by", Typed(optional=True)),
                 (b"fail_closed", amp.Boolean(optional=True))]
    response = [(b"id", amp.Unicode())]
    errors = ERRORS


class RemoveListener(amp.Command):
    """
    Take off a listener that L{AddListener} put on with this id.
    """

    arguments = [(b"listener", amp.Unicode())]
    response: list = []
    errors = ERRORS


class Watch(amp.Command):
    """
    Have every message sent to a mailbox copied to the peer with
    L{netsuite.bus.peercommands.Notify}.
    """

    arguments = [(b"mailbox", amp.Unicode()), (b"watch", amp.Unicode())]
    response: list = []
    errors = ERRORS


class Unwatch(amp.Command):
    """
    Stop a watch that L{Watch} started with this id.
    """

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
