# -*- test-case-name: tests.firewall.test_setwriter -*-
"""
A raw netfilter netlink socket for the firewall's hot paths (set entries,
conntrack cuts): building messages with C{struct} and reading the kernel's
answers. Blocking: used from the firewall's worker thread.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Collection, List, Optional, Set

__all__ = ["attr", "message", "NetfilterSocket", "NLM_F_REQUEST", "NLM_F_ACK",
           "NLM_F_EXCL", "NLM_F_DUMP", "NLA_F_NESTED", "NLA_F_NET_BYTEORDER",
           "NLA_TYPE_MASK"]

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF


def attr(kind: int, payload: bytes) -> bytes:
    """
    One netlink attribute, padded to 4 bytes.
    """
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def message(subsystem: int, kind: int, flags: int, sequence: int, attributes: bytes,
            family: int = socket.AF_INET) -> bytes:
    """
    One nfnetlink message of C{subsystem} (IPv4 unless C{family} says).
    """
    body = struct.pack("=BBH", family, 0, 0) + attributes
    return struct.pack("=IHHII", 16 + len(body), (subsystem << 8) | kind, flags,
                       sequence, 0) + body


class NetfilterSocket:
    """
    A NETLINK_NETFILTER socket, opened on first use, with sequence numbers.
    """

    def __init__(self) -> None:
        self._socket: Optional[socket.socket] = None
        self._sequence = 0

    def open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def replies(self, sequences: Set[int], tolerated: Collection[int] = ()) -> List[bytes]:
        """
        Read until every request in C{sequences} is acknowledged or its dump
        done; return the other messages answering them. A kernel error not
        in C{tolerated} raises C{OSError}.
        """
        sock = self.open()
        found = []
        while sequences:
            # 64 KiB: a larger buffer is allocated whole on every call, and
            # one acknowledgement is 36 bytes (a full dump arrives in parts).
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, sequence, _ = struct.unpack_from("=IHHII", data, offset)
                body = data[offset:offset + length]
                offset += max(length, 16) + (-length % 4)
                if sequence not in sequences:
                    continue
                if kind == NLMSG_DONE:
                    sequences.discard(sequence)
                elif kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", body, 16)
                    sequences.discard(sequence)
                    if error and -error not in tolerated:
                        text = os.strerror(-error) if -error < 4096 else "ipset error"
                        raise OSError(-error, f"netfilter netlink: {text} ({-error})")
                else:
                    found.append(body)
        return found
