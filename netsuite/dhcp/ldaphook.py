# -*- test-case-name: tests.dhcp.test_ldap -*-
"""
The LDAP lookup as a hook process: MetaNet's glue script, beside a stock
DHCP server rather than inside it.

    python -m netsuite.dhcp.ldaphook --config /etc/netsuite.toml \\
        [--process dhcp] [--socket-dir /run/netsuite]

It reads C{[dhcp.ldap]} from the file (C{enabled} is for the in-process
lookup and is not looked at here), puts its listener first on
C{dhcp:/dhcp/lookup}, prints C{hooked} once attached, and runs until
interrupted. When the DHCP process restarts, the bus client reconnects and
re-attaches by itself; when this process dies, the server's next lookup
goes straight to its pool. With C{remember} (the default), the server
gives a cached answer again for the rest of its TTL without asking.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            PredicateResult, globalLogBeginner, textFileLogObserver)

from ..bus.client import connect
from ..config.schema import ConfigError, read_toml
from .ldap import BUS_MARGIN, LOOKUP_MAILBOX, LdapLookup, settings_from_toml

__all__ = ["load_settings", "main", "parse_args", "run"]

_log = Logger()

EXIT_USAGE = 2


def load_settings(path: str) -> SimpleNamespace:
    """
    The C{[dhcp.ldap]} settings of the TOML file at C{path}.

    @raise ConfigError: unreadable, not TOML, or a bad key (named with
        the file).
    """
    data = read_toml(path)
    return settings_from_toml(data, path)


def _quiet(event: Dict[str, Any]) -> PredicateResult:
    """
    Drop the factory start/stop lines every reconnection attempt logs.
    """
    if event.get("log_namespace", "").startswith("twisted.internet.protocol.Factory"):
        return PredicateResult.no
    return PredicateResult.maybe


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m netsuite.dhcp.ldaphook",
        description="Answer a netsuite DHCP server's /dhcp/lookup from LDAP.")
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="TOML file with a [dhcp.ldap] table")
    parser.add_argument("--process", default="dhcp",
                        help="name of the DHCP process on the bus (default: dhcp)")
    parser.add_argument("--socket-dir", default=None, metavar="DIR",
                        help="where the bus sockets are (default: $NETSUITE_SOCKET_DIR "
                        "or /run/netsuite)")
    parser.add_argument("--endpoint", default=None,
                        help="a client endpoint string instead of the socket "
                        "(tcp:host=...:port=...)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warn", "error"])
    return parser.parse_args(argv)


def main(reactor: Any, settings: Any, process: str = "dhcp",
         socket_dir: Optional[str] = None, endpoint: Optional[str] = None) -> "Deferred[None]":
    """
    Hook C{process}'s C{/dhcp/lookup}; the Deferred never fires (run until
    the reactor stops).
    """
    lookup = LdapLookup(settings, reactor)
    reactor.addSystemEventTrigger("before", "shutdown", lookup.close)
    bus = connect(process, socket_dir=socket_dir, endpoint=endpoint, reactor=reactor)
    listener = bus.listen(f"{process}:{LOOKUP_MAILBOX}", lookup.lookup, first=True,
                          tags={"hook": "ldap", "pid": os.getpid()},
                          deadline=settings.deadline + BUS_MARGIN,
                          remember_by=lookup.remember_by)

    def hooked(_: Any) -> None:
        _log.info("LDAP lookup ({url}, base {base!r}) hooked on {address}",
                  url=settings.url, base=settings.base, address=listener.address)
        print("hooked", flush=True)
    listener.attached.addCallback(hooked)
    return Deferred()


def run(argv: Optional[List[str]] = None) -> None:
    """
    The command line: check the configuration, then run L{main}.
    """
    options = parse_args(argv)
    try:
        settings = load_settings(options.config)
    except ConfigError as e:
        print(f"ldaphook: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    level = LogLevel.levelWithName(options.log_level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(level), _quiet])],
        redirectStandardIO=False)
    react(main, [settings, options.process, options.socket_dir, options.endpoint])


if __name__ == "__main__":
    run()
