# -*- test-case-name: tests.bus.test_server -*-
"""
The owner's side of the bus: serve a registry to peers over AMP.

Each connection gets its own L{BusResponders}; the listeners and watches a
peer added live exactly as long as its connection. Every command is checked
against the factory's L{Permissions} for the peer: a refusal is the error
C{NOT_PERMITTED}, counted and logged (at most once a minute per peer, verb
and mailbox), and the connection stays.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from ..registry.interfaces import NO_ANSWER, IRegistry
from ..registry import values
from .arguments import bounded
from .errors import DuplicateId, NotPermitted, UnknownId
from .framing import BusProtocol, call_listener
from .ownercommands import AddListener, Describe, RemoveListener, Send, Unwatch, Watch
from .peercommands import Notify
from .permissions import HOOK, SEND, TCP, WATCH, Permissions, uid_peer

__all__ = ["BusResponders", "BusServerProtocol", "BusServerFactory", "Refusals",
           "default_permissions", "peer_credentials"]

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


def default_permissions() -> Permissions:
    """
    Root and our own uid may do everything; anyone else only ping.
    """
    return Permissions(trusted_uids=(0, os.getuid()))


class Refusals:
    """
    Counts the bus's refusals and logs them, each peer, verb and mailbox
    at most once per C{interval} seconds; remembers at most C{most} of
    them at a time (a peer choosing addresses cannot grow it).
    """

    def __init__(self, clock: IReactorTime, interval: float = 60.0, most: int = 1024) -> None:
        self._clock = clock
        self._interval = interval
        self._most = most
        self._logged: Dict[Tuple[str, str, str], Tuple[float, int]] = {}
        self.count = 0
        self.by_verb: Dict[str, int] = {SEND: 0, HOOK: 0, WATCH: 0}

    def refuse(self, peer: str, who: str, verb: str, address: str) -> NotPermitted:
        """
        Count and maybe log that C{peer} (the label, C{who} the permission
        name) may not C{verb} C{address}; return the error to answer.
        """
        self.count += 1
        self.by_verb[verb] += 1
        now = self._clock.seconds()
        key = (who, verb, address)
        last, quiet = self._logged.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._logged[key] = (last, quiet + 1)
        else:
            if len(self._logged) >= self._most:
                self._logged = {k: v for k, v in self._logged.items()
                                if now - v[0] < self._interval}
            if len(self._logged) < self._most:
                self._logged[key] = (now, 0)
            _log.warn("refused bus peer {peer} ({who}): may not {verb} {address} "
                      "(no bus.grant gives it){since}", peer=peer, who=who, verb=verb,
                      address=address,
                      since=f"; {quiet} more refusals of it not logged" if quiet else "")
        return NotPermitted(f"{peer} may not {verb} {address}: no bus.grant of this process "
                            f"gives {who} {verb} on it (docs/bus-protocol.md, section 1)")


class BusResponders(amp.CommandLocator):
    """
    The commands a peer may call, answered from C{registry}, as far as
    C{permissions} (by default L{default_permissions}) let C{who} (the
    peer's name there: C{uid:N}, C{tcp}); C{refusals} (by default on the
    clock of C{registry}, a L{netsuite.registry.Registry}) counts and logs
    what they refuse.
    """

    def __init__(self, registry: IRegistry, peer: str,
                 permissions: Optional[Permissions] = None, refusals: Optional[Refusals] = None,
                 who: str = TCP) -> None:
        self.registry = registry
        self.peer = peer
        self.permissions = default_permissions() if permissions is None else permissions
        self.refusals = Refusals(registry.clock) if refusals is None else refusals
        self.identify(peer, who)
        self.connection: Optional[BusProtocol] = None
        self.listeners: Dict[str, Any] = {}
        self.watches: Dict[str, Any] = {}

    def identify(self, peer: str, who: str) -> None:
        """
        The peer is C{peer} in logs and tags, C{who} to the permissions.
        """
        self.peer = peer
        self.who = who
        self.unrestricted = self.permissions.unrestricted(who)

    def _check(self, verb: str, address: str) -> None:
        """
        @raise NotPermitted: C{who} may not C{verb} C{address}.
        """
        if not self.unrestricted and not self.permissions.allows(self.who, verb, address):
            raise self.refusals.refuse(self.peer, self.who, verb, address)

    @Send.responder
    def send(self, mailbox: str, message: bytes) -> "Deferred[Dict[str, Any]]":
        decoded = values.loads(message)
        if not self.unrestricted:
            refused = self.permissions.may_send(self.who, mailbox, decoded)
            if refused is not None:
                raise self.refusals.refuse(self.peer, self.who, SEND, refused)

        def answer(result: Any) -> Dict[str, Any]:
            if result is NO_ANSWER:
                return {"answered": False, "result": values.dumps(None)}
            return {"answered": True, "result": bounded(b"result", values.dumps(result))}

        return self.registry.send(mailbox, decoded).addCallback(answer)

    @AddListener.responder
    def add_listener(self, mailbox: str, listener: str, first: bool, deadline: float,
                     tags: bytes, remember_by: Optional[bytes] = None,
                     fail_closed: Optional[bool] = None) -> Dict[str, Any]:
        self._check(HOOK, mailbox)
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
        self._check(WATCH, mailbox)
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
        mailboxes = self.registry.describe(prefix)
        if not self.unrestricted:
            mailboxes = [box for box in mailboxes if self.permissions.shows(self.who, box["path"])]
        return {"process": self.registry.name,
                "mailboxes": bounded(b"mailboxes", values.dumps(mailboxes))}

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
    One peer's connection: checks the peer's uid, then serves it what
    C{permissions} let it do.
    """

    def __init__(self, registry: IRegistry, allowed_uids: Iterable[int],
                 credentials: Callable[[Any], Optional[Credentials]],
                 permissions: Optional[Permissions] = None,
                 refusals: Optional[Refusals] = None) -> None:
        self._responders = BusResponders(registry, "peer", permissions, refusals)
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
            self._responders.identify(f"{self.transport.getPeer()}", TCP)
        else:
            pid, uid, gid = creds
            self._responders.identify(f"pid {pid} uid {uid}", uid_peer(uid))
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

    @param permissions: what each peer may do; by default, root and our
        own uid everything, anyone else only C{/system/ping}.
    @param clock: times the refusals' log (by default the registry's).
    """

    def __init__(self, registry: IRegistry, allowed_uids: Iterable[int] = (),
                 credentials: Callable[[Any], Optional[Credentials]] = peer_credentials,
                 permissions: Optional[Permissions] = None,
                 clock: Optional[IReactorTime] = None) -> None:
        self.registry = registry
        self.allowed_uids = tuple(allowed_uids)
        self.credentials = credentials
        self.permissions = default_permissions() if permissions is None else permissions
        self.refusals = Refusals(registry.clock if clock is None else clock)

    def buildProtocol(self, addr: Any) -> BusServerProtocol:
        return BusServerProtocol(self.registry, self.allowed_uids, self.credentials,
                                 self.permissions, self.refusals)
