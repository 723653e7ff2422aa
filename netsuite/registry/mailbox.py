# -*- test-case-name: tests.registry.test_registry -*-
"""
One mailbox: its ordered listeners, its watchers, its counters, and the
dispatch of a message through the chain.

Synchronous listeners run in a plain loop (no Deferred per listener); a
listener that answers with an unfired Deferred is bounded by its deadline and
the chain resumes when it answers.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Collection, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import (CONTINUE, EVENT, MAX_REMEMBER, NO_ANSWER, Continue,
                         IListenerHandle, ListenerError, Remember, Stop)
from .observer import EventualQueue
from .values import InvalidValue, Message, check

__all__ = ["Mailbox", "Listener", "REDACTED", "redacted", "Counters", "ListenerCounters", "MAX_DEADLINE",
           "MAX_REMEMBERED", "MAX_REASONS", "OTHER_REASON"]

MAX_DEADLINE = 300.0
"""The longest a listener may take to answer, in seconds."""

MAX_REMEMBERED = 100_000
"""The most verdicts one listener has remembered at once; beyond, the
oldest are forgotten first."""

MAX_REASONS = 16
"""The most distinct reasons one listener's counters keep; verdicts giving
any further reason are counted under L{OTHER_REASON}."""

OTHER_REASON = "other"

_log = Logger()


class Counters:
    """
    What happened at a mailbox or a listener.
    """

    __slots__ = ("messages", "stops", "errors", "timeouts", "seconds", "remembered")

    def __init__(self) -> None:
        self.messages = 0
        self.stops = 0
        self.errors = 0
        self.timeouts = 0
        self.seconds = 0.0
        self.remembered = 0  # messages given a remembered verdict, not asked

    def as_value(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in Counters.__slots__}


class ListenerCounters(Counters):
    """
    A listener's counters, and its verdicts by the reason they gave
    (L{Continue}, L{Stop}'s C{reason}): at most L{MAX_REASONS} distinct
    reasons, the rest counted as L{OTHER_REASON}, so that a hook cannot
    grow the map without bound.
    """

    __slots__ = ("reasons",)

    def __init__(self) -> None:
        Counters.__init__(self)
        self.reasons: Dict[str, int] = {}

    def count_reason(self, reason: str) -> None:
        reasons = self.reasons
        if reason not in reasons and len(reasons) >= MAX_REASONS:
            reason = OTHER_REASON
        reasons[reason] = reasons.get(reason, 0) + 1

    def as_value(self) -> Dict[str, Any]:
        value = Counters.as_value(self)
        value["reasons"] = dict(self.reasons)
        return value


@implementer(IListenerHandle)
class Listener:
    """
    A function on a mailbox's chain, with its tags, deadline and counters,
    and the verdicts it asked to be remembered (see L{Remember}).
    """

    __slots__ = ("id", "fn", "tags", "deadline", "counters", "address",
                 "attached", "remember_by", "remembered", "fail_closed", "_mailbox")

    def __init__(self, mailbox: "Mailbox", id: str, fn: Callable[[Message], Any],
                 tags: Dict[str, Any], deadline: float,
                 remember_by: Optional[Tuple[str, ...]] = None,
                 fail_closed: bool = False) -> None:
        self._mailbox: Optional[Mailbox] = mailbox
        self.id = id
        self.fn = fn
        self.tags = tags
        self.deadline = deadline
        self.counters = ListenerCounters()
        self.address = mailbox.path
        self.attached: Deferred[Listener] = succeed(self)
        self.remember_by = remember_by
        self.remembered: Dict[Tuple[Any, ...], Tuple[float, Any]] = {}
        self.fail_closed = fail_closed

    def remove(self) -> None:
        if self._mailbox is not None:
            self._mailbox.remove(self)
            self._mailbox = None
        self.remembered.clear()

    def _key(self, message: Message) -> Tuple[Any, ...]:
        return tuple([message.get(name) for name in self.remember_by])  # type: ignore[union-attr]

    def recall(self, message: Message, now: float) -> Any:
        """
        The verdict remembered for C{message}, or None.
        """
        try:
            key = self._key(message)
            kept = self.remembered.get(key)
        except TypeError:  # a field whose value cannot be a key (a list, a map)
            return None
        if kept is None:
            return None
        if kept[0] <= now:
            del self.remembered[key]
            return None
        return kept[1]

    def keep(self, message: Message, remember: Remember, now: float) -> Any:
        """
        Remember C{remember}'s verdict for messages like C{message} (when
        this listener was added with C{remember_by}); return the verdict.
        """
        verdict = remember.verdict
        seconds = remember.seconds
        if (self.remember_by is None or not isinstance(seconds, (int, float))
                or not 0 < seconds <= MAX_REMEMBER
                or not (verdict is CONTINUE or type(verdict) in (Stop, Continue))):
            return verdict
        try:
            key = self._key(message)
            self.remembered.pop(key, None)
            if len(self.remembered) >= MAX_REMEMBERED:
                del self.remembered[next(iter(self.remembered))]
            self.remembered[key] = (now + seconds, verdict)
        except TypeError:
            pass
        return verdict

    def __repr__(self) -> str:
        return f"<Listener {self.id} on {self.address} tags={self.tags!r}>"


REDACTED = "<redacted>"
"""What a watcher sees in place of a mailbox's secret field."""


