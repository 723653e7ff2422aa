# -*- test-case-name: tests.test_privileges -*-
"""
Keeping a service's capabilities across C{twistd --uid}.

twistd starts as root, runs every service's C{privilegedStartService}
(ports are bound there), switches to C{--uid}/C{--gid}, then runs
C{startService}. The kernel clears every capability when a process's uids
all leave 0 (capabilities(7), "Effect of user ID changes on
capabilities"), so a firewall that talks to libiptc and netlink after
start would fail. L{KeepCapabilities} asks the kernel to keep the
permitted set across the switch (C{PR_SET_KEEPCAPS}, before it), and
right after it (first in C{startService}) cuts the effective, permitted
and bounding sets to what the process's services declare
(L{netsuite.services.IServicePlugin.capabilities}), clears the
inheritable and ambient sets (netsuite starts no programs) and sets
C{no_new_privs}. Started as another user (systemd's C{User=} with
C{AmbientCapabilities=}), or as root without C{--uid}, it changes nothing.

The calls go through L{ICapabilityCalls}: L{LibcCapabilities} makes them
(ctypes, libc's C{prctl}, C{capget} and C{capset}: no C extension), and
L{netsuite.testing.MemoryCapabilities} imitates the kernel's rules for the
unit tests.

Capabilities belong to a thread, and a thread takes its creator's: a
thread started before the switch keeps none (it is warned about), one
started after it has exactly the kept set.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from typing import Any, FrozenSet, Iterable, Optional, Tuple

import attr

from twisted.application.service import Service
from twisted.logger import Logger
from zope.interface import Interface, implementer

from .capabilities import NUMBERS, ProcessPrivileges, mask, names, parse_status

__all__ = ["ICapabilityCalls", "LibcCapabilities", "KeepCapabilities", "UidSwitch",
           "twistd_switch", "describe"]

_log = Logger(namespace="netsuite.privileges")

SETPCAP = 1 << NUMBERS["CAP_SETPCAP"]


@attr.s(frozen=True, auto_attribs=True)
class UidSwitch:
    """
    The uid and gid twistd switches to after C{privilegedStartService}.
    """

    uid: int
    gid: int


def twistd_switch(options: Any, euid: Optional[int] = None) -> Optional[UidSwitch]:
    """
    The uid and gid twistd will switch to, from the parsed options of a
    twistd plugin (C{options.parent} is twistd's own): C{--uid}, and
    C{--gid} or else that user's group, as twistd itself works them out
    (L{twisted.scripts._twistd_unix.UnixApplicationRunner.startApplication}).
    None when not run by twistd, not root (C{euid}, by default this
    process's), or without C{--uid}.
    """
    parent = getattr(options, "parent", None)
    if parent is None or (os.geteuid() if euid is None else euid) != 0:
        return None
    try:
        uid, gid = parent["uid"], parent["gid"]
    except KeyError:
        return None
    if uid is None or uid == 0:
        return None
    if gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    return UidSwitch(uid, gid)


class ICapabilityCalls(Interface):
    """
    The system calls that set a thread's credentials.
    """

    def euid() -> int:
        """The effective uid."""

    def set_keep_capabilities(keep: bool) -> None:
        """C{prctl(PR_SET_KEEPCAPS, keep)}: keep the permitted set when the uid leaves 0."""

    def capabilities() -> Tuple[int, int, int]:
        """C{capget}: the effective, permitted and inheritable masks."""

    def set_capabilities(effective: int, permitted: int, inheritable: int) -> None:
        """C{capset}; raises C{OSError} (C{EPERM}) for more than is permitted."""

    def last_capability() -> int:
        """The kernel's highest capability number (C{/proc/sys/kernel/cap_last_cap})."""

    def drop_bounding(number: int) -> None:
        """C{prctl(PR_CAPBSET_DROP, number)}: needs C{CAP_SETPCAP} in effect."""

    def clear_ambient() -> None:
        """C{prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)}."""

    def set_no_new_privs() -> None:
        """C{prctl(PR_SET_NO_NEW_PRIVS, 1)}: no C{execve} can give more."""

    def threads() -> int:
        """How many threads the process has."""

    def status() -> ProcessPrivileges:
        """This thread's privileges as the kernel shows them."""


# linux/prctl.h, linux/capability.h
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CapData2 = _CapData * 2  # version 3: two 32-bit words of each set


@implementer(ICapabilityCalls)
class LibcCapabilities:
    """
    L{ICapabilityCalls} through libc, for the calling thread.
    """

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            number = ctypes.get_errno()
            raise OSError(number, f"{what}: {os.strerror(number)}")

    def _prctl(self, option: int, arg: int = 0, arg3: int = 0) -> None:
        self._check(self._libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg),
                                     ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                                     ctypes.c_ulong(0)), f"prctl({option}, {arg})")

    def euid(self) -> int:
        return os.geteuid()

    def set_keep_capabilities(self, keep: bool) -> None:
        self._prctl(PR_SET_KEEPCAPS, int(keep))

    def capabilities(self) -> Tuple[int, int, int]:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CapData2()
        self._check(self._libc.capget(ctypes.byref(header), data), "capget")
        return tuple(getattr(data[0], s) | getattr(data[1], s) << 32  # type: ignore[return-value]
                     for s in ("effective", "permitted", "inheritable"))

    def set_capabilities(self, effective: int, permitted: int, inheritable: int) -> None:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = _CapData2()
        for word in (0, 1):
            data[word].effective = effective >> (32 * word) & 0xFFFFFFFF
            data[word].permitted = permitted >> (32 * word) & 0xFFFFFFFF
            data[word].inheritable = inheritable >> (32 * word) & 0xFFFFFFFF
        self._check(self._libc.capset(ctypes.byref(header), data), "capset")

    def last_capability(self) -> int:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())

    def drop_bounding(self, number: int) -> None:
        self._prctl(PR_CAPBSET_DROP, number)

    def clear_ambient(self) -> None:
        self._prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    def set_no_new_privs(self) -> None:
        self._prctl(PR_SET_NO_NEW_PRIVS, 1)

    def threads(self) -> int:
        return len(os.listdir("/proc/self/task"))

    def status(self) -> ProcessPrivileges:
        with open("/proc/thread-self/status") as f:
            return parse_status(f.read())


