# -*- test-case-name: tests.test_process -*-
"""
One netsuite process: its registry, its bus, its C{/system} mailboxes, its
logging, and whatever services its configuration enables.

Every twistd plugin builds its process with L{make_process_service}: a
service's plugin passes itself, the all-in-one plugin the services the
config enables (L{netsuite.services}).
"""

from __future__ import annotations

import faulthandler
import gc
import math
import os
import signal
import stat
import sys
from typing import Any, Dict, Iterable, List, Optional, TextIO

from twisted.application.service import MultiService, Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import (FileLogObserver, FilteringLogObserver, LogLevel,
                            LogLevelFilterPredicate, Logger, eventAsJSON, globalLogPublisher)
from twisted.logger._flatten import flattenEvent

from .bus.peers import Peers
from .bus.permissions import Permissions
from .bus.server import BusServerFactory
from .clock import ClockWatchService
from .config.schema import bus_grants
from .privileges import KeepCapabilities, UidSwitch
from .registry.registry import Registry
from .system import LogToMailbox, install_system_mailboxes

__all__ = ["make_process_service", "bus_endpoint", "json_log_line", "loggable", "StartInOrder"]

_log = Logger(namespace="netsuite.process")



def bus_endpoint(config: Any) -> str:
    """
    The server endpoint string of this process's bus socket.
    """
    path = os.path.join(config.bus.socket_dir, f"{config.process.name}.sock")
    escaped = path.replace("\\", "\\\\").replace(":", "\\:")
    return f"unix:{escaped}:mode={config.bus.socket_mode}:lockfile=1"


class SocketDirectory(Service):
    """
    Makes the bus socket directory (mode 0755) before the bus listens, and
    refuses one that another user owns or that group or others may write
    to (sticky or not): whoever may put a socket there could stand in for
    a process, and clients trust a socket in a directory of root's or ours.

    Under C{twistd --uid} (C{switch}) the daemon is that uid once started
    and writes there then (its socket's lock at stop, the firewall's owner
    lock): the directory must be that uid's; one it makes, it gives to it.
    """

    def __init__(self, path: str, switch: Optional[UidSwitch] = None) -> None:
        self.path = path
        self.switch = switch

    def privilegedStartService(self) -> None:
        made = not os.path.isdir(self.path)
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        if made and self.switch is not None:
            os.chown(self.path, self.switch.uid, self.switch.gid)
        info = os.stat(self.path)
        if self.switch is not None and info.st_uid != self.switch.uid:
            raise RuntimeError(f"bus.socket_dir {self.path} is owned by uid {info.st_uid}; "
                               f"twistd --uid runs the daemon as uid {self.switch.uid} after "
                               f"start, and it writes there: make the directory owned by "
                               f"uid {self.switch.uid}")
        if self.switch is None and info.st_uid not in (0, os.geteuid()):
            raise RuntimeError(f"bus.socket_dir {self.path} is owned by uid {info.st_uid}; "
                               f"it must be owned by root or by the daemon (uid "
                               f"{os.geteuid()})")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RuntimeError(f"bus.socket_dir {self.path} is writable by group or "
                               "others; make it 0755")
        Service.privilegedStartService(self)


class BusListener(Service):
    """
    Serves the registry on one server endpoint; logs "bus ready" once bound.
    Under C{twistd --uid} (C{switch}) a Unix socket, bound as root, is
    given to that uid and gid: the other processes, which run as that uid
    too, may then connect (the socket's mode is C{bus.socket_mode}).
    """

    def __init__(self, reactor: Any, description: str, factory: BusServerFactory,
                 switch: Optional[UidSwitch] = None) -> None:
        self.reactor = reactor
        self.description = description
        self.factory = factory
        self.switch = switch
        self.port: Any = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        endpoint = serverFromString(self.reactor, self.description)
        self._listening = endpoint.listen(self.factory)

        def listening(port: Any) -> None:
            self.port = port
            if self.switch is not None:
                path = getattr(port.getHost(), "name", None)  # a Unix socket's
                if isinstance(path, (str, bytes)):
                    os.chown(path, self.switch.uid, self.switch.gid)
            _log.info("bus ready: {process} listening on {endpoint}",
                      process=self.factory.registry.name, endpoint=self.description,
                      netsuite_event="ready")

        def failed(failure: Any) -> None:
            _log.failure("bus cannot listen on {endpoint}", failure,
                         endpoint=self.description)
            if self.reactor.running:
                self.reactor.stop()
        self._listening.addCallbacks(listening, failed)

    def stopService(self) -> Any:
        Service.stopService(self)
        if self.port is not None:
            return self.port.stopListening()
        return None


