# -*- test-case-name: tests.registry.test_registry -*-
"""
The registry's interface, its verdicts and its errors.

A listener answers each message with a verdict: L{CONTINUE} lets the chain go
on, L{Stop} ends it with a result. Either may say why, as a short
identifier (C{Continue("miss")}, C{Stop(value, reason="hit")}): the
mailbox counts a listener's verdicts by reason, so an operator sees from
introspection why a hook does not answer. L{IRegistry.send} fires with that result,
or with L{NO_ANSWER} when every listener let the chain continue. Wrapped in
L{Remember}, a verdict also holds for later messages that agree with this one
on the listener's C{remember_by} fields, so the mailbox need not ask again.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from zope.interface import Attribute, Interface

__all__ = [
    "IRegistry",
    "IListenerHandle",
    "Stop",
    "CONTINUE",
    "Continue",
    "check_reason",
    "Remember",
    "MAX_REMEMBER",
    "NO_ANSWER",
    "DECISION",
    "EVENT",
    "UnknownMailbox",
    "MailboxExists",
    "InvalidAddress",
    "join_address",
    "NotRunning",
    "AccessDenied",
    "ListenerError",
    "parse_address",
]

DECISION = "decision"
"""A mailbox whose listeners run in order until one stops the chain."""

EVENT = "event"
"""A mailbox whose listeners are all told; none can stop the chain."""


_REASON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")


def check_reason(reason: Any) -> Optional[str]:
    """
    C{reason} if it is None or a reason: 1 to 32 letters, digits, C{_},
    C{.}, C{-}, starting with a letter or digit.

    @raise ValueError: it is not.
    """
    if reason is None or (type(reason) is str and _REASON_RE.match(reason)):
        return reason
    raise ValueError(f"reason must be a short identifier (1-32 letters, digits, '_', "
                     f"'.', '-'), not {reason!r}")


class Stop:
    """
    The verdict that ends a chain with C{value} as the result of the send;
    C{reason} (see L{check_reason}) says why, for the listener's counters.
    """

    __slots__ = ("value", "reason")

    def __init__(self, value: Any, reason: Optional[str] = None) -> None:
        self.value = value
        # Made for every answer: no call when there is no reason.
        self.reason = reason if reason is None else check_reason(reason)

    def __repr__(self) -> str:
        if self.reason is None:
            return f"Stop({self.value!r})"
        return f"Stop({self.value!r}, reason={self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Stop) and other.value == self.value
                and other.reason == self.reason)

    def __hash__(self) -> int:
        return hash(("Stop", repr(self.value)))


class _Continue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CONTINUE"

    def __reduce__(self) -> str:
        return "CONTINUE"


CONTINUE = _Continue()
"""The verdict that lets the chain go on to the next listener."""


class Continue:
    """
    L{CONTINUE} with a reason (see L{check_reason}): the chain goes on, and
    the listener's counters count C{reason} (C{Continue("miss")},
    C{Continue("timeout")}).
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        if reason is None:
            raise ValueError("Continue needs a reason; without one, answer CONTINUE")
        self.reason = check_reason(reason)

    def __repr__(self) -> str:
        return f"Continue({self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Continue) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("Continue", self.reason))


MAX_REMEMBER = 86400.0
"""The longest a verdict may be remembered, in seconds."""


class Remember:
    """
    A verdict (L{Stop}, L{CONTINUE} or L{Continue}) that holds for C{seconds}: until
    then, the mailbox answers a message that has the same values in the
    fields the listener was added with (C{remember_by}) with this verdict,
    without calling the listener. A hook in another process that caches its
    answers uses it to spare the owner a round trip per message. A listener
    added without C{remember_by} just has its verdict taken. The same
    result value answers every message it is remembered for: senders read
    results, they do not change them.
    """

    __slots__ = ("verdict", "seconds")

    def __init__(self, verdict: Any, seconds: float) -> None:
        self.verdict = verdict
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Remember({self.verdict!r}, {self.seconds!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Remember) and other.verdict == self.verdict
                and other.seconds == self.seconds)

    def __hash__(self) -> int:
        return hash(("Remember", self.seconds))


class _NoAnswer:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ANSWER"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NO_ANSWER"


NO_ANSWER = _NoAnswer()
"""What L{IRegistry.send} fires with when no listener stopped the chain."""


class UnknownMailbox(LookupError):
    """
    No mailbox of that name has been declared.
    """


class MailboxExists(ValueError):
    """
    A mailbox of that name is already declared (with another kind or owner).
    """


class NotRunning(ConnectionError):
    """
    The process named in an address could not be reached: nothing listens
    at its bus address.
    """


class AccessDenied(NotRunning):
    """
    The process named in an address could not be reached because we may not
    connect to its bus socket (permission denied).
    """


class InvalidAddress(ValueError):
    """
    A mailbox address is not C{/path} or C{process:/path}.
    """


class ListenerError(Exception):
    """
    A listener gave an answer that is not a verdict.
    """


