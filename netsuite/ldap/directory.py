# -*- test-case-name: tests.ldap.test_contract -*-
"""
The real directory: ldap3 synchronous connections, one reused per thread
for searches, a fresh one per bind, each request bounded by a deadline
that covers connect, bind and the operation together (a hung server
accepts TCP and never answers: a connect timeout alone waits forever).
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Optional, Sequence, Set, Tuple

import ldap3
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from zope.interface import implementer

from .interfaces import REFUSED_BIND_CODES, DirectoryError, Entry, IDirectory, result_code

__all__ = ["LdapDirectory", "open_connection", "server_address", "url_error",
           "escape_filter_value", "escape_dn_value"]

Opener = Callable[[str, str, str, float], Any]
"""C{(url, user, password, timeout) -> connection}: open (connected), not bound."""


def server_address(url: str) -> Tuple[str, int, bool]:
    """
    C{(host, port, tls)} of an C{ldap://} or C{ldaps://} URL; a DN after the
    host, if any, is ignored (the caller says where to search).

    @raise ValueError: not such a URL.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(url)
    tls = parts.scheme.lower() == "ldaps"
    return parts.hostname, parts.port or (636 if tls else 389), tls


def url_error(value: str) -> Optional[str]:
    """
    A config check: None for an C{ldap://} or C{ldaps://} URL, else what
    was expected.
    """
    try:
        server_address(value)
    except ValueError:
        return "an ldap:// or ldaps:// URL such as \"ldap://127.0.0.1:389\""
    return None


def escape_filter_value(text: str) -> str:
    """
    C{text} as a value inside a search filter (RFC 4515: C{*()\\} and NUL
    escaped), so that it matches itself only.
    """
    return escape_filter_chars(text)  # type: ignore[no-any-return]


def escape_dn_value(text: str) -> str:
    """
    C{text} as an attribute value in a DN (RFC 4514), so that a user name
    such as C{"a,ou=admins"} stays one value.
    """
    return escape_rdn(text)  # type: ignore[no-any-return]


def open_connection(url: str, user: str, password: str, timeout: float) -> Any:
    """
    A new ldap3 connection to C{url}, open (connected), not bound; blocks
    up to C{timeout} seconds. A fresh L{ldap3.Server} each time, so that
    ldap3's memory of an unreachable server never outlives a retry; an
    C{ldaps://} certificate is checked (ldap3 does not unless told to).
    """
    host, port, tls = server_address(url)
    server = ldap3.Server(host, port=port, use_ssl=tls, get_info=ldap3.NONE,
                          tls=ldap3.Tls(validate=ssl.CERT_REQUIRED, sni=host) if tls else None,
                          connect_timeout=timeout)
    # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds (a float
    # raises); each operation narrows the socket's timeout to what is left.
    connection = ldap3.Connection(
        server, user=user or None, password=password or None,
        authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
        receive_timeout=max(1, math.ceil(timeout)), auto_bind=ldap3.AUTO_BIND_NONE,
        client_strategy=ldap3.SYNC, read_only=True, raise_exceptions=False,
        check_names=False)
    connection.open()
    return connection


def _remaining(end: float) -> float:
    return end - time.monotonic()


def _narrow(connection: Any, end: float) -> None:
    """
    Let the connection's next socket operation wait no longer than C{end}.
    """
    remaining = _remaining(end)
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock = getattr(connection, "socket", None)
    if sock is not None:
        sock.settimeout(remaining)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _unbind(connection: Any) -> None:
    try:
        connection.unbind()
    except Exception:
        pass


def _abort(connection: Any) -> None:
    """
    Shut down the connection's socket, without its lock (which the thread
    using it holds): a thread blocked on it (a hung server) wakes with an
    error at once and drops the connection itself.
    """
    sock = getattr(connection, "socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@implementer(IDirectory)
class LdapDirectory:
    """
    The directory at C{url}, searched as C{bind_dn} (or anonymously): one
    search connection per thread, reused, dropped after any error.

    @param open_connection: how connections are opened (L{open_connection};
        the fake gives in-memory ones).
    """

    def __init__(self, url: str, bind_dn: str = "", password: str = "",
                 open_connection: Opener = open_connection) -> None:
        server_address(url)
        self.url = url
        self.bind_dn = bind_dn
        self._password = password
        self._open = open_connection
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: Set[Any] = set()
        self._busy: Set[Any] = set()  # of those, the ones a thread is using now

    # searches

    def search(self, base: str, filter: str, attributes: Sequence[str], limit: int,
               budget: float) -> Tuple[Entry, ...]:
        """
        See L{IDirectory.search}. A reused connection that fails (the
        server restarted) is replaced and the search tried once more; one
        cut by L{close} is not.
        """
        end = time.monotonic() + budget
        reused = getattr(self._local, "connection", None)
        while True:
            connection = reused if reused is not None else self._connect(end)
            self._use(connection, True)
            try:
                return self._query(connection, base, filter, attributes, limit, end)
            except DirectoryError:
                raise
            except Exception:
                with self._lock:
                    closed = connection not in self._connections  # cut by close()
                self._drop(connection)
                if closed or reused is None or _remaining(end) <= 0:
                    raise
            finally:
                self._use(connection, False)
            reused = None  # the reused one failed: once more on a new one

    def _connect(self, end: float) -> Any:
        remaining = _remaining(end)
        if remaining <= 0:
            raise TimeoutError("no time left to connect")
        connection = self._open(self.url, self.bind_dn, self._password, remaining)
        with self._lock:
            self._connections.add(connection)
            self._busy.add(connection)  # binding
        try:
            if self.bind_dn:
                _narrow(connection, end)
                if not connection.bind():
                    raise DirectoryError(f"bind as {self.bind_dn} refused: "
                                         f"{connection.result.get('description')}")
        except Exception:
            self._drop(connection)
            raise
        self._local.connection = connection
        return connection

    def _query(self, connection: Any, base: str, filter: str, attributes: Sequence[str],
               limit: int, end: float) -> Tuple[Entry, ...]:
        _narrow(connection, end)
        connection.search(base, filter, ldap3.SUBTREE, attributes=list(attributes),
                          size_limit=limit, time_limit=max(1, math.ceil(_remaining(end))))
        result = connection.result or {}
        if result.get("result") not in (0, 4):  # success, sizeLimitExceeded
            raise DirectoryError(f"search under {base!r} failed: "
                                 f"{result.get('description')} {result.get('message') or ''}"
                                 .rstrip())
        entries = []
        for item in connection.response or ():
            if item.get("type") != "searchResEntry":
                continue  # a referral: not followed
            values = {name.lower(): tuple(_text(v) for v in found)
                      for name, found in item["raw_attributes"].items()}
            entries.append((item.get("dn", ""), values))
        return tuple(entries)

    def _use(self, connection: Any, busy: bool) -> None:
        with self._lock:
            if busy:
                self._busy.add(connection)
            else:
                self._busy.discard(connection)

    def _drop(self, connection: Any) -> None:
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            self._connections.discard(connection)
            self._busy.discard(connection)
        _unbind(connection)

    # binds

    def bind(self, dn: str, password: str, budget: float) -> bool:
        return self.bind_read(dn, password, (), budget) is not None

    def bind_read(self, dn: str, password: str, attributes: Sequence[str],
                  budget: float) -> Optional[Dict[str, Tuple[str, ...]]]:
        """
        See L{IDirectory.bind_read}: one fresh connection, the bind, then
        (with C{attributes}) a base search of C{dn} as that user, all within
        C{budget}.
        """
        if not password:
            return None  # an empty password is an unauthenticated bind: never a login
        end = time.monotonic() + budget
        connection = self._open(self.url, dn, password, budget)
        try:
            _narrow(connection, end)
            if not connection.bind():
                if result_code(connection) in REFUSED_BIND_CODES:
                    return None
                raise DirectoryError(
                    f"bind failed: {(connection.result or {}).get('description')}")
            if not attributes:
                return {}
            _narrow(connection, end)
            connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes),
                              size_limit=1, time_limit=max(1, math.ceil(_remaining(end))))
            if result_code(connection) != 0:
                raise DirectoryError(f"reading {dn!r} after its bind failed: "
                                     f"{(connection.result or {}).get('description')}")
            for item in connection.response or ():
                if item.get("type") == "searchResEntry":
                    return {name.lower(): tuple(_text(v) for v in found)
                            for name, found in item["raw_attributes"].items() if found}
            return {}
        finally:
            _unbind(connection)

    def close(self) -> None:
        """
        Unbind the idle search connections; cut those in use (a search
        blocked on a hung server fails at once instead of holding this
        call, made by a process that stops, until its deadline).
        """
        with self._lock:
            connections, self._connections = self._connections, set()
            busy, self._busy = self._busy, set()
            self._local = threading.local()
        for connection in connections:
            if connection in busy:
                _abort(connection)
            else:
                _unbind(connection)
