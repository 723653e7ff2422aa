# -*- test-case-name: tests.config.test_options -*-
"""
The command-line options every netsuite twistd plugin shares.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from twisted.python import usage

from ..registry.interfaces import PROCESS_NAME_RE
from .schema import ConfigError, Field, defaults, load

__all__ = ["ProcessOptions"]


class ProcessOptions(usage.Options):
    """
    C{--config PATH}, C{--name NAME}, C{--socket-dir DIR}.

    After parsing, C{self.config} holds the checked configuration with the
    overrides applied. A service's plugin subclasses this and sets
    C{sections} to add its own config sections.
    """

    sections: Optional[Mapping[str, Mapping[str, Field]]] = None
    """The config schema; None: every service's (L{netsuite.services.all_sections})."""

    optParameters = [
        ["config", "c", None, "TOML configuration file (default: built-in defaults)"],
        ["name", "n", None, "this process's name on the bus (overrides process.name)"],
        ["socket-dir", "s", None, "bus socket directory (overrides bus.socket_dir)"],
    ]

    config: Any = None

    def postOptions(self) -> None:
        from ..services import all_sections
        sections = self.sections if self.sections is not None else all_sections()
        try:
            self.config = (load(self["config"], sections) if self["config"]
                           else defaults(sections))
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        if self["name"] is not None:
            if not PROCESS_NAME_RE.match(self["name"]):
                raise usage.UsageError(f"--name: {self['name']!r} is not a process name "
                                       "(letters, digits, '_', '.', '-')")
            self.config.process.name = self["name"]
        if self["socket-dir"] is not None:
            self.config.bus.socket_dir = self["socket-dir"]
