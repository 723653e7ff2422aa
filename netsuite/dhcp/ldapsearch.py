# -*- test-case-name: tests.dhcp.test_ldap -*-
"""
The blocking side of the LDAP lookup: ldap3 searches run in worker
threads, one connection per thread, each bounded by a deadline that covers
connect, bind and search together (a hung server accepts TCP and never
answers). L{netsuite.dhcp.ldap} drives them from the reactor.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional, Set, Tuple

import ldap3
from ldap3.utils.conv import escape_filter_chars
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..registry.values import MAC

__all__ = ["Entry", "MAX_ENTRIES", "DirectoryError", "Directory", "ThreadRunner",
           "open_connection", "search_filter", "server_address"]

MAX_ENTRIES = 8
"""Entries asked for per search: enough to see that a MAC is ambiguous."""

Entry = Tuple[str, Tuple[str, ...], Optional[str]]
"""One directory entry: DN, its address values, its host name or None."""


def server_address(url: str) -> Tuple[str, int, bool]:
    """
    C{(host, port, tls)} of an C{ldap://} or C{ldaps://} URL; a DN after the
    host, if any, is ignored (the C{base} key says where to search).
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(url)
    tls = parts.scheme.lower() == "ldaps"
    return parts.hostname, parts.port or (636 if tls else 389), tls


def search_filter(template: str, mac: Any) -> str:
    """
    The search filter for C{mac} (a L{MAC} or its text): C{{mac}} in
    C{template} becomes the lower-case colon form (C{aa:bb:cc:dd:ee:ff},
    RFC 2307's), escaped.
    """
    return template.format(mac=escape_filter_chars(str(MAC(mac))))


class DirectoryError(Exception):
    """
    The directory answered with an error (bad credentials, no such base).
    """


def open_connection(settings: Any, timeout: float) -> Any:
    """
    A new ldap3 connection to C{settings.url}, open (connected), not bound;
    blocks up to C{timeout} seconds. A fresh L{ldap3.Server} each time, so
    that ldap3's memory of an unreachable server never outlives a retry.
    """
    host, port, tls = server_address(settings.url)
    # ldap3 does not check an ldaps:// certificate unless told to.
    server = ldap3.Server(host, port=port, use_ssl=tls, get_info=ldap3.NONE,
                          tls=ldap3.Tls(validate=ssl.CERT_REQUIRED, sni=host) if tls else None,
                          connect_timeout=timeout)
    # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds (a float
    # raises); Directory narrows the socket timeout before each operation.
    connection = ldap3.Connection(
        server, user=settings.bind_dn or None, password=settings.password or None,
        receive_timeout=max(1, math.ceil(timeout)), auto_bind=ldap3.AUTO_BIND_NONE,
        client_strategy=ldap3.SYNC, read_only=True, raise_exceptions=False,
        check_names=False)
    connection.open()
    return connection


def _remaining(end: float) -> float:
    return end - time.monotonic()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Directory:
    """
    The blocking searches, run in worker threads: one connection per
    thread, reused, dropped after any error.

    @param open_connection: C{(settings, timeout) -> connection}, an open
        ldap3 connection (a C{MOCK_SYNC} one in tests).
    """

    def __init__(self, settings: Any,
                 open_connection: Callable[[Any, float], Any] = open_connection) -> None:
        self._settings = settings
        self._open = open_connection
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: Set[Any] = set()

    def search(self, mac: str, budget: float) -> Tuple[Entry, ...]:
        """
        The entries for C{mac}, within C{budget} seconds (connect, bind and
        search together). A reused connection that fails (the server
        restarted) is replaced and the search tried once more.
        """
        end = time.monotonic() + budget
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            try:
                return self._query(connection, mac, end)
            except DirectoryError:
                raise
            except Exception:
                self._drop(connection)
                if _remaining(end) <= 0:
                    raise
        connection = self._connect(end)
        try:
            return self._query(connection, mac, end)
        except DirectoryError:
            raise
        except Exception:
            self._drop(connection)
            raise

    def _connect(self, end: float) -> Any:
        remaining = _remaining(end)
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        connection = self._open(self._settings, remaining)
        with self._lock:
            self._connections.add(connection)
        try:
            if self._settings.bind_dn:
                self._narrow(connection, end)
                if not connection.bind():
                    raise DirectoryError(f"bind as {self._settings.bind_dn} refused: "
                                         f"{connection.result.get('description')}")
        except Exception:
            self._drop(connection)
            raise
        self._local.connection = connection
        return connection

    def _narrow(self, connection: Any, end: float) -> None:
        """
        Let the next socket operation wait no longer than C{end}.
        """
        remaining = _remaining(end)
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        sock = getattr(connection, "socket", None)
        if sock is not None:
            sock.settimeout(remaining)

    def _query(self, connection: Any, mac: str, end: float) -> Tuple[Entry, ...]:
        settings = self._settings
        wanted = [settings.address_attribute]
        if settings.hostname_attribute:
            wanted.append(settings.hostname_attribute)
        self._narrow(connection, end)
        connection.search(settings.base, search_filter(settings.filter, mac), ldap3.SUBTREE,
                          attributes=wanted, size_limit=MAX_ENTRIES,
                          time_limit=max(1, math.ceil(_remaining(end))))
        result = connection.result or {}
        if result.get("result") not in (0, 4):  # success, sizeLimitExceeded
            raise DirectoryError(f"search under {settings.base!r} failed: "
                                 f"{result.get('description')} {result.get('message') or ''}"
                                 .rstrip())
        entries = []
        for item in connection.response or ():
            if item.get("type") != "searchResEntry":
                continue  # a referral: not followed
            raw = {name.lower(): values for name, values in item["raw_attributes"].items()}
            addresses = tuple(_text(v) for v in raw.get(settings.address_attribute.lower(), ()))
            names = raw.get(settings.hostname_attribute.lower(), ()) \
                if settings.hostname_attribute else ()
            entries.append((item.get("dn", ""), addresses, _text(names[0]) if names else None))
        return tuple(entries)

    def _drop(self, connection: Any) -> None:
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            self._connections.discard(connection)
        _unbind(connection)

    def close(self) -> None:
        """
        Close every connection; call once no search runs (the pool stopped).
        """
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _unbind(connection)


def _unbind(connection: Any) -> None:
    try:
        connection.unbind()
    except Exception:
        pass


class ThreadRunner:
    """
    Runs blocking calls in a pool of at most C{threads} threads, started on
    first use and stopped at reactor shutdown (or by L{stop}).
    """

    def __init__(self, reactor: Any, threads: int, name: str = "netsuite-ldap") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name=name)
        self._trigger: Any = None
        self._stopped = False

    def __call__(self, fn: Callable[..., Any], *args: Any) -> "Deferred[Any]":
        if self._stopped:
            raise RuntimeError("the LDAP thread pool is stopped")
        if self._trigger is None:
            self._pool.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    def stop(self) -> None:
        """
        Stop the pool; waits for running calls (each bounded by its deadline).
        """
        self._stopped = True
        if self._trigger is not None:
            trigger, self._trigger = self._trigger, None
            try:
                self._reactor.removeSystemEventTrigger(trigger)
            except (ValueError, KeyError):
                pass  # already running as the trigger
            self._pool.stop()