_PROCESS = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_PATH = r"(?:/[A-Za-z0-9_.+-]+)+"
_ADDRESS_RE = re.compile(rf"^(?:({_PROCESS}):)?({_PATH})\Z")
PROCESS_NAME_RE = re.compile(rf"^{_PROCESS}\Z")


_parsed: "dict[str, Tuple[Optional[str], str]]" = {}


def parse_address(address: str) -> Tuple[Optional[str], str]:
    """
    Split C{process:/path} into C{(process, path)}; a bare C{/path} gives
    C{(None, path)}. Valid addresses are remembered (a process uses few).
    """
    found = _parsed.get(address) if type(address) is str else None
    if found is not None:
        return found
    match = _ADDRESS_RE.match(address) if isinstance(address, str) else None
    if match is None:
        raise InvalidAddress(
            f"{address!r} is not a mailbox address (/a/b or process:/a/b)")
    found = match.group(1), match.group(2)
    if len(_parsed) < 4096:
        _parsed[address] = found
    return found


def join_address(process: str, path: str, here: Optional[str] = None) -> str:
    """
    The address of C{path} in C{process}: C{process:path}, or C{path} alone
    when C{process} is C{""} or C{here} (the caller's own process name).
    """
    return path if process in ("", here) else f"{process}:{path}"


class IListenerHandle(Interface):
    """
    A listener added to a mailbox.
    """

    id = Attribute("A string naming the listener within its mailbox.")
    address = Attribute("The address of the mailbox it listens on.")
    attached = Attribute(
        "A Deferred that fires with this handle once the owner of the mailbox "
        "holds the listener (at once for a local mailbox).")

    def remove() -> None:
        """
        Take the listener off its mailbox; doing it twice is harmless.
        """


class IRegistry(Interface):
    """
    Named mailboxes with ordered listeners: MetaNet's message passing.

    An address is C{/path} (this process) or C{process:/path}; an address
    naming another process reaches it over the bus.
    """

    name = Attribute("The name of this process on the bus.")

    def declare(path: str, kind: str = DECISION, doc: str = "", refusal: Any = None,
                secret: Any = ()) -> None:
        """
        Create the mailbox C{path}, owned by the caller. C{kind} is
        L{DECISION} or L{EVENT}. C{refusal} (a decision's) is the result
        the chain ends with when a fail-closed listener fails or gives no
        answer in time; None: no listener may fail closed there.
        C{secret} names message fields (C{password}) that listeners get
        and watchers never see (they get C{"<redacted>"}).
        """

    def send(address: str, message: Optional[dict] = None) -> Any:
        """
        Run C{message} through the listeners of C{address}.

        @return: a Deferred firing with the value of the first L{Stop}, or
            L{NO_ANSWER}; failing with L{UnknownMailbox} or
            L{netsuite.registry.values.InvalidValue}.
        """

    def listen(address: str, fn: Any = None, *, first: bool = False,
               tags: Optional[dict] = None, deadline: Optional[float] = None,
               remember_by: Optional[Any] = None, fail_closed: bool = False) -> Any:
        """
        Add C{fn} to the mailbox, first or last. C{fn(message)} returns a
        verdict or a Deferred of one. C{deadline} bounds how long a Deferred
        answer may take. C{remember_by}, a sequence of message field names,
        lets the mailbox keep C{fn}'s L{Remember} verdicts by the values of
        those fields. With C{fail_closed} (a deny-list, say), C{fn}'s
        error or time-out is not skipped: the chain ends with the mailbox's
        refusal (L{netsuite.registry.values.InvalidValue} when the mailbox
        has none). Without C{fn}, return a decorator.

        @return: an L{IListenerHandle}.
        """

    def watch(address: str, fn: Any, on_attach: Any = None) -> Any:
        """
        Call C{fn(message)} on a later turn for every message sent to the
        mailbox, without taking part in the chain.

        @param on_attach: if given, called with no argument each time the
            mailbox's owner holds the watch: at once for a mailbox of this
            process; for another process's, once connected and again after
            each reconnection (that process may have restarted, and what
            it sent meanwhile was missed: the watcher's chance to look
            again).
        @return: an object with a C{remove()} method.
        """

    def wait_for(address: str, match: Any = None, timeout: Optional[float] = None) -> Any:
        """
        A Deferred firing with the next message sent to the mailbox that
        C{match} accepts (a callable, or a dict of tags the message must
        carry with equal values); it fails with
        L{twisted.internet.defer.TimeoutError} after C{timeout} seconds.
        """

    def describe(prefix: str = "/") -> Any:
        """
        Mailboxes under C{prefix}, their listeners with tags and counters,
        as a netsuite value (a list of maps).
        """

    def heard(address: str) -> bool:
        """
        Whether a message sent to C{address} now would reach anyone (a
        listener or a watcher), so that a sender may spare itself building
        a message nobody hears (an event per request, say). Answered at
        once: a registry that cannot know (another process's mailbox)
        answers True.

        @raise UnknownMailbox: no local mailbox of that name.
        """
