# -*- test-case-name: tests.dhcp.test_protocol -*-
"""
The DHCP server's sockets: one UDP socket on port 67 bound to the serving
interface, datagrams parsed into packets (malformed ones dropped and
counted), and replies sent where RFC 2131 section 4.1 says. With
C{dhcp.check_chaddr} the socket is silent and the requests come from the
Ethernet frames instead (L{netsuite.dhcp.guard}).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..registry.values import MAC
from .frames import DROP_ALL, attach_filter
from .packet import NAK, MalformedPacket, Packet, PacketTooLarge

__all__ = ["DHCPProtocol", "PortTaken", "dhcp_socket", "reply_destination", "SERVER_PORT",
           "CLIENT_PORT"]

_log = Logger()

SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST = "255.255.255.255"
ZERO = ipaddress.IPv4Address(0)
_NO_MAC = bytes(6)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 4 << 20


def dhcp_socket(interface: str, port: int = SERVER_PORT, address: str = "0.0.0.0",
                silent: bool = False) -> socket.socket:
    """
    A non-blocking UDP socket on C{port} that sees (and sends) traffic of
    C{interface} only, so the server never answers on the WAN.

    C{silent}: a filter that drops every datagram is attached before the
    bind, so the socket only holds the port and sends (with
    C{dhcp.check_chaddr} the requests come from the frames, and one
    socket alone decides each).

    Without C{SO_REUSEADDR}: a port already taken on this interface (by
    another DHCP server bound there, or to every interface) is refused,
    rather than shared with a server that would answer too; one bound to
    another interface only does not conflict.

    @raise PortTaken: another socket holds C{port} on C{interface}.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:  # room for a burst (a pause of the reactor) without losing requests
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:  # not root: as much as net.core.rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode() + b"\0")
        if silent:
            attach_filter(sock, DROP_ALL)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortTaken(f"UDP port {port} on {interface} is taken: another DHCP server "
                            f"(dnsmasq, udhcpd, kea...) listens there; stop it, or see it "
                            f"with: ss -ulpn 'sport = :{port}'") from None
        raise
    return sock


class PortTaken(OSError):
    """
    Another socket holds the DHCP server's port on its interface.
    """


def reply_destination(request: Packet, reply: Packet) -> Tuple[str, int, Optional[MAC]]:
    """
    Where a reply goes (RFC 2131 section 4.1), as (address, port, MAC):
    to a relay (giaddr) at its port 67; a NAK to everyone; to a client
    that has an address (ciaddr: RENEWING, REBINDING, INFORM) at that
    address; to everyone if the client set the broadcast flag; else to
    the client's MAC and the address offered (yiaddr), which needs a
    neighbour entry for that MAC first (the third item, else None). A
    client whose hardware address is not a unicast Ethernet MAC gets a
    broadcast.
    """
    if request.giaddr != ZERO:
        return str(request.giaddr), SERVER_PORT, None
    if reply.message_type == NAK:
        return BROADCAST, CLIENT_PORT, None
    if request.ciaddr != ZERO:
        return str(request.ciaddr), CLIENT_PORT, None
    mac = request.mac
    if (request.broadcast or reply.yiaddr == ZERO or mac is None
            or mac.packed[0] & 1 or mac.packed == _NO_MAC):
        return BROADCAST, CLIENT_PORT, None
    return str(reply.yiaddr), CLIENT_PORT, mac


