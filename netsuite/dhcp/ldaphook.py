# -*- test-case-name: tests.dhcp.test_ldap -*-
"""
The LDAP lookup as a hook process: MetaNet's glue script, beside a stock
DHCP server rather than inside it.

    python -m netsuite.dhcp.ldaphook --config /etc/netsuite.toml \\
        [--process NAME] [--socket-dir DIR] [--endpoint ENDPOINT]

It reads the same file as the daemon, checked as the daemon checks it, and
finds the daemon where the daemon listens: process C{process.name} in
C{bus.socket_dir} (or at C{bus.peers[name]}), unless the flags say
otherwise (a daemon started with C{--name dhcp} needs C{--process dhcp}).
It takes C{[dhcp.ldap]} (C{enabled} is for the in-process lookup and is
not looked at here), puts its listener first on C{NAME:/dhcp/lookup},
prints C{hooked} once attached, and runs until interrupted. It logs which
socket it is trying and, while it cannot connect, why. When the DHCP
process restarts, the bus client reconnects and re-attaches by itself;
when this process dies, the server's next lookup goes straight to its
pool. With C{remember} (the default), the server gives a cached answer
again for the rest of its TTL without asking.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import (FilteringLogObserver, Logger, LogLevel, LogLevelFilterPredicate,
                            PredicateResult, globalLogBeginner, textFileLogObserver)

from ..bus.client import connect, socket_endpoint
from ..config.schema import ConfigError, load
from ..registry.interfaces import PROCESS_NAME_RE
from .ldap import BUS_MARGIN, LOOKUP_MAILBOX, LdapLookup

__all__ = ["load_config", "load_settings", "target", "main", "parse_args", "run"]

_log = Logger()

EXIT_USAGE = 2


def load_config(path: str) -> SimpleNamespace:
    """
    The configuration in the TOML file at C{path}, checked with the schema
    the daemon uses (every installed service's sections), defaults filled in.

    @raise ConfigError: unreadable, not TOML, or a bad key (named with
        the file).
    """
    from ..services import all_sections
    return load(path, all_sections())


def load_settings(path: str) -> SimpleNamespace:
    """
    The C{[dhcp.ldap]} settings of the TOML file at C{path} (L{load_config}).
    """
    return load_config(path).dhcp.ldap  # type: ignore[no-any-return]


def target(config: Any, options: argparse.Namespace) -> Tuple[str, str, str]:
    """
    C{(process, endpoint, why)}: the DHCP process to hook, the client
    endpoint of its bus, and where they came from (for the log). The flags
    win; else the config's C{process.name}, and its C{bus.peers} entry or
    socket in C{bus.socket_dir}, as the daemon itself has them.

    @raise ConfigError: C{--process} is not a process name.
    """
    if options.process is not None and not PROCESS_NAME_RE.match(options.process):
        raise ConfigError(f"--process {options.process!r}: expected a process name "
                          "(letters, digits, '_', '.', '-')")
    process = options.process or config.process.name
    named = "--process" if options.process else "process.name"
    if options.endpoint:
        return process, options.endpoint, f"{named}, --endpoint"
    if options.socket_dir:
        return process, socket_endpoint(process, options.socket_dir), f"{named}, --socket-dir"
    peer = config.bus.peers.get(process)
    if peer:
        return process, peer, f"{named}, bus.peers"
    return process, socket_endpoint(process, config.bus.socket_dir), f"{named}, bus.socket_dir"


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
                        help="the daemon's TOML file, with a [dhcp.ldap] table")
    parser.add_argument("--process", default=None, metavar="NAME",
                        help="name of the DHCP process on the bus (default: process.name "
                        "of the file, as the daemon; give the daemon's --name if it has one)")
    parser.add_argument("--socket-dir", default=None, metavar="DIR",
                        help="where the bus sockets are (default: bus.socket_dir of the "
                        "file, as the daemon)")
    parser.add_argument("--endpoint", default=None,
                        help="a client endpoint string instead of the socket "
                        "(tcp:host=...:port=...; default: bus.peers[NAME] of the file, if "
                        "there)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warn", "error"])
    return parser.parse_args(argv)


def main(reactor: Any, settings: Any, process: str, endpoint: str,
         why: str = "") -> "Deferred[None]":
    """
    Hook C{process}'s C{/dhcp/lookup} at C{endpoint} (chosen by L{target},
    for the reasons C{why}); the Deferred never fires (run until the
    reactor stops).
    """
    lookup = LdapLookup(settings, reactor)
    reactor.addSystemEventTrigger("before", "shutdown", lookup.close)
    _log.info("hooking {process}:{mailbox} at {endpoint}{why}", process=process,
              mailbox=LOOKUP_MAILBOX, endpoint=endpoint, why=f" (from {why})" if why else "")
    bus = connect(process, endpoint=endpoint, reactor=reactor)
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
        config = load_config(options.config)
        process, endpoint, why = target(config, options)
    except ConfigError as e:
        print(f"ldaphook: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    level = LogLevel.levelWithName(options.log_level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(level), _quiet])],
        redirectStandardIO=False)
    react(main, [config.dhcp.ldap, process, endpoint, why])


if __name__ == "__main__":
    run()
