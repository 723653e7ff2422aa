# -*- test-case-name: tests.proxy.test_intercept -*-
"""
Interception: where an intercepted connection was going, and connecting
out to it.

Three modes (the firewall adapter installs their rules: C{tproxy_port},
C{tproxy_ports}, and the policy routing of C{tproxy_mark} and
C{tproxy_table}):

  - C{tproxy}: the listener is an C{IP_TRANSPARENT} (IPv6:
    C{IPV6_TRANSPARENT}) socket, so that the kernel hands it connections
    to any address; the original destination is the accepted socket's own
    address. The outbound connection can carry the client's source
    address (L{transparent_outbound}).
  - C{redirect}: a plain listener behind C{REDIRECT}; the original
    destination is C{getsockopt(SO_ORIGINAL_DST)} (C{OSError} 92 when
    conntrack has none: the relay closes the connection).

  - C{nfqueue}: a plain listener behind C{REDIRECT}, the original
    destination from the record the queue reader made of the
    connection's SYN (L{netsuite.proxy.nfqueue}).

Plus C{forward}: every connection to one fixed destination (tests,
benchmarks, and a proxy in front of one server).

Python does not export these socket options; their numbers are Linux's
(see KERNEL-FACTS.md).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Any, Callable, Optional, Tuple

from twisted.internet import error, protocol
from twisted.internet.interfaces import IListeningPort, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["MODES", "IP_TRANSPARENT", "IPV6_TRANSPARENT", "SO_ORIGINAL_DST",
           "listener_socket", "listen", "tproxy_destination", "redirect_destination",
           "fixed_destination", "destination_for", "tcp_outbound", "transparent_outbound",
           "original_destination"]

MODES = ("tproxy", "redirect", "nfqueue", "forward")

SOL_IP = socket.SOL_IP  # 0
SOL_IPV6 = 41
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
SO_ORIGINAL_DST = 80  # IPv4 (SOL_IP) and IPv6 (SOL_IPV6, as IP6T_SO_ORIGINAL_DST)

Address = Tuple[str, int]


def _family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _transparent(sock: socket.socket, family: int) -> None:
    if family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
    else:
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)


def listener_socket(host: str, port: int, transparent: bool, backlog: int = 128) -> socket.socket:
    """
    A listening, non-blocking TCP socket on (host, port); with
    C{transparent}, C{IP_TRANSPARENT}/C{IPV6_TRANSPARENT} set before bind
    (which needs CAP_NET_ADMIN). An IPv6 listener is IPv6 only.
    """
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if transparent:
            _transparent(sock, family)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def listen(reactor: Any, host: str, port: int, factory: protocol.ServerFactory,
           transparent: bool, backlog: int = 128) -> IListeningPort:
    """
    Listen with L{listener_socket} and hand the socket to the reactor
    (C{adoptStreamPort} duplicates it; this copy is closed).
    """
    sock = listener_socket(host, port, transparent, backlog)
    try:
        return reactor.adoptStreamPort(sock.fileno(), sock.family, factory)  # type: ignore
    finally:
        sock.close()


def tproxy_destination(transport: Any) -> Address:
    """TPROXY: the accepted socket's own address is where the client was going."""
    host = transport.getHost()
    return (host.host, host.port)


def original_destination(sock: socket.socket) -> Address:
    """
    C{SO_ORIGINAL_DST} of a REDIRECTed socket.

    @raise OSError: (92, ENOPROTOOPT) when conntrack has no original
        destination (the connection was not redirected).
    """
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
        port, = struct.unpack_from("!H", raw, 2)
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    port, = struct.unpack_from("!H", raw, 2)
    return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)


def redirect_destination(transport: Any) -> Address:
    """
    REDIRECT: the original destination conntrack recorded. A connection
    made to the listener itself (not redirected) has its own address there:
    that is no destination either (it would connect the proxy to itself).
    """
    found = original_destination(transport.getHandle())
    host = transport.getHost()
    if found == (host.host, host.port):
        raise OSError(errno.ENOPROTOOPT, "not a redirected connection")
    return found


