# -*- test-case-name: tests.bus.test_peers -*-
"""
L{Peers}: how a process reaches the registries of others, by name, with a
bounded number of L{BusClient}s.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable, Dict, Optional

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger

from ..registry.interfaces import NotRunning
from .client import BusClient, socket_endpoint, socket_path

__all__ = ["Peers"]

_log = Logger()


class Peers:
    """
    Finds the registries of other processes by name: C{endpoints} maps a
    name to a client endpoint string, other names use their socket in
    C{socket_dir}. One L{BusClient} per process, made on first use.

    Bounded, since a name may come from a message: a name with no socket
    in C{socket_dir} gets no client (a send fails at once with
    L{NotRunning}; a listener or watch, which waits for the process, still
    gets one); at most C{max_clients} clients are kept, the least recently
    used one without listeners or watches making room for a new one; and a
    client without listeners or watches unused for C{idle} seconds is
    closed.
    """

    def __init__(self, reactor: Any, socket_dir: str,
                 endpoints: Optional[Dict[str, str]] = None, max_clients: int = 64,
                 idle: float = 60.0) -> None:
        self._reactor = reactor
        self._socket_dir = socket_dir
        self._endpoints = dict(endpoints or {})
        self._clients: Dict[str, BusClient] = {}  # least recently used first
        self._used: Dict[str, float] = {}
        self._max = max_clients
        self._idle = idle
        self._sweep: Any = None

    def registry_for(self, name: str) -> Any:
        """
        The registry of process C{name}: its L{BusClient}, or a stand-in
        that fails at once if it has no socket (and no endpoint).
        """
        client = self._clients.get(name)
        if client is not None:
            self._clients[name] = self._clients.pop(name)  # now the most recent
            self._used[name] = self._reactor.seconds()
            return client
        if name not in self._endpoints:
            path = socket_path(name, self._socket_dir)
            try:
                is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
            except OSError:
                is_socket = False
            if not is_socket:
                return _NoSocket(self, name, path)
        return self.client(name)

    def client(self, name: str) -> BusClient:
        """
        Process C{name}'s L{BusClient}, made if need be.

        @raise NotRunning: C{max_clients} clients all have listeners or
            watches, and there is no room for one more.
        """
        client = self._clients.get(name)
        if client is not None:
            return client
        if len(self._clients) >= self._max:
            spare = next((n for n, c in self._clients.items() if c.idle), None)
            if spare is None:
                raise NotRunning(f"cannot reach process {name}: already connected to "
                                 f"{len(self._clients)} processes, each with listeners or "
                                 "watches (the most a process keeps)")
            self._forget(spare)
        endpoint = self._endpoints.get(name) or socket_endpoint(name, self._socket_dir)
        client = self._clients[name] = BusClient(name, endpoint, self._reactor)
        self._used[name] = self._reactor.seconds()
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self._idle, self._expire)
        return client

    def _forget(self, name: str) -> None:
        del self._used[name]
        self._clients.pop(name).close()

    def _expire(self) -> None:
        """
        Close the clients without listeners or watches unused for C{idle}
        seconds; look again later while any client is left.
        """
        self._sweep = None
        now = self._reactor.seconds()
        for name in [n for n, c in self._clients.items()
                     if c.idle and now - self._used[n] >= self._idle]:
            _log.debug("closing the idle bus client of process {name}", name=name)
            self._forget(name)
        if self._clients:
            spare = [self._used[n] for n, c in self._clients.items() if c.idle]
            delay = min(spare) + self._idle - now if spare else self._idle
            self._sweep = self._reactor.callLater(max(delay, 1.0), self._expire)

    def close(self) -> "Deferred[Any]":
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        return DeferredList([c.close() for c in self._clients.values()])


class _NoSocket:
    """
    The registry of a process with no socket: a call fails at once, and
    leaves no client trying to connect; a listener or watch is put on a
    real client, to attach once the process starts.
    """

    def __init__(self, peers: Peers, name: str, path: str) -> None:
        self._peers = peers
        self.name = name
        self._path = path

    def _error(self) -> NotRunning:
        return NotRunning(f"process {self.name} is not running (no socket {self._path})")

    def send(self, address: str, message: Any = None) -> "Deferred[Any]":
        return fail(self._error())

    def describe(self, prefix: str = "/") -> "Deferred[Any]":
        return fail(self._error())

    def wait_for(self, address: str, match: Any = None,
                 timeout: Optional[float] = None) -> "Deferred[Any]":
        return fail(self._error())

    def heard(self, address: str) -> bool:
        return True

    def listen(self, address: str, fn: Optional[Callable[..., Any]] = None,
               **kw: Any) -> Any:
        return self._peers.client(self.name).listen(address, fn, **kw)

    def watch(self, address: str, fn: Callable[..., Any],
              on_attach: Optional[Callable[[], Any]] = None) -> Any:
        return self._peers.client(self.name).watch(address, fn, on_attach)
