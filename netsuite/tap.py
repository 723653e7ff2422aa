# -*- test-case-name: tests.test_process -*-
"""
The all-in-one plugin, C{twistd netsuite}: one process with its bus, the
C{/system} mailboxes and every service whose config section says
C{enabled = true} (L{netsuite.services}).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from .config.options import ProcessOptions
from .services import build_process

__all__ = ["Options", "makeService"]


class Options(ProcessOptions):
    """
    Options of C{twistd netsuite}.
    """

    synopsis = "[--config PATH] [--name NAME] [--socket-dir DIR]"


def makeService(options: Options, reactor: Any = None) -> MultiService:
    if reactor is None:  # under twistd (a test gives its reactor)
        from .process import stdout_apart
        stdout_apart()
    return build_process(options, reactor)
