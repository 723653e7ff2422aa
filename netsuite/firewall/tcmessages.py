# -*- test-case-name: tests.firewall.test_tcmessages -*-
"""
The tc netlink messages of the shaper's layout (pyroute2 message classes),
built ready to send; the readers of what the kernel dumps back are in
L{netsuite.firewall.tcreaders} (re-exported here). No I/O:
L{netsuite.firewall.shaping.Shaper} sends them and decides.

pyroute2 0.9.7's u32 encoder cannot express hash tables or links and its
selector decoder reads keys 4 bytes off, and its HTB encoder computes rate
tables the kernel does not need: hence the option classes here.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from socket import AF_UNSPEC
from typing import Any, Dict, Iterable, List, Optional

from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    nla,
)
from pyroute2.netlink.rtnl import (
    RTM_DELQDISC,
    RTM_DELTCLASS,
    RTM_DELTFILTER,
    RTM_GETTCLASS,
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

from .tcreaders import (ETH_P_ALL, ETH_P_IP, REDIRECT_PRIO, class_limit, client_class,
                        filter_info, found_filter, htb_ceil, htb_defcls, htb_rate,
                        is_hash_link, is_hash_table,
                        is_htb_root, link_kind, redirects_only_to, u32_link, u32_sel)
from .slots import (
    DEFAULT_MINOR,
    HASH_DIVISOR,
    HASH_HT,
    INGRESS_HANDLE,
    LINK_HANDLE,
    REDIRECT_HANDLE,
    ROOT_HANDLE,
    ClientSlot,
    field_offset,
    ip_match_key,
    kbit_to_bytes,
    network_match_key,
    u32_key,
)

__all__ = [
    "tc_message", "filter_info", "htb_class_options",
    "add_htb_root", "delete_root", "set_class", "get_class", "fair_quantum", "delete_class",
    "add_hash_table",
    "set_hash_link", "set_client_filter", "delete_client_filter", "add_ingress",
    "delete_ingress", "set_redirect", "get_tree_filter",
    "found_filter", "link_kind", "is_htb_root", "htb_defcls", "htb_rate", "htb_ceil",
    "client_class", "class_limit",
    "u32_link", "u32_sel", "is_hash_table", "is_hash_link", "redirects_only_to",
]

CLIENT_PRIO = 10                # u32 tree on the htb roots (protocol ip)

TC_U32_TERMINAL = 1

LINKLAYER_ETHERNET = 1
MTU = 1600

REQ = NLM_F_REQUEST | NLM_F_ACK
CREATE = REQ | NLM_F_CREATE | NLM_F_EXCL
REPLACE = REQ | NLM_F_CREATE | NLM_F_REPLACE


# --- message classes --------------------------------------------------------

class _U32Options(cls_u32.options):  # type: ignore[misc]
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

    class u32_sel(cls_u32.options.u32_sel):  # type: ignore[misc]
        def encode(self) -> None:
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


class _HtbOptions(sched_htb.options):  # type: ignore[misc]
    """
    pyroute2's HTB options without the rate tables (see L{htb_class_options}).
    """

    _nlmsg_base__compiled_nla = False

    class htb_parms(nla):  # type: ignore[misc]
        fields = sched_htb.options.htb_parms.fields


class _tcmsg(tcmsg):  # type: ignore[misc]
    """
    A tcmsg whose u32 and HTB options are encoded by L{_U32Options} and
    L{_HtbOptions}.
    """

    _nlmsg_base__compiled_nla = False

    @staticmethod
    def get_options(self: Any, *argv: Any, **kwarg: Any) -> Any:
        kind = self.get_attr('TCA_KIND')
        if kind == 'u32':
            return _U32Options
        if kind == 'htb':
            return _HtbOptions
        return tcmsg.get_options(self, *argv, **kwarg)


def tc_message(index: int, handle: int = 0, parent: int = 0, info: int = 0,
               attrs: Iterable[Any] = ()) -> Any:
    """
    A tcmsg on device C{index}, its header type and flags still unset.
    """
    msg = _tcmsg()
    msg['family'] = AF_UNSPEC
    msg['index'] = index
    msg['handle'] = handle
    msg['parent'] = parent
    msg['info'] = info
    msg['attrs'] = [list(a) for a in attrs]
    return msg


def htb_class_options(kbit: int, ceil_kbit: Optional[int] = None,
                      quantum: Optional[int] = None,
                      cburst: Optional[int] = None) -> Dict[str, Any]:
    """
    TCA_OPTIONS of an HTB class with rate C{kbit} and ceil C{ceil_kbit}
    (None: the rate).

    The bursts are one MTU (the ceil's: C{cburst} bytes, if given), what
    tc gives by default (rate / HZ + mtu, where
    HZ is the 1e9 of /proc/net/psched). The rate tables tc (and pyroute2)
    compute are left out: with the link layer given in the ratespec the
    kernel does not need them, and computing them in Python was the larger
    part of a limit() call.

    The quantum (None: rate / 10, r2q's default, from one MTU to 200000
    bytes, HTB's own bounds) decides how a parent's excess is shared by the
    children that borrow it: in proportion to their quanta. A root class
    never borrows; giving one keeps the kernel from logging "quantum of
    class is big/small".
    """
    rate = kbit_to_bytes(kbit)
    ceil = rate if ceil_kbit is None else kbit_to_bytes(ceil_kbit)
    if quantum is None:
        quantum = max(MTU, min(rate // 10, 200000))
    parms = {
        'rate_cell_log': 0, 'rate___reserved': LINKLAYER_ETHERNET, 'rate_overhead': 0,
        'rate_cell_align': 0, 'rate_mpu': 0, 'rate': min(rate, 0xFFFFFFFF),
        'ceil_cell_log': 0, 'ceil___reserved': LINKLAYER_ETHERNET, 'ceil_overhead': 0,
        'ceil_cell_align': 0, 'ceil_mpu': 0, 'ceil': min(ceil, 0xFFFFFFFF),
        'buffer': calc_xmittime(rate, MTU), 'cbuffer': calc_xmittime(ceil, cburst or MTU),
        'quantum': quantum, 'level': 0, 'prio': 0,
    }
    attrs: List[List[Any]] = [['TCA_HTB_PARMS', parms]]
    if rate > 0xFFFFFFFF or ceil > 0xFFFFFFFF:
        attrs += [['TCA_HTB_RATE64', rate], ['TCA_HTB_CEIL64', ceil]]
    return {'attrs': attrs}


def fair_quantum(capacity_kbit: int) -> int:
    """
    The quantum of every client class under the uplink: the same for all,
    so that the clients that borrow share the excess equally; what the
    uplink sends in 20 ms, from one MTU to 64 KiB (HTB sends a packet per
    visit whatever its deficit, so a quantum below a GSO packet shares
    packets, not bytes; a larger one only makes the turns longer).

    It is the ceil's burst of those classes too: a client held by its own
    ceil waits for the others' turns, up to a quantum each, and with a
    burst of one MTU it would lose what it could have sent meanwhile
    (measured: 1.2 instead of 4 Mbit/s beside a client borrowing the
    rest).
    """
    return max(MTU, min(kbit_to_bytes(capacity_kbit) // 50, 65536))


# --- the requests, ready to send (one ack each) -----------------------------

def _request(msg_type: int, flags: int, index: int, handle: int = 0, parent: int = 0,
             info: int = 0, attrs: Iterable[Any] = ()) -> Any:
    msg = tc_message(index, handle=handle, parent=parent, info=info, attrs=attrs)
    msg['header']['type'] = msg_type
    msg['header']['flags'] = flags
    return msg


_TREE_INFO = filter_info(CLIENT_PRIO, ETH_P_IP)


def add_htb_root(index: int) -> Any:
    """
    Create the root C{htb 1: default 1:ffff}.
    """
    return _request(RTM_NEWQDISC, CREATE, index, handle=ROOT_HANDLE, parent=TC_H_ROOT,
                    attrs=[('TCA_KIND', 'htb'),
                           ('TCA_OPTIONS', sched_htb.get_parameters({'default': DEFAULT_MINOR}))])


def delete_root(index: int) -> Any:
    """
    Delete whatever root qdisc the device has (and all it holds).
    """
    return _request(RTM_DELQDISC, REQ, index, parent=TC_H_ROOT)


def set_class(index: int, classid: int, kbit: int, parent: int = ROOT_HANDLE,
              ceil_kbit: Optional[int] = None, quantum: Optional[int] = None,
              cburst: Optional[int] = None) -> Any:
    """
    Add or replace the HTB class C{classid} under C{parent} (the qdisc, or
    the uplink's class) at rate C{kbit}, ceil C{ceil_kbit} (None: the
    rate); see L{htb_class_options}.
    """
    return _request(RTM_NEWTCLASS, REPLACE, index, handle=classid, parent=parent,
                    attrs=[('TCA_KIND', 'htb'), ('TCA_OPTIONS', htb_class_options(
                        kbit, ceil_kbit, quantum, cburst))])


def get_class(index: int, classid: int) -> Any:
    """
    Ask for one class by its id (not a dump); ENOENT if there is none.
    """
    return _request(RTM_GETTCLASS, REQ, index, handle=classid)


def delete_class(index: int, classid: int) -> Any:
    return _request(RTM_DELTCLASS, REQ, index, handle=classid, parent=ROOT_HANDLE)


def add_hash_table(index: int) -> Any:
    """
    Create the u32 hash table C{2:} (256 buckets) on the htb root.
    """
    return _request(RTM_NEWTFILTER, CREATE, index, handle=HASH_HT, parent=ROOT_HANDLE,
                    info=_TREE_INFO,
                    attrs=[('TCA_KIND', 'u32'),
                           ('TCA_OPTIONS', {'attrs': [['TCA_U32_DIVISOR', HASH_DIVISOR]]})])


def set_hash_link(index: int, network: IPv4Network, direction: str) -> Any:
    """
    The node C{800::1} that sends C{network}'s addresses (the C{direction}
    field) into C{2:}, hashed on the low byte of the address.
    """
    return _request(RTM_NEWTFILTER, REPLACE, index, handle=LINK_HANDLE, parent=ROOT_HANDLE,
                    info=_TREE_INFO,
                    attrs=[('TCA_KIND', 'u32'),
                           ('TCA_OPTIONS', {'attrs': [
                               ['TCA_U32_LINK', HASH_HT],
                               ['TCA_U32_SEL', {
                                   'keys': [network_match_key(network, direction)],
                                   'hmask': 0xFF,
                                   'hoff': field_offset(direction),
                               }],
                           ]})])


def set_client_filter(index: int, slot: ClientSlot, ip: IPv4Address, direction: str) -> Any:
    """
    Add or replace the client's node C{2:<bucket>:<node>}: C{ip} in the
    C{direction} field goes to its class.
    """
    return _request(RTM_NEWTFILTER, REPLACE, index, handle=slot.filter_handle,
                    parent=ROOT_HANDLE, info=_TREE_INFO,
                    attrs=[('TCA_KIND', 'u32'),
                           ('TCA_OPTIONS', {'attrs': [
                               ['TCA_U32_HASH', slot.hash_handle],
                               ['TCA_U32_CLASSID', slot.classid],
                               ['TCA_U32_SEL', {'keys': [ip_match_key(ip, direction)],
                                                'flags': TC_U32_TERMINAL}],
                           ]})])


def delete_client_filter(index: int, slot: ClientSlot) -> Any:
    return _request(RTM_DELTFILTER, REQ, index, handle=slot.filter_handle, parent=ROOT_HANDLE,
                    info=_TREE_INFO, attrs=[('TCA_KIND', 'u32')])


def add_ingress(index: int) -> Any:
    return _request(RTM_NEWQDISC, CREATE, index, handle=INGRESS_HANDLE, parent=TC_H_INGRESS,
                    attrs=[('TCA_KIND', 'ingress')])


def delete_ingress(index: int, handle: int = INGRESS_HANDLE) -> Any:
    """
    Delete the qdisc C{handle} on the ingress hook (ours, or a clsact).
    """
    return _request(RTM_DELQDISC, REQ, index, handle=handle, parent=TC_H_INGRESS)


def set_redirect(lan: int, ifb: int) -> Any:
    """
    The match-all u32 on the LAN ingress that redirects everything to the
    IFB's egress.
    """
    return _request(RTM_NEWTFILTER, REPLACE, lan, handle=REDIRECT_HANDLE, parent=INGRESS_HANDLE,
                    info=filter_info(REDIRECT_PRIO, ETH_P_ALL),
                    attrs=[('TCA_KIND', 'u32'),
                           ('TCA_OPTIONS', {'attrs': [
                               ['TCA_U32_SEL', {'keys': [u32_key(0, 0, 0)],
                                                'flags': TC_U32_TERMINAL}],
                               ['TCA_U32_ACT', get_tca_action({'action': {
                                   'kind': 'mirred', 'direction': 'egress',
                                   'action': 'redirect', 'ifindex': ifb}})],
                           ]})])


def get_tree_filter(index: int, handle: int) -> Any:
    """
    Ask for one filter of the client tree by its handle (not a dump).
    """
    return _request(RTM_GETTFILTER, REQ, index, handle=handle, parent=ROOT_HANDLE,
                    info=_TREE_INFO, attrs=[('TCA_KIND', 'u32')])
