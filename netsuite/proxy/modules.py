# -*- test-case-name: tests.proxy.test_modules -*-
"""
Protocol modules found by name.

A protocol module is a L{netsuite.proxy.filters.MakeFilters}: given a new
connection, it returns its (client to server, server to client) filters.
The config names modules (C{modules = ["imap"]}); L{find} turns a name
into the callable, importing its module only then, so that a proxy
instance loads only what it runs. A name is one of L{MODULES} or a dotted
path C{"package.module:function"} (an operator's own module, or a test's).
"""

from __future__ import annotations

import importlib
from typing import Dict, Mapping, Tuple

from .filters import Connection, MakeFilters, Step

__all__ = ["MODULES", "UnknownModule", "find", "find_all", "relay", "Passed"]

MODULES: Mapping[str, str] = {
    "imap": "netsuite.mailproxy.imap:imap",
    "pop3": "netsuite.mailproxy.pop3:pop3",
    "relay": "netsuite.proxy.modules:relay",
    "tls": "netsuite.mailproxy.tls:tls_login",
}
"""The modules netsuite knows by name, and where each one lives."""


class UnknownModule(ValueError):
    """A module name that is not known, or whose code cannot be loaded."""


class Passed:
    """A filter that inspects nothing: done from the start."""

    done = True

    def feed(self, data: bytes) -> Step:
        return Step(data)

    def end(self) -> Step:
        return Step()


def relay(conn: Connection) -> Tuple[Passed, Passed]:
    """
    The module that inspects nothing: its connections are relayed (in the
    kernel, where it can) from the first byte.
    """
    return Passed(), Passed()


def find(name: str, known: Mapping[str, str] = MODULES) -> MakeFilters:
    """
    The module called C{name}: one of C{known}, or a dotted path
    C{"package.module:function"}.

    @raise UnknownModule: when there is no such module, or it cannot be
        imported (the message says which and why).
    """
    path = known.get(name, name if ":" in name else None)
    if path is None:
        raise UnknownModule(f"unknown proxy module {name!r} (known: {', '.join(sorted(known))}; "
                            f"or give package.module:function)")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UnknownModule(f"proxy module {name!r}: cannot import {module_name}: {e}") from e
    found = getattr(module, attribute, None)
    if not callable(found):
        raise UnknownModule(f"proxy module {name!r}: {module_name} has no callable {attribute!r}")
    return found  # type: ignore[no-any-return]


def find_all(names: "list[str] | tuple[str, ...]",
             known: Mapping[str, str] = MODULES) -> Dict[str, MakeFilters]:
    """L{find} for each name, in order (a config check: every name resolves)."""
    return {name: find(name, known) for name in names}
