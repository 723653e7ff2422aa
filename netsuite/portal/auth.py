# -*- test-case-name: tests.portal.test_auth -*-
"""
Login back ends for C{/portal/authenticate} (method C{"password"}): a
users file of scrypt hashes and an LDAP simple bind (L{netsuite.ldap}, in
a thread, within a deadline), either of which may give the user's rates
(L{netsuite.portal.rates}); the login rate limit (per IP and per MAC,
L{netsuite.portal.limiter}); the C{[portal.auth]} and C{[portal.operator]}
config tables.

C{python -m netsuite.portal.auth hash} reads a password on stdin and prints
its C{scrypt$N$r$p$salt$hash} (add C{username:} in front for a users file).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
from typing import Any, Dict, List, Optional, Tuple

from twisted.logger import Logger

from ..config.fields import NETWORK_LIST, OPTIONAL_PATH, SECONDS, SECRET, Secret, at_least
from ..config.schema import ConfigError, Field
from ..ldap import IDirectory, LdapDirectory, escape_dn_value, url_error
from ..runner import IRunner
from ..registry.interfaces import CONTINUE, Stop
from ..registry.values import Message
from .limiter import LoginLimiter
from .rates import Rates, attribute_rates, parse_rates

__all__ = ["hash_password", "verify_password", "parse_users", "read_users", "UsersFile",
           "LdapBind",
           "bind_dn", "LoginLimiter", "AUTH_SECTION", "OPERATOR_SECTION",
           "install", "operator_auth", "PASSWORD", "CLICK", "CODE", "METHODS"]

_log = Logger()

PASSWORD = "password"
CLICK = "click"
CODE = "code"
METHODS = (CLICK, PASSWORD, CODE)
"""What the login form asks for: nothing but the policy, a username and
password, or an access code (a voucher); the back ends on
C{/portal/authenticate} get it with the C{method}."""
WRONG = "wrong username or password"

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
_MAXMEM = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: Optional[bytes] = None, n: int = SCRYPT_N,
                  r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """
    C{scrypt$N$r$p$salt$hash} (salt and hash in unpadded URL-safe base64).
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM,
                            dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> Tuple[int, int, int, bytes, bytes]:
    scheme, n, r, p, salt, digest = encoded.strip().split("$")
    if scheme != "scrypt":
        raise ValueError(f"not an scrypt hash: {scheme!r}")
    values = int(n), int(r), int(p)
    if values[0] < 2 or values[0] & (values[0] - 1) or not 0 < values[1] <= 64 \
            or not 0 < values[2] <= 16:
        raise ValueError("unreasonable scrypt parameters")
    return values[0], values[1], values[2], _unb64(salt), _unb64(digest)


def check_hash(encoded: str) -> Optional[str]:
    """
    A config check: None if C{encoded} is an scrypt hash (or empty).
    """
    if not encoded:
        return None
    try:
        _parse_hash(encoded)
    except (ValueError, binascii.Error):
        return "scrypt$N$r$p$salt$hash (python -m netsuite.portal.auth hash)"
    return None


def verify_password(password: str, encoded: str) -> bool:
    """
    Does C{password} match C{encoded}? Constant-time compare; a malformed
    hash never matches.
    """
    try:
        n, r, p, salt, digest = _parse_hash(encoded)
        computed = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                                  maxmem=_MAXMEM, dklen=len(digest) or 32)
    except (ValueError, binascii.Error, MemoryError):
        return False
    return bool(digest) and hmac.compare_digest(computed, digest)


