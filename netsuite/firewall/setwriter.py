# -*- test-case-name: tests.firewall.test_setwriter -*-
"""
The hot path of a login or a logout: adding and deleting set entries over a
raw netlink socket.

pyroute2 builds these messages too, but its generic encoder spends about
230 us on each one; a login needs two. The few message shapes needed here
are built with C{struct} (a unit test checks them byte for byte against
pyroute2's encoding), and the entries of one operation go to the kernel in
one C{send} with one acknowledgement each. Everything else about the sets
(creating, listing, counters) goes through pyroute2 in
L{netsuite.firewall.kernelsets}.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import List, Optional, Sequence, Tuple

from ..registry.values import MAC

__all__ = ["SetEntry", "SetWriter", "encode_entry", "IPSET_CMD_ADD", "IPSET_CMD_DEL"]

NETLINK_NETFILTER = 12
NFNL_SUBSYS_IPSET = 6
IPSET_CMD_ADD = 9
IPSET_CMD_DEL = 10
IPSET_PROTOCOL = 7

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLMSG_ERROR = 2

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000

IPSET_ATTR_PROTOCOL = 1
IPSET_ATTR_SETNAME = 2
IPSET_ATTR_DATA = 7
IPSET_ATTR_IP = 1
IPSET_ATTR_IPADDR_IPV4 = 1
IPSET_ATTR_TIMEOUT = 6
IPSET_ATTR_ETHER = 17

IPSET_ERR_EXIST = 4103
"""Adding an entry that exists, or deleting one that does not, with NLM_F_EXCL."""

SetEntry = Tuple[int, str, ipaddress.IPv4Address, Optional[MAC], Optional[int]]
"""(command, set name, ip, mac or None, timeout or None)"""


def _attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    padding = b"\0" * (-len(payload) % 4)
    return header + payload + padding


def encode_entry(command: int, name: str, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None,
                 timeout: Optional[int] = None, sequence: int = 0, exclusive: bool = False) -> bytes:
    """
    One ipset ADD or DEL netlink message for C{ip} (and C{mac}) in set C{name}.
    """
    data = _attr(IPSET_ATTR_IP | NLA_F_NESTED,
                 _attr(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, ip.packed))
    if timeout is not None:
        data += _attr(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, struct.pack(">I", timeout))
    if mac is not None:
        data += _attr(IPSET_ATTR_ETHER, mac.packed)
    body = (struct.pack("=BBH", socket.AF_INET, 0, 0)
            + _attr(IPSET_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
            + _attr(IPSET_ATTR_SETNAME, name.encode("ascii") + b"\0")
            + _attr(IPSET_ATTR_DATA | NLA_F_NESTED, data))
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_EXCL if exclusive else 0)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_IPSET << 8) | command,
                       flags, sequence, 0) + body


class SetWriter:
    """
    Adds and deletes set entries; each call is one C{send} and waits for
    every acknowledgement. Blocking: call it from the firewall's worker.
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

    def apply(self, entries: Sequence[SetEntry]) -> None:
        """
        Apply C{entries} in order. An add of an existing entry replaces it
        (a new MAC or timeout); a delete of a missing one is not an error.
        Any other kernel error raises C{OSError}.
        """
        sock = self._open()
        messages: List[bytes] = []
        first = self._sequence + 1
        for command, name, ip, mac, timeout in entries:
            self._sequence += 1
            messages.append(encode_entry(command, name, ip, mac, timeout, self._sequence))
        sock.send(b"".join(messages))
        pending = set(range(first, self._sequence + 1))
        while pending:
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _, sequence, _ = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", data, offset + 16)
                    pending.discard(sequence)
                    if error and -error != IPSET_ERR_EXIST:
                        raise OSError(-error, f"ipset: {os.strerror(-error)}"
                                      if -error < 4096 else f"ipset error {-error}")
                offset += max(length, 16)
                offset += -offset % 4

    def add(self, name: str, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None,
            timeout: Optional[int] = None) -> None:
        self.apply([(IPSET_CMD_ADD, name, ip, mac, timeout)])

    def delete(self, name: str, ip: ipaddress.IPv4Address) -> None:
        self.apply([(IPSET_CMD_DEL, name, ip, None, None)])