def describe(capabilities: Iterable[str]) -> str:
    """C{"CAP_NET_ADMIN, CAP_NET_RAW"}, or C{"none"}."""
    return ", ".join(sorted(capabilities)) or "none"


class KeepCapabilities(Service):
    """
    Keeps exactly C{keep} (capability names) across twistd's switch to
    C{--uid}; see the module docstring. Put it before the services whose
    C{startService} needs them (L{netsuite.process.make_process_service}
    puts it first after logging).

    @raise netsuite.capabilities.UnknownCapability: C{keep} names no capability.
    """

    def __init__(self, keep: Iterable[str], calls: Optional[ICapabilityCalls] = None) -> None:
        self.keep: FrozenSet[str] = frozenset(keep)
        self._mask = mask(self.keep)
        self.calls: ICapabilityCalls = calls if calls is not None else LibcCapabilities()
        self._from_root = False

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        self._from_root = self.calls.euid() == 0
        if self._from_root:
            self.calls.set_keep_capabilities(True)

    def startService(self) -> None:
        Service.startService(self)
        if not self._from_root:
            return  # started unprivileged (systemd's User=): what it was given, it keeps
        self._from_root = False
        self.calls.set_keep_capabilities(False)
        if self.calls.euid() == 0:
            _log.info("privileges: running as root (no twistd --uid): every capability kept; "
                      "with --uid, only {keep}", keep=describe(self.keep))
            return
        try:
            kept = self._cut()
        except OSError as e:
            _log.critical("privileges: cannot keep {keep} after twistd --uid: {error}; "
                          "stopping", keep=describe(self.keep), error=e)
            raise SystemExit(1) from None
        _log.info("privileges: uid {uid} gid {gid}, keeping {keep} (effective, permitted "
                  "and bounding; none inheritable or ambient), no new privileges",
                  uid=kept.uids[1], gid=kept.gids[1], keep=describe(kept.effective),
                  netsuite_event="privileges")
        others = self.calls.threads() - 1
        if others:
            _log.warn("privileges: {count} thread(s) started before twistd switched uid "
                      "hold no capabilities", count=others)

    def _cut(self) -> ProcessPrivileges:
        """
        Cut this thread's sets to C{keep}; return what the kernel then says.
        """
        _, permitted, _ = self.calls.capabilities()
        missing = self._mask & ~permitted
        if missing:
            raise OSError(1, f"{describe(names(missing))} not permitted after the uid switch")
        if not permitted & SETPCAP:
            raise OSError(1, "CAP_SETPCAP, needed to cut the bounding set, is not permitted")
        self.calls.set_capabilities(SETPCAP, permitted, 0)
        for number in range(self.calls.last_capability() + 1):
            if not self._mask >> number & 1:
                self.calls.drop_bounding(number)
        self.calls.set_capabilities(self._mask, self._mask, 0)
        self.calls.clear_ambient()
        self.calls.set_no_new_privs()
        status = self.calls.status()
        if not (status.effective == status.permitted == status.bounding == self.keep
                and not status.inheritable and not status.ambient):
            raise OSError(1, f"the kernel shows effective {describe(status.effective)}, "
                          f"bounding {describe(status.bounding)}")
        return status