def read_users(text: str, source: str = "users file") -> Tuple[
        Dict[str, str], Dict[str, Rates], List[Tuple[str, bool]]]:
    """
    A users file: C{username:scrypt$...} lines, each with an optional third
    field of rates (C{:up_kbit=1000,down_kbit=4000}, L{rates.parse_rates});
    blank lines and C{#} comments are skipped. Returns C{username -> hash},
    C{username -> rates} (users with rates only) and, for each malformed
    line (left out: its user cannot log in), C{("<source> line N: what is
    wrong", whether it is the rates)}.
    """
    users: Dict[str, str] = {}
    rates: Dict[str, Rates] = {}
    errors: List[Tuple[str, bool]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        encoded, has_rates, rates_text = rest.partition(":")
        if not sep or not name or check_hash(encoded) is not None or not encoded:
            errors.append((f"{source} line {number}: not "
                           f"username:scrypt$N$r$p$salt$hash[:up_kbit=N,down_kbit=N]", False))
            continue
        if has_rates:
            try:
                rates[name] = parse_rates(rates_text)
            except ValueError as e:
                errors.append((f"{source} line {number}: user {name!r}: {e}", True))
                continue
        users[name] = encoded
    return users, rates, errors


def parse_users(text: str) -> Dict[str, str]:
    """
    C{username -> hash} of a users file (L{read_users}); malformed lines
    logged.
    """
    users, _, errors = read_users(text)
    for error, _ in errors:
        _log.warn("{error}", error=error)
    return users


def _credentials(message: Message) -> Optional[Tuple[str, str]]:
    if message.get("method") != PASSWORD:
        return None
    username, password = message.get("username"), message.get("password")
    if not isinstance(username, str) or not isinstance(password, str) \
            or not username or not password or len(username) > 256 or len(password) > 1024:
        return None
    return username, password


class UsersFile:
    """
    The users file back end: a listener on C{/portal/authenticate}. A known
    user gets C{ok} true or false. For a user the file does not know, the
    same scrypt (of a hash in the file, so of its parameters) runs anyway,
    so that neither the answer's time nor, when it is the last password
    back end (C{last}), its content tells who exists; otherwise (an LDAP
    bind after it) the chain goes on. The file is read again when its
    modification time changes.

    @param runner: runs the (slow) scrypt check off the reactor thread.
    @param last: answer "wrong username or password" for unknown users
        instead of going on down the chain.
    """

    def __init__(self, path: str, runner: IRunner, last: bool = False) -> None:
        self.path = path
        self.runner = runner
        self.last = last
        self._stamp: Any = None
        self._users: Dict[str, str] = {}
        self._rates: Dict[str, Rates] = {}
        self._dummy = _dummy_hash(None)

    def check(self) -> None:
        """
        At start: a line with a bad rate is a L{ConfigError} naming the
        file and the line (later, when the file changes, it is logged and
        its user left out). An unreadable file is only logged, as later.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return
        for error, bad_rate in read_users(text, self.path)[2]:
            if bad_rate:
                raise ConfigError(error)

    def users(self) -> Dict[str, str]:
        import os
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as f:
                    self._users, self._rates, errors = read_users(f.read(), self.path)
                for error, _ in errors:
                    _log.warn("{error}", error=error)
                self._stamp = stamp
                self._dummy = _dummy_hash(next(iter(self._users.values()), None))
        except (OSError, UnicodeDecodeError) as e:
            _log.warn("cannot read the users file {path}: {error}", path=self.path, error=e)
            self._users, self._rates, self._stamp = {}, {}, None
        return self._users

    def __call__(self, message: Message) -> Any:
        credentials = _credentials(message)
        if credentials is None:
            return CONTINUE
        username, password = credentials
        encoded = self.users().get(username)
        if encoded is None:
            return self.runner.run(verify_password, password, self._dummy).addCallback(
                lambda _: Stop({"ok": False, "message": WRONG}) if self.last else CONTINUE)
        rates = self._rates.get(username, {})
        return self.runner.run(verify_password, password, encoded).addCallback(
            lambda ok: Stop({"ok": True, "username": username, **rates}) if ok
            else Stop({"ok": False, "message": WRONG}))


def _dummy_hash(like: Optional[str]) -> str:
    """
    A hash no password matches, with the scrypt parameters of C{like}
    (the defaults when None): what an unknown user's password is checked
    against.
    """
    n, r, p = (SCRYPT_N, SCRYPT_R, SCRYPT_P) if like is None else _parse_hash(like)[:3]
    return f"scrypt${n}${r}${p}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(32))}"


def bind_dn(template: str, username: str) -> str:
    """
    C{template} with C{{user}} replaced by C{username} escaped as an RDN value.
    """
    return template.replace("{user}", escape_dn_value(username))


class LdapBind:
    """
    The LDAP back end: a simple bind to C{directory} as C{template}
    (C{{user}} escaped), run by C{runner} in a thread, answered within
    C{deadline} seconds (C{clock}-timed). Refused credentials: C{ok} false;
    a directory that fails or does not answer in time: C{ok} false with a
    message saying so. With C{up_attribute} or C{down_attribute}, the
    user's entry is read after the bind (as the user,
    L{IDirectory.bind_read}) and those attributes are the answer's
    C{up_kbit}, C{down_kbit} (L{rates.attribute_rates}); a value that is
    no rate refuses the login (logged), rather than let it in without the
    limit meant for it.
    """

    def __init__(self, directory: IDirectory, template: str, deadline: float, clock: Any,
                 runner: IRunner, up_attribute: str = "", down_attribute: str = "") -> None:
        self.directory = directory
        self.template = template
        self.deadline = deadline
        self.clock = clock
        self.runner = runner
        self.up_attribute = up_attribute
        self.down_attribute = down_attribute

    def __call__(self, message: Message) -> Any:
        credentials = _credentials(message)
        if credentials is None:
            return CONTINUE
        username, password = credentials
        dn = bind_dn(self.template, username)
        names = [name for name in (self.up_attribute, self.down_attribute) if name]
        work = self.runner.run(self.directory.bind_read, dn, password, names, self.deadline)
        work.addTimeout(self.deadline, self.clock)

        def done(entry: Optional[Dict[str, Tuple[str, ...]]]) -> Stop:
            if entry is None:
                return Stop({"ok": False, "message": WRONG})
            try:
                rates = attribute_rates(entry, self.up_attribute, self.down_attribute)
            except ValueError as e:
                _log.warn("LDAP login of {user!r} refused: {dn}: {error}", user=username,
                          dn=dn, error=e)
                return Stop({"ok": False, "message": "your account's rate limit is not "
                                                     "valid; please tell the operator"})
            return Stop({"ok": True, "username": username, **rates})

        def failed(failure: Any) -> Stop:
            _log.warn("LDAP login of {user!r} failed: {error}", user=username,
                      error=failure.getErrorMessage() or failure.type.__name__)
            return Stop({"ok": False, "message": "the directory is unavailable; please try "
                                                 "again later"})
        return work.addCallbacks(done, failed)




def _method(value: Any) -> Optional[str]:
    return None if value in ("",) + METHODS else "one of " + ", ".join(METHODS)


def _template(value: Any) -> Optional[str]:
    return None if not value or "{user}" in value else "a DN with {user} in it"


def _ldap_url(value: Any) -> Optional[str]:
    return None if not value else url_error(value)


def _hash(secret: Secret) -> Optional[str]:
    return check_hash(secret.reveal())


AUTH_SECTION = {
    "users_file": Field(OPTIONAL_PATH, "", "file of username:scrypt$N$r$p$salt$hash lines, "
                        "each with :up_kbit=N,down_kbit=N after it if the user has rates "
                        "of its own (\"\": none)"),
    "ldap_url": Field(str, "", "ldap:// or ldaps:// URL for a simple-bind login (\"\": none)",
                      _ldap_url),
    "ldap_bind_dn": Field(str, "uid={user},ou=people,dc=example,dc=test",
                          "the DN to bind as; {user} is the username, escaped", _template),
    "ldap_deadline": Field(SECONDS, 3.0, "seconds an LDAP login may take, connect included"),
    "ldap_up_attribute": Field(str, "", "attribute of the user's entry holding its upload "
                               "limit in kbit/s, read after the bind (\"\": none)"),
    "ldap_down_attribute": Field(str, "", "attribute of the user's entry holding its download "
                                 "limit in kbit/s (\"\": none)"),
    "max_failures": Field(int, 5, "failed logins per client IP, and per MAC, per "
                          "failure_window before a 429 (0: no limit)", at_least(0)),
    "max_attempts": Field(int, 20, "login attempts, accepted or not, per client IP, and "
                          "per MAC, per failure_window before a 429 (0: no limit)",
                          at_least(0)),
    "failure_window": Field(SECONDS, 60.0, "seconds over which failed logins and attempts "
                            "count"),
    "method": Field(str, "", "what the login form asks for: click (the policy only), "
                    "password (username and password), code (an access code, for a "
                    "voucher back end on the bus); \"\": password when users_file or "
                    "ldap_url is set, else click", _method),
    "move_session": Field(bool, True, "a login with the username of a session on another "
                          "IP/MAC moves that session"),
    "quota_bytes": Field(int, 0, "bytes (up and down) a session may use (0: no limit)",
                         at_least(0)),
}
"""C{[portal.auth]}: with users_file or ldap_url set, the login asks for a
username and password (method "password") unless C{method} says otherwise."""


def _https_url(value: Any) -> Optional[str]:
    from .pages import safe_url
    return None if not value or (value.startswith("https://") and safe_url(value) == value) \
        else "an https:// URL"


OPERATOR_SECTION = {
    "username": Field(str, "", "the operator page's HTTP Basic user (\"\": no operator page)"),
    "password_hash": Field(SECRET, "", "its password, scrypt$N$r$p$salt$hash "
                           "(python -m netsuite.portal.auth hash)", _hash),
    "admin_networks": Field(NETWORK_LIST, [], "client networks the page is served to, "
                            "over HTTPS ([]: any client)"),
    "max_failures": Field(int, 5, "operator logins not verified per client address per "
                          "failure_window before a 429 (0: no limit)", at_least(0)),
    "max_checks": Field(int, 20, "operator password checks in all per failure_window "
                        "before a 429 (0: no limit)", at_least(0)),
    "failure_window": Field(SECONDS, 60.0, "seconds over which those count"),
    "graphs_url": Field(str, "", "the operator's traffic graphs ([stats.operator], "
                        "https://host:port/), linked from the page (\"\": no link)", _https_url),
}
"""C{[portal.operator]}: the C{/operator} page."""



def install(portal: Any, auth: Any, operator: Any, reactor: Any,
            runner: IRunner) -> Dict[str, Any]:
    """
    Put the back ends C{auth} (a C{[portal.auth]} table) configures on
    C{/portal/authenticate} before the click-through, set the portal's
    session move and quota; return the keyword arguments for
    L{netsuite.portal.resource.PortalResource} (C{method}, C{limiter},
    C{operator}). C{runner} runs the password checks and binds.
    """
    method = CLICK
    tags = {"owner": "portal"}
    # first=True puts each before the click-through; LDAP, added last, runs first
    # only for users the file does not know (the file answers CONTINUE for them).
    if auth.ldap_url:
        portal.registry.listen("/portal/authenticate",
                               LdapBind(LdapDirectory(auth.ldap_url), auth.ldap_bind_dn,
                                        auth.ldap_deadline, reactor, runner,
                                        auth.ldap_up_attribute, auth.ldap_down_attribute),
                               first=True, tags=dict(tags, backend="ldap"))
        method = PASSWORD
    if auth.users_file:
        users = UsersFile(auth.users_file, runner, last=not auth.ldap_url)
        users.check()
        portal.registry.listen("/portal/authenticate", users,
                               first=True, tags=dict(tags, backend="users-file"))
        method = PASSWORD
    if auth.method:
        method = auth.method
    portal.move_session = bool(auth.move_session)
    portal.sessions.quota_bytes = int(auth.quota_bytes)
    return {"method": method,
            "limiter": LoginLimiter(reactor, auth.max_failures, auth.failure_window,
                                    auth.max_attempts),
            "operator": operator_auth(operator, runner, reactor)}


def operator_auth(operator: Any, runner: IRunner, clock: Any) -> Any:
    """
    The L{netsuite.portal.operator.OperatorAuth} of a C{[portal.operator]}
    table (None when it sets no credentials): the portal's operator page
    and the stats service's graphs check the same credentials, each with
    its own rate limits. C{runner} runs the scrypt checks.
    """
    from .operator import OperatorAuth
    if not (operator.username and operator.password_hash):
        return None
    return OperatorAuth((operator.username, operator.password_hash.reveal()), runner,
                        clock, operator.admin_networks, operator.max_failures,
                        operator.max_checks, operator.failure_window)


def main(argv: Any = None, stdin: Any = None, stdout: Any = None,
         stderr: Any = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if list(argv) != ["hash"]:
        stderr.write("usage: python -m netsuite.portal.auth hash < password\n")
        return 2
    password = stdin.readline().rstrip("\r\n")
    if not password:
        stderr.write("no password on stdin\n")
        return 1
    stdout.write(hash_password(password) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
