# -*- test-case-name: tests.firewall.test_contract,tests.firewall.test_shaper_contract -*-
"""
An in-memory firewall for unit tests: the same behaviour as
L{netsuite.firewall.kernel.KernelFirewall}, with a simulated kernel that a
test can inspect, feed traffic to, or wipe as another tool would; and an
in-memory shaper, the same as L{netsuite.firewall.shaping.Shaper}, that a
test can flush.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Set, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..registry.values import MAC
from .interfaces import (Client, IFirewall, IShaper, Rates, Traffic, client_address,
                         new_client, smtp_server, window_seconds)
from .garden import GardenBook
from .slots import (NO_UPLINK, Uplink, check_limits, check_network, check_uplink, client_slot,
                    fair_class)

__all__ = ["MemoryFirewall", "MemoryShaper"]


@implementer(IFirewall)
class MemoryFirewall:
    """
    @ivar kernel_clients: the simulated auth set: ip -> (mac, Traffic).
    @ivar kernel_smtp: the simulated SMTP set: ip -> expiry time.
    @ivar kernel_smtp_servers: the simulated per-server SMTP set: (ip,
        server) -> expiry time.
    @ivar kernel_limits: the simulated tc classes: ip -> (up, down).
    @ivar kernel_garden: the simulated garden set: ip -> expiry time (the
        clock's; expired entries are gone from every answer).
    @ivar kernel_macs6: the simulated auth6 set (dual stack): the MACs
        authorized for IPv6; their IPv6 bytes (L{add_traffic6}) are in
        their clients' L{traffic}, totals that a wipe does not lower (as
        the kernel adapter's).
    @ivar rules_installed: whether the simulated static rules are in place.
    @ivar closed: whether the simulated closed-LAN rules (what a clean stop
        leaves) are in place.
    """

    def __init__(self, clock: IReactorTime, lan_network: ipaddress.IPv4Network,
                 smtp_window: int = 600, default_limits: Tuple[int, int] = (0, 0),
                 keep_clients: bool = False, garden_ttl: Tuple[int, int] = (60, 86400),
                 garden_max_entries: int = 4096, rates: Optional[Rates] = None) -> None:
        self.clock = clock
        self.rates = dict(rates or {})
        self.garden_book = GardenBook(clock, lan_network, *garden_ttl,
                                      max_entries=garden_max_entries)
        self.kernel_garden: Dict[ipaddress.IPv4Address, float] = {}
        self.lan_network = lan_network
        self.smtp_window = smtp_window
        self.default_limits = default_limits
        self.keep_clients = keep_clients
        self.clients: Dict[ipaddress.IPv4Address, Client] = {}
        self.kernel_clients: Dict[ipaddress.IPv4Address, Tuple[MAC, Traffic]] = {}
        self.kernel_smtp: Dict[ipaddress.IPv4Address, float] = {}
        self.kernel_smtp_servers: Dict[Tuple[ipaddress.IPv4Address, ipaddress.IPv4Address],
                                       float] = {}
        self.kernel_limits: Dict[ipaddress.IPv4Address, Tuple[int, int]] = {}
        self.kernel_macs6: Set[MAC] = set()
        self.traffic6: Dict[MAC, Traffic] = {}
        self.rules_installed = False
        self.closed = False
        self.cut: List[ipaddress.IPv4Address] = []

    # what a test does to the simulated kernel

    def add_traffic(self, ip: ipaddress.IPv4Address, up: int = 0, down: int = 0,
                    packets: int = 1) -> None:
        """
        Count traffic for C{ip}, as the kernel's set counters would.
        """
        if ip in self.kernel_clients:
            mac, t = self.kernel_clients[ip]
            self.kernel_clients[ip] = (mac, Traffic(
                t.bytes_up + up, t.packets_up + (packets if up else 0),
                t.bytes_down + down, t.packets_down + (packets if down else 0)))

    def add_traffic6(self, mac: MAC, up: int = 0, down: int = 0, packets: int = 1) -> None:
        """
        Count IPv6 traffic of C{mac}, as the nft table's counters would
        (only while the MAC is authorized for IPv6).
        """
        if mac in self.kernel_macs6:
            t = self.traffic6.get(mac, Traffic())
            self.traffic6[mac] = Traffic(
                t.bytes_up + up, t.packets_up + (packets if up else 0),
                t.bytes_down + down, t.packets_down + (packets if down else 0))

    def wipe(self) -> None:
        """
        Do what a distribution's firewall restart does: flush everything.
        """
        self.kernel_clients.clear()
        self.kernel_smtp.clear()
        self.kernel_smtp_servers.clear()
        self.kernel_limits.clear()
        self.kernel_garden.clear()
        self.kernel_macs6.clear()
        self.rules_installed = False

    # IFirewall

    def start(self) -> "Deferred[None]":
        if self.keep_clients:
            self.clients = {ip: Client(ip, mac, *self.kernel_limits.get(ip, (0, 0)))
                            for ip, (mac, _) in self.kernel_clients.items()}
            self.garden_book.adopt(self._garden_left())
            self.kernel_macs6 = {c.mac for c in self.clients.values()}
        else:
            self.kernel_clients.clear()
            self.kernel_limits.clear()
            self.kernel_garden.clear()
            self.kernel_macs6.clear()
        self.rules_installed = True
        self.closed = False
        return succeed(None)

    def stop(self) -> "Deferred[None]":
        if not self.keep_clients:
            self.garden_book.clear()
            self.wipe()
            self.closed = True
        return succeed(None)

    def remove(self) -> "Deferred[None]":
        self.wipe()
        self.closed = False
        return succeed(None)

    def _in_lan(self, ip: Any) -> ipaddress.IPv4Address:
        return client_address(self.lan_network, ip)

    def authorize(self, ip: ipaddress.IPv4Address, mac: MAC, up_kbit: Optional[int] = None,
                  down_kbit: Optional[int] = None) -> "Deferred[Client]":
        try:
            client = new_client(self.lan_network, ip, mac, up_kbit, down_kbit,
                                self.default_limits, self.rates)
        except (ValueError, TypeError):
            return fail()
        ip = client.ip
        before = self.clients.get(ip)
        self._install(client)
        self.clients[ip] = client
        if before is not None and before.mac != client.mac:
            self._drop_mac6(before.mac)
        return succeed(client)

    def _drop_mac6(self, mac: MAC) -> None:
        if all(c.mac != mac for c in self.clients.values()):
            self.kernel_macs6.discard(mac)
            self.traffic6.pop(mac, None)

    def _install(self, client: Client) -> None:
        self.kernel_clients[client.ip] = (client.mac, Traffic())
        self.kernel_macs6.add(client.mac)
        if client.up_kbit or client.down_kbit:
            self.kernel_limits[client.ip] = (client.up_kbit, client.down_kbit)
        else:
            self.kernel_limits.pop(client.ip, None)

    def deauthorize(self, ip: ipaddress.IPv4Address) -> "Deferred[bool]":
        try:
            ip = self._in_lan(ip)
        except ValueError:
            return fail()
        client = self.clients.pop(ip, None)
        known = client is not None
        if client is not None:
            self._drop_mac6(client.mac)
        self.kernel_clients.pop(ip, None)
        self.kernel_limits.pop(ip, None)
        self.cut.append(ip)
        return succeed(known)

    def traffic(self) -> "Deferred[Dict[ipaddress.IPv4Address, Traffic]]":
        result = {}
        for ip, client in self.clients.items():
            t = self.kernel_clients.get(ip, (None, Traffic()))[1]
            t6 = self.traffic6.get(client.mac, Traffic())
            result[ip] = Traffic(t.bytes_up + t6.bytes_up, t.packets_up + t6.packets_up,
                                 t.bytes_down + t6.bytes_down, t.packets_down + t6.packets_down)
        return succeed(result)

    def open_smtp(self, ip: ipaddress.IPv4Address, seconds: Optional[int] = None,
                  server: Optional[ipaddress.IPv4Address] = None) -> "Deferred[int]":
        try:
            ip = self._in_lan(ip)
            seconds = window_seconds(seconds, self.smtp_window)
            server = smtp_server(server, self.lan_network)
        except (ValueError, TypeError):
            return fail()
        if server is None:
            self.kernel_smtp[ip] = self.clock.seconds() + seconds
        else:
            self.kernel_smtp_servers[ip, server] = self.clock.seconds() + seconds
        return succeed(seconds)

    def close_smtp(self, ip: ipaddress.IPv4Address) -> "Deferred[None]":
        try:
            ip = self._in_lan(ip)
        except ValueError:
            return fail()
        self.kernel_smtp.pop(ip, None)
        for key in [key for key in self.kernel_smtp_servers if key[0] == ip]:
            del self.kernel_smtp_servers[key]
        return succeed(None)

    def smtp_windows(self) -> "Deferred[Dict[ipaddress.IPv4Address, Dict[Any, int]]]":
        now = self.clock.seconds()
        for ip in [ip for ip, end in self.kernel_smtp.items() if end <= now]:
            del self.kernel_smtp[ip]
        for key in [key for key, end in self.kernel_smtp_servers.items() if end <= now]:
            del self.kernel_smtp_servers[key]
        windows: Dict[ipaddress.IPv4Address, Dict[Any, int]] = {}
        for ip, end in self.kernel_smtp.items():
            windows.setdefault(ip, {})[None] = int(end - now)
        for (ip, server), end in self.kernel_smtp_servers.items():
            windows.setdefault(ip, {})[server] = int(end - now)
        return succeed(windows)

    def _garden_left(self) -> Dict[ipaddress.IPv4Address, int]:
        now = self.clock.seconds()
        for ip in [ip for ip, end in self.kernel_garden.items() if end <= now]:
            del self.kernel_garden[ip]
        return {ip: int(end - now) for ip, end in self.kernel_garden.items()}

    def add_garden(self, ips: Any, seconds: Any) -> "Deferred[int]":
        try:
            writes, accepted = self.garden_book.plan(ips, seconds)
        except ValueError:
            return fail()
        for ip, left in writes:
            self.kernel_garden[ip] = self.clock.seconds() + left
        return succeed(accepted)

    def garden(self) -> "Deferred[Dict[ipaddress.IPv4Address, int]]":
        return succeed(self._garden_left())

    def flush_garden(self) -> "Deferred[int]":
        n = self.garden_book.clear()
        self.kernel_garden.clear()
        return succeed(n)

    def check(self) -> "Deferred[List[str]]":
        repaired = []
        kernel_garden = self._garden_left()
        missing_garden = {ip: left for ip, left in self.garden_book.left().items()
                          if left > 2 and ip not in kernel_garden}
        if missing_garden:
            for ip, left in missing_garden.items():
                self.kernel_garden[ip] = self.clock.seconds() + left
            repaired.append(f"garden entries restored ({len(missing_garden)} were missing)")
        macs = {client.mac for client in self.clients.values()}
        if self.kernel_macs6 != macs:
            missing = len(macs - self.kernel_macs6)
            extra = len(self.kernel_macs6 - macs)
            self.kernel_macs6 = macs
            repaired.append(f"IPv6: IPv6 authorized MACs restored ({missing} were missing, "
                            f"{extra} extra)")
        if set(self.kernel_clients) != set(self.clients):
            missing = len(self.clients.keys() - self.kernel_clients.keys())
            for ip in self.kernel_clients.keys() - self.clients.keys():
                del self.kernel_clients[ip]
            for client in self.clients.values():
                if client.ip not in self.kernel_clients:
                    self._install(client)
            repaired.append(f"authorized clients restored ({missing} were missing)")
        if not self.rules_installed:
            self.rules_installed = True
            repaired.append("static rules restored")
        return succeed(repaired)


@implementer(IShaper)
class MemoryShaper:
    """
    @ivar kernel_limits: the simulated client classes: ip -> (up, down).
    @ivar kernel_classes: the same classes as the kernel's would be: ip ->
        direction ("up", "down") -> (parent, rate, ceil), the parent
        "uplink" (fair shares: L{slots.fair_class}) or "root".
    @ivar ifb: whether the simulated IFB device exists.
    @ivar qdiscs: whether the simulated qdiscs (roots, tree, redirect) are
        in place.
    """

    def __init__(self, lan_network: ipaddress.IPv4Network,
                 uplink: Uplink = NO_UPLINK) -> None:
        self.lan_network = check_network(ipaddress.IPv4Network(lan_network))
        self.uplink = check_uplink(uplink, self.lan_network)
        self.kernel_limits: Dict[ipaddress.IPv4Address, Tuple[int, int]] = {}
        self.kernel_classes: Dict[ipaddress.IPv4Address, Dict[str, Tuple[str, int, int]]] = {}
        self.ifb = False
        self.qdiscs = False

    # what a test does to the simulated kernel

    def flush(self) -> None:
        """
        Do what C{tc qdisc del} of the roots and the ingress does (a
        distribution's firewall restart, say): the client classes go with
        the qdiscs, the IFB device stays; L{intact} is False until
        L{setup}.
        """
        self.qdiscs = False
        self.kernel_limits.clear()
        self.kernel_classes.clear()

    # IShaper

    def setup(self) -> None:
        self.ifb = self.qdiscs = True

    def teardown(self) -> None:
        self.ifb = self.qdiscs = False
        self.kernel_limits.clear()
        self.kernel_classes.clear()

    def _address(self, ip: Any) -> ipaddress.IPv4Address:
        client_slot(ip, self.lan_network)  # refuses what the kernel one refuses
        return ipaddress.IPv4Address(ip)

    def _need_ifb(self) -> None:
        if not self.ifb:
            raise LookupError("no IFB device: call setup() first")

    def limit(self, ip: ipaddress.IPv4Address, up_kbit: int, down_kbit: int) -> None:
        ip = self._address(ip)
        check_limits(up_kbit, down_kbit)
        self._need_ifb()
        if not self.qdiscs:
            raise LookupError("the qdiscs were flushed: call setup()")
        classes = {}
        for direction, kbit, match in (("up", up_kbit, "src"), ("down", down_kbit, "dst")):
            capacity = self.uplink.capacity(match)
            if capacity:
                guarantee = self.uplink.guarantee(capacity, self.lan_network)
                classes[direction] = ("uplink", *fair_class(capacity, guarantee, kbit))
            elif kbit:
                classes[direction] = ("root", kbit, kbit)
        if classes:
            self.kernel_limits[ip] = (up_kbit, down_kbit)
            self.kernel_classes[ip] = classes
        else:
            self.unlimit(ip)

    def unlimit(self, ip: ipaddress.IPv4Address) -> None:
        ip = self._address(ip)
        self._need_ifb()
        self.kernel_limits.pop(ip, None)
        self.kernel_classes.pop(ip, None)

    def limits(self) -> Dict[ipaddress.IPv4Address, Tuple[int, int]]:
        self._need_ifb()
        return dict(self.kernel_limits)

    def intact(self) -> bool:
        return self.ifb and self.qdiscs
