# -*- test-case-name: tests.firewall.test_owner -*-
"""
One owner of netsuite's firewall state per network namespace: an exclusive
C{flock} on a file named after the namespace (its inode, from
C{/proc/thread-self/ns/net}: the firewall's worker thread may have entered
another namespace than the process's), holding the owner's pid. The kernel
drops the lock when the owner dies, however it dies, so a crash leaves no
stale owner. Blocking calls: made from the firewall's worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Optional

from .interfaces import FirewallError

__all__ = ["FirewallOwned", "OwnerLock", "netns_key"]


class FirewallOwned(FirewallError):
    """
    Another live process owns netsuite's firewall in this namespace.
    """


def netns_key(path: str = "/proc/thread-self/ns/net") -> str:
    """
    What names the calling thread's network namespace on this host.
    """
    st = os.stat(path)
    return f"{st.st_dev}-{st.st_ino}"


class OwnerLock:
    """
    @param directory: where the lock files live (root's: C{/run/netsuite}).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path: Optional[str] = None
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """
        Take ownership, or raise L{FirewallOwned} naming the owner's pid.
        Idempotent for the owner.
        """
        if self._fd is not None:
            return
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        path = os.path.join(self.directory, f"firewall-netns-{netns_key()}.lock")
        for _ in range(3):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise FirewallOwned(
                    f"another netsuite firewall (pid {holder}) owns the firewall of this "
                    f"network namespace ({path}); stop it first") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
                self._fd, self.path = fd, path
                return
            os.close(fd)  # the owner removed it as we opened it: again
        raise FirewallOwned(f"could not take {path}: it keeps being replaced")

    def release(self) -> None:
        """
        Give up ownership (remove the file first, so nobody locks a file
        that is going away without noticing).
        """
        if self._fd is None:
            return
        fd, path, self._fd, self.path = self._fd, self.path, None, None
        try:
            os.unlink(path)  # type: ignore[arg-type]
        except FileNotFoundError:
            pass
        os.close(fd)
