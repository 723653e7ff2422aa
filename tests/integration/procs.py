# -*- test-case-name: tests.integration.test_bus_processes -*-
"""
Real processes for integration tests: twistd daemons and hook scripts,
started with spawnProcess, awaited on a line they print (never a sleep),
and killed at clean-up.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

PYTHON = sys.executable
TWISTD = [os.path.join(os.path.dirname(PYTHON), "twistd")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Child(ProcessProtocol):
    """
    A child process whose output lines can be awaited.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.lines: List[str] = []
        self._partial = b""
        self._waiting: List[tuple[re.Pattern[str], Deferred[str]]] = []
        self.ended: Deferred[Any] = Deferred()
        self.exit_code: Optional[int] = None
        self.dumps_stacks = False  # a netsuite daemon: SIGUSR1 prints its threads' stacks

    def outReceived(self, data: bytes) -> None:
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for pattern, waiter in list(self._waiting):
                if pattern.search(line):
                    self._waiting.remove((pattern, waiter))
                    waiter.callback(line)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        for pattern, waiter in self._waiting:
            waiter.errback(RuntimeError(
                f"{self.label} exited ({self.exit_code}) before printing "
                f"{pattern.pattern!r}; output:\n" + "\n".join(self.lines[-30:])))
        self._waiting.clear()
        self.ended.callback(self.exit_code)

    def wait_for_line(self, pattern: str, after: int = 0,
                      timeout: float = 60.0) -> "Deferred[str]":
        """
        Fire with the first line matching C{pattern} from line C{after} on;
        fail after C{timeout} seconds with the child's output.
        """
        compiled = re.compile(pattern)
        for line in self.lines[after:]:
            if compiled.search(line):
                d: Deferred[str] = Deferred()
                d.callback(line)
                return d
        waiter: Deferred[str] = Deferred()
        if self.ended.called:
            waiter.errback(RuntimeError(f"{self.label} has exited; output:\n"
                                        + "\n".join(self.lines[-30:])))
            return waiter
        self._waiting.append((compiled, waiter))

        def give_up() -> None:
            if not waiter.called:
                waiter.errback(RuntimeError(
                    f"{self.label} printed no line matching {pattern!r} in {timeout}s; "
                    "output:\n" + "\n".join(self.lines[-80:])))

        def too_late() -> None:
            if waiter.called:
                return
            self._waiting.remove((compiled, waiter))
            if self.dumps_stacks and not self.ended.called:
                self.signal(signal.SIGUSR1)  # its stacks join the output first
                reactor.callLater(1.0, give_up)
            else:
                give_up()
        timer = reactor.callLater(timeout, too_late)
        waiter.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return waiter

    def signal(self, name: "str | int") -> None:
        if not self.ended.called:
            self.transport.signalProcess(name)

    def output(self) -> str:
        return "\n".join(self.lines)


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def spawn(test: TestCase, label: str, argv: Sequence[str],
          env: Optional[Dict[str, str]] = None, uid: Optional[int] = None,
          gid: Optional[int] = None) -> Child:
    """
    Start C{argv}; kill it (SIGKILL) and wait for it at test clean-up.
    """
    child = Child(label)
    child.dumps_stacks = TWISTD[0] in argv
    reactor.spawnProcess(child, argv[0], list(argv), env=child_env(env), path=ROOT,
                         uid=uid, gid=gid)

    def stop() -> Deferred[Any]:
        child.signal("KILL")
        return child.ended
    test.addCleanup(stop)
    return child


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


def dhclient_files(directory: str, script: str, conf: str) -> List[str]:
    """
    dhclient's arguments for a test's own script and configuration (texts,
    written to C{directory}) and a lease file and pid file there.
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
    return child.wait_for_line(r"bus ready").addCallback(lambda _: child)


def restart_daemon(test: TestCase, child: Child, name: str, sockets: str,
                   config: Optional[str] = None) -> "Deferred[Child]":
    """
    Kill a daemon with SIGKILL and start it again under the same name.
    """
    child.signal("KILL")
    return child.ended.addCallback(lambda _: start_daemon(test, name, sockets, config))


def run_script(test: TestCase, label: str, path: str, *args: str,
               env: Optional[Dict[str, str]] = None, uid: Optional[int] = None,
               gid: Optional[int] = None) -> Child:
    return spawn(test, label, [PYTHON, path, *args], env=env, uid=uid, gid=gid)


def kill(child: Child, name: str = "KILL") -> "Deferred[Any]":
    child.signal(name)
    return child.ended


__all__ = ["Child", "spawn", "socket_dir", "write_config", "dhclient_files", "start_daemon",
           "restart_daemon", "run_script", "kill", "ROOT", "PYTHON"]
