# -*- test-case-name: tests.lab.test_netns -*-
"""
Small helpers on named network namespaces: sysctls, the processes inside,
removal, and the argv that runs a command inside one.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
from typing import Any, Callable, List, Optional, Sequence, TypeVar

from pyroute2 import netns as _netns

from .layout import LabError

NETNS_DIR = "/run/netns"
IP = shutil.which("ip") or "/sbin/ip"

T = TypeVar("T")


def ns_argv(netns: Optional[str], argv: Sequence[str]) -> List[str]:
    """
    The argv that runs C{argv} inside C{netns} (on the host if C{None}).

    C{ip netns exec} also bind-mounts C{/etc/netns/<netns>/*} over C{/etc}, so
    the command sees the namespace's own C{resolv.conf}, and remounts C{/sys}.
    """
    if not argv:
        raise ValueError("empty command")
    if netns is None:
        return list(argv)
    return [IP, "netns", "exec", netns, *argv]


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """
    Call C{fn} in a short-lived thread that has entered C{netns}.

    C{setns} changes only the calling thread, and C{/proc/sys/net} shows the
    namespace of the thread that opens it, so this reads and writes a
    namespace's sysctls without a fork or an exec.
    """
    result: List[T] = []
    errors: List[BaseException] = []

    def run() -> None:
        try:
            _netns.setns(netns, flags=0)
            result.append(fn())
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, name=f"in-netns-{netns}", daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        raise RuntimeError(f"call inside namespace {netns} did not return in 10 s")
    if errors:
        raise errors[0]
    return result[0]


def sysctl_path(key: str) -> str:
    if key.startswith("/proc/sys/"):
        return key
    return "/proc/sys/" + key.replace(".", "/")


def sysctl(netns: str, key: str, value: Optional[str] = None) -> str:
    """
    Read, or set then read back, a sysctl (C{net.ipv4.ip_forward}) in C{netns}.
    """
    path = sysctl_path(key)

    def run() -> str:
        if value is not None:
            with open(path, "w") as f:
                f.write(str(value))
        with open(path) as f:
            return f.read().strip()
    return in_netns(netns, run)


def exists(netns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, netns))


def listed() -> List[str]:
    """Every named namespace."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def pids_in(netns: str) -> List[int]:
    """
    The processes whose network namespace is C{netns} (by inode), never
    this process.
    """
    try:
        st = os.stat(os.path.join(NETNS_DIR, netns))
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            other = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            found.append(int(entry))
    return found


def kill_all(netns: str) -> List[int]:
    """SIGKILL every process inside C{netns}; return their pids."""
    pids = pids_in(netns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def remove(netns: str) -> bool:
    """
    Unmount and unlink a named namespace; its interfaces go with it once no
    process is left inside. Return whether it existed.
    """
    path = os.path.join(NETNS_DIR, netns)
    if not os.path.exists(path):
        return False
    try:
        _netns.remove(netns)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return False
    return True


def read_text(path: str) -> str:
    """A file's text, or "" when it is not there."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def link_index(ipr: Any, ifname: str) -> int:
    """The index of interface C{ifname} seen through C{ipr} (a pyroute2 IPRoute)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"no interface {ifname}")
    return int(found[0])


__all__ = ["ns_argv", "in_netns", "sysctl", "exists", "listed", "pids_in",
           "kill_all", "remove", "read_text", "link_index", "IP", "NETNS_DIR"]
