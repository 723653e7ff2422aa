# -*- test-case-name: tests.bus.test_server -*-
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
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..registry.interfaces import NO_ANSWER, IRegistry
from ..registry import values
from .arguments import bounded
from .errors import DuplicateId, UnknownId
from .framing import BusProtocol, call_listener
from .ownercommands import AddListener, Describe, RemoveListener, Send, Unwatch, Watch
from .peercommands import Notify

__all__ = ["BusResponders", "BusServerProtocol", "BusServerFactory", "peer_credentials"]

_log = Logger()

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


class BusResponders(amp.CommandLocator):
    """
    The commands a peer may call, answered from C{registry}.
    """

    def __init__(self, registry: IRegistry, peer: str) -> None:
        self.registry = registry
        self.peer = peer
        self.connection: Optional[BusProtocol] = None
        self.listeners: Dict[str, Any] = {}
        self.watches: Dict[str, Any] = {}

    @Send.responder
    def send(self, mailbox: str, message: bytes) -> "Deferred[Dict[str, Any]]":
        decoded = values.loads(message)

        def answer(result: Any) -> Dict[str, Any]:
            if result is NO_ANSWER:
                return {"answered": False, "result": values.dumps(None)}
            return {"answered": True, "result": bounded(b"result", values.dumps(result))}

        return self.registry.send(mailbox, decoded).addCallback(answer)

    @AddListener.responder
    def add_listener(self, mailbox: str, listener: str, first: bool, deadline: float,
                     tags: bytes, remember_by: Optional[bytes] = None,
                     fail_closed: Optional[bool] = None) -> Dict[str, Any]:
        if listener in self.listeners:
            raise DuplicateId(f"listener id {listener!r} is already in use on this connection")
        decoded_tags = values.loads(tags)
        if not isinstance(decoded_tags, dict):
            raise values.InvalidValue("tags must be a map")
        fields = None if remember_by is None else values.loads(remember_by)
        decoded_tags = dict(decoded_tags, peer=self.peer)
        connection = self.connection
        assert connection is not None

        dispatcher = connection.dispatcher
        listener_bytes, mailbox_bytes = listener.encode(), mailbox.encode()

        def stand_in(message: values.Message) -> "Deferred[Any]":
            return call_listener(dispatcher, listener_bytes, mailbox_bytes,
                                 values.dumps(message))

        closed = {"fail_closed": True} if fail_closed else {}
        handle = self.registry.listen(mailbox, stand_in, first=first, tags=decoded_tags,
                                      deadline=deadline, remember_by=fields, **closed)
        self.listeners[listener] = handle
        _log.info("{peer} added listener {listener} on {mailbox} (first={first}, "
                  "deadline={deadline}s{remembering}{closed})", peer=self.peer,
                  listener=listener, mailbox=mailbox, first=first, deadline=deadline,
                  remembering="" if fields is None else f", remember_by={fields}",
                  closed=", fail closed" if fail_closed else "")
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
                "mailboxes": bounded(b"mailboxes",
                                     values.dumps(self.registry.describe(prefix)))}

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


class BusServerProtocol(BusProtocol):
    """
    One peer's connection: checks the peer's uid, then serves it.
    """

    def __init__(self, registry: IRegistry, allowed_uids: Iterable[int],
                 credentials: Callable[[Any], Optional[Credentials]]) -> None:
        self._responders = BusResponders(registry, "peer")
        BusProtocol.__init__(self, self._responders)
        self._responders.connection = self
        self._allowed = frozenset(allowed_uids) | {0}
        self._credentials = credentials

    @property  # type: ignore[override]
    def peer(self) -> str:
        return self._responders.peer

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
                # Not BusProtocol.connectionMade: a refused peer's bytes
                # are never read as commands.
                self.transport.loseConnection()
                return
        BusProtocol.connectionMade(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        BusProtocol.connectionLost(self, reason)
        self._responders.disconnected()


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
