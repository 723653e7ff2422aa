# -*- test-case-name: tests.test_capabilities -*-
"""
Linux capabilities by name, and what C{/proc/PID/status} says of a
process's privileges. Pure: no system calls (L{netsuite.privileges} makes
them).

A capability set is a C{frozenset} of names as the kernel's headers and
systemd spell them (C{"CAP_NET_ADMIN"}); the kernel shows one as a
64-bit mask in hex (C{CapEff: 0000000000003000}), bit N for capability N
(C{linux/capability.h}, capabilities(7)).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Tuple

import attr

__all__ = ["NUMBERS", "NAMES", "UnknownCapability", "MalformedStatus", "mask", "names",
           "ProcessPrivileges", "parse_status"]

# linux/capability.h, in number order (0 to 40, Linux 5.9 and later).
_ORDER = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
NUMBERS: Dict[str, int] = {f"CAP_{name}": number for number, name in enumerate(_ORDER)}
"""Capability name -> number."""
NAMES: Dict[int, str] = {number: name for name, number in NUMBERS.items()}
"""Capability number -> name."""


class UnknownCapability(ValueError):
    """
    A name that is not a Linux capability's.
    """


class MalformedStatus(ValueError):
    """
    Text that is not a C{/proc/PID/status} with the fields we read.
    """


def mask(capabilities: Iterable[str]) -> int:
    """
    The kernel's bit mask of C{capabilities} (names).

    @raise UnknownCapability: a name is not a capability's.
    """
    bits = 0
    for name in capabilities:
        try:
            bits |= 1 << NUMBERS[name]
        except KeyError:
            raise UnknownCapability(f"{name!r} is not a Linux capability "
                                    f"(CAP_NET_ADMIN, CAP_NET_RAW, ...)") from None
    return bits


def names(bits: int) -> FrozenSet[str]:
    """
    The names of the capabilities in the mask C{bits}; a bit of a
    capability newer than this table is named by its number (C{"CAP_41"}).
    """
    if bits < 0:
        raise ValueError(f"a capability mask is not negative: {bits}")
    found = set()
    number = 0
    while bits >> number:
        if bits >> number & 1:
            found.add(NAMES.get(number, f"CAP_{number}"))
        number += 1
    return frozenset(found)


@attr.s(frozen=True, auto_attribs=True)
class ProcessPrivileges:
    """
    Who a process is and what it may do, from its C{/proc/PID/status}.

    @ivar uids: real, effective, saved and filesystem uid.
    @ivar gids: likewise for the gid.
    @ivar groups: its supplementary groups.
    @ivar effective: C{CapEff}, as names; C{permitted}, C{inheritable},
        C{bounding} and C{ambient} likewise.
    @ivar no_new_privs: C{NoNewPrivs}: no C{execve} can give it more.
    """

    uids: Tuple[int, int, int, int]
    gids: Tuple[int, int, int, int]
    groups: FrozenSet[int]
    effective: FrozenSet[str]
    permitted: FrozenSet[str]
    inheritable: FrozenSet[str]
    bounding: FrozenSet[str]
    ambient: FrozenSet[str]
    no_new_privs: bool


_CAPS = {"CapEff": "effective", "CapPrm": "permitted", "CapInh": "inheritable",
         "CapBnd": "bounding", "CapAmb": "ambient"}


def _ids(field: str, value: str) -> Tuple[int, int, int, int]:
    ids = tuple(int(word) for word in value.split())
    if len(ids) != 4:
        raise MalformedStatus(f"{field}: has {len(ids)} ids, not 4 (real, effective, saved, fs)")
    return ids  # type: ignore[return-value]


def parse_status(text: str) -> ProcessPrivileges:
    """
    The privileges in the text of a C{/proc/PID/status} (proc(5)).

    @raise MalformedStatus: a field we read is missing or is not a number.
    """
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields[key.strip()] = value.strip()
    wanted = ["Uid", "Gid", "Groups", "NoNewPrivs", *_CAPS]
    missing = [key for key in wanted if key not in fields]
    if missing:
        raise MalformedStatus(f"no {', '.join(missing)} in the status")
    try:
        caps = {attribute: names(int(fields[key], 16)) for key, attribute in _CAPS.items()}
        return ProcessPrivileges(
            uids=_ids("Uid", fields["Uid"]), gids=_ids("Gid", fields["Gid"]),
            groups=frozenset(int(word) for word in fields["Groups"].split()),
            no_new_privs=fields["NoNewPrivs"] == "1", **caps)
    except ValueError as e:
        if isinstance(e, MalformedStatus):
            raise
        raise MalformedStatus(f"not a number in the status: {e}") from None
