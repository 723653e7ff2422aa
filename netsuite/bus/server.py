# -*- test-case-name: tests.bus.test_bus -*-
"""
The owner's side of the bus: serve a registry to peers over AMP.

Each connection gets its own L{BusResponders}; the listeners and watches a
peer added live exactly as long as its connection.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..registry.interfaces import CONTINUE, NO_ANSWER, IRegistry, ListenerError, Remember, Stop
from ..registry import values
from .commands import (BAD_REQUEST, CHUNK, ERRORS, AddListener, Describe, DuplicateId, Notify,
                       RemoveListener, Send, UnknownId, Unwatch, Watch, put_chunks, take_chunks)

__all__ = ["BusResponders", "BusServerProtocol", "BusServerFactory", "RobustAMP",
           "peer_credentials"]

_log = Logger()

_LENGTH = struct.Struct("!H")

Credentials = Tuple[int, int, int]
"""(pid, uid, gid) of a peer."""


def peer_credentials(transport: Any) -> Optional[Credentials]:
    """
    The (pid, uid, gid) of the process at the other end of a Unix socket,
    read with SO_PEERCRED; None for other transports.
    """
    try:
        sock = transport.getHandle()
    except AttributeError:
        return None
    if not isinstance(sock, socket.socket) or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def verdict_from_box(box: amp.AmpBox) -> Any:
    """
    The verdict in a raw L{CallListener} answer box (see L{call_listener}).
    """
    verdict = box.get(b"verdict")
    if verdict == b"continue":
        answer: Any = CONTINUE
    elif verdict == b"stop":
        if b"result" not in box:
            raise ListenerError("peer answered verdict 'stop' without a result")
        answer = Stop(values.loads(take_chunks(box, b"result")))
    else:
        raise ListenerError(f"peer answered verdict {verdict!r}; expected 'stop' or 'continue'")
    remember = box.get(b"remember")
    if remember is not None:
        try:
            return Remember(answer, float(remember))
        except ValueError:
            raise ListenerError(f"peer answered remember={remember!r}; expected seconds "
                                "(a float)") from None
    return answer


def call_listener(connection: amp.AMP, listener: bytes, mailbox: bytes,
                  message: bytes) -> "Deferred[Any]":
    """
    Ask a peer's listener for its verdict: the L{CallListener} command,
    built and read as raw boxes (the same bytes on the wire; AMP's generic
    argument machinery was a third of a hook round trip).
    """
    if len(message) > CHUNK:  # message, message.2, ... as the Typed argument has it
        chunks: Dict[bytes, bytes] = {}
        put_chunks(chunks, b"message", message)
        arguments = {key.decode(): value for key, value in chunks.items()}
    else:
        arguments = {"message": message}
    return connection.callRemoteString(b"CallListener", listener=listener, mailbox=mailbox,
                                       **arguments).addCallbacks(verdict_from_box, _known_error)


_ERROR_TYPES = {code: kind for kind, code in ERRORS.items()}


def _known_error(failure: Failure) -> Failure:
    """
    A peer's error code back as its exception type, as AMP's commands do.
    """
    if failure.check(amp.RemoteAmpError) and failure.value.errorCode in _ERROR_TYPES:
        return Failure(_ERROR_TYPES[failure.value.errorCode](failure.value.description))
    return failure


class RobustAMP(amp.AMP):
    """
    AMP that answers a command failing with an undeclared error with a
    non-fatal C{BAD_REQUEST} error instead of closing the connection (which
    would also take off every listener the peer added), and that splits the
    byte stream into boxes in one loop (Twisted's string-at-a-time state
    machine was a fifth of a hook round trip). The bus never switches
    protocols or starts TLS inside AMP, so that loop is all it needs.
    """

    _pending = b""
    _box: Optional[amp.AmpBox] = None
    _key: Optional[bytes] = None

    def dataReceived(self, data: bytes) -> None:
        if self.innerProtocol is not None or self._locked:
            amp.AMP.dataReceived(self, data)
            return
        buffer = self._pending + data if self._pending else data
        end = len(buffer)
        offset = 0
        box = self._box if self._box is not None else amp.AmpBox()
        key = self._key
        unpack = _LENGTH.unpack_from
        while end - offset >= 2:
            (length,) = unpack(buffer, offset)
            if end - offset - 2 < length:
                break
            start = offset + 2
            offset = start + length
            if key is not None:
                box[key] = buffer[start:offset]
                key = None
            elif length == 0:
                self._box = None
                self.ampBoxReceived(box)
                if self.transport is None or self.innerProtocol is not None:
                    return
                box = amp.AmpBox()
            elif length > 255:
                self._keyLengthLimitExceeded = True
                self.transport.loseConnection()
                return
            else:
                key = buffer[start:offset]
        # A key longer than 255 bytes is refused before it is all here.
        if key is None and end - offset >= 2 and unpack(buffer, offset)[0] > 255:
            self._keyLengthLimitExceeded = True
            self.transport.loseConnection()
            return
        self._pending = buffer[offset:]
        self._box = box
        self._key = key

    def dispatchCommand(self, box: amp.AmpBox) -> "Deferred[Any]":
        def bad_request(failure: Failure) -> Failure:
            if failure.check(amp.RemoteAmpError):
                return failure
            _log.failure("bus command {command!r} failed", failure,
                         command=box.get(b"_command"))
            return Failure(amp.RemoteAmpError(
                BAD_REQUEST, f"{failure.type.__name__}: {failure.getErrorMessage()}",
                fatal=False, local=failure))
        return amp.AMP.dispatchCommand(self, box).addErrback(bad_request)


class BusResponders(amp.CommandLocator):
    """
    The commands a peer may call, answered from C{registry}.
    """

    def __init__(self, registry: IRegistry, peer: str) -> None:
        self.registry = registry
        self.peer = peer
        self.connection: Optional[amp.AMP] = None
        self.listeners: Dict[str, Any] = {}
        self.watches: Dict[str, Any] = {}

    @Send.responder
    def send(self, mailbox: str, message: bytes) -> "Deferred[Dict[str, Any]]":
        decoded = values.loads(message)

        def answer(result: Any) -> Dict[str, Any]:
            if result is NO_ANSWER:
                return {"answered": False, "result": values.dumps(None)}
            return {"answered": True, "result": values.dumps(result)}

        return self.registry.send(mailbox, decoded).addCallback(answer)

    @AddListener.responder
    def add_listener(self, mailbox: str, listener: str, first: bool, deadline: float,
                     tags: bytes, remember_by: Optional[bytes] = None) -> Dict[str, Any]:
        if listener in self.listeners:
            raise DuplicateId(f"listener id {listener!r} is already in use on this connection")
        decoded_tags = values.loads(tags)
        if not isinstance(decoded_tags, dict):
            raise values.InvalidValue("tags must be a map")
        fields = None if remember_by is None else values.loads(remember_by)
        decoded_tags = dict(decoded_tags, peer=self.peer)
        connection = self.connection
        assert connection is not None

        listener_bytes, mailbox_bytes = listener.encode(), mailbox.encode()

        def stand_in(message: values.Message) -> "Deferred[Any]":
            return call_listener(connection, listener_bytes, mailbox_bytes,
                                 values.dumps(message))

        handle = self.registry.listen(mailbox, stand_in, first=first, tags=decoded_tags,
                                      deadline=deadline, remember_by=fields)
        self.listeners[listener] = handle
        _log.info("{peer} added listener {listener} on {mailbox} (first={first}, "
                  "deadline={deadline}s{remembering})", peer=self.peer, listener=listener,
                  mailbox=mailbox, first=first, deadline=deadline,
                  remembering="" if fields is None else f", remember_by={fields}")
        return {"id": handle.id}

    @RemoveListener.responder
    def remove_listener(self, listener: str) -> Dict[str, Any]:
        try:
            self.listeners.pop(listener).remove()
        except KeyError:
            raise UnknownId(f"no listener {listener!r} on this connection") from None
        return {}

    @Watch.responder
    def watch(self, mailbox: str, watch: str) -> Dict[str, Any]:
        if watch in self.watches:
            raise DuplicateId(f"watch id {watch!r} is already in use on this connection")
        connection = self.connection
        assert connection is not None

        def notify(message: values.Message) -> None:
            if connection.transport is not None and watch in self.watches:
                connection.callRemote(Notify, watch=watch, mailbox=mailbox,
                                      message=values.dumps(message))

        self.watches[watch] = self.registry.watch(mailbox, notify)
        return {}

    @Unwatch.responder
    def unwatch(self, watch: str) -> Dict[str, Any]:
        try:
            self.watches.pop(watch).remove()
        except KeyError:
            raise UnknownId(f"no watch {watch!r} on this connection") from None
        return {}

    @Describe.responder
    def describe(self, prefix: str) -> Dict[str, Any]:
        return {"process": self.registry.name,
                "mailboxes": values.dumps(self.registry.describe(prefix))}

    def disconnected(self) -> None:
        """
        The peer has gone: take off everything it added.
        """
        for handle in list(self.listeners.values()) + list(self.watches.values()):
            handle.remove()
        if self.listeners or self.watches:
            _log.info("{peer} disconnected; removed {n} listeners and {w} watches",
                      peer=self.peer, n=len(self.listeners), w=len(self.watches))
        self.listeners.clear()
        self.watches.clear()


class BusServerProtocol(RobustAMP):
    """
    One peer's connection: checks the peer's uid, then serves it.
    """

    def __init__(self, registry: IRegistry, allowed_uids: Iterable[int],
                 credentials: Callable[[Any], Optional[Credentials]]) -> None:
        self._responders = BusResponders(registry, "peer")
        RobustAMP.__init__(self, locator=self._responders)
        self._responders.connection = self
        self._allowed = frozenset(allowed_uids) | {0}
        self._credentials = credentials

    def connectionMade(self) -> None:
        creds = self._credentials(self.transport)
        if creds is None:
            self._responders.peer = f"{self.transport.getPeer()}"
        else:
            pid, uid, gid = creds
            self._responders.peer = f"pid {pid} uid {uid}"
            if uid not in self._allowed and uid != os.getuid():
                _log.warn("refused bus peer pid {pid} uid {uid}: uid not allowed "
                          "(bus.allowed_uids)", pid=pid, uid=uid)
                self._refused = True
                self.transport.loseConnection()
                return
        amp.AMP.connectionMade(self)

    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if not self._refused:  # a refused peer's bytes are never read as commands
            RobustAMP.dataReceived(self, data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._keyLengthLimitExceeded:
            _log.warn("bus peer {peer} sent a malformed frame (key longer than 255 "
                      "bytes); connection closed", peer=self._responders.peer)
        amp.AMP.connectionLost(self, reason)
        self._responders.disconnected()

    def unhandledError(self, failure: Failure) -> None:
        _log.failure("bus connection from {peer} failed; closing it", failure,
                     peer=self._responders.peer)
        amp.AMP.unhandledError(self, failure)


class BusServerFactory(Factory):
    """
    Makes a L{BusServerProtocol} per peer.
    """

    def __init__(self, registry: IRegistry, allowed_uids: Iterable[int] = (),
                 credentials: Callable[[Any], Optional[Credentials]] = peer_credentials) -> None:
        self.registry = registry
        self.allowed_uids = tuple(allowed_uids)
        self.credentials = credentials

    def buildProtocol(self, addr: Any) -> BusServerProtocol:
        return BusServerProtocol(self.registry, self.allowed_uids, self.credentials)
