"""
The hook registry: named mailboxes with ordered listeners (MetaNet's
message passing), typed values, verdicts.
"""

from .interfaces import (CONTINUE, DECISION, EVENT, NO_ANSWER, Continue, IListenerHandle,
                         IRegistry, InvalidAddress, ListenerError, MailboxExists, Remember, Stop,
                         UnknownMailbox, parse_address)
from .registry import Registry
from .values import MAC, InvalidValue

__all__ = [
    "CONTINUE", "Continue", "DECISION", "EVENT", "NO_ANSWER", "IListenerHandle", "IRegistry",
    "InvalidAddress", "ListenerError", "MailboxExists", "Remember", "Stop", "UnknownMailbox",
    "parse_address", "Registry", "MAC", "InvalidValue",
]