_JSON_SCALARS = (str, int, bool, type(None))
_KEPT_TYPED = frozenset(["log_level", "log_failure"])  # Twisted's JSON keeps these itself


def loggable(value: Any, depth: int = 0) -> Any:
    """
    C{value} as JSON can carry it: addresses, MACs, networks and any other
    object as their text, containers element by element (nested at most
    8 deep, deeper as text), bytes decoded (undecodable bytes escaped).
    """
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if depth < 8:
        if isinstance(value, dict):
            return {str(key): loggable(item, depth + 1) for key, item in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [loggable(item, depth + 1) for item in value]
    return str(value)


def json_log_line(event: Dict[str, Any]) -> str:
    """
    One log event as a line of JSON with every field of it: what Twisted's
    C{eventAsJSON} writes, but with typed values (an IP, a MAC) as their
    text rather than C{{"unpersistable": true}}. C{event} is not changed.
    """
    flat = dict(event)
    flattenEvent(flat)  # the text of each format field, from the objects themselves
    plain = {key: value if key in _KEPT_TYPED else loggable(value)
             for key, value in flat.items() if key != "log_logger"}
    return eventAsJSON(plain) + "\n"


def standard_output() -> TextIO:
    """
    A text file on a copy of file descriptor 1, the process's real standard
    output: under twistd C{sys.stdout} is the log itself, and a log observer
    writing to it would log each of its lines again, without end.
    """
    return os.fdopen(os.dup(1), "a", encoding="utf-8", buffering=1)


def stdout_apart() -> None:
    """
    Make C{sys.stdout} write to a copy of file descriptor 1, before twistd
    opens its log on it. python-iptables reads a rule's match and target
    parameters by pointing descriptor 1 at a pipe for a moment (in the
    firewall's thread): a log line written through descriptor 1 meanwhile
    went into that pipe, so the rule read back wrong ("chain filter/NS-FORWARD
    has other rules", the chain flushed and refilled), or, once the pipe
    was closed, failed with BrokenPipeError ("Temporarily disabling
    observer", the line lost); the soak saw both. The copy keeps pointing
    at the real standard output.
    """
    if getattr(sys.stdout, "netsuite_apart", False):
        return
    sys.stdout.flush()
    sys.stdout = standard_output()
    sys.stdout.netsuite_apart = True  # type: ignore[attr-defined]


class LogService(Service):
    """
    Adds this process's log observers: JSON lines to a file (C{"-"}: the
    process's standard output file descriptor), and the C{/system/log}
    stream, both from C{log.level} up.
    """

    def __init__(self, registry: Registry, level: str, json_file: str) -> None:
        self.registry = registry
        self.level = LogLevel.levelWithName(level)
        self.json_file = json_file
        self._observers: List[Any] = []
        self._file: Any = None

    def privilegedStartService(self) -> None:
        # first of the process's services: the start-up of the others is logged
        # too, and a log file is opened before twistd gives up root
        Service.privilegedStartService(self)
        self._begin()

    def startService(self) -> None:
        Service.startService(self)
        self._begin()

    def _begin(self) -> None:
        if self._observers:
            return
        self._observers.append(LogToMailbox(self.registry, self.level))
        if self.json_file:
            if self.json_file == "-":
                self._file = standard_output()
            else:
                self._file = open(self.json_file, "a", encoding="utf-8")
            predicate = LogLevelFilterPredicate(defaultLogLevel=self.level)
            lines = FileLogObserver(self._file, json_log_line)  # JSON lines, not RFC 7464
            self._observers.append(FilteringLogObserver(lines, [predicate]))
        for observer in self._observers:
            globalLogPublisher.addObserver(observer)

    def stopService(self) -> None:
        Service.stopService(self)
        for observer in self._observers:
            globalLogPublisher.removeObserver(observer)
        self._observers.clear()
        if self._file is not None:
            self._file.close()
            self._file = None


class StackDumps(Service):
    """
    C{kill -USR1 PID} writes every thread's Python stack to the process's
    standard error: what a hung daemon is doing, without a debugger.
    """

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        # The real stderr: twistd later swaps sys.stderr for a log file object.
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)

    def stopService(self) -> None:
        Service.stopService(self)
        faulthandler.unregister(signal.SIGUSR1)