class DHCPProtocol(DatagramProtocol):
    """
    Moves bytes: parses requests, hands them to C{server.handle(packet,
    source)} (the source address as text; it returns a reply packet, None,
    or a Deferred of either) and sends the replies. A request whose
    handling fails is logged and gets no answer.

    @param neighbours: writes the neighbour entry a unicast to a client
        without an address needs (L{netsuite.dhcp.neighbours}); without
        it, such replies are broadcast.

    @ivar malformed: datagrams dropped because they did not parse.
    @ivar unsent: replies the socket refused, or too large for the
        client's maximum message size (logged).
    @ivar too_large: of those, the ones too large. A client can cause it
        (a long option 82 to echo), so only the first and every
        thousandth are warned about.
    @ivar unicast: replies sent to a client's MAC and offered address.
    @ivar broadcast_instead: replies that should have gone so but were
        broadcast, the neighbour entry not written (the first and every
        thousandth warned about).
    """

    def __init__(self, server: Any, neighbours: Any = None) -> None:
        self.server = server
        self.neighbours = neighbours
        self.received = 0
        self.malformed = 0
        self.ignored = 0
        self.sent = 0
        self.unsent = 0
        self.too_large = 0
        self.unicast = 0
        self.broadcast_instead = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received += 1
        try:
            request = Packet.from_bytes(data)
        except MalformedPacket as e:
            self.malformed += 1
            _log.debug("dropped a malformed packet from {addr}: {error}", addr=addr, error=e)
            return
        self.request_received(request, addr)

    def request_received(self, request: Packet, addr: Tuple[str, int]) -> None:
        """
        Serve a parsed request from C{addr}: from the UDP socket, or from
        a frame that passed L{netsuite.dhcp.guard.FrameSorter}.
        """
        if request.op != 1 or request.message_type is None:
            self.ignored += 1
            return
        try:
            reply = self.server.handle(request, addr[0])
        except Exception:
            self._failed(Failure(), request)
            return
        if isinstance(reply, Deferred):
            reply.addCallbacks(self._reply, self._failed, (request,), None, (request,))
        else:
            self._reply(reply, request)

    def _failed(self, failure: Failure, request: Packet) -> None:
        _log.failure("handling a {kind} from {mac} failed", failure,
                     kind=request.message_type, mac=request.mac)

    def _reply(self, reply: Optional[Packet], request: Packet) -> None:
        if reply is None or self.transport is None:
            return
        if request.giaddr != ZERO and reply.message_type == NAK:
            reply = reply.replace(flags=reply.flags | 0x8000)
        size = max(576, min(request.max_message_size or 576, 1500))
        address, port, mac = reply_destination(request, reply)
        try:
            data = reply.to_bytes(max_size=size)
        except PacketTooLarge as e:  # hooked options, or a client's long option 82
            self.unsent += 1
            self.too_large += 1
            log = _log.warn if self.too_large % 1000 == 1 else _log.debug
            log("reply to {mac} not sent: {error} ({n} replies too large so far)",
                mac=request.mac, error=e, n=self.too_large)
            return
        if mac is None:
            self._send(data, (address, port))
        elif self.neighbours is None:
            self._send(data, (BROADCAST, CLIENT_PORT))
        else:
            self.neighbours.learn(address, mac).addCallbacks(
                self._unicast, self._broadcast_instead, (data, (address, port)), None,
                (data, mac))

    def _unicast(self, _: None, data: bytes, destination: Tuple[str, int]) -> None:
        if self._send(data, destination):
            self.unicast += 1

    def _broadcast_instead(self, failure: Failure, data: bytes, mac: MAC) -> None:
        self.broadcast_instead += 1
        log = _log.warn if self.broadcast_instead % 1000 == 1 else _log.debug
        log("reply to {mac} broadcast: no neighbour entry for a unicast: {error} "
            "({n} so far)", mac=str(mac), error=failure.getErrorMessage(),
            n=self.broadcast_instead)
        self._send(data, (BROADCAST, CLIENT_PORT))

    def _send(self, data: bytes, destination: Tuple[str, int]) -> bool:
        if self.transport is None:  # stopped while a neighbour entry was written
            return False
        try:
            # The socket itself: Twisted's write() re-validates the address
            # string of every datagram, a sixth of the cost of a reply here.
            self.transport.getHandle().sendto(data, destination)
        except OSError as e:
            self.unsent += 1
            _log.warn("could not send a reply to {destination}: {error}",
                      destination=destination, error=e)
            return False
        self.sent += 1
        return True
