# -*- test-case-name: tests.firewall.test_flows -*-
"""
Cutting a client's open connections: delete the conntrack entries it
started, over a raw ctnetlink socket.

Any conntrack dump walks every bucket of the table (about 8 ms here, with
262,144 buckets), so the firewall does not dump once per logout: it blocks
the client at once (its packets no longer match the authorized set) and
cuts the flows of all recently de-authorized clients in one dump shortly
after. Each entry is deleted by sending back its original tuple exactly as
the kernel gave it.

Only forwarded flows are cut, not those that end on the access point
itself (the firewall passes its LAN network as C{local}: an entry whose
answers come from there). Those are the portal's: the redirect of port
80 and direct connections, some NATed (REDIRECT, or a source port the
kernel changed because a lingering entry held the tuple). Deleting one
midway loses that translation: the portal's next packet leaves
untranslated, the client resets it, and its request hangs until its
time-out (the soak's redirects and logins that hung 5 s right after a
logout). They give nothing beyond the portal, which bounds them itself. (pyroute2's Conntrack does the same dump, at ~10 ms per
call, for one address at a time.)

IPv6 flows (dual stack after login) are cut the same way, in the same
dump: addresses may be IPv4 or IPv6; with any IPv6 one the dump asks for
every family, and each delete carries its entry's family.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import AbstractSet, List, Optional, Sequence, Union

from .nfnetlink import (NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetfilterSocket,
                        message)

__all__ = ["FlowCutter"]

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_IP_V4_SRC = 1
CTA_IP_V6_SRC = 3

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _top_attributes(message: bytes) -> List[bytes]:
    """
    The raw top-level attributes of a ctnetlink message (after the headers).
    """
    found = []
    offset = 20
    while offset + 4 <= len(message):
        length, _ = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        found.append(message[offset:offset + length])
        offset += length + (-length % 4)
    return found


class FlowCutter(NetfilterSocket):
    """
    Deletes connection-tracking entries by original source address.
    Blocking: call it from the firewall's worker.

    @param local: entries answered from an address in this network end on
        this host and are left alone (None: no entry is).
    @ivar local6: the same for IPv6: the LAN's prefixes (the firewall
        sets them).
    """

    def __init__(self, local: Optional[ipaddress.IPv4Network] = None) -> None:
        super().__init__()
        self.local = local
        self.local6: Sequence[ipaddress.IPv6Network] = ()

    def cut(self, ips: AbstractSet[Address]) -> int:
        """
        Delete every entry started by one of C{ips}, except those answered
        from C{local}; return how many.

        One dump of the whole table whatever the number of addresses: the
        kernel walks all its buckets for any dump (about 8 ms with 262,144
        buckets here), filtered or not, so a batch costs what one does.
        """
        if not ips:
            return 0
        wanted = {ip.packed for ip in ips}
        family = socket.AF_INET if all(ip.version == 4 for ip in ips) else socket.AF_UNSPEC
        dump = self.next_sequence()
        self.open().send(message(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET,
                                 NLM_F_REQUEST | NLM_F_DUMP, dump, b"", family))
        deletes, sequences = [], set()
        for entry in self.replies({dump}):
            attributes = _top_attributes(entry)
            if _original_source(attributes) not in wanted or self._ends_here(attributes):
                continue
            keep = [a + b"\0" * (-len(a) % 4) for a in attributes
                    if _kind(a) in (CTA_TUPLE_ORIG, CTA_ZONE)]
            sequence = self.next_sequence()
            sequences.add(sequence)
            deletes.append(message(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE,
                                   NLM_F_REQUEST | NLM_F_ACK, sequence, b"".join(keep),
                                   entry[16] if len(entry) > 16 else socket.AF_INET))
        if deletes:
            self.open().send(b"".join(deletes))
            self.replies(sequences, tolerated={errno.ENOENT})  # ended meanwhile
        return len(deletes)


    def _ends_here(self, attributes: List[bytes]) -> bool:
        source = _tuple_source(attributes, CTA_TUPLE_REPLY)
        if source is None:
            return False
        if len(source) == 16:
            return any(ipaddress.IPv6Address(source) in network for network in self.local6)
        return self.local is not None and ipaddress.IPv4Address(source) in self.local


def _kind(attribute: bytes) -> int:
    return struct.unpack_from("=H", attribute, 2)[0] & NLA_TYPE_MASK


def _nested(attribute: bytes) -> List[bytes]:
    """
    The attributes inside a nested attribute.
    """
    found = []
    offset = 4
    while offset + 4 <= len(attribute):
        length = struct.unpack_from("=H", attribute, offset)[0]
        if length < 4:
            break
        found.append(attribute[offset:offset + length])
        offset += length + (-length % 4)
    return found


def _original_source(attributes: List[bytes]) -> Optional[bytes]:
    """
    The packed (IPv4 or IPv6) source of an entry's original tuple, if any.
    """
    return _tuple_source(attributes, CTA_TUPLE_ORIG)


def _tuple_source(attributes: List[bytes], kind: int) -> Optional[bytes]:
    """
    The packed source (4 bytes for IPv4, 16 for IPv6) of an entry's tuple
    C{kind} (original, reply).
    """
    for tuple_ in (a for a in attributes if _kind(a) == kind):
        for tuple_ip in (a for a in _nested(tuple_) if _kind(a) == CTA_TUPLE_IP):
            for source in _nested(tuple_ip):
                if _kind(source) == CTA_IP_V4_SRC:
                    return source[4:8] if len(source) >= 8 else None
                if _kind(source) == CTA_IP_V6_SRC:
                    return source[4:20] if len(source) >= 20 else None
    return None
