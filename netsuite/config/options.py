# -*- test-case-name: tests.config.test_options -*-
"""
The command-line options every netsuite twistd plugin shares: the config
file and the overrides of its keys.
"""

from __future__ import annotations

from typing import Any, List, Mapping, NamedTuple, Optional, Tuple

from twisted.python import usage

from .schema import ConfigError, Field, bus_grants, defaults, field_at, load

__all__ = ["ProcessOptions", "Override"]


class Override(NamedTuple):
    """
    A command-line option that overrides one config key (C{--name} for
    C{process.name}); its value is checked as the key's would be.
    """

    long: str
    short: Optional[str]
    key: str
    help: str


class ProcessOptions(usage.Options):
    """
    C{--config PATH}, C{--name NAME}, C{--socket-dir DIR}.

    After parsing, C{self.config} holds the checked configuration with the
    overrides applied, and the services this process runs have checked it
    (their C{check}). This class runs what the config enables (the
    all-in-one); a service's plugin runs itself (L{netsuite.services}).
    """

    sections: Optional[Mapping[str, Mapping[str, Any]]] = None
    """The config schema; None: every installed service's
    (L{netsuite.services.all_sections})."""

    overrides: Tuple[Override, ...] = (
        Override("name", "n", "process.name", "this process's name on the bus (overrides "
                 "process.name)"),
        Override("socket-dir", "s", "bus.socket_dir", "bus socket directory (overrides "
                 "bus.socket_dir)"),
    )

    optParameters = [
        ["config", "c", None, "TOML configuration file (default: built-in defaults)"],
    ] + [[o.long, o.short, None, o.help] for o in overrides]

    config: Any = None

    def services(self) -> List[Any]:
        """
        The services (L{netsuite.services.IServicePlugin}s) this process runs.
        """
        from ..services import enabled_services
        return enabled_services(self.config)

    def postOptions(self) -> None:
        sections = self.sections
        if sections is None:
            from ..services import all_sections
            sections = all_sections()
        try:
            self.config = (load(self["config"], sections) if self["config"]
                           else defaults(sections))
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        for override in self.overrides:
            if self[override.long] is not None:
                self._override(sections, override, self[override.long])
        try:
            for service in self.services():
                service.check(self.config)
            bus_grants(self.config)  # an unknown user stops the start, not the bus
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _override(self, sections: Mapping[str, Mapping[str, Any]], override: Override,
                  text: str) -> None:
        field: Field = field_at(sections, override.key)
        value, expected = field.parse(text)
        if expected is not None:
            raise usage.UsageError(f"--{override.long}: {field.shown(text)} is not {expected}")
        *path, key = override.key.split(".")
        table = self.config
        for name in path:
            table = getattr(table, name)
        setattr(table, key, value)
