# -*- test-case-name: tests.lab.test_peers -*-
"""
The base of every lab peer (L{netsuite.lab.peers}): a server run as a
L{Child} inside a namespace, with a private temporary directory, started
once it printed its ready line (bounded by a timeout), stopped leaving no
process and no directory behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Union

from . import nsutil
from .child import PYTHON, Child, ChildError

PeerError = ChildError  # the name the lab's peers have always raised


class Peer:
    """
    A server run as a L{Child} inside namespace C{netns} (the host if
    C{None}), with a private directory, started once it printed that it
    listens.

    Subclasses set C{label} and C{ready} (a regex of the line printed once
    the server listens) and implement L{prepare}.

    @ivar directory: the peer's private temporary directory, removed by
        L{stop}.
    @ivar child: the running (or last) L{Child}.
    @ivar started_in: seconds L{start} took.
    """

    label = "peer"
    ready = r"."

    def __init__(self, netns: Optional[str], address: Optional[str] = None) -> None:
        self.netns = netns
        self.address = address
        self.directory: Optional[str] = None
        self.child: Optional[Child] = None
        self.started_in: Optional[float] = None

    def prepare(self, directory: str) -> List[str]:
        """Write configuration into C{directory}; return the argv to run."""
        raise NotImplementedError

    def env(self) -> Dict[str, str]:
        """Variables to add to the server's environment (see L{checkout_env})."""
        return {}

    @property
    def host(self) -> str:
        """An address a client can connect to."""
        if self.address in (None, "", "*", "0.0.0.0"):
            return "127.0.0.1"
        return str(self.address)

    def start(self, timeout: float = 5.0) -> "Peer":
        """
        Start the server and return once it printed its ready line.

        @raise ChildError: it exited or stayed silent for C{timeout} seconds;
            nothing is left running then.
        """
        if self.directory is not None:
            raise ChildError(f"{self.label} already started")
        began = time.monotonic()
        self.directory = tempfile.mkdtemp(prefix=f"netsuite-{self.label}-")
        os.chmod(self.directory, 0o755)
        try:
            argv = self.prepare(self.directory)
            self.child = Child(argv, label=self.label, netns=self.netns, env=self.env(),
                               cwd=self.directory).start()
            self.child.wait_for_line(self.ready, timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """
        Stop the server (L{Child.stop}, C{timeout} seconds after SIGTERM)
        and remove its directory. Safe to call twice.
        """
        if self.child is not None:
            self.child.stop(timeout)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> "Peer":
        return self.start() if self.directory is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> Optional[int]:
        return self.child.pid if self.child is not None else None

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def signal(self, number: Union[int, str]) -> None:
        """Send a signal to the server process itself."""
        if self.child is None or not self.running:
            raise ChildError(f"{self.label} is not running")
        self.child.signal(number)

    def lines(self) -> List[str]:
        """Every line the server printed so far (stdout and stderr)."""
        return self.child.lines() if self.child is not None else []

    def output(self) -> str:
        return "\n".join(self.lines())

    def wait_for_line(self, pattern: str, timeout: float = 5.0, after: int = 0,
                      count: int = 1) -> List[str]:
        """L{Child.wait_for_line} on the running server."""
        if self.child is None:
            raise ChildError(f"{self.label} is not running")
        return self.child.wait_for_line(pattern, timeout, after, count)

    def run(self, argv: Sequence[str], input: Optional[bytes] = None,
            timeout: float = 10.0) -> "subprocess.CompletedProcess[bytes]":
        """Run a short command in the peer's namespace; raise on failure."""
        result = subprocess.run(nsutil.ns_argv(self.netns, argv), input=input,
                                capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise ChildError(f"{self.label}: {' '.join(argv)} failed "
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


def binary(name: str) -> str:
    """The path of the program C{name} (PATH, then the sbin directories)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}")
         if os.path.exists(p)), None)
    if path is None:
        raise PeerError(f"{name} is not installed")
    return path


def missing(*names: str) -> List[str]:
    """Which of the programs C{names} are not installed (for skips)."""
    found = []
    for name in names:
        try:
            binary(name)
        except PeerError:
            found.append(name)
    return found


__all__ = ["Peer", "PeerError", "PYTHON", "binary", "missing"]
