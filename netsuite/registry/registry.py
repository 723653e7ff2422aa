# -*- test-case-name: tests.registry.test_registry -*-
"""
The registry: this process's mailboxes, and the way to other processes'.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from .interfaces import (DECISION, EVENT, IRegistry, InvalidAddress, MailboxExists,
                         UnknownMailbox, parse_address, PROCESS_NAME_RE)
from .mailbox import Listener, Mailbox
from .observer import EventualQueue
from .values import Message, check, check_message

__all__ = ["Registry", "matcher", "declare_service"]


def matcher(match: Any) -> Callable[[Message], bool]:
    """
    Turn a C{wait_for} match (None, a callable, or a dict of tags the message
    must carry with equal values) into a predicate.
    """
    if match is None:
        return lambda message: True
    if callable(match):
        return match  # type: ignore[no-any-return]
    if isinstance(match, dict):
        wanted = list(match.items())
        return lambda message: all(
            key in message and message[key] == value for key, value in wanted)
    raise TypeError(f"match must be None, a callable or a dict, not {match!r}")


def _decorator_or_handle(add: Callable[[Callable[..., Any]], Any],
                         fn: Optional[Callable[..., Any]]) -> Any:
    """
    C{add(fn)} now if C{fn} is given, else a decorator that does it and
    leaves the handle on the function as C{fn.listener}.
    """
    if fn is not None:
        return add(fn)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.listener = add(fn)  # type: ignore[attr-defined]
        return fn
    return decorate


@implementer(IRegistry)
class Registry:
    """
    The one implementation of L{IRegistry}.

    @param name: this process's name on the bus.
    @param clock: times deadlines and counts time spent.
    @param peers: finds the registry of another process by name (an object
        with C{registry_for(name)}); without it, addresses naming another
        process fail with L{InvalidAddress}.
    @param default_deadline: seconds a listener's Deferred may take when its
        listener did not say.
    """

    def __init__(self, name: str, clock: IReactorTime, peers: Any = None,
                 default_deadline: float = 2.0) -> None:
        if not PROCESS_NAME_RE.match(name):
            raise InvalidAddress(f"{name!r} is not a process name")
        self.name = name
        self.clock = clock
        self.peers = peers
        self.eventual = EventualQueue(clock)
        self.default_deadline = default_deadline
        self._mailboxes: Dict[str, Mailbox] = {}

    def _remote(self, address: str) -> tuple[Any, str]:
        """
        Return C{(peer registry or None, path)} for an address.
        """
        process, path = parse_address(address)
        if process is None or process == self.name:
            return None, path
        if self.peers is None:
            raise InvalidAddress(f"{address}: this registry reaches no other process")
        return self.peers.registry_for(process), path

    def mailbox(self, path: str) -> Mailbox:
        """
        The local mailbox C{path}, or L{UnknownMailbox}.
        """
        try:
            return self._mailboxes[path]
        except KeyError:
            raise UnknownMailbox(f"process {self.name} has no mailbox {path}") from None

    def declare(self, path: str, kind: str = DECISION, doc: str = "",
                refusal: Any = None, secret: Sequence[str] = ()) -> None:
        process, path = parse_address(path)
        if process not in (None, self.name):
            raise InvalidAddress(f"{process}:{path}: a process declares only its own mailboxes")
        if kind not in (DECISION, EVENT):
            raise ValueError(f"mailbox kind must be {DECISION!r} or {EVENT!r}, not {kind!r}")
        if path in self._mailboxes:
            raise MailboxExists(f"mailbox {path} is already declared")
        if refusal is not None:
            check(refusal, "refusal")
        if isinstance(secret, str) or not all(isinstance(field, str) for field in secret):
            raise ValueError(f"secret must be a list of message field names, not {secret!r}")
        self._mailboxes[path] = Mailbox(path, kind, doc, self.clock, self.eventual,
                                        self.default_deadline, refusal, secret)

    def send(self, address: str, message: Optional[Message] = None) -> "Deferred[Any]":
        try:
            peer, path = self._remote(address)
            if peer is not None:
                return peer.send(path, message)  # type: ignore[no-any-return]
            mailbox = self.mailbox(path)
            return mailbox.dispatch(check_message({} if message is None else message))
        except Exception:
            return fail()

    def listen(self, address: str, fn: Optional[Callable[[Message], Any]] = None, *,
               first: bool = False, tags: Optional[Dict[str, Any]] = None,
               deadline: Optional[float] = None, remember_by: Any = None,
               fail_closed: bool = False) -> Any:
        peer, path = self._remote(address)
        if peer is not None:
            closed = {"fail_closed": True} if fail_closed else {}
            return peer.listen(path, fn, first=first, tags=tags, deadline=deadline,
                               remember_by=remember_by, **closed)
        mailbox = self.mailbox(path)
        return _decorator_or_handle(
            lambda fn: mailbox.add(fn, first, tags or {}, deadline, remember_by, fail_closed),
            fn)

    def watch(self, address: str, fn: Callable[[Message], Any],
              on_attach: Optional[Callable[[], Any]] = None) -> Any:
        peer, path = self._remote(address)
        if peer is not None:
            return peer.watch(path, fn, on_attach=on_attach)
        watcher = self.mailbox(path).watch(fn)
        if on_attach is not None:
            on_attach()  # held at once, and for as long as this process runs
        return watcher

    def wait_for(self, address: str, match: Any = None,
                 timeout: Optional[float] = None) -> "Deferred[Message]":
        try:
            peer, path = self._remote(address)
            if peer is not None:
                return peer.wait_for(path, match, timeout)  # type: ignore[no-any-return]
            mailbox = self.mailbox(path)
            accept = matcher(match)
        except Exception:
            return fail()
        waiter: Deferred[Message] = Deferred(lambda d: watcher.remove())

        def seen(message: Message) -> None:
            if not waiter.called and accept(message):
                watcher.remove()
                waiter.callback(message)

        watcher = mailbox.watch(seen)
        if timeout is not None:
            waiter.addTimeout(timeout, self.clock)
        return waiter

    def heard(self, address: str) -> bool:
        mailbox = self._mailboxes.get(address)  # the hot path: a local path
        if mailbox is not None:
            return bool(mailbox.listeners or mailbox.watchers)
        peer, path = self._remote(address)
        if peer is not None:
            return bool(peer.heard(path))
        return self.mailbox(path).heard

    def describe(self, prefix: str = "/") -> List[Dict[str, Any]]:
        return [mailbox.describe() for path, mailbox in sorted(self._mailboxes.items())
                if path == prefix or path.startswith(prefix.rstrip("/") + "/")]

    def remove(self, listener: Listener) -> None:
        """
        Take C{listener} off its mailbox (same as C{listener.remove()}).
        """
        listener.remove()


def declare_service(registry: Any, owner: str, decisions: Dict[str, str],
                    events: Dict[str, str], stock: Dict[str, Callable[[Message], Any]],
                    refusals: Optional[Dict[str, Any]] = None,
                    secrets: Optional[Dict[str, Sequence[str]]] = None) -> None:
    """
    Declare a service's mailboxes (C{decisions} and C{events}: path -> doc;
    C{refusals}: path -> what a decision answers when a fail-closed
    listener fails; C{secrets}: path -> the message fields watchers never
    see) and put its stock behaviour on them as ordinary last listeners,
    tagged C{owner=OWNER stock=true}.
    """
    secrets = secrets or {}
    for path, doc in decisions.items():
        registry.declare(path, doc=doc, refusal=(refusals or {}).get(path),
                         **_secret(secrets, path))
    for path, doc in events.items():
        registry.declare(path, kind=EVENT, doc=doc, **_secret(secrets, path))
    tags = {"owner": owner, "stock": True}
    for path, fn in stock.items():
        registry.listen(path, fn, tags=tags)


def _secret(secrets: Dict[str, Sequence[str]], path: str) -> Dict[str, Any]:
    """
    C{declare}'s C{secret} argument for C{path}, left out when it has none
    (so registries that take no C{secret} still work).
    """
    return {"secret": tuple(secrets[path])} if path in secrets else {}
