# -*- test-case-name: tests.portal.test_operator -*-
"""
The operator page C{/operator}: HTTP Basic credentials from the config
(C{[portal.operator]}), a list of the clients (IP, MAC, user, since, idle
seconds, bytes, the reason of the last logout) and a CSRF-protected
"kick" (C{POST /operator/kick}) that logs a client out with reason
C{operator}. Served over HTTPS only, to the admin networks only, with a
limit on password checks per client and in all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import time
from typing import Any, Iterable, Optional, Set, Tuple

from twisted.internet.defer import Deferred, fail, succeed

from ..runner import IRunner
from .auth import LoginLimiter, verify_password

__all__ = ["OperatorAuth", "TooManyChecks", "render_clients", "REALM"]

REALM = b'Basic realm="netsuite portal operator", charset="UTF-8"'


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class TooManyChecks(Exception):
    """
    Too many operator password checks lately (from this client, or in
    all): try again in C{retry_after} seconds.
    """

    def __init__(self, retry_after: int) -> None:
        Exception.__init__(self, retry_after)
        self.retry_after = retry_after


class OperatorAuth:
    """
    Checks a request's HTTP Basic credentials against C{(username,
    scrypt hash)}. The scrypt check runs through C{runner}, never on the
    reactor thread; a verified pair is remembered (as a keyed digest) so
    that each page does not cost an scrypt.

    Every check that costs an scrypt counts: at most C{max_failures}
    unverified ones per client address and C{max_checks} in all per
    C{window} seconds (0: no limit), counted when they start so that a
    burst cannot queue more; past them L{check} fails with
    L{TooManyChecks}. A remembered pair is never limited, so a flood does
    not lock out an operator already in.

    @param networks: the addresses the page is served to (empty: any).
    """

    def __init__(self, credentials: Tuple[str, str], runner: IRunner, clock: Any,
                 networks: Iterable[Any] = (), max_failures: int = 5, max_checks: int = 20,
                 window: float = 60.0) -> None:
        self.username, self.password_hash = credentials
        self.runner = runner
        self.networks = tuple(networks)
        self._per_client = LoginLimiter(clock, max_failures, window)
        self._overall = LoginLimiter(clock, 0, window, max_attempts=max_checks)
        self._key = hashlib.sha256(self.password_hash.encode()).digest()
        self._verified: Set[bytes] = set()

    def serves(self, ip: Any) -> bool:
        """
        Whether the page is served to C{ip} (in an admin network).
        """
        return not self.networks or any(ip in network for network in self.networks)

    def check(self, request: Any, ip: Any = None) -> "Deferred[bool]":
        """
        Whether the request (from C{ip}) carries the operator's credentials.
        """
        header = request.getHeader(b"authorization") or b""
        if isinstance(header, str):
            header = header.encode("latin-1")
        scheme, _, encoded = header.strip().partition(b" ")
        if scheme.lower() != b"basic" or len(encoded) > 2048:
            return succeed(False)
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return succeed(False)
        username, sep, password = decoded.partition(":")
        if not sep:
            return succeed(False)
        digest = hmac.new(self._key, decoded.encode("utf-8"), hashlib.sha256).digest()
        if digest in self._verified:
            return succeed(True)
        wait = self._per_client.retry_after(ip) or self._overall.retry_after("*")
        if wait is not None:
            return fail(TooManyChecks(wait))
        self._per_client.failed(ip)  # until it succeeds
        self._overall.attempted("*")
        user_ok = hmac.compare_digest(username.encode("utf-8"), self.username.encode("utf-8"))

        def checked(password_ok: bool) -> bool:
            if not (user_ok and password_ok):
                return False
            self._per_client.succeeded(ip)
            if len(self._verified) > 16:
                self._verified.clear()
            self._verified.add(digest)
            return True
        return self.runner.run(verify_password, password, self.password_hash).addCallback(
            checked)


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + " UTC"


def render_clients(portal: Any, now: float, token: str, graphs_url: str = "") -> str:
    """
    The operator page's body: the table of clients with a kick form each
    (and a link to the traffic graphs at C{graphs_url}, if any).
    """
    rows = []
    sessions = {s.ip: s for s in portal.sessions.all()}
    ips = sorted(set(sessions) | set(portal.last_logout), key=_ip_key)
    for ip in ips:
        s = sessions.get(ip)
        last = portal.last_logout.get(ip)
        last_reason = last[0] if last else ""
        if s is None:
            rows.append(f"<tr><td>{_esc(ip)}</td><td></td><td></td><td>logged out</td>"
                        f"<td></td><td></td><td>{_esc(last_reason)}</td><td></td></tr>")
            continue
        kick = (f'<form method="post" action="/operator/kick">'
                f'<input type="hidden" name="csrf" value="{_esc(token)}">'
                f'<input type="hidden" name="ip" value="{_esc(s.ip)}">'
                f'<button type="submit">Kick</button></form>')
        rows.append(f"<tr><td>{_esc(s.ip)}</td><td>{_esc(s.mac)}</td><td>{_esc(s.username)}</td>"
                    f"<td>{_esc(_when(s.started))}</td><td>{int(max(0, now - s.last_active))}</td>"
                    f"<td>{int(s.bytes_used)}</td><td>{_esc(last_reason)}</td>"
                    f"<td>{kick}</td></tr>")
    graphs = (f'<p><a href="{_esc(graphs_url)}">Traffic graphs</a></p>\n'
              if graphs_url else "")
    return (graphs + "<table><tr><th>IP</th><th>MAC</th><th>User</th><th>Since</th>"
            "<th>Idle (s)</th><th>Bytes</th><th>Last logout</th><th></th></tr>\n"
            + "\n".join(rows) + "\n</table>")


def _ip_key(ip: str) -> Any:
    try:
        return (0, int(ipaddress.ip_address(ip)))
    except ValueError:
        return (1, ip)


def kick_address(value: str) -> Optional[ipaddress.IPv4Address]:
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        return None