def redacted(message: Message, secret: Collection[str]) -> Message:
    """
    C{message} with the value of each field named in C{secret} replaced
    by L{REDACTED} (a new map; the fields it lacks stay absent).
    """
    if not any(field in message for field in secret):
        return message
    return {key: REDACTED if key in secret else value for key, value in message.items()}


class _Watcher:
    __slots__ = ("fn", "_mailbox")

    def __init__(self, mailbox: "Mailbox", fn: Callable[[Message], Any]) -> None:
        self._mailbox: Optional[Mailbox] = mailbox
        self.fn = fn

    def remove(self) -> None:
        if self._mailbox is not None:
            self._mailbox.watchers.remove(self)
            self._mailbox = None


class Mailbox:
    """
    A named mailbox of kind C{decision} or C{event}. C{refusal} is the
    result a fail-closed listener's error or time-out ends the chain with
    (None: no listener may fail closed here). C{secret} names the message
    fields (a password) that listeners get but watchers never see: they
    get L{REDACTED} in their place.
    """

    def __init__(self, path: str, kind: str, doc: str, clock: IReactorTime,
                 eventual: EventualQueue, default_deadline: float,
                 refusal: Any = None, secret: Sequence[str] = ()) -> None:
        self.path = path
        self.refusal = refusal
        self.secret = frozenset(secret)
        self.kind = kind
        self.doc = doc
        self.listeners: List[Listener] = []
        self.watchers: List[_Watcher] = []
        self.counters = Counters()
        self._clock = clock
        self._eventual = eventual
        self._default_deadline = default_deadline
        self._serial = 0
        self._chain: Sequence[Listener] = ()  # the listeners as sends see them

    def add(self, fn: Callable[[Message], Any], first: bool, tags: Dict[str, Any],
            deadline: Optional[float], remember_by: Any = None,
            fail_closed: bool = False) -> Listener:
        check(tags, "tags")
        if fail_closed and self.refusal is None:
            raise InvalidValue(f"mailbox {self.path} defines no refusal: a listener cannot "
                               "fail closed there")
        if deadline is None:
            deadline = self._default_deadline
        if not (isinstance(deadline, (int, float)) and math.isfinite(deadline)
                and 0 < deadline <= MAX_DEADLINE):
            raise InvalidValue(f"deadline must be a number of seconds in (0, {MAX_DEADLINE}], "
                               f"got {deadline!r}")
        if remember_by is not None:
            if (isinstance(remember_by, str) or not isinstance(remember_by, (list, tuple))
                    or not remember_by or not all(isinstance(f, str) for f in remember_by)):
                raise InvalidValue("remember_by must be a non-empty list of message field "
                                   f"names, got {remember_by!r}")
            remember_by = tuple(remember_by)
        self._serial += 1
        listener = Listener(self, f"{self._serial}", fn, dict(tags), float(deadline),
                            remember_by, bool(fail_closed))
        if first:
            self.listeners.insert(0, listener)
        else:
            self.listeners.append(listener)
        self._chain = tuple(self.listeners)
        return listener

    def remove(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)
            self._chain = tuple(self.listeners)

    @property
    def heard(self) -> bool:
        """
        Whether a message sent here would reach anyone (a listener or a
        watcher): a sender may spare itself building one that would not.
        """
        return bool(self.listeners or self.watchers)

    def watch(self, fn: Callable[[Message], Any]) -> _Watcher:
        watcher = _Watcher(self, fn)
        self.watchers.append(watcher)
        return watcher

    def tell_watchers(self, message: Message) -> None:
        """
        Give C{message}, its secret fields redacted, to every watcher on a
        later turn.
        """
        if self.secret:
            message = redacted(message, self.secret)
        for watcher in tuple(self.watchers):
            self._eventual.eventually(watcher.fn, message)

    def dispatch(self, message: Message) -> "Deferred[Any]":
        """
        Run C{message} through the chain; the Deferred fires with the result.
        """
        self.counters.messages += 1
        if self.watchers:
            self.tell_watchers(message)
        return _Dispatch(self, self._chain, message).run()

    def describe(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "doc": self.doc,
            "counters": self.counters.as_value(),
            "watchers": len(self.watchers),
            "listeners": [
                {"id": listener.id, "tags": listener.tags,
                 "deadline": listener.deadline,
                 "remember_by": (None if listener.remember_by is None
                                 else list(listener.remember_by)),
                 "fail_closed": listener.fail_closed,
                 "counters": listener.counters.as_value()}
                for listener in self.listeners
            ],
        }


