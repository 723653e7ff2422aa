# -*- test-case-name: tests.lab.test_layout -*-
"""
The pure description of a lab: namespace and interface names, MACs and
addresses, all derived from the lab's name. No I/O, so it is unit-tested
without root and the CLI can rebuild it from a state file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,24}$")
ROLE_RE = re.compile(r"^(ap|up|c[1-9][0-9]*)$")
LAB_NETNS_RE = re.compile(r"^ns([A-Za-z0-9_]{1,24})-(ap|up|c[1-9][0-9]*)$")
MAX_CLIENTS = 200
IFNAMSIZ = 15

BRIDGE = "br-lan"
WAN = "wan0"
CLIENT_IF = "eth0"

# IPv6 (Lab(ipv6=True)): documentation prefixes, fixed.
WAN6 = "2001:db8:ff::/64"          # upstream ::1, AP ::2
INTERNET6 = "2001:db8:100::1"      # on the upstream's lo, like 198.51.100.1
LAN6 = "2001:db8:89::/64"          # the AP ::1 on br-lan; clients: SLAAC from RAs


class LabError(Exception):
    """
    A lab cannot be built, found or used as asked.
    """


def lab_hash(name: str) -> str:
    """
    Four hex digits from the lab name: they keep MACs and interface names
    of parallel labs apart.
    """
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:4]


@dataclass(frozen=True)
class Layout:
    """
    Names and addresses of one lab.

    @ivar name: the lab name, C{[A-Za-z0-9_]}, at most 24 characters.
    @ivar clients: how many client namespaces.
    @ivar lan: the LAN behind the AP's bridge; the AP takes its first host.
    @ivar wan: the AP-upstream link; upstream takes the first host, the AP
        the second.
    @ivar internet: an address on the upstream's C{lo}, "beyond" the AP.
    """

    name: str = "lab1"
    clients: int = 2
    lan: str = "10.89.0.0/24"
    wan: str = "192.0.2.0/30"
    internet: str = "198.51.100.1"
    ipv6: bool = False

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise LabError(f"bad lab name {self.name!r}: use 1-24 letters, digits or _")
        if not 0 <= self.clients <= MAX_CLIENTS:
            raise LabError(f"clients must be 0..{MAX_CLIENTS}, not {self.clients}")
        lan, wan = self.lan_network, self.wan_network
        if lan.num_addresses < self.clients + 14:
            raise LabError(f"LAN {lan} is too small for {self.clients} clients")
        if wan.num_addresses < 4:
            raise LabError(f"WAN {wan} needs at least a /30")
        if lan.overlaps(wan):
            raise LabError(f"LAN {lan} and WAN {wan} overlap")
        ipaddress.IPv4Address(self.internet)

    # networks and addresses

    @property
    def lan_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.lan, strict=True)

    @property
    def wan_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.wan, strict=True)

    @property
    def ap_address(self) -> str:
        """The AP's LAN address (on C{br-lan}), the clients' gateway."""
        return str(self.lan_network.network_address + 1)

    @property
    def wan_up_address(self) -> str:
        """The upstream's address on the WAN link, the AP's gateway."""
        return str(self.wan_network.network_address + 1)

    @property
    def wan_ap_address(self) -> str:
        """The AP's address on C{wan0}."""
        return str(self.wan_network.network_address + 2)

    # IPv6 (fixed prefixes, meaningful with ipv6=True)

    @property
    def lan_prefix6(self) -> str:
        return LAN6

    @property
    def ap_address6(self) -> str:
        """The AP's address on C{br-lan}, the prefix advertised to clients."""
        return str(ipaddress.IPv6Network(LAN6).network_address + 1)

    @property
    def wan_up_address6(self) -> str:
        return str(ipaddress.IPv6Network(WAN6).network_address + 1)

    @property
    def wan_ap_address6(self) -> str:
        return str(ipaddress.IPv6Network(WAN6).network_address + 2)

    @property
    def internet6(self) -> str:
        return INTERNET6

    def client_slaac6(self, index: int) -> str:
        """
        Client C{index}'s stable SLAAC address: the LAN prefix and the
        modified EUI-64 of its MAC (the kernel's default,
        C{addr_gen_mode=0}).
        """
        octets = [int(x, 16) for x in self.client_mac(index).split(":")]
        eui = bytes([octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]])
        return str(ipaddress.IPv6Network(LAN6).network_address
                   + int.from_bytes(eui, "big"))

    def client_address(self, index: int) -> str:
        """The static address client C{index} gets with C{up(addresses=True)}."""
        self._check_index(index)
        return str(self.lan_network.network_address + 10 + index)

    # names

    @property
    def prefix(self) -> str:
        return f"ns{self.name}-"

    @property
    def roles(self) -> List[str]:
        return ["ap", "up"] + self.client_roles

    @property
    def client_roles(self) -> List[str]:
        return [f"c{i}" for i in range(1, self.clients + 1)]

    def netns(self, role: str) -> str:
        """
        The namespace name of a role (C{ap}, C{up}, C{c1}...); a full
        namespace name of this lab is returned unchanged.
        """
        if role.startswith(self.prefix) and self.role_of(role) is not None:
            role = role[len(self.prefix):]
        if not ROLE_RE.match(role) or role not in self.roles:
            raise LabError(f"lab {self.name} has no namespace {role!r} "
                           f"(roles: {', '.join(self.roles)})")
        return self.prefix + role

    def role_of(self, netns: str) -> Optional[str]:
        """The role of a namespace name of this lab, or C{None}."""
        if not netns.startswith(self.prefix):
            return None
        role = netns[len(self.prefix):]
        return role if ROLE_RE.match(role) else None

    def ap_port(self, index: int) -> str:
        """The AP-side name of client C{index}'s veth, a port of C{br-lan}."""
        self._check_index(index)
        return f"v{lab_hash(self.name)}c{index}"

    @property
    def up_port(self) -> str:
        """The upstream-side name of the WAN veth."""
        return f"v{lab_hash(self.name)}ap"

    # MACs: 02:4e:HH:HH:xx:yy, locally administered, unicast

    def _mac(self, hi: int, lo: int) -> str:
        h = lab_hash(self.name)
        return f"02:4e:{h[:2]}:{h[2:]}:{hi:02x}:{lo:02x}"

    def client_mac(self, index: int) -> str:
        """Client C{index}'s C{eth0} MAC."""
        self._check_index(index)
        return self._mac(0, index)

    def ap_port_mac(self, index: int) -> str:
        self._check_index(index)
        return self._mac(1, index)

    @property
    def bridge_mac(self) -> str:
        return self._mac(0xFF, 1)

    @property
    def wan_mac(self) -> str:
        return self._mac(0xFF, 2)

    @property
    def up_port_mac(self) -> str:
        return self._mac(0xFF, 3)

    def _check_index(self, index: int) -> None:
        if not 1 <= index <= self.clients:
            raise LabError(f"lab {self.name} has clients 1..{self.clients}, not {index}")

    def interface_names(self) -> List[str]:
        """Every interface name the lab creates (all within IFNAMSIZ)."""
        return ([BRIDGE, WAN, CLIENT_IF, self.up_port]
                + [self.ap_port(i) for i in range(1, self.clients + 1)])

    def resolver(self, role: str) -> str:
        """The C{nameserver} written to the role's own C{resolv.conf}."""
        if role == "up":
            return "127.0.0.1"
        if role == "ap":
            return self.wan_up_address
        return self.ap_address

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "clients": self.clients, "lan": self.lan,
                "wan": self.wan, "internet": self.internet, "ipv6": self.ipv6}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Layout":
        return cls(name=str(data["name"]), clients=int(data["clients"]),
                   lan=str(data["lan"]), wan=str(data["wan"]),
                   internet=str(data["internet"]), ipv6=bool(data.get("ipv6")))


__all__ = ["Layout", "LabError", "lab_hash", "BRIDGE", "WAN", "CLIENT_IF", "NAME_RE",
           "LAN6", "WAN6", "INTERNET6",
           "LAB_NETNS_RE"]
