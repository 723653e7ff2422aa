# -*- test-case-name: tests.test_process -*-
"""
The services netsuite has: their config sections, and which of them a
configuration enables.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Dict, List, Mapping

from .config.schema import BASE_SECTIONS, Field

__all__ = ["SERVICES", "all_sections", "enabled_builders"]

SERVICES: Dict[str, str] = {
    "firewall": "netsuite.firewall.tap",
    "dhcp": "netsuite.dhcp.tap",
    "portal": "netsuite.portal.tap",
}
"""Service name (= its config section) -> its tap module, which exports
C{SECTION} (with an C{enabled} field) and C{serviceFromConfig}."""


def all_sections() -> Mapping[str, Mapping[str, Field]]:
    """
    The whole config schema: the process's sections and every service's.
    """
    sections = dict(BASE_SECTIONS)
    for name, module in SERVICES.items():
        sections[name] = import_module(module).SECTION
    return sections


def enabled_builders(config: Any) -> List[Any]:
    """
    C{serviceFromConfig} of each service the config enables, in table order.
    """
    return [import_module(module).serviceFromConfig for name, module in SERVICES.items()
            if getattr(config, name).enabled]
