# -*- test-case-name: tests.firewall.test_flows -*-
"""
Cutting a client's open connections: delete the conntrack entries it
started, over a raw ctnetlink socket.

Any conntrack dump walks every bucket of the table (about 8 ms here, with
262,144 buckets), so the firewall does not dump once per logout: it blocks
the client at once (its packets no longer match the authorized set) and
cuts the flows of all recently de-authorized clients in one dump shortly
after. Each entry is deleted by sending back its original tuple exactly as
the kernel gave it. (pyroute2's Conntrack does the same dump, at ~10 ms per
call, for one address at a time.)
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import AbstractSet, List, Optional

__all__ = ["FlowCutter"]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

CTA_TUPLE_ORIG = 1
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_IP_V4_SRC = 1


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _message(kind: int, flags: int, sequence: int, attributes: bytes) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, 0) + attributes
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | kind,
                       flags, sequence, 0) + body


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


class FlowCutter:
    """
    Deletes connection-tracking entries by original source address.
    Blocking: call it from the firewall's worker.
    """

    def __init__(self) -> None:
        self._socket: Optional[socket.socket] = None
        self._sequence = 0

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _replies(self, sock: socket.socket, sequences: set) -> List[bytes]:
        """
        Messages answering C{sequences} until each is done or acknowledged.
        """
        found = []
        while sequences:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, sequence, _ = struct.unpack_from("=IHHII", data, offset)
                message = data[offset:offset + length]
                offset += max(length, 16) + (-length % 4)
                if sequence not in sequences:
                    continue
                if kind == NLMSG_DONE:
                    sequences.discard(sequence)
                elif kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", message, 16)
                    sequences.discard(sequence)
                    if error and -error != errno.ENOENT:
                        raise OSError(-error, f"conntrack: {errno.errorcode.get(-error)}")
                else:
                    found.append(message)
        return found

    def cut(self, ips: AbstractSet[ipaddress.IPv4Address]) -> int:
        """
        Delete every entry started by one of C{ips}; return how many.

        One dump of the whole table whatever the number of addresses: the
        kernel walks all its buckets for any dump (about 8 ms with 262,144
        buckets here), filtered or not, so a batch costs what one does.
        """
        if not ips:
            return 0
        wanted = {ip.packed for ip in ips}
        sock = self._open()
        sequence = self._next()
        sock.send(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, sequence, b""))
        deletes, sequences = [], set()
        for entry in self._replies(sock, {sequence}):
            attributes = _top_attributes(entry)
            if _original_source(attributes) not in wanted:
                continue
            keep = [a + b"\0" * (-len(a) % 4) for a in attributes
                    if _kind(a) in (CTA_TUPLE_ORIG, CTA_ZONE)]
            sequence = self._next()
            sequences.add(sequence)
            deletes.append(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, sequence,
                                    b"".join(keep)))
        if deletes:
            sock.send(b"".join(deletes))
            self._replies(sock, sequences)
        return len(deletes)


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
    The packed IPv4 source of an entry's original tuple, if any.
    """
    for tuple_orig in (a for a in attributes if _kind(a) == CTA_TUPLE_ORIG):
        for tuple_ip in (a for a in _nested(tuple_orig) if _kind(a) == CTA_TUPLE_IP):
            for source in (a for a in _nested(tuple_ip) if _kind(a) == CTA_IP_V4_SRC):
                return source[4:8]
    return None
