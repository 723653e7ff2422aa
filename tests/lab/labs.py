"""
Helpers for lab tests: a uniquely named lab removed at clean-up, and skips
that name what is missing.
"""

from __future__ import annotations

import hashlib
import os

from twisted.trial.unittest import SkipTest, TestCase

from netsuite.lab import Lab
from netsuite.lab.peers import missing


def need_root() -> None:
    if os.getuid() != 0:
        raise SkipTest(f"building network namespaces needs root (running as uid {os.getuid()})")


def need(*programs: str) -> None:
    absent = missing(*programs)
    if absent:
        raise SkipTest(f"not installed: {', '.join(absent)}")


def lab_name(test: TestCase, extra: str = "", prefix: str = "t") -> str:
    """A lab name unique to this test and this process."""
    digest = hashlib.sha1(f"{test.id()}:{os.getpid()}:{extra}".encode()).hexdigest()
    return prefix + digest[:8]


def make_lab(test: TestCase, clients: int = 2, addresses: bool = False,
             extra: str = "", ipv6: bool = False) -> Lab:
    """
    Build a lab for C{test}; it is removed at clean-up even if the test
    fails. An IPv6 lab's name starts with C{v6l}.
    """
    need_root()
    if ipv6:
        need("radvd")
    lab = Lab(lab_name(test, extra, prefix="v6l" if ipv6 else "t"), clients=clients,
              ipv6=ipv6)
    test.addCleanup(lab.down)
    return lab.up(addresses=addresses)
