# -*- test-case-name: tests.portal.test_resource -*-
"""
The portal's resource (twisted.web): a request for another host is
redirected to the login page; the login (click-through, password, code)
and status pages, logout, the OS connectivity probes, the RFC 8908 API,
the operator's page and the template directory's static files.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import os
import re
import secrets
from typing import Any, Callable, Optional, Tuple
from urllib.parse import quote

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .auth import CLICK, CODE, PASSWORD, LoginLimiter
from .controller import LoginRefused, Portal, SessionNotStored
from .front import PortalSite
from .redirects import RedirectCache, request_path
from .operator import REALM, OperatorAuth, TooManyChecks, kick_address, render_clients
from .pages import HTML, PROBES, Pages, data_size, duration, esc, in_words, safe_url
from .usage import usage_line, usage_today

__all__ = ["PortalResource", "CSRF_COOKIE", "BadInput"]

_log = Logger()

CSRF_COOKIE = b"ns_portal_csrf"
_TOKEN_RE = re.compile(rb"^[A-Za-z0-9_-]{20,64}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_FIELD = 4096
"""Characters a form field may hold (a URL, a user name, a password)."""


class BadInput(ValueError):
    """
    A form field the portal cannot read (not UTF-8, a control character,
    too long): answered 400.
    """
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}\Z")


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
    @param template_dir: the operator's directory, whose files are served
        at C{/static/NAME} ("": none).
    @param venue_info_url: the API's C{venue-info-url} ("": none).
    @param pages: lays the pages out (default: the built-in layout).
    @param stats_process: the process whose C{/stats/usage} the status
        page asks for the usage today (C{""}: this one; None: none).
    @ivar pages: the same; replacing it drops the redirects kept.
    """

    isLeaf = True

    def __init__(self, portal: Portal, clock: Any, method: str = CLICK,
                 limiter: Optional[LoginLimiter] = None,
                 operator: Optional[OperatorAuth] = None,
                 template_dir: str = "", venue_info_url: str = "",
                 pages: Optional[Pages] = None, stats_process: Optional[str] = None) -> None:
        Resource.__init__(self)
        self.stats_process = stats_process
        self.portal = portal
        self.clock = clock
        self.template_dir = template_dir
        self.venue_info_url = venue_info_url
        self.secure_base = ""  # "https://host:port" of the HTTPS site, when there is one
        self.graphs_url = ""  # the stats service's operator graphs, linked from /operator
        self.method = method
        self.limiter = limiter if limiter is not None else LoginLimiter(clock)
        self.operator = operator
        self.pages = pages if pages is not None else Pages()
        self._redirects = RedirectCache()
        self._redirects_pages = self.pages
        self.bad_inputs = 0  # requests answered 400 for an unreadable field

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
            if failure.check(BadInput):
                if not gone:
                    request.write(self._bad_input(request, failure.value))
                    request.finish()
                return
            _log.failure("portal request failed", failure)
            if not gone:
                request.setResponseCode(500)
                request.setHeader(b"Content-Type", HTML)
                request.write(self.pages.page(
                    "Error", "<p>Something went wrong; please try again.</p>"))
                request.finish()
        maybeDeferred(work).addCallbacks(done, failed)
        return NOT_DONE_YET

    def _not_found(self, request: Any) -> bytes:
        return self._respond(request, 404, self.pages.page("Not found", "<p>No such page.</p>"))

    def _arg(self, request: Any, name: bytes) -> str:
        """
        Form field C{name} ("" when absent); L{BadInput} if unreadable.
        """
        values = (request.args or {}).get(name) or [b""]
        try:
            text: str = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput(f"{name.decode('ascii')}: not UTF-8") from None
        if len(text) > MAX_FIELD or _CONTROL_RE.search(text):
            raise BadInput(f"{name.decode('ascii')}: too long or a control character")
        return text

    def _bad_input(self, request: Any, error: BadInput) -> bytes:
        self.bad_inputs += 1
        _log.info("portal: bad input from {ip} ({error}; {count} so far)",
                  ip=request.getClientAddress().host, error=str(error),
                  count=self.bad_inputs)
        return self._respond(request, 400, self.pages.page(
            "Bad request", "<p>The form could not be read; please try again.</p>"))

    def _cookie_token(self, request: Any) -> Optional[bytes]:
        """
        The CSRF cookie if it holds a token (ASCII by L{_TOKEN_RE}), else None.
        """
        value = request.getCookie(CSRF_COOKIE) or b""
        return value if _TOKEN_RE.match(value) else None

    def _token(self, request: Any) -> str:
        """
        The client's CSRF token (from its cookie, or a new one set now).
        """
        cookie = self._cookie_token(request)
        if cookie is not None:
            return cookie.decode("ascii")
        token = secrets.token_urlsafe(24)
        request.addCookie(CSRF_COOKIE, token.encode("ascii"), path=b"/",
                          httpOnly=True, sameSite="strict")
        return token

    def _csrf_ok(self, request: Any) -> bool:
        # bytes: compare_digest refuses str that is not ASCII
        cookie = self._cookie_token(request)
        form = self._arg(request, b"csrf").encode("utf-8")
        return cookie is not None and hmac.compare_digest(cookie, form)

    def _url(self, path: str) -> str:
        return f"http://{self.portal.host}{path}"

    # dispatch

    def render(self, request: Any) -> Any:
        ip = ipaddress.ip_address(request.getClientAddress().host)
        host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
        uri = request.uri.decode("latin-1")
        path = request_path(uri)
        method = request.method.decode("latin-1")
        request.setHeader(b"Cache-Control", b"no-store")
        if path is None:
            site = getattr(request, "site", None)
            if isinstance(site, PortalSite):
                site.refuse("bad-request", str(ip))
            return self._respond(request, 400, self.pages.page(
                "Bad request", "<p>That is not a web address.</p>"))
        if self.portal.hears_requests():
            self.portal.request_seen(ip, host, path, method)
        if host != self.portal.host.lower():
            return self._foreign(request, ip, host, uri, path)
        if ip.version == 6:
            return self._over_ipv6(request, path, method)
        routes = {("/login", "GET"): self._login_page, ("/login", "POST"): self._login,
                 ("/logout", "POST"): self._logout, ("/status", "GET"): self._status,
                 ("/api", "GET"): self._api, ("/", "GET"): self._root,
                 ("/operator", "GET"): self._operator,
                 ("/operator/kick", "POST"): self._kick}
        handler = routes.get((path, "GET" if method == "HEAD" else method))
        if handler is None and path.startswith("/static/") and method in ("GET", "HEAD"):
            return self._static(request, path[len("/static/"):])
        if handler is None:
            return self._not_found(request)
        try:
            return handler(request, ip)
        except BadInput as e:
            return self._bad_input(request, e)

    def _foreign(self, request: Any, ip: Any, host: str, uri: str, path: str) -> bytes:
        """
        A request for another site: the client is not (yet) authorized.
        """
        if path in PROBES and ip.version == 4 and self.portal.sessions.get(ip) is not None:
            code, content_type, body = PROBES[path]
            return self._respond(request, code, body, content_type)
        location, body = self.foreign_redirect(host, uri)
        return self._redirected(request, location, body, 307)

    def _over_ipv6(self, request: Any, path: str, method: str) -> bytes:
        """
        The portal's own pages asked for over IPv6 (a client's IPv6 HTTP
        redirected here, or a portal name with an IPv6 address). A session
        is an IPv4 address and its MAC, so the login, status, logout and API
        are served over IPv4: a 303 to the login page (at C{portal.host},
        keeping C{url}), never an error. The template's static files are
        served (they name no client).
        """
        if path.startswith("/static/") and method in ("GET", "HEAD"):
            return self._static(request, path[len("/static/"):])
        try:
            url = safe_url(self._arg(request, b"url"))
        except BadInput:
            url = None
        query = "?url=" + quote(url, safe="") if url else ""
        return self.redirect(request, self._url("/login" + query), 303)

    def _static(self, request: Any, name: str) -> bytes:
        """
        A file of the operator's template directory (a logo, a style
        sheet), to anyone: the login page needs it before the login. Plain
        names only (letters, digits, C{.-_}, not starting with a dot).
        """
        if not self.template_dir or not _STATIC_NAME.match(name):
            return self._not_found(request)
        try:
            with open(os.path.join(self.template_dir, name), "rb") as f:
                body = f.read()
        except OSError:
            return self._not_found(request)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._respond(request, 200, body, kind.encode("ascii"))

    def foreign_redirect(self, host: str, uri: str) -> Tuple[bytes, bytes]:
        """
        Where a request for C{uri} on C{host} is sent (the login page,
        carrying the original URL) and the page that says so. The last few
        thousand are kept (L{RedirectCache}, bounded in bytes): a captive
        client asks for the same few URLs again and again (its OS, its
        apps' background checks).
        """
        if self._redirects_pages is not self.pages:
            self._redirects.clear()
            self._redirects_pages = self.pages
        key = (host, uri)
        found = self._redirects.get(key)
        if found is None:
            original = uri if uri.startswith(("http://", "https://")) else f"http://{host}{uri}"
            location = self._url("/login?url=" + quote(original, safe=""))
            found = (location.encode("ascii"), self.pages.redirect(location))
            self._redirects.put(key, found)
        return found

    def redirect(self, request: Any, location: str, code: int) -> bytes:
        """
        Redirect with Location, Refresh and a page (meta refresh and a link).
        """
        return self._redirected(request, location.encode("ascii"), self.pages.redirect(location),
                                code)

    def _redirected(self, request: Any, location: bytes, body: bytes, code: int) -> bytes:
        request.setHeader(b"Location", location)
        request.setHeader(b"Refresh", b"0; url=" + location)
        return self._respond(request, code, body)

    # pages

    def _root(self, request: Any, ip: Any) -> bytes:
        connected = self.portal.sessions.get(ip) is not None
        return self.redirect(request, self._url("/status" if connected else "/login"), 303)

    def _login_page(self, request: Any, ip: Any, error: str = "", code: int = 200) -> bytes:
        # The form (and its token) even for a client with a session: it may
        # log in again, as itself (a script making sure it is online) or as
        # another user; it is told it is connected.
        url = safe_url(self._arg(request, b"url"))
        token = self._token(request)
        error_html = f'<p class="error">{esc(error)}</p>' if error else ""
        if self.portal.sessions.get(ip) is not None:
            error_html += ('<p class="connected">This device is connected: '
                           '<a href="/status">your session</a>. '
                           'You may log in again below.</p>')
        destination = (f'<p>You asked for <a href="{esc(url)}">{esc(url)}</a>.</p>'
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
        return self._respond(request, code, self.pages.page("Welcome", (
            f"{error_html}{destination}"
            f'<div class="policy">{esc(self.portal.policy_text)}</div>\n'
            f'<form method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{esc(token)}">'
            f'<input type="hidden" name="url" value="{esc(url or "")}">{fields}'
            f'<button type="submit" name="accept" value="1">Accept and connect</button>'
            f"</form>")))

    def _login(self, request: Any, ip: Any) -> Any:
        if not self._csrf_ok(request):
            return self._login_page(request, ip, "Your form expired; please try again.", 403)
        if self._arg(request, b"accept") != "1":
            return self._login_page(request, ip, "Please accept the usage policy.", 400)
        wait = self.limiter.retry_after(ip)
        if wait is not None:
            return self._too_many(request, ip, wait)
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
                return self._respond(request, 503, self.pages.page(
                    "Cannot connect", "<p>Your device could not be identified; please "
                    "reconnect to the network and try again.</p>"))
            # the device too: one with several addresses gets no more guesses
            wait = self.limiter.retry_after(mac)
            if wait is not None:
                return self._too_many(request, ip, wait)
            self.limiter.attempted(mac)
            ok, message, rates = await self.portal.authenticate(ip, mac, self.method, extra)
            if not ok:
                self.limiter.failed(ip, mac)
                return self._login_page(request, ip, message or "Login refused.", 403)
            self.limiter.succeeded(ip, mac)
            try:
                await self.portal.login(ip, mac, self.method, username, rates)
            except LoginRefused as refused:
                return self._login_page(request, ip, f"Access refused: {refused}", 403)
            except SessionNotStored:
                request.setHeader(b"Retry-After", b"60")
                return self._respond(request, 503, self.pages.page(
                    "Cannot connect right now", "<p>The portal could not record your "
                    "session; please try again in a minute.</p>"))
            # cut the client's other connections to the portal: a browser
            # reuses one diverted before the login (even one it opened ahead
            # and never used) for the page it is sent to next
            channel = getattr(request, "channel", None)
            site = getattr(channel, "site", None)
            if isinstance(site, PortalSite):
                site.drop_client(ip, keep=channel.transport)
            return self.redirect(request, url or self._url("/status"), 303)
        return self._later(request, lambda: Deferred.fromCoroutine(work()))

    def _too_many(self, request: Any, ip: Any, wait: int) -> bytes:
        request.setHeader(b"Retry-After", str(wait).encode("ascii"))
        return self._login_page(request, ip, f"Too many login attempts; please wait "
                                f"{wait} seconds.", 429)

    def _logout(self, request: Any, ip: Any) -> Any:
        if not self._csrf_ok(request):
            return self._respond(request, 403, self.pages.page(
                "Form expired", f'<p><a href="{esc(self._url("/status"))}">Back</a></p>'))
        return self._later(request, lambda: self.portal.logout(ip, "logout").addCallback(
            lambda _: self.redirect(request, self._url("/login"), 303)))

    def _status(self, request: Any, ip: Any) -> Any:
        session = self.portal.sessions.get(ip)
        if session is None:
            return self.redirect(request, self._url("/login"), 303)
        sessions = self.portal.sessions
        left = sessions.seconds_remaining(ip)
        used = self.clock.seconds() - session.started
        remaining = f"<p>Time left: {duration(left)}</p>" if left is not None else ""
        data_left = sessions.bytes_remaining(ip)
        if data_left is not None:
            remaining += f"<p>Data left: {data_size(data_left)}</p>"
        if sessions.idle_timeout:
            remaining += (f"<p>A device that stays idle for {in_words(sessions.idle_timeout)} "
                          f"is logged out.</p>")
        def page(today: Any) -> bytes:
            return self._respond(request, 200, self.pages.page("Connected", (
                f"<p>Connected as {esc(session.ip)} ({esc(session.mac)}).</p>"
                f"<p>Time used: {duration(used)}</p><p>Data used: "
                f"{data_size(session.bytes_used)}</p>{usage_line(today)}{remaining}"
                f'<form method="post" action="/logout">'
                f'<input type="hidden" name="csrf" value="{esc(self._token(request))}">'
                f'<button type="submit">Log out</button></form>'
                f'<p><a href="/login">Log in again</a></p>')))
        return self._later(request, lambda: usage_today(
            self.portal.registry, self.stats_process, ip, self.clock).addCallback(page))

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

    def _as_operator(self, request: Any, ip: Any, page: Callable[[], Any]) -> Any:
        """
        C{page()} if the request came over HTTPS from an admin network and
        carries the operator's credentials; else a 403 (plain HTTP, another
        network: no credentials asked for), a 429 (too many checks) or a
        401 (a 404 with no operator configured).
        """
        if self.operator is None:
            return self._not_found(request)
        if not request.isSecure():
            where = (f'<p>It is at <a href="{esc(self.secure_base)}/operator">'
                     f'{esc(self.secure_base)}/operator</a>.</p>' if self.secure_base else "")
            return self._respond(request, 403, self.pages.page(
                "HTTPS only", f"<p>The operator page is served over HTTPS only.</p>{where}"))
        if not self.operator.serves(ip):
            return self._respond(request, 403, self.pages.page(
                "Forbidden", "<p>The operator page is not served to this network.</p>"))

        def checked(ok: bool) -> Any:
            if ok:
                return page()
            request.setHeader(b"WWW-Authenticate", REALM)
            return self._respond(request, 401, self.pages.page(
                "Unauthorized", "<p>Operator credentials needed.</p>"))

        def busy(failure: Any) -> bytes:
            failure.trap(TooManyChecks)
            wait = failure.value.retry_after
            request.setHeader(b"Retry-After", str(wait).encode("ascii"))
            return self._respond(request, 429, self.pages.page(
                "Too many attempts", f"<p>Too many operator logins; please wait {wait} "
                f"seconds.</p>"))
        return self._later(request, lambda: self.operator.check(request, ip).addCallbacks(
            checked, busy))

    def _operator(self, request: Any, ip: Any) -> Any:
        def page() -> bytes:
            body = render_clients(self.portal, self.clock.seconds(), self._token(request),
                                  self.graphs_url)
            return self._respond(request, 200, self.pages.page("Clients", body))
        return self._as_operator(request, ip, page)

    def _kick(self, request: Any, ip: Any) -> Any:
        return self._as_operator(request, ip, lambda: self._kicked(request))

    def _kicked(self, request: Any) -> Any:
        if not self._csrf_ok(request):
            return self._respond(request, 403, self.pages.page(
                "Form expired", "<p><a href=\"/operator\">Back</a></p>"))
        target = kick_address(self._arg(request, b"ip"))
        if target is None:
            return self._respond(request, 400, self.pages.page("Bad request",
                                                               "<p>No such client.</p>"))
        return self.portal.logout(target, "operator").addCallback(
            lambda _: self.redirect(request, self.secure_base + "/operator", 303))
