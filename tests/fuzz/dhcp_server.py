# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{dhcp-server}: any datagram, from a client, a listed relay or
a stranger, through the whole path from bytes to reply: L{DHCPProtocol}
over a fake socket, the real L{DHCPServer} with an in-memory lease store,
a hook on C{/dhcp/packet/in} and one on C{/dhcp/lookup} (which offers the
address the client asked for), and the neighbour writer on a fake ioctl.

The first byte of an input chooses the source address (L{SOURCES}); the
rest is the datagram. One server serves every input of a run, as a real
one serves a stream of strangers; the clock moves 7 seconds per input,
so offers lapse, leases expire and the sweep runs.

Invariants: nothing logs a failure (the protocol logs any exception of
the server's), at most one reply per request, each a BOOTREPLY to the
request's xid that parses and fits the client's size, and the lease store
never holds more leases than the pool has addresses.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any, List, Tuple

from twisted.internet.task import Clock

from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.neighbours import KernelNeighbours
from netsuite.dhcp.packet import BOOTREPLY, IP_UDP_OVERHEAD, MalformedPacket, Packet
from netsuite.dhcp.pool import Pool, Subnet
from netsuite.dhcp.protocol import DHCPProtocol
from netsuite.dhcp.server import DHCPServer
from netsuite.registry import CONTINUE, Registry, Stop
from netsuite.testing import SyncRunner

from .common import Crash, LogFailures, corpus_dir

NAME = "dhcp-server"
CORPUS = corpus_dir(NAME)

SERVER = IPv4Address("10.89.0.1")
RELAY = IPv4Address("10.90.0.1")
LAN = Subnet(name="lan", network=IPv4Network("10.89.0.0/24"),
             first=IPv4Address("10.89.0.100"), last=IPv4Address("10.89.0.103"),
             server=SERVER, router=SERVER, dns=(SERVER,), lease_time=600.0,
             interface="br-lan")
FAR = Subnet(name="far", network=IPv4Network("10.90.0.0/24"),
             first=IPv4Address("10.90.0.10"), last=IPv4Address("10.90.0.13"),
             server=RELAY)
ADDRESSES = 8
SOURCES = ("0.0.0.0", str(RELAY), "10.89.0.50", "10.89.0.100")


class UpstreamSocket:
    """
    Keeps the datagrams sent for one input.
    """

    def __init__(self) -> None:
        self.sent: List[Tuple[bytes, Any]] = []

    def sendto(self, data: bytes, destination: Any) -> int:
        self.sent.append((data, destination))
        return len(data)


class _Port:
    def __init__(self, sock: UpstreamSocket) -> None:
        self.sock = sock

    def getHandle(self) -> UpstreamSocket:
        return self.sock


def _ioctl(fd: Any, request: int, argument: bytes) -> None:
    """The kernel takes every neighbour entry."""


class Target:
    """
    One server and its protocol, fed inputs one by one.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.registry = Registry("dhcp", self.clock)
        self.store = LeaseStore(":memory:")
        self.server = DHCPServer(self.registry, SyncRunner(), self.clock, LAN,
                                 portal_url="http://10.89.0.1:8080/", sweep_interval=10,
                                 relays=[RELAY])
        self.server.start(Pool([LAN, FAR], self.store, self.clock, offer_hold=30,
                               quarantine=20))
        self.registry.listen("/dhcp/packet/in", lambda message: CONTINUE)
        self.registry.listen("/dhcp/lookup", self._lookup)
        neighbours = KernelNeighbours("br-lan", SyncRunner(), ioctl=_ioctl)
        self.protocol = DHCPProtocol(self.server, neighbours)
        self.socket = UpstreamSocket()
        self.protocol.transport = _Port(self.socket)
        self.logged = LogFailures()

    @staticmethod
    def _lookup(message: Any) -> Any:
        if message["requested"] is not None:
            return Stop({"ip": message["requested"], "source": "hook"})
        return CONTINUE

    def check(self, data: bytes) -> None:
        if not data:
            return
        source, datagram = SOURCES[data[0] % len(SOURCES)], data[1:]
        self.clock.advance(7)
        self.socket.sent = []
        self.protocol.datagramReceived(datagram, (source, 68))
        self.registry.eventual.flush_sync()
        self.logged.raise_any()
        if not self.socket.sent:
            return
        if len(self.socket.sent) > 1:
            raise Crash(f"{len(self.socket.sent)} replies to one request")
        request = Packet.from_bytes(datagram)
        wire, destination = self.socket.sent[0]
        try:
            reply = Packet.from_bytes(wire)
        except MalformedPacket as e:
            raise Crash(f"a reply that does not parse: {e}") from None
        limit = max(576, min(request.max_message_size or 576, 1500)) - IP_UDP_OVERHEAD
        if reply.op != BOOTREPLY or reply.xid != request.xid or len(wire) > limit:
            raise Crash(f"reply {reply!r} ({len(wire)} bytes) to {request!r}")
        if len(self.store.all()) > ADDRESSES:
            raise Crash(f"{len(self.store.all())} leases for {ADDRESSES} addresses")


_target = None


def check(data: bytes) -> None:
    global _target
    if _target is None:
        _target = Target()
    _target.check(data)