def fixed_destination(host: str, port: int) -> Callable[[Any], Address]:
    """C{forward}: every connection goes to (host, port)."""
    return lambda transport: (host, port)


def destination_for(mode: str, to: Optional[Address] = None,
                    syn_table: Any = None) -> Callable[[Any], Address]:
    """The destination of a mode (C{nfqueue}: of its L{netsuite.proxy.nfqueue.SynTable})."""
    if mode == "nfqueue" and syn_table is not None:
        return syn_table.destination  # type: ignore[no-any-return]
    if mode == "tproxy":
        return tproxy_destination
    if mode == "redirect":
        return redirect_destination
    if mode == "forward" and to is not None:
        return fixed_destination(*to)
    raise ValueError(f"unknown interception mode {mode!r} (or forward without a destination, nfqueue without a table)")


def tcp_outbound(reactor: Any, timeout: float = 30.0) -> Callable[..., Callable[[], None]]:
    """Connect out from the access point's own address (C{connectTCP})."""

    def connect(server: Address, client: Address,
                factory: protocol.ClientFactory) -> Callable[[], None]:
        connector = reactor.connectTCP(server[0], server[1], factory, timeout=timeout)
        return connector.disconnect  # type: ignore[no-any-return]

    return connect


@implementer(IWriteDescriptor)
class _Connecting:
    """A non-blocking connect in progress: writable means done (or failed)."""

    def __init__(self, reactor: Any, sock: socket.socket, factory: protocol.ClientFactory) -> None:
        self.reactor = reactor
        self.sock = sock
        self.factory = factory
        self.fd = sock.fileno()
        reactor.addWriter(self)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "transparent-connect"

    def doWrite(self) -> None:
        self.reactor.removeWriter(self)
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(error.ConnectError(string=os.strerror(code)))
            return
        try:
            self.reactor.adoptStreamConnection(self.sock.fileno(), self.sock.family, self.factory)
        except Exception as e:
            self._fail(error.ConnectError(string=str(e)))
            return
        self.sock.close()  # the reactor has its own copy

    def _fail(self, reason: Exception) -> None:
        self.sock.close()
        self.factory.clientConnectionFailed(None, Failure(reason))

    def connectionLost(self, reason: Failure) -> None:
        # a refused or unreachable connect is reported as an error event
        # (EPOLLERR), which the reactor hands here rather than to doWrite
        if self.sock.fileno() == -1:
            return
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._fail(error.ConnectError(string=os.strerror(code) if code
                                      else reason.getErrorMessage()))

    def cancel(self) -> None:
        if self.sock.fileno() != -1:
            self.reactor.removeWriter(self)
            self.sock.close()


def transparent_outbound(reactor: Any) -> Callable[..., Callable[[], None]]:
    """
    Connect out from the client's own address (TPROXY mode): an
    C{IP_TRANSPARENT} socket bound to (client address, any port),
    connected without blocking, then adopted by the reactor. The
    server's answers come back to the access point through the
    firewall's C{-m socket --transparent} rule and TPROXY routing.
    """

    def connect(server: Address, client: Address,
                factory: protocol.ClientFactory) -> Callable[[], None]:
        family = _family(server[0])
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            _transparent(sock, family)
            sock.bind((client[0], 0))
            sock.setblocking(False)
            code = sock.connect_ex(server)
        except OSError as e:
            sock.close()
            reason = Failure(error.ConnectError(string=str(e)))
            call = reactor.callLater(0, factory.clientConnectionFailed, None, reason)
            return lambda: call.cancel() if call.active() else None
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            reason = Failure(error.ConnectError(string=os.strerror(code)))
            call = reactor.callLater(0, factory.clientConnectionFailed, None, reason)
            return lambda: call.cancel() if call.active() else None
        return _Connecting(reactor, sock, factory).cancel

    return connect

