# -*- test-case-name: tests.portal.test_web -*-
"""
The portal's web pages (twisted.web): every request for another host is
redirected to the login page; the login (click-through) and status pages,
logout, the OS connectivity probes and the RFC 8908 API.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import mimetypes
import os
import re
import string
import secrets
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import quote, urlsplit

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, TimeoutMixin
from twisted.web.http import datetimeToString
from twisted.web.server import NOT_DONE_YET, Site

from .auth import CLICK, CODE, PASSWORD, LoginLimiter
from .controller import LoginRefused, Portal
from .operator import REALM, OperatorAuth, kick_address, render_clients

__all__ = ["PortalResource", "safe_url", "PROBES"]

_log = Logger()

CSRF_COOKIE = b"ns_portal_csrf"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}\Z")
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")
HTML = b"text/html; charset=utf-8"

PROBES = {
    "/hotspot-detect.html": (200, b"text/html",
                             b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/library/test/success.html": (200, b"text/html",
                                   b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/generate_204": (204, None, b""),
    "/gen_204": (204, None, b""),
    "/connecttest.txt": (200, b"text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, b"text/plain", b"Microsoft NCSI"),
    "/canonical.html": (200, b"text/html",
                        b'<meta http-equiv="refresh" '
                        b'content="0;url=https://support.mozilla.org/kb/captive-portal"/>'),
    "/success.txt": (200, b"text/plain", b"success\n"),
}
"""What a connected client gets from an OS's captive-portal probe."""


