# -*- test-case-name: tests.bus.test_client,tests.bus.test_watch,tests.bus.test_reconnect -*-
"""
A peer's side of the bus: another process's registry, used like a local one.

L{BusClient} keeps one connection to the owner, reconnects with back-off
when it drops (the daemon restarted) and re-adds its listeners and watches
by itself before any other call goes out on the new connection.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from ..registry.interfaces import (NO_ANSWER, AccessDenied, IListenerHandle, IRegistry,
                                   ListenerError, NotRunning, parse_address)
from ..registry.registry import _decorator_or_handle, matcher
from ..registry import values
from .arguments import take_chunks
from .reach import (DEFAULT_SOCKET_DIR, NamedEndpoint, UntrustedServer, socket_endpoint,
                    socket_path, trusted_uids, unreachable, why_unreachable)
from .framing import CALL_LISTENER, BusProtocol, answer_box, refusal_box
from .server import Credentials, peer_credentials
from .ownercommands import AddListener, Describe, RemoveListener, Send, Unwatch, Watch
from .peercommands import Notify

__all__ = ["BusClient", "NotRunning", "AccessDenied", "UntrustedServer", "connect",
           "DEFAULT_SOCKET_DIR", "socket_path", "socket_endpoint", "why_unreachable", "unreachable"]

_log = Logger()

_ids = itertools.count(1)


class _Attaching:
    """
    The outcome of a handle's first attach (C{AddListener} or C{Watch}):
    L{when_attached} gives each caller a fresh Deferred of it. (C{attached}
    fires too, but its failure is consumed once logged.)
    """

    _outcome: Any = None
    _waiters: "Tuple[Deferred[Any], ...]" = ()  # replaced, never changed in place

    def when_attached(self) -> "Deferred[Any]":
        """
        Fires with the handle once the owner took it, or fails with the
        owner's error (L{netsuite.bus.errors.NotPermitted}, ...).
        """
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        if self._outcome is not None:
            return succeed(self._outcome)
        waiter: Deferred[Any] = Deferred()
        self._waiters += (waiter,)
        return waiter

    def _settle(self, outcome: Any) -> None:
        if self._outcome is not None:
            return
        self._outcome, waiters, self._waiters = outcome, self._waiters, ()
        for waiter in waiters:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)


@implementer(IListenerHandle)
class RemoteListener(_Attaching):
    """
    One of our functions listening on the owner's mailbox.
    """

    def __init__(self, client: "BusClient", path: str, fn: Callable[..., Any], first: bool,
                 tags: Dict[str, Any], deadline: float,
                 remember_by: Optional[List[str]] = None, fail_closed: bool = False) -> None:
        self.client = client
        self.id = f"l{next(_ids)}"
        self.address = f"{client.name}:{path}"
        self.path = path
        self.fn = fn
        self.first = first
        self.tags = tags
        self.deadline = deadline
        self.remember_by = remember_by
        self.fail_closed = fail_closed
        self.attached: Deferred[RemoteListener] = Deferred()

    def remove(self) -> None:
        self.client._remove_listener(self)


class RemoteWatch(_Attaching):
    """
    One of our functions watching the owner's mailbox.
    """

    def __init__(self, client: "BusClient", path: str, fn: Callable[..., Any],
                 on_attach: Optional[Callable[[], Any]] = None) -> None:
        self.client = client
        self.id = f"w{next(_ids)}"
        self.path = path
        self.fn = fn
        self.on_attach = on_attach
        self.attached: Deferred[RemoteWatch] = Deferred()

    def remove(self) -> None:
        self.client._remove_watch(self)


class _ClientResponders(amp.CommandLocator):
    def __init__(self, client: "BusClient") -> None:
        self.client = client

    def reply(self, box: amp.AmpBox) -> Any:
        """
        The answer box to a L{CallListener} box, or its error box, or a
        Deferred of one when the listener answers later. Built by hand, with
        no Deferred for a listener that answers at once: this is the hot
        path of every hook.
        """
        ask = box[amp.ASK]
        try:
            listener = box[b"listener"].decode()
            handle = self.client._listeners.get(listener)
            if handle is None:
                raise ListenerError(f"no listener {listener!r} here")
            message = values.loads(take_chunks(box, b"message"))
        except Exception as e:
            return refusal_box(ask, e)
        try:
            verdict = handle.fn(message)
        except Exception:
            return self._failed(Failure(), ask, handle)
        if isinstance(verdict, Deferred):
            return verdict.addCallbacks(answer_box, self._failed, callbackArgs=(ask,),
                                        errbackArgs=(ask, handle))
        return answer_box(verdict, ask)

    def _failed(self, failure: Failure, ask: bytes, handle: RemoteListener) -> amp.AmpBox:
        _log.failure("listener {fn!r} on {address} failed", failure,
                     fn=handle.fn, address=handle.address)
        return refusal_box(ask, ListenerError(f"listener failed: {failure.getErrorMessage()}"))

    @Notify.responder
    def notify(self, watch: str, mailbox: str, message: bytes) -> Dict[str, Any]:
        handle = self.client._watches.get(watch)
        if handle is not None:
            try:
                handle.fn(values.loads(message))
            except Exception:
                # Notify has no answer: an error here would close the connection.
                _log.failure("watch {fn!r} on {mailbox} failed", fn=handle.fn, mailbox=mailbox)
        return {}


class _ClientProtocol(BusProtocol):
    """
    The connection to the owner. It answers L{CallListener} boxes itself,
    before the dispatcher sees them; everything else is the dispatcher's.
    """

    def __init__(self, client: "BusClient") -> None:
        self._responders = _ClientResponders(client)
        BusProtocol.__init__(self, self._responders)
        self.client = client
        self.peer = f"process {client.name}"

    def box_received(self, box: amp.AmpBox) -> None:
        if box.get(amp.COMMAND) == CALL_LISTENER and amp.ASK in box:
            reply = self._responders.reply(box)
            if isinstance(reply, Deferred):
                reply.addCallback(self.send_reply).addErrback(self.unhandledError)
            else:
                self.send_reply(reply)
            return
        self.dispatcher.ampBoxReceived(box)

    def connectionMade(self) -> None:
        BusProtocol.connectionMade(self)
        self.client._current = self
        self.client._made()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        BusProtocol.connectionLost(self, reason)
        self.client._lost(self)


@implementer(IRegistry)
class BusClient:
    """
    The registry of process C{name}, reached over the bus.

    It has the methods of L{IRegistry} (but C{declare}); C{describe} returns
    a Deferred. Calls made while the owner is unreachable fail with
    L{NotRunning} (L{AccessDenied} when we may not connect); listeners and
    watches wait and attach once it is back. While it is unreachable, each
    new reason (no socket, refused, permission denied) is logged once.

    Over a Unix socket the client first checks who serves it
    (C{SO_PEERCRED}): a server whose uid is not root, ours, the socket
    directory's owner's or in C{server_uids} is refused, and calls fail
    with L{UntrustedServer}.

    @param endpoint: a client endpoint string (C{unix:path=...}, C{tcp:...}).
    @param server_uids: more uids the owner may run as.
    @param credentials: reads the (pid, uid, gid) of the server from a
        transport (None: not a Unix socket, nothing to check).
    """

    def __init__(self, name: str, endpoint: str, reactor: Any,
                 max_delay: float = 2.0, server_uids: Iterable[int] = (),
                 credentials: Callable[[Any], Optional[Credentials]] = peer_credentials
                 ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.server_uids = frozenset(server_uids)
        self._credentials = credentials
        self._reactor = reactor
        self._listeners: Dict[str, RemoteListener] = {}
        self._watches: Dict[str, RemoteWatch] = {}
        self._current: Optional[_ClientProtocol] = None
        self._unreachable: Optional[str] = None  # why the last attempt failed
        self._service = ClientService(
            NamedEndpoint(clientFromString(reactor, endpoint), endpoint, self._failed,
                           self._untrusted),
            Factory.forProtocol(lambda: _ClientProtocol(self)),  # type: ignore[arg-type]
            retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=max_delay, factor=2.0),
            clock=reactor, prepareConnection=self._reattach)
        self._service.startService()

    # connection management

    def _reattach(self, proxy: Any) -> "Deferred[Any]":
        """
        A new connection: put our listeners and watches back, in order.

        C{proxy} wraps the connection, which has already made itself
        C{self._current}.
        """
        connection = self._current
        if connection is None:
            raise ConnectionError(f"connection to {self.name} lost while preparing it")
        firsts = [h for h in self._listeners.values() if h.first]
        lasts = [h for h in self._listeners.values() if not h.first]
        # Each first listener goes in front of those added before it, as
        # when it was added.
        calls = [self._attach(connection, h) for h in firsts]
        calls += [self._attach(connection, h) for h in lasts]
        calls += [self._attach_watch(connection, w) for w in self._watches.values()]

        def attached(results: List[Any]) -> None:
            if results:
                _log.info("attached {n} listeners and watches to {name}",
                          n=sum(1 for ok, _ in results if ok), name=self.name)
        return DeferredList(calls, consumeErrors=True).addCallback(attached)

    def _untrusted(self, transport: Any) -> Optional[UntrustedServer]:
        """
        Why the server at the other end of C{transport} is refused, if it is.
        """
        creds = self._credentials(transport)
        if creds is None:
            return None
        pid, uid, gid = creds
        trusted = trusted_uids(transport, self.server_uids)
        if uid in trusted:
            return None
        return UntrustedServer(
            f"refusing process {self.name} at {self.endpoint}: its socket is served by uid "
            f"{uid} (pid {pid}), not by {', '.join(map(str, sorted(trusted)))} (root, ours, "
            "the socket directory's owner)")

    def _failed(self, failure: Failure) -> None:
        why = why_unreachable(failure.value)
        if why != self._unreachable:
            self._unreachable = why
            _log.warn("cannot connect to process {name} at {endpoint}: {why}; retrying",
                      name=self.name, endpoint=self.endpoint, why=why)

    def _made(self) -> None:
        if self._unreachable is not None:
            self._unreachable = None
            _log.info("connected to process {name} at {endpoint}", name=self.name,
                      endpoint=self.endpoint)

    def _lost(self, connection: _ClientProtocol) -> None:
        if self._current is connection:
            self._current = None
            _log.info("lost connection to {name}; reconnecting", name=self.name)

    def _connection(self) -> "Deferred[_ClientProtocol]":
        def not_running(failure: Failure) -> Failure:
            failure.trap(ConnectError, OSError)
            if isinstance(failure.value, NotRunning):  # UntrustedServer
                return failure
            raise unreachable(self.name, self.endpoint, failure.value)
        return self._service.whenConnected(failAfterFailures=1).addErrback(not_running)  # type: ignore[return-value]

    @property
    def idle(self) -> bool:
        """
        Whether nothing waits on this client: no listeners, no watches.
        """
        return not self._listeners and not self._watches

    def connected(self) -> "Deferred[BusClient]":
        """
        Fires with this client once connected and re-attached; fails with
        L{NotRunning} (L{AccessDenied}) if the next attempt to connect fails.
        """
        return self._connection().addCallback(lambda _: self)

    def close(self) -> "Deferred[None]":
        """
        Disconnect and stop reconnecting.
        """
        # On a later turn: close() may be called from a callback that the
        # connection machinery is still running.
        return deferLater(self._reactor, 0, self._service.stopService)

    # IRegistry

    def declare(self, path: str, kind: str = "decision", doc: str = "",
                refusal: Any = None, secret: Any = ()) -> None:
        raise NotImplementedError("a process declares only its own mailboxes")

    def _path(self, address: str) -> str:
        process, path = parse_address(address)
        if process not in (None, self.name):
            raise ValueError(f"{address}: this client reaches process {self.name} only")
        return path

    def send(self, address: str, message: Optional[values.Message] = None) -> "Deferred[Any]":
        try:
            path = self._path(address)
            data = values.dumps(values.check_message({} if message is None else message))
        except Exception:
            return fail()
        return self._connection().addCallback(
            lambda c: c.callRemote(Send, mailbox=path, message=data)).addCallback(
            lambda r: values.loads(r["result"]) if r["answered"] else NO_ANSWER)

    def listen(self, address: str, fn: Optional[Callable[..., Any]] = None, *,
               first: bool = False, tags: Optional[Dict[str, Any]] = None,
               deadline: Optional[float] = None, remember_by: Any = None,
               fail_closed: bool = False) -> Any:
        path = self._path(address)
        tags = dict(tags or {})
        values.check(tags, "tags")
        fields = None if remember_by is None else list(remember_by)

        def add(fn: Callable[..., Any]) -> RemoteListener:
            # float(): amp.Float refuses an int such as deadline=5.
            handle = RemoteListener(self, path, fn, first, tags,
                                    1.0 if deadline is None else float(deadline), fields,
                                    bool(fail_closed))
            self._listeners[handle.id] = handle
            if self._current is not None:
                self._attach(self._current, handle).addErrback(lambda f: None)  # logged
            return handle
        return _decorator_or_handle(add, fn)

    def _attach(self, connection: _ClientProtocol, handle: RemoteListener) -> "Deferred[Any]":
        def done(result: Any) -> None:
            handle._settle(handle)
            if not handle.attached.called:
                handle.attached.callback(handle)

        def failed(failure: Failure) -> Failure:
            _log.failure("could not add listener on {address}", failure,
                         address=handle.address)
            handle._settle(failure)
            if not handle.attached.called:
                handle.attached.errback(failure)
                handle.attached.addErrback(lambda f: None)
            return failure

        closed = {"fail_closed": True} if handle.fail_closed else {}
        return connection.callRemote(
            AddListener, mailbox=handle.path, listener=handle.id, first=handle.first,
            deadline=handle.deadline, tags=values.dumps(handle.tags),
            remember_by=None if handle.remember_by is None else values.dumps(handle.remember_by),
            **closed).addCallbacks(done, failed)

    def _remove_listener(self, handle: RemoteListener) -> None:
        if self._listeners.pop(handle.id, None) is not None and self._current is not None:
            self._current.callRemote(RemoveListener, listener=handle.id).addErrback(
                lambda f: None)

    def watch(self, address: str, fn: Callable[..., Any],
              on_attach: Optional[Callable[[], Any]] = None) -> RemoteWatch:
        """
        Watch the owner's mailbox (see L{IRegistry.watch}); C{on_attach()}
        is called each time the owner holds the watch: once connected, and
        again after each reconnection (the owner may have restarted, and
        the messages sent meanwhile were missed).
        """
        handle = RemoteWatch(self, self._path(address), fn, on_attach)
        self._watches[handle.id] = handle
        if self._current is not None:
            self._attach_watch(self._current, handle).addErrback(lambda f: None)  # logged
        return handle

    def _attach_watch(self, connection: _ClientProtocol, handle: RemoteWatch) -> "Deferred[Any]":
        def done(result: Any) -> None:
            handle._settle(handle)
            if not handle.attached.called:
                handle.attached.callback(handle)
            if handle.on_attach is not None and handle.id in self._watches:
                try:
                    handle.on_attach()
                except Exception:
                    _log.failure("on_attach of the watch of {path} on {name} failed",
                                 path=handle.path, name=self.name)

        def failed(failure: Failure) -> Failure:
            _log.failure("could not watch {path} on {name}", failure,
                         path=handle.path, name=self.name)
            handle._settle(failure)
            if not handle.attached.called:
                handle.attached.errback(failure)
                handle.attached.addErrback(lambda f: None)
            return failure

        return connection.callRemote(Watch, mailbox=handle.path, watch=handle.id).addCallbacks(
            done, failed)

    def _remove_watch(self, handle: RemoteWatch) -> None:
        if self._watches.pop(handle.id, None) is not None and self._current is not None:
            self._current.callRemote(Unwatch, watch=handle.id).addErrback(lambda f: None)

    def wait_for(self, address: str, match: Any = None,
                 timeout: Optional[float] = None) -> "Deferred[values.Message]":
        accept = matcher(match)
        waiter: Deferred[values.Message] = Deferred(lambda d: handle.remove())

        def seen(message: values.Message) -> None:
            if not waiter.called and accept(message):
                handle.remove()
                waiter.callback(message)

        def not_attached(failure: Failure) -> None:
            handle.remove()
            if not waiter.called:
                waiter.errback(failure)

        handle = self.watch(address, seen)
        # Straight on handle.attached, before the attach can fail: once failed
        # it is swallowed (fires None), as when the failure came before the
        # connection was reported.
        handle.attached.addErrback(not_attached)
        self._connection().addErrback(not_attached)
        if timeout is not None:
            waiter.addTimeout(timeout, self._reactor)
        return waiter

    def heard(self, address: str) -> bool:
        """
        True: whether the owner's mailbox has listeners is not known here
        without a round trip, so a sender always sends.
        """
        self._path(address)
        return True

    def describe(self, prefix: str = "/") -> "Deferred[List[Dict[str, Any]]]":
        return self._connection().addCallback(
            lambda c: c.callRemote(Describe, prefix=prefix)).addCallback(
            lambda r: values.loads(r["mailboxes"]))


def connect(name: str, socket_dir: Optional[str] = None, endpoint: Optional[str] = None,
            reactor: Any = None) -> BusClient:
    """
    The registry of the running process C{name}, for a hook script.

    @param socket_dir: where the process's socket is; default
        C{$NETSUITE_SOCKET_DIR} or C{/run/netsuite}.
    @param endpoint: a client endpoint string, instead of the socket.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    return BusClient(name, endpoint or socket_endpoint(name, socket_dir), reactor)
