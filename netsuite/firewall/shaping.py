# -*- test-case-name: tests.firewall.test_shaping -*-
"""
Per-client rate limits for the LAN, through netlink (pyroute2) only.

Layout, on the LAN interface C{lan} and an IFB device C{ifb}::

    lan egress (download)              lan ingress (upload)
    htb 1: default 1:ffff              ingress ffff:
      class 1:ffff  10gbit (others)      u32 prio 1, match all, protocol all
      class 1:<off> per client             -> mirred egress redirect to ifb
      u32 prio 10, protocol ip
        800::1  match dst in LAN       ifb egress
                hash on dst low byte   htb 1: default 1:ffff
                link 2:                  (same classes and u32 tree, keyed
        2:<b>:<n> match dst/32            on the source address instead)
                  classid 1:<off>

Every client's identifiers are derived from its host offset C{off} in the LAN
network (L{client_slot}): the class is C{1:<off>} and its u32 node
C{2:<low byte of the address>:<(off >> 8) + 1>} in a 256-bucket hash table
keyed on the low byte of the address. So L{Shaper.limit} and
L{Shaper.unlimit} are a fixed handful of netlink requests whatever the
number of clients (the kernel's own work grows slowly with it), and classifying a packet costs one hash lookup plus a
walk of at most C{2 ** (24 - prefixlen)} nodes (one node on a /24 or smaller).

The kernel these daemons run on has only htb, tbf, ingress and [pb]fifo
qdiscs, the u32 and bpf classifiers and the mirred action (no police action,
no fq_codel, no matchall or flower), hence HTB classes matched by u32, and
upload shaped on an IFB device fed by an ingress redirect.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from socket import AF_UNSPEC, htons
from typing import Dict, Iterable, List, Optional, Tuple

from pyroute2 import IPRoute
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nla,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELQDISC,
    RTM_DELTCLASS,
    RTM_DELTFILTER,
    RTM_GETTFILTER,
    RTM_NEWQDISC,
    RTM_NEWTCLASS,
    RTM_NEWTFILTER,
    TC_H_INGRESS,
    TC_H_ROOT,
)
from pyroute2.netlink.rtnl.tcmsg import cls_u32, sched_htb, tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime
from pyroute2.netlink.rtnl.tcmsg.common_act import get_tca_action

__all__ = [
    "Shaper",
    "ClientSlot",
    "client_slot",
    "address_of",
    "check_network",
    "u32_key",
    "ip_match_key",
    "network_match_key",
    "kbit_to_bytes",
    "bytes_to_kbit",
]

# --- fixed identifiers ------------------------------------------------------

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800

ROOT_HANDLE = 0x00010000        # htb 1:
INGRESS_HANDLE = 0xFFFF0000     # ingress ffff:
DEFAULT_MINOR = 0xFFFF          # class 1:ffff: everything not matched
DEFAULT_CLASSID = ROOT_HANDLE | DEFAULT_MINOR
UNLIMITED_KBIT = 10_000_000     # the default class: 10 gbit/s, i.e. not a limit

CLIENT_PRIO = 10                # u32 tree on the htb roots (protocol ip)
REDIRECT_PRIO = 1               # u32 match-all on the LAN ingress (protocol all)

U32_ROOT_HT = 0x80000000        # 800: the first u32 on a block gets this table
HASH_HTID = 0x002               # 2: our 256-bucket table
HASH_HT = HASH_HTID << 20
HASH_DIVISOR = 256
LINK_HANDLE = U32_ROOT_HT | 1   # 800::1, the node that hashes into 2:
REDIRECT_HANDLE = U32_ROOT_HT | 1

TC_U32_TERMINAL = 1

# offsets in the IPv4 header
IP_SRC_OFFSET = 12
IP_DST_OFFSET = 16

MIN_PREFIXLEN = 16              # minor = host offset must fit under 0xffff
MAX_PREFIXLEN = 30              # at least two hosts


# --- pure arithmetic (unit-tested without root) -----------------------------

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


def _field(direction: str) -> int:
    if direction == "dst":
        return IP_DST_OFFSET
    if direction == "src":
        return IP_SRC_OFFSET
    raise ValueError(f"direction is 'src' or 'dst', not {direction!r}")


def ip_match_key(ip: IPv4Address, direction: str) -> Tuple[int, int, int]:
    """
    The u32 key of C{match ip <direction> <ip>/32}.
    """
    return u32_key(int(IPv4Address(ip)), 0xFFFFFFFF, _field(direction))


def network_match_key(network: IPv4Network, direction: str) -> Tuple[int, int, int]:
    """
    The u32 key of C{match ip <direction> <network>}.
    """
    network = IPv4Network(network)
    return u32_key(int(network.network_address), int(network.netmask), _field(direction))


def kbit_to_bytes(kbit: int) -> int:
    """
    tc's kbit is 1000 bit/s; the kernel counts bytes per second.
    """
    return kbit * 125


def bytes_to_kbit(rate: int) -> int:
    return (rate * 8 + 500) // 1000


# --- netlink message construction ------------------------------------------

class _U32Options(cls_u32.options):
    """
    pyroute2's u32 options, except that hash tables (TCA_U32_DIVISOR),
    links (TCA_U32_LINK) and hashing selectors can be encoded, the selector
    flags are not forced to "terminal" and keys are given as
    (value, mask, offset) tuples.
    """

    # pyroute2 caches the compiled NLA table on the class, and a subclass
    # would inherit its parent's: compile ours
    _nlmsg_base__compiled_nla = False

    nla_map = (
        ('TCA_U32_UNSPEC', 'none'),
        ('TCA_U32_CLASSID', 'uint32'),
        ('TCA_U32_HASH', 'uint32'),
        ('TCA_U32_LINK', 'uint32'),
        ('TCA_U32_DIVISOR', 'uint32'),
        ('TCA_U32_SEL', 'u32_sel'),
        ('TCA_U32_POLICE', 'police'),
        ('TCA_U32_ACT', 'tca_act_prio'),
        ('TCA_U32_INDEV', 'hex'),
        ('TCA_U32_PCNT', 'u32_pcnt'),
        ('TCA_U32_MARK', 'u32_mark'),
    )

    class u32_sel(cls_u32.options.u32_sel):
        def encode(self):
            keys = self['keys']
            self['nkeys'] = len(keys)
            for name in ('flags', 'offshift', 'offmask', 'off', 'offoff', 'hoff', 'hmask'):
                self.setdefault(name, 0)
            nla.encode(self)
            offset = self.offset + 20  # 4 bytes of header + 16 of struct tc_u32_sel
            for value, mask, off in keys:
                key = self.u32_key(data=self.data)
                key['key_val'] = value
                key['key_mask'] = mask
                key['key_off'] = off
                key['key_offmask'] = 0
                key.offset = offset
                key.encode()
                offset += 16
            self.length = offset - self.offset
            struct.pack_into('H', self.data, self.offset, self.length)


class _HtbOptions(sched_htb.options):
    """
    pyroute2's HTB options without the rate tables (see L{_htb_class_options}).
    """

    _nlmsg_base__compiled_nla = False

    class htb_parms(nla):
        fields = sched_htb.options.htb_parms.fields


class _tcmsg(tcmsg):
    """
    A tcmsg whose u32 and HTB options are encoded by L{_U32Options} and
    L{_HtbOptions}.
    """

    _nlmsg_base__compiled_nla = False

    @staticmethod
    def get_options(self, *argv, **kwarg):
        kind = self.get_attr('TCA_KIND')
        if kind == 'u32':
            return _U32Options
        if kind == 'htb':
            return _HtbOptions
        return tcmsg.get_options(self, *argv, **kwarg)


def _msg(index: int, handle: int = 0, parent: int = 0, info: int = 0,
         attrs: Iterable = ()) -> _tcmsg:
    msg = _tcmsg()
    msg['family'] = AF_UNSPEC
    msg['index'] = index
    msg['handle'] = handle
    msg['parent'] = parent
    msg['info'] = info
    msg['attrs'] = [list(a) for a in attrs]
    return msg


def _filter_info(prio: int, protocol: int) -> int:
    return (prio << 16) | htons(protocol)


LINKLAYER_ETHERNET = 1
MTU = 1600


def _htb_class_options(kbit: int) -> dict:
    """
    TCA_OPTIONS of an HTB class with rate = ceil = C{kbit}.

    The burst is one MTU, what tc gives by default (rate / HZ + mtu, where
    HZ is the 1e9 of /proc/net/psched). The rate tables tc (and pyroute2)
    compute are left out: with the link layer given in the ratespec the
    kernel does not need them, and computing them in Python was the larger
    part of a limit() call.
    """
    rate = kbit_to_bytes(kbit)
    buffer = calc_xmittime(rate, MTU)
    # The quantum only matters to classes that borrow, and ours never do
    # (every class is a root class with ceil = rate); giving one keeps the
    # kernel from logging "quantum of class is big/small".
    quantum = max(MTU, min(rate // 10, 200000))
    parms = {
        'rate_cell_log': 0, 'rate___reserved': LINKLAYER_ETHERNET, 'rate_overhead': 0,
        'rate_cell_align': 0, 'rate_mpu': 0, 'rate': min(rate, 0xFFFFFFFF),
        'ceil_cell_log': 0, 'ceil___reserved': LINKLAYER_ETHERNET, 'ceil_overhead': 0,
        'ceil_cell_align': 0, 'ceil_mpu': 0, 'ceil': min(rate, 0xFFFFFFFF),
        'buffer': buffer, 'cbuffer': buffer, 'quantum': quantum, 'level': 0, 'prio': 0,
    }
    attrs = [['TCA_HTB_PARMS', parms]]
    if rate > 0xFFFFFFFF:
        attrs += [['TCA_HTB_RATE64', rate], ['TCA_HTB_CEIL64', rate]]
    return {'attrs': attrs}


REQ = NLM_F_REQUEST | NLM_F_ACK
CREATE = REQ | NLM_F_CREATE | NLM_F_EXCL
REPLACE = REQ | NLM_F_CREATE | NLM_F_REPLACE


# --- the shaper -------------------------------------------------------------

class Shaper:
    """
    Per-client rate limits: HTB classes matched by IP with u32; download on
    the LAN interface egress, upload through an IFB device fed by an ingress
    mirred redirect of the LAN interface.

    Every method blocks on a few netlink requests; call them from one worker
    thread at a time (a lock serializes them anyway). Without C{ipr}, the
    Shaper opens its own netlink socket on first use, in the calling thread.

    L{setup} keeps the client classes it finds under a well-formed layout
    (after a crash or a restart): compare L{limits} with what should be set
    and L{unlimit} what is stale, or a recycled address inherits a limit.
    """

    def __init__(self, lan_ifname: str, lan_network: IPv4Network,
                 ifb_ifname: str = "ifb-ns0", ipr: Optional[IPRoute] = None):
        self.lan_ifname = lan_ifname
        self.lan_network = check_network(ipaddress.IPv4Network(lan_network))
        self.ifb_ifname = ifb_ifname
        self._ipr = ipr
        self._own_ipr = ipr is None
        self._lock = threading.RLock()
        self._lan_index: Optional[int] = None
        self._ifb_index: Optional[int] = None

    # -- plumbing

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        """
        Close the netlink socket if the Shaper opened it. Kernel state stays.
        """
        with self._lock:
            if self._own_ipr and self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    def _request(self, msg_type: int, flags: int, msg, ignore: Tuple[int, ...] = ()) -> bool:
        """
        Send one request and wait for its ack. False if it failed with an
        errno in C{ignore}.
        """
        msg['header']['type'] = msg_type
        msg['header']['flags'] = flags
        try:
            # (IPRoute.nlm_request of pyroute2 0.9.7 fails with KeyError
            # 'nlm_generator'; the batch call of one message does the same job)
            self.ipr.nlm_request_batch([msg])
        except NetlinkError as e:
            if e.code in ignore:
                return False
            raise
        return True

    def _link(self, ifname: str):
        try:
            return self.ipr.link('get', ifname=ifname)[0]
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise

    def _lan(self) -> int:
        if self._lan_index is None:
            link = self._link(self.lan_ifname)
            if link is None:
                raise LookupError(f"no LAN interface {self.lan_ifname}")
            self._lan_index = link['index']
        return self._lan_index

    def _ifb(self) -> int:
        if self._ifb_index is None:
            link = self._link(self.ifb_ifname)
            if link is None:
                raise LookupError(f"no IFB device {self.ifb_ifname}: call setup() first")
            self._ifb_index = link['index']
        return self._ifb_index

    def _devices(self) -> List[Tuple[int, str]]:
        """
        (ifindex, the address field its u32 tree matches) for both directions.
        """
        return [(self._lan(), "dst"), (self._ifb(), "src")]

    # -- setup / teardown

    def setup(self) -> None:
        """
        Build the layout, or complete and repair what is there. Idempotent.
        """
        with self._lock:
            self._lan_index = None
            self._ifb_index = None
            lan = self._lan()
            ifb = self._ensure_ifb()
            qdiscs = self._qdiscs()
            for index, direction in ((lan, "dst"), (ifb, "src")):
                self._ensure_htb(index, direction, qdiscs.get((index, TC_H_ROOT)))
            self._ensure_redirect(lan, ifb, qdiscs.get((lan, TC_H_INGRESS)))

    def _ensure_ifb(self) -> int:
        link = self._link(self.ifb_ifname)
        if link is not None and _link_kind(link) != 'ifb':
            raise RuntimeError(
                f"{self.ifb_ifname} exists and is a {_link_kind(link)!r} device, not an IFB")
        if link is None:
            self.ipr.link('add', ifname=self.ifb_ifname, kind='ifb')
            link = self._link(self.ifb_ifname)
        if not link['flags'] & 1:
            self.ipr.link('set', index=link['index'], state='up')
        self._ifb_index = link['index']
        return self._ifb_index

    def _qdiscs(self) -> Dict[Tuple[int, int], object]:
        """
        The root and ingress qdiscs of every device: (ifindex, parent) -> msg.
        """
        found = {}
        for msg in self.ipr.tc('dump'):
            if msg['parent'] in (TC_H_ROOT, TC_H_INGRESS):
                found[(msg['index'], msg['parent'])] = msg
        return found

    def _ensure_htb(self, index: int, direction: str, current) -> None:
        ours = (
            current is not None
            and current.get_attr('TCA_KIND') == 'htb'
            and current['handle'] == ROOT_HANDLE
            and _htb_defcls(current) == DEFAULT_MINOR
            and self._tree_matches(index, direction)
        )
        if not ours:
            # replacing the root drops whatever classes and filters it held
            if current is not None and current.get_attr('TCA_KIND') not in (None, 'noqueue'):
                self._request(RTM_DELQDISC, REQ, _msg(index, parent=TC_H_ROOT),
                              ignore=(errno.ENOENT, errno.EINVAL))
            self._request(RTM_NEWQDISC, CREATE, _msg(
                index, handle=ROOT_HANDLE, parent=TC_H_ROOT,
                attrs=[('TCA_KIND', 'htb'),
                       ('TCA_OPTIONS', sched_htb.get_parameters({'default': DEFAULT_MINOR}))]))
        self._request(RTM_NEWTCLASS, REPLACE, _msg(
            index, handle=DEFAULT_CLASSID, parent=ROOT_HANDLE,
            attrs=[('TCA_KIND', 'htb'), ('TCA_OPTIONS', _htb_class_options(UNLIMITED_KBIT))]))
        if not ours:
            self._add_tree(index, direction)

    def _tree_matches(self, index: int, direction: str) -> bool:
        """
        Is the u32 tree on this htb root ours, for this LAN and direction?
        Two gets, whatever the number of clients (their nodes are not
        checked one by one).
        """
        table = self._get_filter(index, ROOT_HANDLE, HASH_HT, CLIENT_PRIO, ETH_P_IP)
        if table is None or table.get_attr('TCA_OPTIONS') is None:
            return False
        if table.get_attr('TCA_OPTIONS').get_attr('TCA_U32_DIVISOR') != HASH_DIVISOR:
            return False
        link = self._get_filter(index, ROOT_HANDLE, LINK_HANDLE, CLIENT_PRIO, ETH_P_IP)
        if link is None or link.get_attr('TCA_OPTIONS') is None:
            return False
        opts = link.get_attr('TCA_OPTIONS')
        sel = _u32_sel(opts)
        return (
            sel is not None
            and sel['keys'] == [network_match_key(self.lan_network, direction)]
            and sel['hmask'] == 0xFF
            and sel['hoff'] == _field(direction)
            and _u32_link(opts) == HASH_HT
        )

    def _add_tree(self, index: int, direction: str) -> None:
        info = _filter_info(CLIENT_PRIO, ETH_P_IP)
        # the hash table 2: (256 buckets) ...
        self._request(RTM_NEWTFILTER, CREATE, _msg(
            index, handle=HASH_HT, parent=ROOT_HANDLE, info=info,
            attrs=[('TCA_KIND', 'u32'),
                   ('TCA_OPTIONS', {'attrs': [['TCA_U32_DIVISOR', HASH_DIVISOR]]})]))
        # ... and the node in 800: that sends LAN addresses into it, hashed on
        # the low byte of the address
        self._request(RTM_NEWTFILTER, REPLACE, _msg(
            index, handle=LINK_HANDLE, parent=ROOT_HANDLE, info=info,
            attrs=[('TCA_KIND', 'u32'),
                   ('TCA_OPTIONS', {'attrs': [
                       ['TCA_U32_LINK', HASH_HT],
                       ['TCA_U32_SEL', {
                           'keys': [network_match_key(self.lan_network, direction)],
                           'hmask': 0xFF,
                           'hoff': _field(direction),
                       }],
                   ]})]))

    def _ensure_redirect(self, lan: int, ifb: int, current) -> None:
        if current is not None and current.get_attr('TCA_KIND') == 'ingress':
            filters = [m for m in self.ipr.get_filters(index=lan, parent=INGRESS_HANDLE)
                       if m.get_attr('TCA_KIND') is not None]
            if _redirects_only_to(filters, ifb):
                return
            self._request(RTM_DELQDISC, REQ, _msg(lan, handle=INGRESS_HANDLE, parent=TC_H_INGRESS),
                          ignore=(errno.ENOENT, errno.EINVAL))
        elif current is not None:
            # a clsact, or something else holding the ingress hook
            self._request(RTM_DELQDISC, REQ, _msg(lan, handle=current['handle'], parent=TC_H_INGRESS),
                          ignore=(errno.ENOENT, errno.EINVAL))
        self._request(RTM_NEWQDISC, CREATE, _msg(
            lan, handle=INGRESS_HANDLE, parent=TC_H_INGRESS, attrs=[('TCA_KIND', 'ingress')]))
        self._request(RTM_NEWTFILTER, REPLACE, _msg(
            lan, handle=REDIRECT_HANDLE, parent=INGRESS_HANDLE,
            info=_filter_info(REDIRECT_PRIO, ETH_P_ALL),
            attrs=[('TCA_KIND', 'u32'),
                   ('TCA_OPTIONS', {'attrs': [
                       ['TCA_U32_SEL', {'keys': [u32_key(0, 0, 0)], 'flags': TC_U32_TERMINAL}],
                       ['TCA_U32_ACT', get_tca_action({'action': {
                           'kind': 'mirred', 'direction': 'egress',
                           'action': 'redirect', 'ifindex': ifb}})],
                   ]})]))

    def teardown(self) -> None:
        """
        Remove the root qdiscs of the LAN and the IFB, the LAN ingress qdisc
        and the IFB device. Idempotent.
        """
        with self._lock:
            self._lan_index = None
            self._ifb_index = None
            lan = self._link(self.lan_ifname)
            ifb = self._link(self.ifb_ifname)
            gone = (errno.ENOENT, errno.EINVAL, errno.ENODEV)
            if lan is not None:
                qdiscs = self._qdiscs()
                root = qdiscs.get((lan['index'], TC_H_ROOT))
                if root is not None and root.get_attr('TCA_KIND') == 'htb' and root['handle'] == ROOT_HANDLE:
                    self._request(RTM_DELQDISC, REQ, _msg(lan['index'], parent=TC_H_ROOT), ignore=gone)
                ingress = qdiscs.get((lan['index'], TC_H_INGRESS))
                if ingress is not None and ingress.get_attr('TCA_KIND') == 'ingress':
                    self._request(RTM_DELQDISC, REQ,
                                  _msg(lan['index'], handle=INGRESS_HANDLE, parent=TC_H_INGRESS),
                                  ignore=gone)
            if ifb is not None and _link_kind(ifb) == 'ifb':
                try:
                    self.ipr.link('del', index=ifb['index'])
                except NetlinkError as e:
                    if e.code not in gone:
                        raise

    # -- clients

    def limit(self, ip: IPv4Address, up_kbit: int, down_kbit: int) -> None:
        """
        Set (add or replace) the client's limits in kbit/s (1000 bit/s);
        0 leaves that direction unlimited.
        """
        slot = client_slot(ip, self.lan_network)
        for kbit in (up_kbit, down_kbit):
            if not isinstance(kbit, int) or kbit < 0 or kbit > UNLIMITED_KBIT:
                raise ValueError(f"a limit is an int of kbit/s from 0 to {UNLIMITED_KBIT}, not {kbit!r}")
        with self._lock:
            for (index, direction), kbit in zip(self._devices(), (down_kbit, up_kbit)):
                if kbit:
                    self._set(index, direction, IPv4Address(ip), slot, kbit)
                else:
                    self._clear(index, slot)

    def unlimit(self, ip: IPv4Address) -> None:
        """
        Remove the client's limits; harmless if it has none.
        """
        slot = client_slot(ip, self.lan_network)
        with self._lock:
            for index, _ in self._devices():
                self._clear(index, slot)

    def _set(self, index: int, direction: str, ip: IPv4Address, slot: ClientSlot, kbit: int) -> None:
        self._request(RTM_NEWTCLASS, REPLACE, _msg(
            index, handle=slot.classid, parent=ROOT_HANDLE,
            attrs=[('TCA_KIND', 'htb'), ('TCA_OPTIONS', _htb_class_options(kbit))]))
        self._request(RTM_NEWTFILTER, REPLACE, _msg(
            index, handle=slot.filter_handle, parent=ROOT_HANDLE,
            info=_filter_info(CLIENT_PRIO, ETH_P_IP),
            attrs=[('TCA_KIND', 'u32'),
                   ('TCA_OPTIONS', {'attrs': [
                       ['TCA_U32_HASH', slot.hash_handle],
                       ['TCA_U32_CLASSID', slot.classid],
                       ['TCA_U32_SEL', {'keys': [ip_match_key(ip, direction)],
                                        'flags': TC_U32_TERMINAL}],
                   ]})]))

    def _clear(self, index: int, slot: ClientSlot) -> None:
        # the filter first: the kernel refuses to delete a class in use
        self._request(RTM_DELTFILTER, REQ, _msg(
            index, handle=slot.filter_handle, parent=ROOT_HANDLE,
            info=_filter_info(CLIENT_PRIO, ETH_P_IP), attrs=[('TCA_KIND', 'u32')]),
            ignore=(errno.ENOENT, errno.EINVAL))
        self._request(RTM_DELTCLASS, REQ, _msg(index, handle=slot.classid, parent=ROOT_HANDLE),
                      ignore=(errno.ENOENT, errno.EINVAL))

    def limits(self) -> Dict[IPv4Address, Tuple[int, int]]:
        """
        The limits set in the kernel: address -> (up_kbit, down_kbit), 0 for
        a direction without a limit. Read from the HTB classes.
        """
        with self._lock:
            found: Dict[IPv4Address, List[int]] = {}
            for (index, _), position in zip(self._devices(), (1, 0)):
                for msg in self.ipr.get_classes(index=index):
                    # a class right under the qdisc is dumped with parent TC_H_ROOT
                    if (msg['parent'] not in (ROOT_HANDLE, TC_H_ROOT)
                            or msg['handle'] >> 16 != ROOT_HANDLE >> 16):
                        continue
                    ip = address_of(msg['handle'] & 0xFFFF, self.lan_network)
                    if ip is None:
                        continue
                    found.setdefault(ip, [0, 0])[position] = bytes_to_kbit(_htb_rate(msg))
            return {ip: (up, down) for ip, (up, down) in found.items()}

    def intact(self) -> bool:
        """
        Do the IFB device (up), both htb roots with their hashing node, the
        LAN ingress qdisc and its redirect to the IFB exist? A few requests,
        independent of the number of clients.
        """
        with self._lock:
            try:
                lan = self._link(self.lan_ifname)
                ifb = self._link(self.ifb_ifname)
                if lan is None or ifb is None or _link_kind(ifb) != 'ifb' or not ifb['flags'] & 1:
                    return False
                self._lan_index, self._ifb_index = lan['index'], ifb['index']
                qdiscs = self._qdiscs()
                for index in (lan['index'], ifb['index']):
                    root = qdiscs.get((index, TC_H_ROOT))
                    if (root is None or root.get_attr('TCA_KIND') != 'htb'
                            or root['handle'] != ROOT_HANDLE):
                        return False
                    if self._get_filter(index, ROOT_HANDLE, LINK_HANDLE, CLIENT_PRIO, ETH_P_IP) is None:
                        return False
                ingress = qdiscs.get((lan['index'], TC_H_INGRESS))
                if ingress is None or ingress.get_attr('TCA_KIND') != 'ingress':
                    return False
                filters = [m for m in self.ipr.get_filters(index=lan['index'], parent=INGRESS_HANDLE)
                           if m.get_attr('TCA_KIND') is not None]
                return _redirects_only_to(filters, ifb['index'])
            except NetlinkError:
                return False

    def _get_filter(self, index: int, parent: int, handle: int, prio: int, protocol: int):
        """
        One filter by its handle (RTM_GETTFILTER, not a dump), or None.
        """
        msg = _msg(index, handle=handle, parent=parent, info=_filter_info(prio, protocol),
                   attrs=[('TCA_KIND', 'u32')])
        msg['header']['type'] = RTM_GETTFILTER
        msg['header']['flags'] = REQ
        try:
            answer = self.ipr.nlm_request_batch([msg])
        except NetlinkError as e:
            if e.code in (errno.ENOENT, errno.EINVAL):
                return None
            raise
        for m in answer:
            if m['header']['type'] == RTM_NEWTFILTER and m['handle'] == handle:
                return m
        return None


# --- decoding helpers -------------------------------------------------------

def _link_kind(link) -> Optional[str]:
    info = link.get_attr('IFLA_LINKINFO')
    return info.get_attr('IFLA_INFO_KIND') if info is not None else None


def _htb_defcls(qdisc) -> Optional[int]:
    opts = qdisc.get_attr('TCA_OPTIONS')
    init = opts.get_attr('TCA_HTB_INIT') if opts is not None else None
    return init['defcls'] if init is not None else None


def _htb_rate(cls) -> int:
    opts = cls.get_attr('TCA_OPTIONS')
    rate64 = opts.get_attr('TCA_HTB_RATE64')
    if rate64:
        return rate64
    return opts.get_attr('TCA_HTB_PARMS')['rate']


def _u32_link(opts) -> Optional[int]:
    link = opts.get_attr('TCA_U32_LINK')
    if link is None:
        return None
    if isinstance(link, int):
        return link
    # pyroute2 decodes TCA_U32_LINK as a hex dump "00:00:20:00" (host order)
    raw = bytes(int(x, 16) for x in link.split(':'))
    return struct.unpack('I', raw)[0]


_SEL = struct.Struct('=BBBxHHhhI')   # struct tc_u32_sel, hmask as it comes


def _u32_sel(opts) -> Optional[dict]:
    """
    The selector of a dumped u32 node, read from the raw attribute:
    pyroute2 0.9.7 decodes the keys 4 bytes off.
    """
    sel = opts.get_attr('TCA_U32_SEL')
    if sel is None:
        return None
    raw = bytes(sel.data[sel.offset + 4: sel.offset + sel.length])
    flags, _, nkeys, _, _, _, hoff, hmask = _SEL.unpack_from(raw)
    keys = []
    for i in range(nkeys):
        mask = struct.unpack_from('>I', raw, _SEL.size + 16 * i)[0]
        value = struct.unpack_from('>I', raw, _SEL.size + 16 * i + 4)[0]
        off = struct.unpack_from('=i', raw, _SEL.size + 16 * i + 8)[0]
        keys.append((value, mask, off))
    return {'flags': flags, 'hoff': hoff, 'hmask': socket.ntohl(hmask), 'keys': keys}


def _redirects_only_to(filters, ifb_index: int) -> bool:
    """
    Is C{filters} (a dump of the LAN ingress) exactly our match-all redirect
    to C{ifb_index}?
    """
    nodes = [m for m in filters if m.get_attr('TCA_OPTIONS') is not None
             and m['handle'] != 0 and m['handle'] & 0xFFF]
    if len(nodes) != 1:
        return False
    node = nodes[0]
    if node.get_attr('TCA_KIND') != 'u32' or node['info'] != _filter_info(REDIRECT_PRIO, ETH_P_ALL):
        return False
    if any(m['info'] != node['info'] for m in filters):
        return False
    acts = node.get_attr('TCA_OPTIONS').get_attr('TCA_U32_ACT')
    if acts is None:
        return False
    targets = []
    for prio in range(1, 33):
        act = acts.get_attr(f'TCA_ACT_PRIO_{prio}')
        if act is None:
            continue
        if act.get_attr('TCA_ACT_KIND') != 'mirred':
            return False
        parms = act.get_attr('TCA_ACT_OPTIONS').get_attr('TCA_MIRRED_PARMS')
        targets.append((parms['eaction'], parms['ifindex']))
    return targets == [(1, ifb_index)]  # 1: TCA_EGRESS_REDIR
