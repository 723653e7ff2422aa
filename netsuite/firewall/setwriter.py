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
import struct
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..registry.values import MAC
from .nfnetlink import (NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_TYPE_MASK, NLM_F_ACK,
                        NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetfilterSocket, attr, message)

__all__ = ["SetEntry", "WindowEntry", "SetWriter", "encode_entry", "IPSET_CMD_ADD",
           "IPSET_CMD_DEL"]

NFNL_SUBSYS_IPSET = 6
IPSET_CMD_ADD = 9
IPSET_CMD_DEL = 10
IPSET_PROTOCOL = 7

IPSET_ATTR_PROTOCOL = 1
IPSET_ATTR_SETNAME = 2
IPSET_ATTR_DATA = 7
IPSET_ATTR_IP = 1
IPSET_ATTR_IPADDR_IPV4 = 1
IPSET_ATTR_PORT = 4
IPSET_ATTR_TIMEOUT = 6
IPSET_ATTR_PROTO = 7
IPSET_ATTR_ETHER = 17
IPSET_ATTR_IP2 = 20
TCP = 6

BATCH = 100
"""Entries per send: the kernel's socket buffer refuses (ENOBUFS) a few hundred."""

IPSET_ERR_EXIST = 4103
"""Adding an entry that exists, or deleting one that does not, with NLM_F_EXCL."""

SetEntry = Tuple[int, str, ipaddress.IPv4Address, Optional[MAC], Optional[int]]
"""(command, set name, ip, mac or None, timeout or None)"""

WindowEntry = Tuple[int, str, ipaddress.IPv4Address, int, ipaddress.IPv4Address, Optional[int]]
"""(command, set name, client, TCP port, server, timeout or None): an entry
of a C{hash:ip,port,ip} set."""


def _ipv4(kind: int, ip: ipaddress.IPv4Address) -> bytes:
    return attr(kind | NLA_F_NESTED, attr(IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER, ip.packed))


def encode_entry(command: int, name: str, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None,
                 timeout: Optional[int] = None, sequence: int = 0, exclusive: bool = False, *,
                 port: Optional[int] = None, ip2: Optional[ipaddress.IPv4Address] = None) -> bytes:
    """
    One ipset ADD or DEL netlink message for C{ip} (and C{mac}) in set
    C{name}; with C{port} and C{ip2}, for the C{hash:ip,port,ip} entry
    (C{ip}, TCP C{port}, C{ip2}).
    """
    data = _ipv4(IPSET_ATTR_IP, ip)
    if port is not None and ip2 is not None:
        data += (attr(IPSET_ATTR_PORT | NLA_F_NET_BYTEORDER, struct.pack(">H", port))
                 + attr(IPSET_ATTR_PROTO | NLA_F_NET_BYTEORDER, bytes([TCP]))
                 + _ipv4(IPSET_ATTR_IP2, ip2))
    if timeout is not None:
        data += attr(IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER, struct.pack(">I", timeout))
    if mac is not None:
        data += attr(IPSET_ATTR_ETHER, mac.packed)
    attributes = (attr(IPSET_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
                  + attr(IPSET_ATTR_SETNAME, name.encode("ascii") + b"\0")
                  + attr(IPSET_ATTR_DATA | NLA_F_NESTED, data))
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_EXCL if exclusive else 0)
    return message(NFNL_SUBSYS_IPSET, command, flags, sequence, attributes)


class SetWriter(NetfilterSocket):
    """
    Adds and deletes set entries; each call is one C{send} and waits for
    every acknowledgement. Blocking: call it from the firewall's worker.
    """

    def apply(self, entries: Sequence[SetEntry]) -> None:
        """
        Apply C{entries} in order. An add of an existing entry replaces it
        (a new MAC or timeout); a delete of a missing one is not an error.
        Any other kernel error raises C{OSError}.
        """
        self._send([lambda sequence, e=e: encode_entry(*e, sequence=sequence)
                    for e in entries])

    def apply_windows(self, entries: Sequence[WindowEntry]) -> None:
        """
        L{apply} for the entries of a C{hash:ip,port,ip} set.
        """
        self._send([lambda sequence, e=e: encode_entry(
            e[0], e[1], e[2], None, e[5], sequence, port=e[3], ip2=e[4]) for e in entries])

    def _send(self, encoders: Sequence[Callable[[int], bytes]]) -> None:
        for start in range(0, len(encoders), BATCH):
            sequences = set()
            messages = []
            for encode in encoders[start:start + BATCH]:
                sequence = self.next_sequence()
                sequences.add(sequence)
                messages.append(encode(sequence))
            self.open().send(b"".join(messages))
            self.replies(sequences, tolerated={IPSET_ERR_EXIST})

    def add(self, name: str, ip: ipaddress.IPv4Address, mac: Optional[MAC] = None,
            timeout: Optional[int] = None) -> None:
        self.apply([(IPSET_CMD_ADD, name, ip, mac, timeout)])

    def delete(self, name: str, ip: ipaddress.IPv4Address) -> None:
        self.apply([(IPSET_CMD_DEL, name, ip, None, None)])


