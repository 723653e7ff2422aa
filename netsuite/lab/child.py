# -*- test-case-name: tests.lab.test_child -*-
"""
Child processes for the lab, the integration tests and the benchmarks.

L{Child} starts a command (inside a network namespace, or on the host)
with the checkout on C{PYTHONPATH}, reads its output (stdout and stderr,
one stream) line by line in a thread, and lets the caller await a line
matching a pattern, with a deadline: blocking (L{Child.wait_for_line}),
or as a Deferred fired in the reactor thread (L{Child.when_line}). Both
read the same books, so a line is never missed between them. When a
netsuite daemon (every twistd plugin of ours installs
L{netsuite.process.StackDumps}) does not print what was awaited in time,
it is first asked for every thread's stack (SIGUSR1), so the error shows
where it is stuck. L{Child.stop} ends the child's whole process group
(SIGTERM, then SIGKILL) and reaps it.

L{netsuite.lab.peer.Peer}, the base of the lab's servers, runs one with a
private directory and a ready line.

    child = Child([TWISTD, "-n", "netsuite", ...], netns=lab.netns("ap")).start()
    child.wait_for_line("dhcp ready", timeout=60)
    ...
    child.stop()
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Pattern, Sequence, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.python import threadable

from . import nsutil

# The checkout (or site-packages) holding the netsuite package: children
# import the same netsuite, and twistd finds its plugins there.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
TWISTD = os.path.join(os.path.dirname(PYTHON), "twistd")

# faulthandler's header of each thread's stack, and how long a daemon gets
# to write them all.
STACK_MARKER = "most recent call first"
DUMP_WAIT = 3.0
DUMP_SETTLE = 0.5
TAIL = 100  # lines of output quoted in an error
_NEVER = re.compile(r"(?!)")


class ChildError(Exception):
    """
    A child did not start, exited, or did not print what was awaited in time.
    """


def checkout_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """
    This process's environment with L{PACKAGE_ROOT} first on C{PYTHONPATH},
    unbuffered Python output (lines arrive as they are printed), and C{extra}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def signal_number(name: Union[int, str]) -> int:
    """C{9}, C{"KILL"} or C{"SIGKILL"} as a signal number."""
    if isinstance(name, int):
        return name
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


