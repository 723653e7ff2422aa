# -*- test-case-name: tests.lab.test_peers -*-
"""
The base of every lab peer: a child process inside a namespace, its output
read by a thread, readiness awaited on a printed line with a deadline, and
a stop that leaves no process and no temporary directory behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Dict, List, Optional, Sequence

from . import nsutil

# The checkout (or site-packages) holding the netsuite package, for
# "python -m netsuite.lab.<script>" children.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


class PeerError(Exception):
    """
    A peer did not start, or did not print what was awaited, in time.
    """


class Peer:
    """
    A server process run inside namespace C{netns} (the host if C{None}).

    Subclasses set C{label} and C{ready} (a regex of the line printed once
    the server listens) and implement L{prepare}.

    @ivar directory: the peer's private temporary directory, removed by
        L{stop}.
    @ivar started_in: seconds L{start} took.
    """

    label = "peer"
    ready = r"."

    def __init__(self, netns: Optional[str], address: Optional[str] = None) -> None:
        self.netns = netns
        self.address = address
        self.directory: Optional[str] = None
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.started_in: Optional[float] = None
        self._lines: List[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader: Optional[threading.Thread] = None

    def prepare(self, directory: str) -> List[str]:
        """Write configuration into C{directory}; return the argv to run."""
        raise NotImplementedError

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def host(self) -> str:
        """An address a client can connect to."""
        if self.address in (None, "", "*", "0.0.0.0"):
            return "127.0.0.1"
        return str(self.address)

    # lifecycle

    def start(self, timeout: float = 5.0) -> "Peer":
        """
        Start the server and return once it printed its ready line.

        @raise PeerError: it exited or stayed silent for C{timeout} seconds;
            nothing is left running then.
        """
        if self.process is not None:
            raise PeerError(f"{self.label} already started")
        began = time.monotonic()
        self.directory = tempfile.mkdtemp(prefix=f"netsuite-{self.label}-")
        os.chmod(self.directory, 0o755)
        try:
            argv = self.prepare(self.directory)
            self.process = subprocess.Popen(
                nsutil.ns_argv(self.netns, argv), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, env=self.env(), cwd=self.directory)
            self._reader = threading.Thread(
                target=self._read, args=(self.process.stdout,),
                name=f"{self.label}-output", daemon=True)
            self._reader.start()
            self.wait_for_line(self.ready, timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """
        SIGTERM the server (after a SIGCONT, should it be paused), SIGKILL
        it and anything it left in its process group after C{timeout}, and
        remove its directory. Safe to call twice.
        """
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGCONT)
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            # Children the server left behind share its process group.
            _signal_group(proc.pid, signal.SIGKILL)
            if self._reader is not None:
                self._reader.join(timeout)
            if proc.stdout is not None:
                proc.stdout.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, number: int) -> None:
        """Send a signal to the server process itself."""
        if self.process is None:
            raise PeerError(f"{self.label} is not running")
        self.process.send_signal(number)

    def __enter__(self) -> "Peer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # output

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def lines(self) -> List[str]:
        """Every line the server printed so far (stdout and stderr)."""
        with self._changed:
            return list(self._lines)

    def output(self) -> str:
        return "\n".join(self.lines())

    def wait_for_line(self, pattern: str, timeout: float = 5.0, after: int = 0,
                      count: int = 1) -> List[str]:
        """
        Wait until C{count} lines from line C{after} on match C{pattern}.

        @return: those lines.
        @raise PeerError: on the deadline or when the server exits first.
        """
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [x for x in self._lines[after:] if compiled.search(x)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"stayed silent for {timeout} s"
                    tail = "\n".join(self._lines[-30:])
                    raise PeerError(f"{self.label} {why} before printing {pattern!r} "
                                    f"({len(found)}/{count}); output:\n{tail}")
                self._changed.wait(remaining)

    # helpers for subclasses

    def run(self, argv: Sequence[str], input: Optional[bytes] = None,
            timeout: float = 10.0) -> "subprocess.CompletedProcess[bytes]":
        """Run a short command in the peer's namespace; raise on failure."""
        result = subprocess.run(nsutil.ns_argv(self.netns, argv), input=input,
                                capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise PeerError(f"{self.label}: {' '.join(argv)} failed "
                            f"({result.returncode}): {result.stderr.decode(errors='replace')}"
                            f"{result.stdout.decode(errors='replace')}")
        return result

    def write(self, name: str, text: str, mode: int = 0o644) -> str:
        """Write a file into the peer's directory; return its path."""
        assert self.directory is not None
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path


def _signal_group(pgid: int, number: int) -> None:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["Peer", "PeerError", "PACKAGE_ROOT", "PYTHON"]