class _Dispatch:
    """
    One message on its way through one chain.
    """

    __slots__ = ("mailbox", "listeners", "message", "index", "started", "result")

    def __init__(self, mailbox: Mailbox, listeners: Sequence[Listener],
                 message: Message) -> None:
        self.mailbox = mailbox
        self.listeners = listeners
        self.message = message
        self.index = 0
        self.started = -1.0
        self.result: Optional[Deferred[Any]] = None

    def run(self) -> "Deferred[Any]":
        # The hot path: one clock reading per listener, verdicts tested by
        # identity before the (slow, abstract-class) Deferred check.
        seconds = self.mailbox._clock.seconds
        listeners = self.listeners
        message = self.message
        then = seconds()
        if self.started < 0:
            self.started = then
        while self.index < len(listeners):
            listener = listeners[self.index]
            self.index += 1
            counters = listener.counters
            counters.messages += 1
            if listener.remember_by is not None:
                verdict = listener.recall(message, then)
                if verdict is not None:
                    counters.remembered += 1
                    self.mailbox.counters.remembered += 1
                    if verdict is not CONTINUE and self._judge(listener, verdict):
                        return self.result  # type: ignore[return-value]
                    continue
            try:
                verdict = listener.fn(message)
            except Exception:
                now = seconds()
                counters.seconds += now - then
                then = now
                self._failed(listener, Failure())
                if listener.fail_closed:
                    return self._refuse(listener)
                continue
            if verdict is not CONTINUE and type(verdict) is not Stop and isinstance(
                    verdict, Deferred):
                return self._wait(listener, verdict, then)
            now = seconds()
            counters.seconds += now - then
            then = now
            if type(verdict) is Remember:
                verdict = listener.keep(message, verdict, now)
            if verdict is not CONTINUE and self._judge(listener, verdict):
                return self.result  # type: ignore[return-value]
        return self._finish(NO_ANSWER)

    def _wait(self, listener: Listener, answer: "Deferred[Any]", began: float) -> "Deferred[Any]":
        if self.result is None:
            self.result = Deferred()
        timed_out = []

        def on_timeout(result: Any, timeout: float) -> Any:
            timed_out.append(True)
            return result

        def answered(verdict: Any) -> None:
            now = self.mailbox._clock.seconds()
            listener.counters.seconds += now - began
            if type(verdict) is Remember:
                verdict = listener.keep(self.message, verdict, now)
            if not self._judge(listener, verdict):
                self.run()

        def failed(failure: Failure) -> None:
            listener.counters.seconds += self.mailbox._clock.seconds() - began
            if timed_out:
                listener.counters.timeouts += 1
                self.mailbox.counters.timeouts += 1
                _log.warn("listener {listener} on {path} gave no answer within "
                          "{deadline}s; skipped", listener=listener.id,
                          path=self.mailbox.path, deadline=listener.deadline,
                          tags=listener.tags)
            else:
                self._failed(listener, failure)
            if listener.fail_closed:
                self._refuse(listener)
            else:
                self.run()

        if not answer.called:
            answer.addTimeout(listener.deadline, self.mailbox._clock,
                              onTimeoutCancel=on_timeout)
        answer.addCallbacks(answered, failed)
        return self.result

    def _judge(self, listener: Listener, verdict: Any) -> bool:
        """
        Act on a listener's verdict; True when the chain is over.
        """
        kind = type(verdict)
        if kind is Stop:
            if self.mailbox.kind == EVENT:
                if verdict.reason is not None:
                    listener.counters.count_reason(verdict.reason)
                return False
            try:
                check(verdict.value, "result")
            except InvalidValue as e:
                self._failed(listener, Failure(e))
                return self._refused_if_closed(listener)
            listener.counters.stops += 1
            if verdict.reason is not None:
                listener.counters.count_reason(verdict.reason)
            self.mailbox.counters.stops += 1
            self._finish(verdict.value)
            return True
        if kind is Continue:
            listener.counters.count_reason(verdict.reason)
            return False
        if verdict is CONTINUE or self.mailbox.kind == EVENT:
            return False
        self._failed(listener, Failure(ListenerError(
            f"listener returned {verdict!r}; a listener returns Stop(value), CONTINUE or "
            "Continue(reason)")))
        return self._refused_if_closed(listener)

    def _refused_if_closed(self, listener: Listener) -> bool:
        if not listener.fail_closed:
            return False
        self._refuse(listener)
        return True

    def _refuse(self, listener: Listener) -> "Deferred[Any]":
        """
        End the chain with the mailbox's refusal: a fail-closed listener
        failed or gave no answer in time.
        """
        _log.warn("listener {listener} on {path} fails closed: the message is refused",
                  listener=listener.id, path=self.mailbox.path, tags=listener.tags)
        listener.counters.count_reason("failed-closed")
        self.mailbox.counters.stops += 1
        return self._finish(copy.deepcopy(self.mailbox.refusal))

    def _failed(self, listener: Listener, failure: Failure) -> None:
        listener.counters.errors += 1
        self.mailbox.counters.errors += 1
        if failure.check(CancelledError, TimeoutError) is None:
            _log.failure("listener {listener} on {path} failed; skipped", failure,
                         listener=listener.id, path=self.mailbox.path, tags=listener.tags)
        else:
            _log.warn("listener {listener} on {path} was cancelled; skipped",
                      listener=listener.id, path=self.mailbox.path)

    def _finish(self, value: Any) -> "Deferred[Any]":
        self.mailbox.counters.seconds += self.mailbox._clock.seconds() - self.started
        if self.result is None:
            self.result = succeed(value)
        else:
            self.result.callback(value)
        return self.result
