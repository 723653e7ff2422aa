# -*- test-case-name: tests.stats.test_layout -*-
"""
The round-robin files' layout, shared by what writes them (the store) and
what reads them (the graphs, the benchmark): pure data, no I/O.

One file per client, named by its MAC (a device keeps its history when its
address changes), and one for the uplink. Each holds four counters, kept
as DERIVE (bytes or packets per second, never negative, so a counter that
went back, a firewall restart, is an unknown step and not a spike), and
consolidated so that its size is fixed whatever the history:

- every sample for 3 hours (the hour graph);
- 5-minute averages and maxima for 8 days (the day and week graphs);
- hourly averages and maxima for 5 weeks;
- daily averages and maxima for 400 days (the year).

At 8 bytes a value that is 8,168 rows x 4 counters: about 262 KB a client
(the header adds a few KB), the same on the first day as after a year.
"""

from __future__ import annotations

import os
import re
from typing import List, Tuple

__all__ = ["DATA_SOURCES", "ARCHIVES", "UPLINK", "valid_step", "create_args", "client_file",
           "uplink_file", "ROWS", "BYTES_PER_FILE"]

DATA_SOURCES: Tuple[str, ...] = ("bytes_up", "bytes_down", "packets_up", "packets_down")
"""The counters of every file, in this order (rrdtool update's value order)."""

ARCHIVES: Tuple[Tuple[str, int, int], ...] = (
    ("AVERAGE", 0, 3 * 3600),
    ("AVERAGE", 300, 8 * 86400),
    ("MAX", 300, 8 * 86400),
    ("AVERAGE", 3600, 35 * 86400),
    ("MAX", 3600, 35 * 86400),
    ("AVERAGE", 86400, 400 * 86400),
    ("MAX", 86400, 400 * 86400),
)
"""(consolidation, seconds per row (0: one sample), seconds kept)."""

UPLINK = "uplink"
"""The uplink file's name, without the suffix."""

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def valid_step(step: int) -> bool:
    """Whether a sampling interval fits the archives: it must divide 300 s."""
    return isinstance(step, int) and 0 < step <= 300 and 300 % step == 0


def _rows(step: int) -> List[Tuple[str, int, int]]:
    """(consolidation, samples per row, rows) of each archive."""
    out = []
    for cf, per_row, kept in ARCHIVES:
        per_row = per_row or step
        out.append((cf, per_row // step, kept // per_row))
    return out


def create_args(step: int) -> List[str]:
    """The data source and archive arguments of C{rrdtool.create} for C{step}."""
    if not valid_step(step):
        raise ValueError(f"a sampling interval must divide 300 seconds, not {step!r}")
    heartbeat = 3 * step
    args = [f"DS:{name}:DERIVE:{heartbeat}:0:U" for name in DATA_SOURCES]
    args += [f"RRA:{cf}:0.5:{per}:{rows}" for cf, per, rows in _rows(step)]
    return args


def rows(step: int) -> int:
    """How many rows a file holds at C{step}."""
    return sum(r for _, _, r in _rows(step))


ROWS = rows(10)
BYTES_PER_FILE = ROWS * len(DATA_SOURCES) * 8
"""A file's values at the default 10 s step (its header is not counted)."""


def client_file(directory: str, mac: str) -> str:
    """The file of the client with C{mac} (lower-case, colon-separated)."""
    if not _MAC.match(mac):
        raise ValueError(f"not a MAC address: {mac!r}")
    return os.path.join(directory, "clients", mac.replace(":", "-") + ".rrd")


def uplink_file(directory: str) -> str:
    return os.path.join(directory, UPLINK + ".rrd")
