# -*- test-case-name: tests.integration.test_bus_processes -*-
"""
Real processes for integration tests: twistd daemons, hook scripts and
clients, run as L{netsuite.lab.child.Child}ren with the reactor, awaited
on a line they print (never a sleep), and stopped at clean-up.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from netsuite.capabilities import ProcessPrivileges, parse_status
from netsuite.lab.child import PYTHON, Child
from netsuite.lab.child import TWISTD as _TWISTD

TWISTD = [_TWISTD]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def spawn(test: TestCase, label: str, argv: Sequence[str],
          env: Optional[Dict[str, str]] = None, uid: Optional[int] = None,
          gid: Optional[int] = None, netns: Optional[str] = None,
          stdin: bool = False) -> Child:
    """
    Start C{argv} (inside C{netns}, if given) from the checkout; await its
    lines with C{when_line}, its end with C{when_ended}; with C{stdin},
    write to it with C{send}. At clean-up it is killed with its process
    group at once (SIGKILL; the lab goes next) and reaped.
    """
    child = Child(argv, label=label, netns=netns, env=env, cwd=ROOT, user=uid, group=gid,
                  stdin=stdin, reactor=reactor)
    test.addCleanup(child.stop, 0)
    return child.start()


def socket_dir(test: TestCase) -> str:
    """
    A fresh socket directory (mode 0755), removed at clean-up.
    """
    path = tempfile.mkdtemp(prefix="nsbus-")
    os.chmod(path, 0o755)

    def remove() -> None:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    test.addCleanup(remove)
    return path


def write_config(test: TestCase, text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="netsuite-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    test.addCleanup(os.unlink, path)
    return path


DHCLIENT_SCRIPT = """#!/bin/sh
echo "reason=$reason ip=$new_ip_address router=$new_routers lease=$new_dhcp_lease_time \
portal=$new_captive_portal"
case "$reason" in
  BOUND) ip addr add "$new_ip_address/24" dev "$interface" ;;
esac
"""

# dhclient knows option 114 only when told its name and type.
DHCLIENT_CONF = """
option captive-portal code 114 = text;
request subnet-mask, routers, domain-name-servers, captive-portal;
"""


def dhclient_files(directory: str, script: str = DHCLIENT_SCRIPT,
                   conf: str = DHCLIENT_CONF) -> List[str]:
    """
    dhclient's arguments for a test's own script and configuration (texts,
    written to C{directory}; by default a script that prints each event's
    fields as C{key=value} on one line and adds a bound address, and a
    configuration asking for option 114) and a lease file and pid file there.
    """
    script_path = os.path.join(directory, "dhclient.sh")
    conf_path = os.path.join(directory, "dhclient.conf")
    for path, text in ((script_path, script), (conf_path, conf)):
        with open(path, "w") as f:
            f.write(text)
    os.chmod(script_path, 0o755)
    return ["-cf", conf_path, "-sf", script_path,
            "-lf", os.path.join(directory, "dhclient.leases"),
            "-pf", os.path.join(directory, "dhclient.pid")]


def start_daemon(test: TestCase, name: str, sockets: str,
                 config: Optional[str] = None, extra: Sequence[str] = ()) -> "Deferred[Child]":
    """
    Start C{twistd -n netsuite} as process C{name}; fire once its bus is ready.
    """
    argv = TWISTD + ["-n", "--pidfile=", "netsuite", "--name", name, "--socket-dir", sockets]
    if config:
        argv += ["--config", config]
    argv += list(extra)
    child = spawn(test, f"daemon {name}", argv)
    return child.when_line(r"bus ready").addCallback(lambda _: child)


def restart_daemon(test: TestCase, child: Child, name: str, sockets: str,
                   config: Optional[str] = None) -> "Deferred[Child]":
    """
    Kill a daemon with SIGKILL and start it again under the same name.
    """
    child.signal("KILL")
    return child.when_ended().addCallback(lambda _: start_daemon(test, name, sockets, config))


def run_script(test: TestCase, label: str, path: str, *args: str,
               env: Optional[Dict[str, str]] = None, uid: Optional[int] = None,
               gid: Optional[int] = None) -> Child:
    return spawn(test, label, [PYTHON, path, *args], env=env, uid=uid, gid=gid)


def thread_privileges(pid: int) -> Dict[int, ProcessPrivileges]:
    """
    The privileges of each thread of process C{pid}, by thread id, from
    C{/proc/PID/task/TID/status} (capabilities belong to a thread).
    """
    found = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                found[int(tid)] = parse_status(f.read())
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return found


def kill(child: Child, name: str = "KILL") -> "Deferred[Optional[int]]":
    """Send C{name} to C{child}; fire with its exit status once it ended."""
    child.signal(name)
    return child.when_ended()


__all__ = ["Child", "spawn", "socket_dir", "write_config", "dhclient_files", "start_daemon",
           "restart_daemon", "run_script", "thread_privileges", "kill", "ROOT", "PYTHON",
           "TWISTD"]


def first_event(bus: Any, path: str) -> "Tuple[Deferred, Deferred]":
    """
    Watch C{path} on C{bus}: (fires once the watch is attached, fires with
    the first message).
    """
    attached: Deferred = Deferred()
    first: Deferred = Deferred()
    bus.watch(path, lambda m: None if first.called else first.callback(m),
              on_attach=lambda: None if attached.called else attached.callback(None))
    return attached, first
