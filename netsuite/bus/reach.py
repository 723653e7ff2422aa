# -*- test-case-name: tests.bus.test_reconnect -*-
"""
Reaching a process's bus socket: where it is, why it cannot be reached
(said so an operator can act), and whether the process serving it is one
to trust (C{SO_PEERCRED}, checked before anything is sent).
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Iterable, Optional, Set

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ..registry.interfaces import AccessDenied, NotRunning

__all__ = ["DEFAULT_SOCKET_DIR", "socket_path", "socket_endpoint", "why_unreachable",
           "unreachable", "UntrustedServer", "trusted_uids", "NamedEndpoint", "CheckedFactory"]

DEFAULT_SOCKET_DIR = "/run/netsuite"


def socket_path(name: str, socket_dir: Optional[str] = None) -> str:
    """
    The path of process C{name}'s bus socket.
    """
    directory = socket_dir or os.environ.get("NETSUITE_SOCKET_DIR") or DEFAULT_SOCKET_DIR
    return os.path.join(directory, f"{name}.sock")


def socket_endpoint(name: str, socket_dir: Optional[str] = None) -> str:
    """
    The client endpoint string of process C{name}'s bus socket.
    """
    path = socket_path(name, socket_dir)
    return "unix:path=" + path.replace("\\", "\\\\").replace(":", "\\:")


ACCESS = ("the bus serves root, the daemon's own uid and its bus.allowed_uids, through "
          "a socket of mode bus.socket_mode (default 0660) in bus.socket_dir")
"""Who may connect to a process's bus socket (docs/bus-protocol.md, section 1)."""


def _errno(error: BaseException) -> Optional[int]:
    code = error.errno if isinstance(error, OSError) else getattr(error, "osError", None)
    return code if isinstance(code, int) else None


def why_unreachable(error: BaseException) -> str:
    """
    Why an attempt to connect failed, in a few words an operator can act on.
    """
    code = _errno(error)
    if isinstance(error, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return "connection refused (a socket left by a process that has stopped?)"
    if code == errno.ENOENT:
        return "no such socket (is the process running, under that name?)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return str(error) or type(error).__name__


def unreachable(name: str, endpoint: str, error: BaseException) -> NotRunning:
    """
    The exception for a failed attempt to connect to process C{name}:
    L{AccessDenied} for a permission error, else L{NotRunning}.
    """
    if _errno(error) in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"permission denied connecting to process {name} at {endpoint} "
                            f"({ACCESS})")
    return NotRunning(f"process {name} is not running (nothing listens at {endpoint}: "
                      f"{why_unreachable(error)})")


class UntrustedServer(NotRunning):
    """
    The process serving the socket runs as a uid we do not trust (not root,
    ours, the socket directory's owner's or one we were told to expect):
    it may be standing in for the process we meant, and is sent nothing.
    """


def trusted_uids(transport: Any, expected: Iterable[int] = ()) -> Set[int]:
    """
    The uids a process serving the Unix socket at the other end of
    C{transport} may run as: root, ours, C{expected}, and the owner of the
    socket's directory (the daemon refuses a directory not owned by root or
    itself: L{netsuite.process.SocketDirectory}).
    """
    uids = {0, os.getuid(), *expected}
    path = getattr(transport.getPeer(), "name", None)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if isinstance(path, str) and path:
        try:
            uids.add(os.stat(os.path.dirname(path) or ".").st_uid)
        except OSError:
            pass
    return uids


@implementer(IStreamClientEndpoint)
class NamedEndpoint:
    """
    A client endpoint that reads as its endpoint string (in Twisted's
    "Scheduling retry N to connect ..." lines) and reports each failed
    attempt to C{failed}.
    """

    def __init__(self, endpoint: Any, description: str, failed: Callable[[Failure], None],
                 check: Callable[[Any], Optional[Exception]]) -> None:
        self._endpoint = endpoint
        self._description = description
        self._failed = failed
        self._check = check

    def connect(self, factory: Any) -> "Deferred[Any]":
        def checked(connection: Checked) -> Any:
            if connection.refused is not None:
                raise connection.refused
            return connection.inner

        def failed(failure: Failure) -> Failure:
            self._failed(failure)
            return failure
        return self._endpoint.connect(CheckedFactory(factory, self._check)).addCallback(  # type: ignore[no-any-return]
            checked).addErrback(failed)

    def __repr__(self) -> str:
        return self._description


class Checked(Protocol):
    """
    A new connection, handed to C{factory}'s protocol only once C{check}
    of its transport finds nothing wrong; else closed (C{refused}), with
    nothing read from it or written to it.
    """

    inner: Any = None
    refused: Optional[Exception] = None

    def __init__(self, factory: Any, addr: Any, check: Callable[[Any], Optional[Exception]]) -> None:
        self._factory = factory
        self._addr = addr
        self._check = check

    def connectionMade(self) -> None:
        self.refused = self._check(self.transport)
        if self.refused is not None:
            self.transport.loseConnection()
            return
        self.inner = self._factory.buildProtocol(self._addr)
        self.inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)


class CheckedFactory(Factory):
    def __init__(self, factory: Any, check: Callable[[Any], Optional[Exception]]) -> None:
        self._factory = factory
        self._check = check

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def buildProtocol(self, addr: Any) -> Checked:
        return Checked(self._factory, addr, self._check)