def safe_url(url: Optional[str]) -> Optional[str]:
    """
    C{url} (non-ASCII and quotes %-escaped) if it is an absolute http(s) URL
    with a host and no space or control character; else None (never a
    redirect to another scheme).
    """
    if not url or len(url) > 2000 or re.search(r"[\x00-\x20\x7f\\]", url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


DEFAULT_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 0 auto;
       padding: 1.5rem 1rem; line-height: 1.5; color: #1b1b1b; background: #fafafa; }
h1 { font-size: 1.5rem; margin-top: 0; }
button, input { font-size: 1rem; padding: 0.6rem 1rem; margin: 0.25rem 0; }
button { background: #1f6feb; color: white; border: 0; border-radius: 0.4rem; width: 100%; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; }
.policy { background: white; border: 1px solid #ddd; padding: 0.75rem; border-radius: 0.4rem;
          white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; } td, th { padding: 0.25rem; text-align: left; }
</style></head>
<body>
<h1>$title</h1>
$body
</body></html>
"""

_template = string.Template(DEFAULT_TEMPLATE)


def use_template(text: str) -> None:
    """
    Lay every page out with C{text} instead of the default: HTML with
    C{$title} (escaped) and C{$body} (the page's own, already escaped HTML).
    """
    global _template
    _template = string.Template(text)


def _page(title: str, body: str) -> bytes:
    return _template.safe_substitute(title=_esc(title), body=body).encode("utf-8")


def _redirect_page(location: str) -> bytes:
    return _page("Redirecting", (
        f'<meta http-equiv="refresh" content="0; url={_esc(location)}">'
        f'<p><a href="{_esc(location)}">Continue to the login page</a></p>'))


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _data(count: int) -> str:
    """
    A byte count as people read it: 512 B, 1.5 MB, 2.25 GB (powers of 1000).
    """
    for unit, size in (("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"


class PortalSite(Site):
    """
    The portal's site. Every connection first meets a L{RedirectFront},
    which answers the common plain redirect itself; and the site knows its
    open connections, so that a client's login can cut the others
    (connections diverted to the portal before the login, including idle
    ones a browser opened ahead and would reuse).

    @ivar redirected: requests answered by the fronts (not access-logged:
        a busy hotspot sees thousands a minute; C{/portal/request} has
        them for listeners).
    """

    def __init__(self, resource: "PortalResource", *args: Any, **kwargs: Any) -> None:
        Site.__init__(self, resource, *args, **kwargs)
        self.redirected = 0
        self._open: set = set()

    def buildProtocol(self, addr: Any) -> Any:
        return ProtocolWrapper(self, RedirectFront(self, addr))

    def registerProtocol(self, protocol: Any) -> None:
        self._open.add(protocol)

    def unregisterProtocol(self, protocol: Any) -> None:
        self._open.discard(protocol)

    def drop_client(self, ip: Any, keep: Any = None) -> int:
        """
        Abort every connection from C{ip} but C{keep}; the number aborted.
        """
        dropped = 0
        for protocol in list(self._open):
            if protocol is not keep and getattr(protocol.getPeer(), "host", None) == str(ip):
                protocol.transport.abortConnection()
                dropped += 1
        return dropped


_date_cache = (-1, b"")


def _http_date(now: float) -> bytes:
    """
    The Date header's value for C{now}, made once a second.
    """
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, datetimeToString(second))
    return _date_cache[1]


_HEAD_LIMIT = 8192
_HANDS_OVER = (b"content-length", b"transfer-encoding", b"expect", b"upgrade")


class RedirectFront(TimeoutMixin, Protocol):
    """
    The first reader of a portal connection. A plain GET or HEAD for
    another host that is not an OS probe (what an unauthorized client
    sends, over and over) is answered here, straight from the bytes: the
    same 307 as L{PortalResource.redirect}, without twisted.web's request
    machinery. Anything else (the portal's own pages, a probe, a request
    with a body, a head it does not read plainly, an overlong head) hands
    the connection, with the bytes read so far, to twisted.web for good.
    """

    def __init__(self, site: PortalSite, addr: Any) -> None:
        self.site = site
        self.addr = addr
        self.buffer = b""
        self.channel: Any = None
        self.callLater = site.reactor.callLater

    def connectionMade(self) -> None:
        self.setTimeout(self.site.timeOut)

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.dataReceived(data)
            return
        self.resetTimeout()
        self.buffer += data
        while self.buffer:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _HEAD_LIMIT:
                    self._hand_over()
                return
            answer = self._answer(self.buffer[:end])
            if answer is None:
                self._hand_over()
                return
            response, close = answer
            self.buffer = self.buffer[end + 4:]
            self.site.redirected += 1
            self.transport.write(response)
            if close:
                self.setTimeout(None)
                self.transport.loseConnection()
                return

    def _answer(self, head: bytes) -> Optional[Tuple[bytes, bool]]:
        """
        The response to a plain foreign GET or HEAD and whether to close
        after it; None for anything else.
        """
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD") or parts[2] not in (
                b"HTTP/1.1", b"HTTP/1.0"):
            return None
        host = None
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip():
                return None
            name = name.lower()
            if name == b"host":
                if host is not None:
                    return None
                host = value.strip().lower()
            elif name == b"connection":
                connection = value.strip().lower()
            elif name in _HANDS_OVER:
                return None
        try:
            host_text = (host or b"").decode("ascii")
            uri = parts[1].decode("ascii")
        except UnicodeDecodeError:
            return None
        resource = self.site.resource
        path = (uri.partition("?")[0] if uri.startswith("/") else urlsplit(uri).path) or "/"
        if not host_text or host_text == resource.portal.host.lower() or path in PROBES:
            return None
        if resource.portal.hears_requests():
            ip = ipaddress.ip_address(self.transport.getPeer().host)
            resource.portal.request_seen(ip, host_text, path, parts[0].decode("ascii"))
        location, body = resource.foreign_redirect(host_text, uri)
        close = connection == b"close" or (parts[2] == b"HTTP/1.0" and connection != b"keep-alive")
        if close:
            connection = b"Connection: close\r\n"
        else:
            connection = b"Connection: keep-alive\r\n" if parts[2] == b"HTTP/1.0" else b""
        head_out = (b"%s 307 Temporary Redirect\r\nCache-Control: no-store\r\n"
                    b"Location: %s\r\nRefresh: 0; url=%s\r\nContent-Type: %s\r\n"
                    b"Content-Length: %d\r\nDate: %s\r\n%s\r\n" % (
                        parts[2], location, location, HTML, len(body),
                        _http_date(self.site.reactor.seconds()), connection))
        return (head_out if parts[0] == b"HEAD" else head_out + body), close

    def _hand_over(self) -> None:
        self.setTimeout(None)
        self.channel = Site.buildProtocol(self.site, self.addr)
        self.channel.makeConnection(self.transport)
        buffered, self.buffer = self.buffer, b""
        if buffered:
            self.channel.dataReceived(buffered)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        if self.channel is not None:
            self.channel.connectionLost(reason)


class PortalResource(Resource):
    """
    The whole site: one leaf resource dispatching on Host and path.

    @param portal: the controller.
    @param clock: gives the time for the status page.
    @param method: C{"click"} (accept the policy) or C{"password"} (also a
        username and password, checked by a back end on C{/portal/authenticate}).
    @param limiter: the failed-login rate limit (default: 5 per minute per IP).
    @param operator: C{(username, scrypt hash)} of the C{/operator} page
        (None: no such page).
    """

    isLeaf = True

    def __init__(self, portal: Portal, clock: Any, method: str = CLICK,
                 limiter: Optional[LoginLimiter] = None,
                 operator: Optional[Tuple[str, str]] = None,
                 template_dir: str = "", venue_info_url: str = "") -> None:
        Resource.__init__(self)
        self.portal = portal
        self.clock = clock
        self.template_dir = template_dir
        self.venue_info_url = venue_info_url
        self.secure_base = ""  # "https://host:port" of the HTTPS site, when there is one
        self.method = method
        self.limiter = limiter if limiter is not None else LoginLimiter(clock)
        self.operator = OperatorAuth(operator) if operator else None
        self._redirects: Dict[Tuple[str, str], Tuple[bytes, bytes]] = {}
        self._redirects_template = _template

    # plumbing

    def _respond(self, request: Any, code: int, body: bytes,
                 content_type: Optional[bytes] = HTML) -> bytes:
        request.setResponseCode(code)
        if content_type is not None:
            request.setHeader(b"Content-Type", content_type)
        return body

    def _later(self, request: Any, work: Callable[[], Any]) -> Any:
        """
        Answer with what C{work()}'s Deferred fires with (bytes), or a 500.
        """
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(body: bytes) -> None:
            if not gone:
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            _log.failure("portal request failed", failure)
            if not gone:
                request.setResponseCode(500)
                request.setHeader(b"Content-Type", HTML)
                request.write(_page("Error", "<p>Something went wrong; please try again.</p>"))
                request.finish()
        maybeDeferred(work).addCallbacks(done, failed)
        return NOT_DONE_YET

    def _arg(self, request: Any, name: bytes) -> str:
        values = (request.args or {}).get(name) or [b""]
        return values[0].decode("utf-8", "replace")

    def _token(self, request: Any) -> str:
        """
        The client's CSRF token (from its cookie, or a new one set now).
        """
        token = (request.getCookie(CSRF_COOKIE) or b"").decode("ascii", "replace")
        if not _TOKEN_RE.match(token):
            token = secrets.token_urlsafe(24)
            request.addCookie(CSRF_COOKIE, token.encode("ascii"), path=b"/",
                              httpOnly=True, sameSite="strict")
        return token

    def _csrf_ok(self, request: Any) -> bool:
        cookie = (request.getCookie(CSRF_COOKIE) or b"").decode("ascii", "replace")
        form = self._arg(request, b"csrf")
        return bool(_TOKEN_RE.match(cookie)) and hmac.compare_digest(cookie, form)

    def _url(self, path: str) -> str:
        return f"http://{self.portal.host}{path}"

    # dispatch

    def render(self, request: Any) -> Any:
        ip = ipaddress.ip_address(request.getClientAddress().host)
        host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
        uri = request.uri.decode("latin-1")
        path = urlsplit(uri).path or "/"
        method = request.method.decode("latin-1")
        request.setHeader(b"Cache-Control", b"no-store")
        if self.portal.hears_requests():
            self.portal.request_seen(ip, host, path, method)
        if host != self.portal.host.lower():
            return self._foreign(request, ip, host, uri, path)
        pages = {("/login", "GET"): self._login_page, ("/login", "POST"): self._login,
                 ("/logout", "POST"): self._logout, ("/status", "GET"): self._status,
                 ("/api", "GET"): self._api, ("/", "GET"): self._root,
                 ("/operator", "GET"): self._operator,
                 ("/operator/kick", "POST"): self._kick}
        handler = pages.get((path, "GET" if method == "HEAD" else method))
        if handler is None and path.startswith("/static/") and method in ("GET", "HEAD"):
            return self._static(request, path[len("/static/"):])
        if handler is None:
            return self._respond(request, 404, _page("Not found", "<p>No such page.</p>"))
        return handler(request, ip)

    def _foreign(self, request: Any, ip: Any, host: str, uri: str, path: str) -> bytes:
        """
        A request for another site: the client is not (yet) authorized.
        """
        if path in PROBES and self.portal.sessions.get(ip) is not None:
            code, content_type, body = PROBES[path]
            return self._respond(request, code, body, content_type)
        location, body = self.foreign_redirect(host, uri)
        return self._redirected(request, location, body, 307)

    def _static(self, request: Any, name: str) -> bytes:
        """
        A file of the operator's template directory (a logo, a style
        sheet), to anyone: the login page needs it before the login. Plain
        names only (letters, digits, C{.-_}, not starting with a dot).
        """
        if not self.template_dir or not _STATIC_NAME.match(name):
            return self._respond(request, 404, _page("Not found", "<p>No such page.</p>"))
        try:
            with open(os.path.join(self.template_dir, name), "rb") as f:
                body = f.read()
        except OSError:
            return self._respond(request, 404, _page("Not found", "<p>No such page.</p>"))
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._respond(request, 200, body, kind.encode("ascii"))

    def foreign_redirect(self, host: str, uri: str) -> Tuple[bytes, bytes]:
        """
        Where a request for C{uri} on C{host} is sent (the login page,
        carrying the original URL) and the page that says so. The last few
        thousand are kept: a captive client asks for the same few URLs
        again and again (its OS, its apps' background checks).
        """
        if self._redirects_template is not _template or len(self._redirects) > 4096:
            self._redirects = {}
            self._redirects_template = _template
        key = (host, uri)
        found = self._redirects.get(key)
        if found is None:
            original = uri if uri.startswith(("http://", "https://")) else f"http://{host}{uri}"
            location = self._url("/login?url=" + quote(original, safe=""))
            found = self._redirects[key] = (location.encode("ascii"), _redirect_page(location))
        return found

    def redirect(self, request: Any, location: str, code: int) -> bytes:
        """
        Redirect with Location, Refresh and a page (meta refresh and a link).
        """
        return self._redirected(request, location.encode("ascii"), _redirect_page(location),
                                code)

    def _redirected(self, request: Any, location: bytes, body: bytes, code: int) -> bytes:
        request.setHeader(b"Location", location)
        request.setHeader(b"Refresh", b"0; url=" + location)
        return self._respond(request, code, body)

    # pages

    def _root(self, request: Any, ip: Any) -> bytes:
        return self.redirect(request, self._url("/login"), 303)

    def _login_page(self, request: Any, ip: Any, error: str = "", code: int = 200) -> bytes:
        if self.portal.sessions.get(ip) is not None and not error:
            return self.redirect(request, self._url("/status"), 303)
        url = safe_url(self._arg(request, b"url"))
        token = self._token(request)
        error_html = f'<p class="error">{_esc(error)}</p>' if error else ""
        destination = (f'<p>You asked for <a href="{_esc(url)}">{_esc(url)}</a>.</p>'
                       if url else "")
        fields = ""
        if self.method == PASSWORD:
            fields = ('<p><label>Username <input name="username" autocomplete="username" '
                      'required></label></p>'
                      '<p><label>Password <input type="password" name="password" '
                      'autocomplete="current-password" required></label></p>')
        elif self.method == CODE:
            fields = ('<p><label>Access code <input name="code" autocomplete="off" '
                      'autocapitalize="off" spellcheck="false" required></label></p>')
        return self._respond(request, code, _page("Welcome", (
            f"{error_html}{destination}"
            f'<div class="policy">{_esc(self.portal.policy_text)}</div>\n'
            f'<form method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{_esc(token)}">'
            f'<input type="hidden" name="url" value="{_esc(url or "")}">{fields}'
            f'<button type="submit" name="accept" value="1">Accept and connect</button>'
            f"</form>")))

    def _login(self, request: Any, ip: Any) -> Any:
        if not self._csrf_ok(request):
            return self._login_page(request, ip, "Your form expired; please try again.", 403)
        if self._arg(request, b"accept") != "1":
            return self._login_page(request, ip, "Please accept the usage policy.", 400)
        wait = self.limiter.retry_after(ip)
        if wait is not None:
            request.setHeader(b"Retry-After", str(wait).encode("ascii"))
            return self._login_page(request, ip, f"Too many login attempts; please wait "
                                    f"{wait} seconds.", 429)
        url = safe_url(self._arg(request, b"url"))
        extra = {}
        username = ""
        if self.method == PASSWORD:
            username = self._arg(request, b"username").strip()
            extra = {"username": username, "password": self._arg(request, b"password")}
            if not username or not extra["password"]:
                return self._login_page(request, ip, "Please give your username and "
                                        "password.", 400)
        elif self.method == CODE:
            extra = {"code": self._arg(request, b"code").strip()}
            if not extra["code"]:
                return self._login_page(request, ip, "Please give your access code.", 400)
        self.limiter.attempted(ip)

        async def work() -> bytes:
            mac = await self.portal.mac_for(ip)
            if mac is None:
                return self._respond(request, 503, _page(
                    "Cannot connect", "<p>Your device could not be identified; please "
                    "reconnect to the network and try again.</p>"))
            ok, message = await self.portal.authenticate(ip, mac, self.method, extra)
            if not ok:
                self.limiter.failed(ip)
                return self._login_page(request, ip, message or "Login refused.", 403)
            self.limiter.succeeded(ip)
            try:
                await self.portal.login(ip, mac, self.method, username)
            except LoginRefused as refused:
                return self._login_page(request, ip, f"Access refused: {refused}", 403)
            # cut the client's other connections to the portal: a browser
            # reuses one diverted before the login (even one it opened ahead
            # and never used) for the page it is sent to next
            channel = getattr(request, "channel", None)
            site = getattr(channel, "site", None)
            if isinstance(site, PortalSite):
                site.drop_client(ip, keep=channel.transport)
            return self.redirect(request, url or self._url("/status"), 303)
        return self._later(request, lambda: _ensure(work()))

    def _logout(self, request: Any, ip: Any) -> Any:
        if not self._csrf_ok(request):
            return self._respond(request, 403, _page(
                "Form expired", f'<p><a href="{_esc(self._url("/status"))}">Back</a></p>'))
        return self._later(request, lambda: self.portal.logout(ip, "logout").addCallback(
            lambda _: self.redirect(request, self._url("/login"), 303)))

    def _status(self, request: Any, ip: Any) -> bytes:
        session = self.portal.sessions.get(ip)
        if session is None:
            return self.redirect(request, self._url("/login"), 303)
        left = self.portal.sessions.seconds_remaining(ip)
        used = self.clock.seconds() - session.started
        remaining = f"<p>Time left: {_duration(left)}</p>" if left is not None else ""
        data_left = self.portal.sessions.bytes_remaining(ip)
        if data_left is not None:
            remaining += f"<p>Data left: {_data(data_left)}</p>"
        return self._respond(request, 200, _page("Connected", (
            f"<p>Connected as {_esc(session.ip)} ({_esc(session.mac)}).</p>"
            f"<p>Time used: {_duration(used)}</p>"
            f"<p>Data used: {_data(session.bytes_used)}</p>{remaining}"
            f'<form method="post" action="/logout">'
            f'<input type="hidden" name="csrf" value="{_esc(self._token(request))}">'
            f'<button type="submit">Log out</button></form>')))

    def _api(self, request: Any, ip: Any) -> bytes:
        """
        RFC 8908: the Captive Portal API.
        """
        session = self.portal.sessions.get(ip)
        # RFC 8908 wants the user portal over HTTPS: the HTTPS site's login
        # page when there is one (secure_base), else the plain one.
        login = (self.secure_base + "/login") if self.secure_base else self._url("/login")
        answer: dict = {"captive": session is None, "user-portal-url": login}
        if self.venue_info_url:
            answer["venue-info-url"] = self.venue_info_url
        if session is not None:
            left = self.portal.sessions.seconds_remaining(ip)
            if left is not None:
                answer["seconds-remaining"] = int(left)
            answer["can-extend-session"] = False
            remaining = self.portal.sessions.bytes_remaining(ip)
            if remaining is not None:
                answer["bytes-remaining"] = remaining
        return self._respond(request, 200, json.dumps(answer).encode("utf-8"),
                             b"application/captive+json")

    # the operator page

    def _operator_denied(self, request: Any) -> Optional[bytes]:
        if self.operator is None:
            return self._respond(request, 404, _page("Not found", "<p>No such page.</p>"))
        if not self.operator.check(request):
            request.setHeader(b"WWW-Authenticate", REALM)
            return self._respond(request, 401, _page("Unauthorized",
                                                     "<p>Operator credentials needed.</p>"))
        return None

    def _operator(self, request: Any, ip: Any) -> bytes:
        denied = self._operator_denied(request)
        if denied is not None:
            return denied
        body = render_clients(self.portal, self.clock.seconds(), self._token(request))
        return self._respond(request, 200, _page("Clients", body))

    def _kick(self, request: Any, ip: Any) -> Any:
        denied = self._operator_denied(request)
        if denied is not None:
            return denied
        if not self._csrf_ok(request):
            return self._respond(request, 403, _page(
                "Form expired", f'<p><a href="{_esc(self._url("/operator"))}">Back</a></p>'))
        target = kick_address(self._arg(request, b"ip"))
        if target is None:
            return self._respond(request, 400, _page("Bad request", "<p>No such client.</p>"))
        return self._later(request, lambda: self.portal.logout(target, "operator").addCallback(
            lambda _: self.redirect(request, self._url("/operator"), 303)))


def _ensure(coroutine: Any) -> Any:
    from twisted.internet.defer import Deferred
    return Deferred.fromCoroutine(coroutine)
