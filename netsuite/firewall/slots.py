# -*- test-case-name: tests.firewall.test_slots -*-
"""
The arithmetic of per-client rate limits: which class id and which u32
node belong to which client address, the u32 keys that match an address or
the LAN, and tc's kbit. Pure, so that the kernel shaper
(L{netsuite.firewall.shaping}) and the memory one
(L{netsuite.firewall.memory}) check their arguments alike, and the numbers
are unit-tested without root.

The layout these identifiers name is drawn in
L{netsuite.firewall.shaping}.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Optional, Tuple

__all__ = [
    "ClientSlot",
    "client_slot",
    "address_of",
    "check_network",
    "check_limits",
    "u32_key",
    "field_offset",
    "ip_match_key",
    "network_match_key",
    "kbit_to_bytes",
    "bytes_to_kbit",
    "Uplink",
    "NO_UPLINK",
    "check_uplink",
    "fair_class",
]

# --- fixed identifiers ------------------------------------------------------

ROOT_HANDLE = 0x00010000        # htb 1:
INGRESS_HANDLE = 0xFFFF0000     # ingress ffff:
DEFAULT_MINOR = 0xFFFF          # class 1:ffff: everything not matched
DEFAULT_CLASSID = ROOT_HANDLE | DEFAULT_MINOR
UNLIMITED_KBIT = 10_000_000     # the default class: 10 gbit/s, i.e. not a limit

U32_ROOT_HT = 0x80000000        # 800: the first u32 on a block gets this table
HASH_HTID = 0x002               # 2: our 256-bucket table
HASH_HT = HASH_HTID << 20
HASH_DIVISOR = 256
LINK_HANDLE = U32_ROOT_HT | 1   # 800::1, the node that hashes into 2:
REDIRECT_HANDLE = U32_ROOT_HT | 1

# offsets in the IPv4 header
IP_SRC_OFFSET = 12
IP_DST_OFFSET = 16

MIN_PREFIXLEN = 16              # minor = host offset must fit under 0xffff
MAX_PREFIXLEN = 30              # at least two hosts

# fair shares of the uplink (L{Uplink})
UPLINK_MINOR = 0xFFFE           # class 1:fffe: the uplink, parent of every client class
UPLINK_CLASSID = ROOT_HANDLE | UPLINK_MINOR
UPLINK_MIN_PREFIXLEN = 17       # so that no client offset is 0xfffe
MIN_GUARANTEE_KBIT = 8          # below this HTB's burst of one MTU lasts over a second


@dataclass(frozen=True)
class ClientSlot:
    """
    The kernel identifiers of one client, all derived from its address.

    @ivar offset: host offset of the address in the LAN network.
    @ivar classid: HTB class C{1:<offset>} (on the LAN and on the IFB).
    @ivar bucket: u32 hash bucket, the low byte of the address.
    @ivar node: u32 node id within the bucket, C{(offset >> 8) + 1}.
    @ivar filter_handle: u32 handle C{2:<bucket>:<node>}.
    @ivar hash_handle: C{2:<bucket>:}, the TCA_U32_HASH that places the node.
    """

    offset: int
    classid: int
    bucket: int
    node: int
    filter_handle: int
    hash_handle: int

    @property
    def minor(self) -> int:
        return self.classid & 0xFFFF


def check_network(network: IPv4Network) -> IPv4Network:
    """
    C{network} as a network, if a LAN of that size can be shaped; else
    C{ValueError}.
    """
    network = IPv4Network(network)
    if not MIN_PREFIXLEN <= network.prefixlen <= MAX_PREFIXLEN:
        raise ValueError(
            f"LAN {network}: shaping needs a prefix from /{MIN_PREFIXLEN} to /{MAX_PREFIXLEN}"
        )
    return network


def client_slot(ip: IPv4Address, network: IPv4Network) -> ClientSlot:
    """
    The class id and u32 handles of C{ip} in C{network}.

    The class minor is the host offset (1 .. 0xfffe on a /16, so it never
    meets the default class 1:ffff: that offset is a /16's broadcast address).
    """
    ip = IPv4Address(ip)
    network = check_network(network)
    if ip not in network:
        raise ValueError(f"{ip} is not in the LAN {network}")
    offset = int(ip) - int(network.network_address)
    if offset == 0 or ip == network.broadcast_address:
        raise ValueError(f"{ip} is the network or broadcast address of {network}")
    bucket = int(ip) & 0xFF
    node = (offset >> 8) + 1
    hash_handle = HASH_HT | (bucket << 12)
    return ClientSlot(
        offset=offset,
        classid=ROOT_HANDLE | offset,
        bucket=bucket,
        node=node,
        filter_handle=hash_handle | node,
        hash_handle=hash_handle,
    )


def address_of(minor: int, network: IPv4Network) -> Optional[IPv4Address]:
    """
    The client address of class minor C{minor}, or C{None} if it is not one.
    """
    if not 0 < minor < network.num_addresses - 1:
        return None
    return network.network_address + minor


def check_limits(up_kbit: Any, down_kbit: Any) -> None:
    """
    C{ValueError} unless both limits are ints of kbit/s from 0 (no limit)
    to L{UNLIMITED_KBIT}, the default class's rate.
    """
    for kbit in (up_kbit, down_kbit):
        if not isinstance(kbit, int) or kbit < 0 or kbit > UNLIMITED_KBIT:
            raise ValueError(f"a limit is an int of kbit/s from 0 to {UNLIMITED_KBIT}, not {kbit!r}")


def u32_key(value: int, mask: int, offset: int) -> Tuple[int, int, int]:
    """
    One u32 key: (value, mask, offset), the 32-bit word at C{offset} (a
    multiple of 4, from the network header) ANDed with C{mask} equals C{value}.
    """
    if offset % 4:
        raise ValueError("u32 key offsets are multiples of 4")
    if not 0 <= mask <= 0xFFFFFFFF or value & ~mask:
        raise ValueError(f"value {value:#x} has bits outside mask {mask:#x}")
    return (value, mask, offset)


def field_offset(direction: str) -> int:
    """
    Where in the IPv4 header the address of C{direction} ("src" or "dst")
    is.
    """
    if direction == "dst":
        return IP_DST_OFFSET
    if direction == "src":
        return IP_SRC_OFFSET
    raise ValueError(f"direction is 'src' or 'dst', not {direction!r}")


def ip_match_key(ip: IPv4Address, direction: str) -> Tuple[int, int, int]:
    """
    The u32 key of C{match ip <direction> <ip>/32}.
    """
    return u32_key(int(IPv4Address(ip)), 0xFFFFFFFF, field_offset(direction))


def network_match_key(network: IPv4Network, direction: str) -> Tuple[int, int, int]:
    """
    The u32 key of C{match ip <direction> <network>}.
    """
    network = IPv4Network(network)
    return u32_key(int(network.network_address), int(network.netmask),
                   field_offset(direction))


def kbit_to_bytes(kbit: int) -> int:
    """
    tc's kbit is 1000 bit/s; the kernel counts bytes per second.
    """
    return kbit * 125


def bytes_to_kbit(rate: int) -> int:
    return (rate * 8 + 500) // 1000


@dataclass(frozen=True)
class Uplink:
    """
    The uplink's capacity per direction in kbit/s (0: that direction is not
    shared: clients without a limit of their own are not shaped, as before
    fair shares), and the number of clients its guaranteed rates are sized
    for (0: every client address of the LAN).

    With a capacity, every client has an HTB class under the uplink's class
    C{1:fffe} (rate = ceil = capacity): its guaranteed rate is
    L{guarantee}, its ceil its own limit or the capacity, so idle capacity
    is lent to the active clients, in equal shares (all classes have the
    same quantum).
    """

    up_kbit: int = 0
    down_kbit: int = 0
    clients: int = 0

    @property
    def on(self) -> bool:
        return bool(self.up_kbit or self.down_kbit)

    def capacity(self, direction: str) -> int:
        """
        The capacity of the direction whose u32 tree matches C{direction}
        ("dst": download, on the LAN; "src": upload, on the IFB).
        """
        field_offset(direction)
        return self.down_kbit if direction == "dst" else self.up_kbit

    def guarantee(self, capacity: int, network: IPv4Network) -> int:
        """
        Each client's guaranteed rate: C{capacity} / L{clients} (or / the
        LAN's client addresses), at least L{MIN_GUARANTEE_KBIT}. HTB lets a
        class under its rate send without asking its parent, so guarantees
        that add up to more than the capacity would let the clients
        together exceed it; the shares of what is left over do not depend
        on the guarantee (equal quanta share it equally).
        """
        clients = self.clients or network.num_addresses - 2
        return max(MIN_GUARANTEE_KBIT, capacity // max(1, clients))


NO_UPLINK = Uplink()


def check_uplink(uplink: Uplink, network: IPv4Network) -> Uplink:
    """
    C{uplink}, if it can share C{network}'s clients' traffic; else
    C{ValueError}.
    """
    for kbit in (uplink.up_kbit, uplink.down_kbit):
        if not isinstance(kbit, int) or not 0 <= kbit <= UNLIMITED_KBIT:
            raise ValueError(f"an uplink capacity is an int of kbit/s from 0 to "
                             f"{UNLIMITED_KBIT}, not {kbit!r}")
    if not isinstance(uplink.clients, int) or uplink.clients < 0:
        raise ValueError(f"the uplink's number of clients is an int >= 0, not {uplink.clients!r}")
    if uplink.on and IPv4Network(network).prefixlen < UPLINK_MIN_PREFIXLEN:
        raise ValueError(f"LAN {network}: fair shares of the uplink need a prefix from "
                         f"/{UPLINK_MIN_PREFIXLEN} to /{MAX_PREFIXLEN} (class 1:fffe is the "
                         f"uplink's, and on a /16 it is a client's)")
    return uplink


def fair_class(capacity: int, guarantee: int, limit: int) -> Tuple[int, int]:
    """
    (rate, ceil) in kbit/s of a client's class under the uplink: ceil is
    its own C{limit}, or the C{capacity} when it has none (0); rate the
    C{guarantee}, or the ceil if that is lower.
    """
    ceil = limit or capacity
    return min(guarantee, ceil), ceil