def _when_ready(service: Any) -> Any:
    """
    A Deferred firing once C{service} is ready: its own C{when_ready()},
    else (a collection) once every service in it that says is; None when
    nothing says.
    """
    when_ready = getattr(service, "when_ready", None)
    if when_ready is not None:
        return when_ready()
    if isinstance(service, MultiService):
        inner = [d for d in (_when_ready(child) for child in service) if d is not None]
        if inner:
            return gatherResults(inner)
    return None


class StartInOrder(MultiService):
    """
    Starts its services one after the other, each once the one before it is
    ready (its C{when_ready()}, if it has one, has fired: see
    L{netsuite.services.Readiness}): in the all-in-one, nothing answers
    clients before the firewall is in place, and the portal does not take
    logins before DHCP is up. Sockets are
    still bound, in order, in C{privilegedStartService}. A service that
    never gets ready (it failed: it stops the reactor) holds back the rest.
    """

    def startService(self) -> None:
        Service.startService(self)  # not MultiService's: it would start them all at once
        self._start(list(self))

    def _start(self, left: List[Any]) -> None:
        while left and self.running:
            service = left.pop(0)
            service.startService()
            ready = _when_ready(service)
            if ready is not None and not ready.called:
                # stopped meanwhile: _start starts no more (running is false)
                ready.addCallback(lambda _: self._start(left))
                return

    def stopService(self) -> Any:
        Service.stopService(self)
        stopping = [maybeDeferred(service.stopService)
                    for service in reversed(list(self)) if service.running]
        return gatherResults(stopping)


def settle_heap() -> None:
    """
    Move everything alive now out of the cyclic collector's reach
    (C{gc.freeze}), and collect the young generation less often. Call it
    once a service has loaded its long-lived state (the DHCP server's
    leases): a full collection would otherwise walk every one of those
    objects, a pause of tens of milliseconds every few thousand requests,
    long enough to overflow a socket buffer at a few thousand packets/s.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10000, 10, 10)


def make_process_service(config: Any, reactor: Any, services: Iterable[Any] = (),
                         switch: Optional[UidSwitch] = None) -> MultiService:
    """
    Assemble (not start) a process: registry, bus listeners, C{/system}
    mailboxes, logging, and C{services} (L{netsuite.services.IServicePlugin}s),
    built and started in the order given; under C{twistd --uid} (C{switch},
    L{netsuite.privileges.twistd_switch}) it keeps the capabilities those
    services declare (L{KeepCapabilities}), and no more.
    """
    services = list(services)
    peers = Peers(reactor, config.bus.socket_dir, config.bus.peers)
    registry = Registry(config.process.name, reactor, peers=peers,
                        default_deadline=config.bus.default_deadline)
    install_system_mailboxes(registry, reactor)

    top = StartInOrder()
    top.registry = registry  # type: ignore[attr-defined]
    LogService(registry, config.log.level, config.log.json_file).setServiceParent(top)
    # first to start after twistd's uid switch: the others start with what it keeps
    KeepCapabilities(frozenset().union(*(p.capabilities for p in services))
                     ).setServiceParent(top)
    StackDumps().setServiceParent(top)
    ClockWatchService(reactor).setServiceParent(top)
    SocketDirectory(config.bus.socket_dir, switch).setServiceParent(top)
    # the daemon's own uid is the one it runs as once started (twistd --uid)
    own = (os.getuid(),) if switch is None else (os.getuid(), switch.uid)
    permissions = Permissions(bus_grants(config), trusted_uids=(0,) + own)
    factory = BusServerFactory(registry, config.bus.allowed_uids, permissions=permissions,
                               clock=reactor)
    for description in [bus_endpoint(config)] + list(config.bus.listen):
        BusListener(reactor, description, factory, switch).setServiceParent(top)
    for plugin in services:
        service = plugin.service_from_config(config, registry, reactor)
        if service is not None:
            service.setServiceParent(top)
    return top
