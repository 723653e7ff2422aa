# -*- test-case-name: tests.bus.test_framing -*-
"""
The commands the owner of a registry sends to a peer, which answers them
(docs/bus-protocol.md, section 5). Like Twisted's
C{trial/_dist/managercommands.py}, this module is named after the side that
answers; the other direction is L{netsuite.bus.ownercommands}.

L{CallListener} is the hot path of every remote hook, so its boxes are
built and read by hand in L{netsuite.bus.framing}, byte for byte what this
declaration describes (C{tests.bus.test_framing} parses them with it).
L{Notify} goes through AMP's own machinery.
"""

from __future__ import annotations

from twisted.protocols import amp

from .arguments import Typed
from .errors import ERRORS

__all__ = ["CallListener", "Notify"]


class CallListener(amp.Command):
    """
    The owner asks the peer's listener for its verdict on a message.

    The answer's C{result} is there with C{verdict=stop} only; C{reason}
    only when the listener said why (L{netsuite.registry.Continue}, a
    L{netsuite.registry.Stop} with a reason); C{remember} (seconds) only
    when the listener answered L{netsuite.registry.Remember}.
    A peer that cannot give a verdict answers an error, C{LISTENER_ERROR}
    unless a more precise code of L{ERRORS} applies.
    """

    arguments = [(b"listener", amp.Unicode()), (b"mailbox", amp.Unicode()),
                 (b"message", Typed())]
    response = [(b"verdict", amp.Unicode()), (b"result", Typed(optional=True)),
                (b"reason", amp.Unicode(optional=True)),
                (b"remember", amp.Float(optional=True))]
    errors = ERRORS


class Notify(amp.Command):
    """
    A message was sent to a watched mailbox. Always sent without C{_ask}:
    the peer never answers, so there is no response and no error.
    """

    arguments = [(b"watch", amp.Unicode()), (b"mailbox", amp.Unicode()),
                 (b"message", Typed())]
    response: list = []
    requiresAnswer = False
