# -*- test-case-name: tests.test_process -*-
"""
The all-in-one plugin, C{twistd netsuite}: one process with its bus, the
C{/system} mailboxes and every service the configuration enables.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from .config.options import ProcessOptions
from .process import make_process_service
from .services import enabled_builders

__all__ = ["Options", "makeService"]


class Options(ProcessOptions):
    """
    Options of C{twistd netsuite}.
    """

    synopsis = "[--config PATH] [--name NAME] [--socket-dir DIR]"


def makeService(options: Options, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    return make_process_service(options.config, reactor, enabled_builders(options.config))