IPSET_CMD_LIST = 7
IPSET_ATTR_ADT = 8
IPSET_ATTR_BYTES = 24
IPSET_ATTR_PACKETS = 25

SetRow = Tuple[ipaddress.IPv4Address, Optional[MAC], int, int, Optional[int]]
"""(ip, mac, bytes, packets, seconds left) of one set entry."""


def _attributes(data: bytes, offset: int, end: int) -> Dict[int, bytes]:
    """
    The attributes in C{data[offset:end]} by type (the last of a type wins).
    """
    found = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + 4:offset + length]
        offset += length + (-length % 4)
    return found


def _entries(adt: bytes) -> List[bytes]:
    """
    The entries (nested DATA attributes) of an ADT attribute.
    """
    entries = []
    offset = 0
    while offset + 4 <= len(adt):
        length = struct.unpack_from("=H", adt, offset)[0]
        if length < 4:
            break
        entries.append(adt[offset + 4:offset + length])
        offset += length + (-length % 4)
    return entries


def _fields(messages: Sequence[bytes]) -> Iterator[Dict[int, bytes]]:
    """
    The attributes of each entry of a set's LIST dump.
    """
    for body in messages:
        top = _attributes(body, 20, len(body))
        for entry in _entries(top.get(IPSET_ATTR_ADT, b"")):
            yield _attributes(entry, 0, len(entry))


def _address(fields: Dict[int, bytes], kind: int) -> Optional[ipaddress.IPv4Address]:
    nested = fields.get(kind, b"")
    ip = _attributes(nested, 0, len(nested)).get(IPSET_ATTR_IPADDR_IPV4)
    return ipaddress.IPv4Address(ip) if ip is not None and len(ip) == 4 else None


def parse_list(messages: Sequence[bytes]) -> List[SetRow]:
    """
    The entries of a set from the messages of its LIST dump.
    """
    rows = []
    for fields in _fields(messages):
        ip = _address(fields, IPSET_ATTR_IP)
        if ip is None:
            continue
        mac = fields.get(IPSET_ATTR_ETHER)
        timeout = fields.get(IPSET_ATTR_TIMEOUT)
        rows.append((ip, MAC(mac[:6]) if mac else None,
                     struct.unpack(">Q", fields[IPSET_ATTR_BYTES])[0]
                     if IPSET_ATTR_BYTES in fields else 0,
                     struct.unpack(">Q", fields[IPSET_ATTR_PACKETS])[0]
                     if IPSET_ATTR_PACKETS in fields else 0,
                     struct.unpack(">I", timeout)[0] if timeout else None))
    return rows


WindowRow = Tuple[ipaddress.IPv4Address, int, ipaddress.IPv4Address, Optional[int]]
"""(client, port, server, seconds left) of a C{hash:ip,port,ip} entry."""


def parse_windows(messages: Sequence[bytes]) -> List[WindowRow]:
    """
    The entries of a C{hash:ip,port,ip} set from its LIST dump.
    """
    rows = []
    for fields in _fields(messages):
        ip, ip2 = _address(fields, IPSET_ATTR_IP), _address(fields, IPSET_ATTR_IP2)
        port = fields.get(IPSET_ATTR_PORT)
        if ip is None or ip2 is None or port is None or len(port) != 2:
            continue
        timeout = fields.get(IPSET_ATTR_TIMEOUT)
        rows.append((ip, struct.unpack(">H", port)[0], ip2,
                     struct.unpack(">I", timeout)[0] if timeout else None))
    return rows


class SetReader(NetfilterSocket):
    """
    Reads a set's entries with one LIST dump (pyroute2 decodes the same
    dump about 30 times slower: seconds for 10,000 entries).
    """

    def rows(self, name: str) -> List[SetRow]:
        return parse_list(self._dump(name))

    def windows(self, name: str) -> List[WindowRow]:
        """The entries of the C{hash:ip,port,ip} set C{name}."""
        return parse_windows(self._dump(name))

    def _dump(self, name: str) -> List[bytes]:
        sequence = self.next_sequence()
        attributes = (attr(IPSET_ATTR_PROTOCOL, bytes([IPSET_PROTOCOL]))
                      + attr(IPSET_ATTR_SETNAME, name.encode("ascii") + b"\0"))
        self.open().send(message(NFNL_SUBSYS_IPSET, IPSET_CMD_LIST,
                                 NLM_F_REQUEST | NLM_F_DUMP, sequence, attributes))
        return self.replies({sequence})
