# -*- test-case-name: tests.dhcp.test_guard -*-
"""
What the server decides from the Ethernet frames (L{netsuite.dhcp.frames}):

 - L{FrameSorter}: with C{check_chaddr}, the requests to this server come
   from frames, and one that arrived directly (giaddr 0) whose chaddr is
   not the frame's source MAC is dropped (C{chaddr_mismatch}); the others
   go to the protocol, as if from the UDP socket.
 - L{RogueWatch}: another DHCP server's OFFER, ACK or NAK seen on the LAN
   is counted (C{rogue_replies}), and reported (a warning and the event
   C{/dhcp/rogue-server}) at most once per server per interval. A reply
   whose server identifier is this server's own is this server's answer
   sent on by a relay agent on the LAN: counted (C{own_replies_relayed}),
   not reported.

All counters are the server's, in the answer of C{/dhcp/counters}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from twisted.logger import Logger

from ..registry.values import MAC
from .frames import (PACKET_BROADCAST, PACKET_HOST, PACKET_OUTGOING, Frame, MalformedFrame,
                     parse_frame)
from .packet import ACK, NAK, OFFER, MalformedPacket, MessageType, Packet

__all__ = ["FrameSorter", "RogueWatch", "ROGUE_EVENT", "COUNTERS"]

_log = Logger()
ZERO = IPv4Address(0)
SERVER_PORT = 67
ROGUE_EVENT = "/dhcp/rogue-server"
REPLY_TYPES = frozenset({OFFER, ACK, NAK})
COUNTERS = ("malformed_frames", "chaddr_mismatch", "frames_elsewhere", "rogue_replies",
            "rogue_unreported", "own_replies_relayed")
"""The counters these add to the server's."""


def _count(counters: Dict[str, int], name: str) -> int:
    counters[name] = counters.get(name, 0) + 1
    return counters[name]


class FrameSorter:
    """
    Sorts the frames the packet socket passes (its filter let through only
    DHCP requests and replies) and drops the malformed ones.

    @param counters: the server's counters, added to.
    @param own_mac: the interface's MAC: frames from it are this host's.
    @param requests: with C{check_chaddr}, called with each request that
        passes, as C{(packet, (source address, source port))}; else
        requests are not this object's business.
    @param destinations: the addresses a request may be sent to, besides
        this MAC being the frame's destination or the frame a broadcast:
        255.255.255.255, the served subnet's broadcast address and each
        subnet's server address (what the UDP socket would have received).
    @param rogues: where other servers' replies go, if watched.
    """

    def __init__(self, counters: Dict[str, int], own_mac: MAC,
                 requests: Optional[Callable[[Packet, Tuple[str, int]], None]] = None,
                 destinations: Iterable[IPv4Address] = (),
                 rogues: Optional["RogueWatch"] = None) -> None:
        self.counters = counters
        for name in COUNTERS:
            counters.setdefault(name, 0)
        self.own_mac = own_mac
        self.requests = requests
        self.destinations = frozenset(destinations) | {IPv4Address("255.255.255.255")}
        self.rogues = rogues

    def receive(self, data: bytes, packet_type: int) -> None:
        if packet_type == PACKET_OUTGOING:
            return
        try:
            frame = parse_frame(data)
            if frame.source_mac == self.own_mac:
                return
            packet = Packet.from_bytes(frame.payload)
        except (MalformedFrame, MalformedPacket) as e:
            _count(self.counters, "malformed_frames")
            _log.debug("dropped a malformed DHCP frame: {error}", error=e)
            return
        if packet.op == 1 and frame.destination_port == SERVER_PORT:
            if self.requests is not None:
                self._request(frame, packet, packet_type)
        elif packet.op == 2 and self.rogues is not None:
            self.rogues.saw(frame, packet)

    def _request(self, frame: Frame, request: Packet, packet_type: int) -> None:
        if (packet_type not in (PACKET_HOST, PACKET_BROADCAST)
                or frame.destination_ip not in self.destinations):
            # To another server, or routed through this host: the UDP
            # socket would not have seen it either.
            _count(self.counters, "frames_elsewhere")
            return
        if request.giaddr == ZERO and request.mac != frame.source_mac:
            n = _count(self.counters, "chaddr_mismatch")
            log = _log.warn if n % 1000 == 1 else _log.debug
            log("dropped a request whose chaddr {chaddr} is not its sender's MAC {mac} "
                "(dhcp.check_chaddr; {n} so far)", chaddr=request.chaddr[:request.hlen].hex(":"),
                mac=str(frame.source_mac), n=n)
            return
        assert self.requests is not None
        self.requests(request, (str(frame.source_ip), frame.source_port))


class RogueWatch:
    """
    Reports other DHCP servers' replies: each counted; per server (its
    MAC) a warning and a C{/dhcp/rogue-server} event at most once per
    C{interval} seconds, with the count so far.

    At most C{limit} servers are remembered: past that, a new one is
    counted (C{rogue_unreported}) but not reported until a remembered one
    has been quiet for an interval, so a sender forging MACs cannot flood
    the log or the bus, nor grow memory.

    @param own: this server's identifiers (each subnet's server address).
    """

    def __init__(self, registry: Any, clock: Any, interface: str, counters: Dict[str, int],
                 interval: float = 300.0, limit: int = 64,
                 own: Iterable[IPv4Address] = ()) -> None:
        self.registry = registry
        self.clock = clock
        self.interface = interface
        self.counters = counters
        for name in COUNTERS:
            counters.setdefault(name, 0)
        self.interval = interval
        self.limit = limit
        self.own = frozenset(own)
        self.servers: Dict[MAC, List[Any]] = {}  # MAC -> [replies, last reported, last seen]

    def saw(self, frame: Frame, reply: Packet) -> None:
        kind = reply.message_type
        if kind not in REPLY_TYPES:
            return
        if reply.server_id in self.own:
            _count(self.counters, "own_replies_relayed")
            return
        _count(self.counters, "rogue_replies")
        now = self.clock.seconds()
        server = self.servers.get(frame.source_mac)
        if server is None:
            if len(self.servers) >= self.limit and not self._forget(now):
                _count(self.counters, "rogue_unreported")
                return
            server = self.servers[frame.source_mac] = [0, None, now]
        server[0] += 1
        server[2] = now
        if server[1] is not None and now - server[1] < self.interval:
            return
        server[1] = now
        self._report(frame, reply, MessageType(kind).name, server[0])

    def _forget(self, now: float) -> bool:
        quiet = [mac for mac, (_, _, seen) in self.servers.items()
                 if now - seen >= self.interval]
        for mac in quiet:
            del self.servers[mac]
        return bool(quiet)

    def _report(self, frame: Frame, reply: Packet, kind: str, replies: int) -> None:
        message = {"ip": frame.source_ip, "mac": frame.source_mac,
                   "server_id": reply.server_id, "type": kind, "interface": self.interface,
                   "client": reply.mac, "yiaddr": reply.yiaddr, "replies": replies}
        _log.warn("another DHCP server on {interface}: {ip} ({mac}, server identifier "
                  "{server_id}) sent a {type} for {yiaddr} to {client}; {replies} replies "
                  "from it so far", interface=self.interface, ip=str(frame.source_ip),
                  mac=str(frame.source_mac), server_id=str(reply.server_id), type=kind,
                  yiaddr=str(reply.yiaddr), client=str(reply.mac), replies=replies,
                  netsuite_event="dhcp-rogue-server")
        if self.registry.heard(ROGUE_EVENT):
            self.registry.send(ROGUE_EVENT, message)
