# -*- test-case-name: tests.firewall.test_compact -*-
"""
The compact form of C{/firewall/counters} (request C{{compact: true}}):
every authorized client's address, MAC and counters packed in one bytes
value, 42 bytes a client, so that 10,000 clients (560 KB of base64 on the
bus) fit in one message (the dict form, typed-value JSON, is about 160
bytes a client and passes the bus's 1 MiB near 6,500). Pure: no I/O.

A row is C{!4s6sQQQQ}: the IPv4 address, the MAC, then bytes up, bytes
down, packets up, packets down (unsigned 64-bit, big-endian; up: from the
client), in the order of L{netsuite.stats.layout.DATA_SOURCES}.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Iterable, Iterator, Mapping, Tuple

from .interfaces import Traffic

__all__ = ["ROW", "ROW_SIZE", "pack_rows", "unpack_rows"]

ROW = struct.Struct("!4s6sQQQQ")
ROW_SIZE = ROW.size

Row = Tuple[str, str, int, int, int, int]
"""An unpacked row: (ip, mac, bytes_up, bytes_down, packets_up, packets_down)."""


def pack_rows(traffic: Mapping[ipaddress.IPv4Address, Traffic],
              macs: Mapping[ipaddress.IPv4Address, bytes]) -> bytes:
    """
    The rows of the clients in C{traffic} whose MAC (6 bytes) is in
    C{macs}, in address order.
    """
    return b"".join(ROW.pack(ip.packed, macs[ip], t.bytes_up, t.bytes_down, t.packets_up,
                             t.packets_down)
                    for ip, t in sorted(traffic.items()) if ip in macs)


def unpack_rows(data: bytes) -> Iterator[Row]:
    """
    The rows of C{data}, addresses and MACs as strings.

    @raise ValueError: C{data} is not a whole number of rows.
    """
    if not isinstance(data, bytes) or len(data) % ROW_SIZE:
        raise ValueError(f"compact counters must be bytes of {ROW_SIZE}-byte rows, not "
                         f"{type(data).__name__} of {len(data) if isinstance(data, bytes) else '?'}")
    ntoa = socket.inet_ntoa
    for ip, mac, bu, bd, pu, pd in ROW.iter_unpack(data):
        yield ntoa(ip), mac.hex(":"), bu, bd, pu, pd


def rows_of(items: Iterable[Row]) -> bytes:
    """Pack unpacked rows again (for tests and the benchmark's fake firewall)."""
    return b"".join(ROW.pack(socket.inet_aton(ip), bytes.fromhex(mac.replace(":", "")),
                             bu, bd, pu, pd) for ip, mac, bu, bd, pu, pd in items)
