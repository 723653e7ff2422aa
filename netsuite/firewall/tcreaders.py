# -*- test-case-name: tests.firewall.test_tcmessages -*-
"""
Readers of what the kernel dumps back for the shaper's layout (pyroute2
messages in, plain values out), and the few wire constants they share
with the builders in L{netsuite.firewall.tcmessages} (which re-exports
them). No I/O.

pyroute2 0.9.7's u32 selector decoder reads keys 4 bytes off: hence a
selector parser that reads the raw attribute.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Network
from socket import htons
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pyroute2.netlink.rtnl import RTM_NEWTFILTER, TC_H_ROOT

from .slots import (
    HASH_DIVISOR,
    HASH_HT,
    ROOT_HANDLE,
    UPLINK_CLASSID,
    address_of,
    bytes_to_kbit,
    field_offset,
    network_match_key,
)

__all__ = [
    "filter_info", "found_filter", "link_kind", "is_htb_root", "htb_defcls", "htb_rate",
    "htb_ceil", "client_class", "class_limit", "u32_link", "u32_sel", "is_hash_table",
    "is_hash_link", "redirects_only_to",
]

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800

REDIRECT_PRIO = 1               # u32 match-all on the LAN ingress (protocol all)
TCA_EGRESS_REDIR = 1


def filter_info(prio: int, protocol: int) -> int:
    return (prio << 16) | htons(protocol)


# --- reading what the kernel answers ----------------------------------------

def found_filter(answer: Iterable[Any], handle: int) -> Any:
    """
    The filter C{handle} in the answer to L{get_tree_filter}, or None.
    """
    for m in answer:
        if m['header']['type'] == RTM_NEWTFILTER and m['handle'] == handle:
            return m
    return None


def link_kind(link: Any) -> Optional[str]:
    info = link.get_attr('IFLA_LINKINFO')
    return info.get_attr('IFLA_INFO_KIND') if info is not None else None


def is_htb_root(qdisc: Any) -> bool:
    """
    Is C{qdisc} (a root qdisc, or None) an C{htb 1:}?
    """
    return (qdisc is not None and qdisc.get_attr('TCA_KIND') == 'htb'
            and qdisc['handle'] == ROOT_HANDLE)


def htb_defcls(qdisc: Any) -> Optional[int]:
    opts = qdisc.get_attr('TCA_OPTIONS')
    init = opts.get_attr('TCA_HTB_INIT') if opts is not None else None
    return init['defcls'] if init is not None else None


def htb_rate(cls: Any) -> int:
    opts = cls.get_attr('TCA_OPTIONS')
    rate64 = opts.get_attr('TCA_HTB_RATE64')
    if rate64:
        return int(rate64)
    return int(opts.get_attr('TCA_HTB_PARMS')['rate'])


def htb_ceil(cls: Any) -> int:
    opts = cls.get_attr('TCA_OPTIONS')
    ceil64 = opts.get_attr('TCA_HTB_CEIL64')
    if ceil64:
        return int(ceil64)
    return int(opts.get_attr('TCA_HTB_PARMS')['ceil'])


def client_class(cls: Any, network: IPv4Network) -> Optional[Tuple[IPv4Address, int, int]]:
    """
    The client, the parent (the qdisc C{1:}, or the uplink's class) and
    the ceil in kbit/s of a dumped HTB class, or None if the class is not a
    client's.
    """
    if cls['handle'] >> 16 != ROOT_HANDLE >> 16:
        return None
    # a class right under the qdisc is dumped with parent TC_H_ROOT
    parent = ROOT_HANDLE if cls['parent'] == TC_H_ROOT else cls['parent']
    if parent not in (ROOT_HANDLE, UPLINK_CLASSID):
        return None
    ip = address_of(cls['handle'] & 0xFFFF, network)
    if ip is None:
        return None
    return ip, parent, bytes_to_kbit(htb_ceil(cls))


def class_limit(cls: Any, network: IPv4Network) -> Optional[Tuple[IPv4Address, int]]:
    """
    The client and its kbit/s (its ceil) of a dumped HTB class, or None if
    the class is not a client's.
    """
    found = client_class(cls, network)
    return None if found is None else (found[0], found[2])


def u32_link(opts: Any) -> Optional[int]:
    link = opts.get_attr('TCA_U32_LINK')
    if link is None:
        return None
    if isinstance(link, int):
        return link
    # pyroute2 decodes TCA_U32_LINK as a hex dump "00:00:20:00" (host order)
    raw = bytes(int(x, 16) for x in link.split(':'))
    return int(struct.unpack('I', raw)[0])


_SEL = struct.Struct('=BBBxHHhhI')   # struct tc_u32_sel, hmask as it comes


def u32_sel(opts: Any) -> Optional[Dict[str, Any]]:
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


def is_hash_table(table: Any) -> bool:
    """
    Is C{table} (the answer for C{2:}, or None) our 256-bucket table?
    """
    if table is None or table.get_attr('TCA_OPTIONS') is None:
        return False
    return bool(table.get_attr('TCA_OPTIONS').get_attr('TCA_U32_DIVISOR') == HASH_DIVISOR)


def is_hash_link(link: Any, network: IPv4Network, direction: str) -> bool:
    """
    Is C{link} (the answer for C{800::1}, or None) the node that hashes
    C{network}'s C{direction} field into C{2:}?
    """
    if link is None or link.get_attr('TCA_OPTIONS') is None:
        return False
    opts = link.get_attr('TCA_OPTIONS')
    sel = u32_sel(opts)
    return (
        sel is not None
        and sel['keys'] == [network_match_key(network, direction)]
        and sel['hmask'] == 0xFF
        and sel['hoff'] == field_offset(direction)
        and u32_link(opts) == HASH_HT
    )


def redirects_only_to(filters: List[Any], ifb_index: int) -> bool:
    """
    Is C{filters} (a dump of the LAN ingress, filters with a kind only)
    exactly our match-all redirect to C{ifb_index}?
    """
    nodes = [m for m in filters if m.get_attr('TCA_OPTIONS') is not None
             and m['handle'] != 0 and m['handle'] & 0xFFF]
    if len(nodes) != 1:
        return False
    node = nodes[0]
    if node.get_attr('TCA_KIND') != 'u32' or node['info'] != filter_info(REDIRECT_PRIO, ETH_P_ALL):
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
    return targets == [(TCA_EGRESS_REDIR, ifb_index)]
