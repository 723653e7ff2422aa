# -*- test-case-name: tests.dhcp.test_tap -*-
"""
C{twistd netsuite-dhcp}, and the C{[dhcp]} section of the config.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Iterable, List, Optional

from twisted.application.service import MultiService, Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.logger import Logger

from ..config.fields import (CLIENT_ID, INTERFACE, IPV4, IPV4_LIST, IPV4_OR_NONE, MAC_OR_NONE,
                             NETWORK, PATH, PORT, POSITIVE_SECONDS, SECONDS, at_least,
                             positive, positive_at_most)
from ..config.options import Override
from ..config.schema import ConfigError, Field, Table, TableList
from ..process import settle_heap
from ..services import Readiness
from .ldap import LDAP_SECTION
from .options import DOMAIN_NAME

__all__ = ["SECTION", "CAPABILITIES", "OPTIONS", "check", "serviceFromConfig", "subnets_from_config"]

_log = Logger()


RESERVATION = {
    "mac": Field(MAC_OR_NONE, "", "the client's MAC (\"\" when client_id is given)"),
    "client_id": Field(CLIENT_ID, "", "or the client identifier it sends (option 61, hex "
                       "bytes; \"\" when mac is given)"),
    "ip": Field(IPV4_OR_NONE, "", "its address"),
}

SUBNET = {
    "name": Field(str, "lan", "names the subnet in leases"),
    "network": Field(NETWORK, "10.89.0.0/24", "the subnet"),
    "first": Field(IPV4, "10.89.0.100", "first address of the dynamic range"),
    "last": Field(IPV4, "10.89.0.199", "last address of the dynamic range"),
    "server": Field(IPV4, "10.89.0.1", "this server's address on it, or for a relayed subnet "
                    "the address the relays forward to (option 54)"),
    "router": Field(IPV4_OR_NONE, "10.89.0.1", "default gateway (option 3; \"\" for none)"),
    "dns": Field(IPV4_LIST, ["10.89.0.1"], "DNS servers (option 6)"),
    "domain_name": Field(str, "", "option 15 (\"\" for none)"),
    "lease_time": Field(int, 3600, "seconds", positive),
    "interface": Field(str, "", "the interface it is directly on: dhcp.interface, for one "
                       "subnet at most (\"\": reached through relays)"),
    "reservation": TableList(RESERVATION, "fixed addresses"),
}

# What the server needs once started (netsuite.privileges): CAP_NET_ADMIN
# for SIOCSARP, the neighbour entry of a unicast reply to a client without
# an address (neighbours.py; without it, broadcast). Port 67 is bound in
# privilegedStartService, before twistd --uid, so CAP_NET_BIND_SERVICE is
# not kept (a unit that starts unprivileged grants it: etc/systemd/).
CAPABILITIES = frozenset({"CAP_NET_ADMIN"})


SECTION = {
    "enabled": Field(bool, False, "run the DHCP server in this process"),
    "interface": Field(INTERFACE, "br-lan", "serve on this interface only"),
    "port": Field(PORT, 67, "server port"),
    "lease_file": Field(PATH, "/var/lib/netsuite/dhcp-leases.sqlite", "the lease store"),
    "offer_hold": Field(POSITIVE_SECONDS, 60.0, "seconds an offered address is kept for its "
                        "client"),
    "decline_quarantine": Field(SECONDS, 3600.0, "seconds a declined address stays unused"),
    "declines_per_client": Field(int, 3, "addresses one client may have quarantined per "
                                 "decline_quarantine; its further DECLINEs are refused",
                                 at_least(0)),
    "decline_fraction": Field(float, 0.1, "the most of a subnet's range quarantined at once",
                              positive_at_most(1.0)),
    "relays": Field(IPV4_LIST, [], "the addresses relays send from; a request with giaddr "
                    "from any other address is dropped"),
    "bind_unknown_renewals": Field(bool, False, "ACK a RENEWING/REBINDING request for a free "
                                   "address this server has no lease of for that client "
                                   "(else NAK)"),
    "check_chaddr": Field(bool, False, "drop a request sent directly (no relay) whose chaddr "
                          "is not the source MAC of its Ethernet frame; needs CAP_NET_RAW "
                          "(the server does not start without it). Off by default: a "
                          "client behind a bridge that rewrites MACs (a Wi-Fi repeater) "
                          "sends its own chaddr in a frame from the repeater's MAC"),
    "watch_servers": Field(bool, True, "watch the LAN for other DHCP servers' OFFERs, ACKs "
                           "and NAKs: a warning and the event /dhcp/rogue-server; needs "
                           "CAP_NET_RAW (without it, one warning and no watch) and puts "
                           "the interface in promiscuous mode"),
    "rogue_report_interval": Field(POSITIVE_SECONDS, 300.0, "seconds between two reports "
                                   "(warning and event) about one other server"),
    "captive_portal_url": Field(str, "", "option 114 (RFC 8910) for every client"),
    "sweep_interval": Field(SECONDS, 10.0, "seconds between lease expiry sweeps (0: never)"),
    "subnet": TableList(SUBNET, "the subnets served"),
    "ldap": Table(LDAP_SECTION, "the LDAP lookup hook, run in this process"),
}


def subnets_from_config(section: Any, source: str) -> List[Any]:
    """
    The configured subnets as L{netsuite.dhcp.pool.Subnet}s; errors name the
    subnet and the file.

    The server listens on C{section.interface} alone, and answers a request
    that no relay forwarded from the one subnet on it: a subnet may name
    that interface, and only one may; the others are reached through relays
    (C{interface = ""}).
    """
    from .pool import Subnet
    subnets = []
    names: dict = {}
    direct: Optional[str] = None
    for index, table in enumerate(section.subnet):
        where = f"{source}: [[dhcp.subnet]] {index} ({table.name})"
        if table.name in names:
            raise ConfigError(f"{where}: the name is also subnet {names[table.name]}'s; "
                              "leases name their subnet, so each needs its own")
        names[table.name] = index
        if table.interface:
            if table.interface != section.interface:
                raise ConfigError(
                    f"{where}: interface {table.interface!r} is not the one this server "
                    f"listens on ({section.interface!r}, dhcp.interface or --interface); "
                    "set it to that, or to \"\" for a subnet reached through relays")
            if direct is not None:
                raise ConfigError(
                    f"{where}: interface {table.interface!r} is also subnet {direct}'s; "
                    "requests without a relay are answered from one subnet, so give the "
                    "others interface = \"\" (reached through relays)")
            direct = f"{index} ({table.name})"
        reservations: dict = {}
        for number, entry in enumerate(table.reservation):
            if bool(entry.mac) == bool(entry.client_id):
                raise ConfigError(f"{where}: reservation {number}: give either mac or "
                                  "client_id")
            key: Any = entry.mac if entry.mac else entry.client_id
            shown = str(entry.mac) if entry.mac else entry.client_id.hex(":")
            if entry.ip is None:
                raise ConfigError(f"{where}: reservation {number} ({shown}): no ip")
            if key in reservations:
                raise ConfigError(f"{where}: reservation {number} ({shown}): that client "
                                  "already has a reservation in this subnet")
            reservations[key] = entry.ip
        try:
            options: dict = {}
            if table.domain_name:
                options[DOMAIN_NAME] = table.domain_name
            subnets.append(Subnet(
                name=table.name, network=table.network, first=table.first, last=table.last,
                server=table.server, router=table.router, dns=tuple(table.dns),
                lease_time=float(table.lease_time), options=options,
                reservations=reservations, interface=table.interface or None))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if not subnets:
        raise ConfigError(f"{source}: [dhcp] is enabled but has no [[dhcp.subnet]]")
    return subnets


class DHCPService(Service):
    """
    Binds port 67 on the interface (before twistd drops privileges), builds
    the pool from the lease store in the worker thread, then serves.

    @param neighbours: writes the neighbour entries of unicast replies
        (L{netsuite.dhcp.neighbours.KernelNeighbours}).
    @param check_chaddr: take requests from the interface's frames (the
        UDP socket silent, holding the port and sending) and drop those
        whose chaddr is not the frame's source MAC; the server does not
        start without the packet socket.
    @param rogues: watch the frames for other servers' replies (without
        the packet socket, one warning and no watch).
    @param destinations: the unicast addresses a request taken from a
        frame may be sent to (L{netsuite.dhcp.guard.FrameSorter}).
    @param open_frames: L{netsuite.dhcp.frames.packet_socket}, or a fake.
    """

    def __init__(self, server: Any, build_pool: Any, interface: str, port: int,
                 reactor: Any, runner: Any, neighbours: Any = None,
                 check_chaddr: bool = False, rogues: Any = None,
                 destinations: Iterable[Any] = (), open_frames: Any = None) -> None:
        self.server = server
        self.build_pool = build_pool
        self.interface = interface
        self.port_number = port
        self.reactor = reactor
        self.runner = runner
        self.neighbours = neighbours
        self.check_chaddr = check_chaddr
        self.rogues = rogues
        self.destinations = tuple(destinations)
        self.open_frames = open_frames
        self.port: Any = None
        self.frames: Any = None
        self.readiness = Readiness()

    def privilegedStartService(self) -> None:
        from .protocol import DHCPProtocol, PortTaken, dhcp_socket
        Service.privilegedStartService(self)
        try:
            sock = dhcp_socket(self.interface, self.port_number, silent=self.check_chaddr)
        except PortTaken as e:
            _log.critical("dhcp cannot start: {error}", error=str(e))
            raise SystemExit(1) from None
        self.protocol = DHCPProtocol(self.server, self.neighbours)
        try:
            self.port = self.reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET,
                                                       self.protocol)
        finally:
            sock.close()  # Twisted has its own copy of the descriptor
        if self.check_chaddr or self.rogues is not None:
            self._open_frames()

    def _open_frames(self) -> None:
        from .frames import FrameReader, bpf_program, packet_socket
        from .guard import FrameSorter
        program = bpf_program(requests=self.check_chaddr, replies=self.rogues is not None)
        try:
            frames, mac = (self.open_frames or packet_socket)(
                self.interface, program, promiscuous=self.rogues is not None)
        except OSError as e:
            if self.check_chaddr:
                _log.critical("dhcp cannot start: dhcp.check_chaddr needs a packet socket on "
                              "{interface} (CAP_NET_RAW): {error}", interface=self.interface,
                              error=str(e))
                raise SystemExit(1) from None
            _log.warn("dhcp: not watching {interface} for other DHCP servers "
                      "(dhcp.watch_servers): no packet socket (CAP_NET_RAW?): {error}",
                      interface=self.interface, error=str(e))
            return
        sorter = FrameSorter(
            self.server.counters, mac,
            requests=self.protocol.request_received if self.check_chaddr else None,
            destinations=self.destinations, rogues=self.rogues)
        self.frames = FrameReader(frames, sorter.receive, self.reactor)
        self.frames.start()

    def startService(self) -> None:
        Service.startService(self)

        def ready(pool: Any) -> None:
            settle_heap()
            self.server.start(pool)
            _log.info("dhcp ready on {interface}: {free} free addresses",
                      interface=self.interface, free=pool.free_count(),
                      netsuite_event="dhcp-ready")
            self.readiness.fire()

        def failed(failure: Any) -> None:
            _log.failure("the DHCP lease store could not be opened; stopping", failure)
            if self.reactor.running:
                self.reactor.stop()
        self.runner.run(self.build_pool).addCallbacks(ready, failed)

    def when_ready(self) -> Any:
        """Fires once the pool is loaded and the server answers."""
        return self.readiness.when()

    def stopService(self) -> Any:
        Service.stopService(self)
        done = [self.server.stop()]
        if self.port is not None:
            done.append(maybeDeferred(self.port.stopListening))
        if self.frames is not None:
            self.frames.stop()
            self.frames = None
        if self.neighbours is not None:
            done.append(self.neighbours.close())
        return gatherResults(done)


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from ..runner import ThreadRunner
    from .leases import LeaseStore
    from .neighbours import KernelNeighbours
    from .pool import Pool
    from .server import DHCPServer

    section = config.dhcp
    subnets = subnets_from_config(section, config.source)
    # subnets_from_config lets one subnet at most be on the interface.
    direct = next((s for s in subnets if s.interface is not None), None)
    runner = ThreadRunner(reactor, name="netsuite-dhcp-leases")
    server = DHCPServer(registry, runner, reactor, direct,
                        section.captive_portal_url, section.sweep_interval,
                        relays=section.relays,
                        bind_unknown_renewals=section.bind_unknown_renewals)
    relayed = [s.name for s in subnets if s.interface is None]
    if relayed and not section.relays:
        _log.warn("dhcp: subnets {names} are reached through relays but dhcp.relays lists "
                  "none: their requests are dropped", names=", ".join(relayed))

    def build_pool() -> Pool:
        directory = os.path.dirname(section.lease_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return Pool(subnets, LeaseStore(section.lease_file, write_through=False), reactor,
                    offer_hold=section.offer_hold, quarantine=section.decline_quarantine,
                    declines_per_client=section.declines_per_client,
                    decline_fraction=section.decline_fraction)

    top = MultiService()
    if section.ldap.enabled:
        from .ldap import install
        install(registry, section.ldap, reactor)
    neighbours = KernelNeighbours(section.interface,
                                  ThreadRunner(reactor, name="netsuite-dhcp-neighbours"))
    rogues = None
    if section.watch_servers:
        from .guard import RogueWatch
        rogues = RogueWatch(registry, reactor, section.interface, server.counters,
                            interval=section.rogue_report_interval,
                            own={s.server for s in subnets})
    destinations = {s.server for s in subnets}
    if direct is not None:
        destinations.add(direct.network.broadcast_address)
    DHCPService(server, build_pool, section.interface, section.port, reactor,
                runner, neighbours, check_chaddr=section.check_chaddr, rogues=rogues,
                destinations=destinations).setServiceParent(top)
    return top


OPTIONS = (Override("interface", "i", "dhcp.interface",
                    "serve on this interface (overrides dhcp.interface)"),)
"""C{twistd netsuite-dhcp}'s own option."""


def check(config: Any) -> None:
    """
    The subnets fit together and with the interface served.
    """
    subnets_from_config(config.dhcp, config.source)