class _Waiter:
    """One L{Child.when_line} call: its pattern, its Deferred, its timer."""

    def __init__(self, pattern: Pattern[str], after: int,
                 canceller: Callable[["Deferred[str]"], None]) -> None:
        self.pattern = pattern
        self.after = after
        self.deferred: "Deferred[str]" = Deferred(canceller)
        self.timer: Any = None

    def settle(self, outcome: Union[str, Exception]) -> None:
        """Fire the Deferred (in the reactor thread) unless it was cancelled."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.deferred.called:
            return
        if isinstance(outcome, Exception):
            self.deferred.errback(outcome)
        else:
            self.deferred.callback(outcome)


class Child:
    """
    One child process and the lines it printed.

    @param argv: the command.
    @param label: its name in errors (default: the program's name).
    @param netns: the network namespace to run it in (C{None}: the host).
    @param env: variables added to L{checkout_env}.
    @param cwd: its working directory (default: this process's).
    @param user: run it as this uid (needs root); C{group} likewise.
    @param dumps_stacks: whether SIGUSR1 makes it print its threads'
        stacks; by default, whether it is a C{twistd}.
    @param keep: keep only about the last C{keep} lines (a chatty daemon in
        a long benchmark); line numbers still count every line.
    @param stdin: give it a pipe as stdin (see L{send}), closed by L{stop}:
        a child that exits at EOF then also goes if this process dies.
    @param reactor: needed for L{when_line} and L{when_ended}.
    """

    def __init__(self, argv: Sequence[str], label: Optional[str] = None,
                 netns: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, user: Optional[int] = None,
                 group: Optional[int] = None, dumps_stacks: Optional[bool] = None,
                 keep: Optional[int] = None, stdin: bool = False, reactor: Any = None) -> None:
        if not argv:
            raise ValueError("empty command")
        self.argv = list(argv)
        self.label = label or os.path.basename(self.argv[0])
        self.netns = netns
        self.env = checkout_env(env)
        self.cwd = cwd
        self.user = user
        self.group = group
        self.dumps_stacks = (any(os.path.basename(a) == "twistd" for a in self.argv)
                             if dumps_stacks is None else dumps_stacks)
        self.keep = keep
        self.stdin = stdin
        self.reactor = reactor
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._changed = threading.Condition()  # guards everything below
        self._lines: List[str] = []
        self._dropped = 0  # lines no longer kept
        self._done = False  # output read to the end and the process reaped
        self._waiters: List[_Waiter] = []
        self._enders: List["Deferred[Optional[int]]"] = []
        self._reader: Optional[threading.Thread] = None

    def __repr__(self) -> str:
        return f"<Child {self.label} pid={self.pid} returncode={self.returncode}>"

    # lifecycle

    def start(self) -> "Child":
        """Start the process and the thread reading its output."""
        if self.process is not None:
            raise ChildError(f"{self.label} already started")
        self.process = subprocess.Popen(
            nsutil.ns_argv(self.netns, self.argv),
            stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env=self.env, cwd=self.cwd, user=self.user, group=self.group,
            extra_groups=None if self.user is None else [])  # not this process's groups
        self._reader = threading.Thread(target=self._read, args=(self.process,),
                                        name=f"{self.label}-output", daemon=True)
        self._reader.start()
        return self

    def stop(self, grace: float = 5.0) -> Optional[int]:
        """
        End the child and whatever it left in its process group: SIGCONT
        (a paused child must be able to die), SIGTERM, SIGKILL after
        C{grace} seconds; then reap it and read its output to the end.
        Safe to call again, or on a child never started.

        @return: its exit status (negative: the signal that ended it).
        """
        proc = self.process
        if proc is None:
            return None
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGCONT)
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            raise ChildError(f"{self.label} (pid {proc.pid}) survived SIGKILL") from None
        if self._reader is not None:
            self._reader.join(10)
            if not self._reader.is_alive() and proc.stdout is not None:
                proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> "Child":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """
        User + system CPU seconds the process has used so far, from
        C{/proc/PID/stat} (NaN when it is not running).
        """
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def returncode(self) -> Optional[int]:
        """Its exit status once reaped (negative: the signal that ended it)."""
        return self.process.returncode if self.process is not None else None

    def signal(self, number: Union[int, str]) -> None:
        """Send a signal (C{signal.SIGUSR1}, C{"KILL"}) to the process, if it runs."""
        if self.process is None:
            raise ChildError(f"{self.label} was not started")
        self.process.send_signal(signal_number(number))  # a no-op once reaped

    def send(self, text: str) -> None:
        """Write C{text} to the child's stdin (made with C{stdin=True})."""
        if self.process is None or self.process.stdin is None:
            raise ChildError(f"{self.label} has no stdin pipe")
        self.process.stdin.write(text.encode("utf-8"))
        self.process.stdin.flush()

    # output

    def _read(self, process: "subprocess.Popen[bytes]") -> None:
        stream: IO[bytes] = process.stdout  # type: ignore[assignment]
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._changed:
                self._lines.append(line)
                number = self._dropped + len(self._lines) - 1
                matched = [w for w in self._waiters
                           if number >= w.after and w.pattern.search(line)]
                for waiter in matched:
                    self._waiters.remove(waiter)
                if self.keep is not None and len(self._lines) > 2 * self.keep:
                    self._dropped += len(self._lines) - self.keep
                    del self._lines[:-self.keep]
                self._changed.notify_all()
            for waiter in matched:
                self._call(waiter.settle, line)
        code = process.wait()
        with self._changed:
            self._done = True
            waiters, self._waiters = self._waiters, []
            enders, self._enders = self._enders, []
            failures = [self._failure(w.pattern.pattern, 0, True) for w in waiters]
            self._changed.notify_all()
        for waiter, failure in zip(waiters, failures):
            self._call(waiter.settle, failure)
        for ended in enders:  # a turn later, as when_ended says
            self._call(self.reactor.callLater, 0, ended.callback, code)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self.reactor is not None  # only when_line and when_ended add waiters
        self.reactor.callFromThread(fn, *args)

    @property
    def line_count(self) -> int:
        """How many lines it printed so far (the next line's number)."""
        with self._changed:
            return self._dropped + len(self._lines)

    def lines(self, after: int = 0) -> List[str]:
        """The lines it printed, from line number C{after} on (of those kept)."""
        with self._changed:
            return self._lines[max(0, after - self._dropped):]

    def output(self) -> str:
        return "\n".join(self.lines())

    def _scan(self, pattern: Pattern[str], position: int, found: List[str]) -> int:
        """Add the matching lines from line C{position} on to C{found}; return
        the next position. Under the lock."""
        start = max(0, position - self._dropped)
        found.extend(line for line in self._lines[start:] if pattern.search(line))
        return self._dropped + len(self._lines)

    def _failure(self, pattern: str, timeout: float, exited: bool, found: int = 0,
                 count: int = 1) -> ChildError:
        with self._changed:
            tail = "\n".join(self._lines[-TAIL:])
        why = f"exited ({self.returncode})" if exited else f"stayed silent for {timeout} s"
        counted = f" ({found}/{count})" if count > 1 else ""
        return ChildError(f"{self.label} {why} before printing {pattern!r}{counted}; "
                          f"last output:\n{tail}")

    # waiting, blocking

    def _wait(self, pattern: Pattern[str], timeout: float, after: int,
              count: int) -> "tuple[List[str], bool]":
        deadline = time.monotonic() + timeout
        found: List[str] = []
        position = after
        with self._changed:
            while True:
                position = self._scan(pattern, position, found)
                remaining = deadline - time.monotonic()
                if len(found) >= count or self._done or remaining <= 0:
                    return found, self._done
                self._changed.wait(remaining)

    def wait_for_line(self, pattern: str, timeout: float = 60.0, after: int = 0,
                      count: int = 1) -> List[str]:
        """
        Block until C{count} lines from line number C{after} on match
        C{pattern}; return those lines.

        @raise ChildError: the child exited first, or C{timeout} passed (a
            netsuite daemon's stacks are in the error's output then).
        """
        if self.process is None:
            raise ChildError(f"{self.label} was not started")
        if self.reactor is not None and threadable.isInIOThread():
            raise ChildError(f"{self.label}: wait_for_line would block the reactor; "
                             "use when_line")
        found, exited = self._wait(re.compile(pattern), timeout, after, count)
        if len(found) >= count:
            return found[:count]
        if not exited and self.dumps_stacks and self.running:
            mark = self.line_count
            self.signal(signal.SIGUSR1)
            if self._wait(re.compile(STACK_MARKER), DUMP_WAIT, mark, 1)[0]:
                self._wait(_NEVER, DUMP_SETTLE, mark, 1)  # the rest of the dump
        raise self._failure(pattern, timeout, exited, len(found), count)

    # waiting, in the reactor

    def _need_reactor(self) -> Any:
        if self.reactor is None:
            raise ChildError(f"{self.label}: made without a reactor, it can only block")
        if self.process is None:
            raise ChildError(f"{self.label} was not started")
        return self.reactor

    def when_line(self, pattern: str, timeout: float = 60.0, after: int = 0) -> "Deferred[str]":
        """
        Fire, in the reactor thread, with the first line from line number
        C{after} on that matches C{pattern}. Call it from the reactor thread.

        @return: a new Deferred; it fails with L{ChildError} when the child
            exits first or after C{timeout} seconds (a netsuite daemon's
            stacks are in the error's output then).
        """
        return self._when(re.compile(pattern), timeout, after, self.dumps_stacks)

    def _when(self, pattern: Pattern[str], timeout: float, after: int,
              dump: bool) -> "Deferred[str]":
        reactor = self._need_reactor()
        found: List[str] = []
        with self._changed:
            position = self._scan(pattern, after, found)
            if found:
                return succeed(found[0])
            if self._done:
                return fail(self._failure(pattern.pattern, timeout, True))
            waiter = _Waiter(pattern, max(after, position), lambda d: self._withdraw(waiter))
            self._waiters.append(waiter)
        waiter.timer = reactor.callLater(timeout, self._expire, waiter, timeout, dump)
        return waiter.deferred

    def _withdraw(self, waiter: _Waiter) -> bool:
        with self._changed:
            if waiter not in self._waiters:
                return False
            self._waiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        return True

    def _expire(self, waiter: _Waiter, timeout: float, dump: bool) -> None:
        if not self._withdraw(waiter):
            return  # matched, or the child ended: that outcome is on its way

        def give_up(_: object = None) -> None:
            waiter.settle(self._failure(waiter.pattern.pattern, timeout, False))
        if not (dump and self.running):
            give_up()
            return
        mark = self.line_count
        self.signal(signal.SIGUSR1)
        dumped = self._when(re.compile(STACK_MARKER), DUMP_WAIT, mark, False)
        dumped.addCallback(lambda _: deferLater(self.reactor, DUMP_SETTLE, lambda: None))
        dumped.addBoth(give_up)

    def when_ended(self) -> "Deferred[Optional[int]]":
        """
        A new Deferred firing, in the reactor thread, with the exit status
        once the child is reaped and its output read to the end, always on
        a later reactor turn: the reactor polls in between, so what the
        exit closed (its connections to this process) is seen first, even
        when the child ended long before, unnoticed by a busy reactor.
        """
        reactor = self._need_reactor()
        ended: "Deferred[Optional[int]]" = Deferred()
        with self._changed:
            if not self._done:
                self._enders.append(ended)
                return ended
        reactor.callLater(0, ended.callback, self.returncode)
        return ended


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["Child", "ChildError", "checkout_env", "signal_number", "PACKAGE_ROOT", "PYTHON",
           "TWISTD"]
