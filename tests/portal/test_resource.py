"""
Tests for L{netsuite.portal.resource}: the redirect, the pages, CSRF, login
and logout through the firewall's mailboxes, the probes, the API and the
static files.
"""

import ipaddress
import json
import re
import sqlite3
from urllib.parse import quote

from twisted.internet.defer import succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.auth import PASSWORD
from netsuite.portal.pages import Pages
from netsuite.portal.resource import CSRF_COOKIE, PortalResource
from netsuite.portal.sessions import SessionStore
from netsuite.registry import Stop

from .helpers import A, B, HOST, MAC_A, PortalFixture


class RedirectTests(SynchronousTestCase):
    def setUp(self):
        self.f = PortalFixture()

    def test_redirect_shape(self):
        """
        A request for another host gets a 307 to the login page carrying
        the original URL: Location, Refresh, a page with a meta refresh
        and a link, and no caching.
        """
        r = self.f.request(b"GET", b"/some/page?x=1&y=2", b"example.com")
        location = ("http://10.89.0.1:5280/login?url="
                    + quote("http://example.com/some/page?x=1&y=2", safe=""))
        self.assertEqual(r.responseCode, 307)
        self.assertEqual(r.header(b"location"), location.encode())
        self.assertEqual(r.header(b"refresh"), b"0; url=" + location.encode())
        self.assertEqual(r.header(b"cache-control"), b"no-store")
        body = r.body().decode()
        self.assertIn(f'<meta http-equiv="refresh" content="0; url={location}">', body)
        self.assertIn(f'<a href="{location}">', body)

    def test_request_event(self):
        seen = []
        self.f.registry.watch("/portal/request", seen.append)
        self.f.request(b"GET", b"/x", b"example.com")
        self.f.registry.eventual.flush_sync()
        self.assertEqual(seen, [{"ip": A, "host": "example.com", "path": "/x",
                                 "method": "GET"}])

    def test_hostile_host(self):
        r = self.f.request(b"GET", b"/\"><script>", b"a\"<b>")
        self.assertEqual(r.responseCode, 307)
        self.assertNotIn(b"<script>", r.body())
        self.assertNotIn(b'a"<b>', r.body())

    def test_probes_unauthorized(self):
        """
        Before login, every OS probe gets the redirect (so the OS opens its
        login sheet).
        """
        for host, path in [(b"captive.apple.com", b"/hotspot-detect.html"),
                           (b"connectivitycheck.gstatic.com", b"/generate_204"),
                           (b"www.msftconnecttest.com", b"/connecttest.txt"),
                           (b"www.msftncsi.com", b"/ncsi.txt"),
                           (b"detectportal.firefox.com", b"/canonical.html"),
                           (b"detectportal.firefox.com", b"/success.txt")]:
            r = self.f.request(b"GET", path, host)
            self.assertEqual(r.responseCode, 307, path)

    def test_probes_authorized(self):
        self.f.sessions.login(A, MAC_A)
        r = self.f.request(b"GET", b"/generate_204", b"connectivitycheck.gstatic.com")
        self.assertEqual((r.responseCode, r.body()), (204, b""))
        r = self.f.request(b"GET", b"/hotspot-detect.html", b"captive.apple.com")
        self.assertIn(b"Success", r.body())
        r = self.f.request(b"GET", b"/connecttest.txt", b"www.msftconnecttest.com")
        self.assertEqual(r.body(), b"Microsoft Connect Test")


class IPv6ClientTests(SynchronousTestCase):
    """
    A client's IPv6 HTTP, redirected to the portal by the firewall: the
    same redirect and captive probe answers as over IPv4; the portal's own
    pages (the login first) send it to the IPv4 login page, never an error.
    """

    V6 = ipaddress.IPv6Address("2001:db8:89::5054:ff:fe00:b")

    def setUp(self):
        self.f = PortalFixture()
        self.f.sessions.login(A, MAC_A)  # logged in over IPv4: IPv6 is not it

    def test_redirect(self):
        seen = []
        self.f.registry.watch("/portal/request", seen.append)
        r = self.f.request(b"GET", b"/some/page", b"example.com", client=self.V6)
        over_ipv4 = self.f.request(b"GET", b"/some/page", b"example.com", client=B)
        self.assertEqual(r.responseCode, 307)
        self.assertEqual(r.header(b"location"), over_ipv4.header(b"location"))
        self.assertEqual(r.body(), over_ipv4.body())
        self.assertEqual(seen[0]["ip"], self.V6)

    def test_probes(self):
        """
        Every OS probe over IPv6 gets the captive answer (the redirect),
        as an unauthorized client's over IPv4.
        """
        for host, path in [(b"captive.apple.com", b"/hotspot-detect.html"),
                           (b"connectivitycheck.gstatic.com", b"/generate_204"),
                           (b"www.msftconnecttest.com", b"/connecttest.txt"),
                           (b"detectportal.firefox.com", b"/canonical.html")]:
            r = self.f.request(b"GET", path, host, client=self.V6)
            self.assertEqual(r.responseCode, 307, path)
            self.assertTrue(r.header(b"location").startswith(
                b"http://10.89.0.1:5280/login?url="), path)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_own_pages(self):
        """
        The login page, a login, the status, logout, the API and the root
        asked for over IPv6: 303 to the IPv4 login page (its url kept when
        it is a URL); nobody logged in or out.
        """
        login = b"http://10.89.0.1:5280/login"
        for method, path, args in [
                (b"GET", b"/login", {b"url": [b"http://example.com/a?b=1"]}),
                (b"POST", b"/login", {b"csrf": [b"A" * 32], b"accept": [b"1"],
                                      b"url": [b"http://example.com/a?b=1"]}),
                (b"GET", b"/status", {}), (b"POST", b"/logout", {}), (b"GET", b"/api", {}),
                (b"GET", b"/", {}), (b"GET", b"/login", {b"url": [b"javascript:x"]}),
                (b"GET", b"/login", {b"url": [b"\xff"]})]:
            r = self.f.request(method, path, args=args, client=self.V6,
                               cookies={CSRF_COOKIE: b"A" * 32})
            self.assertEqual(r.responseCode, 303, (method, path))
            expected = login + (b"?url=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1"
                                if b"url" in args and b"example" in args[b"url"][0] else b"")
            self.assertEqual(r.header(b"location"), expected, (method, path, args))
        self.assertEqual([s.ip for s in self.f.sessions.all()], [A])
        self.assertEqual(self.flushLoggedErrors(), [])


class LoginTests(SynchronousTestCase):
    def setUp(self):
        self.f = PortalFixture()

    def login_page(self, url=None, cookies=None):
        args = {b"url": [url.encode()]} if url is not None else {}
        r = self.f.request(b"GET", b"/login", args=args, cookies=cookies)
        self.assertEqual(r.header(b"cache-control"), b"no-store")
        return r

    def token(self, r):
        return re.search(r'name="csrf" value="([^"]+)"', r.body().decode()).group(1)

    def post_login(self, token, cookie=None, url="http://example.com/page", client=A,
                   accept=b"1"):
        cookie = token if cookie is None else cookie
        return self.f.request(b"POST", b"/login", client=client, args={
            b"csrf": [token.encode()], b"url": [url.encode()], b"accept": [accept]},
            cookies={CSRF_COOKIE: cookie.encode()})

    def test_page(self):
        """
        The page shows the policy escaped, sets a CSRF cookie and puts the
        same token in the form.
        """
        r = self.login_page("http://example.com/page")
        body = r.body().decode()
        self.assertEqual(r.responseCode, 200)
        self.assertIn("Be &lt;nice&gt; &amp; &quot;polite&quot;", body)
        value, kw = r.cookies_out[CSRF_COOKIE]
        self.assertEqual(self.token(r), value.decode())
        self.assertTrue(kw["httpOnly"])
        self.assertIn('href="http://example.com/page"', body)
        again = self.login_page(cookies={CSRF_COOKIE: value})
        self.assertEqual(self.token(again), value.decode())
        self.assertEqual(again.cookies_out, {})

    def test_hostile_url(self):
        """
        A javascript: URL is dropped; quotes cannot leave the attribute.
        """
        body = self.login_page("javascript:alert(1)").body().decode()
        self.assertNotIn("javascript", body)
        body = self.login_page('http://x/"><script>alert(1)</script>').body().decode()
        self.assertNotIn("<script>", body)
        self.assertNotIn('"><', body.split("<form")[0].split("</h1>")[1])

    def test_login(self):
        """
        A good form authorizes the client in the firewall, records its
        session, tells /portal/login and sends it to the original URL.
        """
        logins = []
        self.f.registry.watch("/portal/login", logins.append)
        token = self.token(self.login_page())
        r = self.post_login(token)
        self.assertEqual(r.responseCode, 303)
        self.assertEqual(r.header(b"location"), b"http://example.com/page")
        self.assertEqual(r.finished, 1)
        self.assertIn(A, self.f.firewall.clients)
        self.assertEqual(self.f.firewall.clients[A].mac, MAC_A)
        self.assertEqual(self.f.sessions.get(A).mac, MAC_A)
        self.f.registry.eventual.flush_sync()
        self.assertEqual(logins, [{"ip": A, "mac": MAC_A, "reason": "click"}])

    def test_login_hostile_url(self):
        token = self.token(self.login_page())
        r = self.post_login(token, url="javascript:alert(1)")
        self.assertEqual(r.header(b"location"), b"http://10.89.0.1:5280/status")

    def test_csrf(self):
        """
        A form without the cookie's token is refused; nobody is authorized.
        """
        token = self.token(self.login_page())
        for form, cookie in [(token, "x" * 32), ("", ""), ("y" * 32, token)]:
            r = self.post_login(form, cookie)
            self.assertEqual(r.responseCode, 403)
        self.assertEqual(self.f.firewall.clients, {})

    def test_policy_not_accepted(self):
        token = self.token(self.login_page())
        r = self.post_login(token, accept=b"")
        self.assertEqual(r.responseCode, 400)
        self.assertEqual(self.f.firewall.clients, {})

    def test_no_mac(self):
        """
        A client whose MAC nothing knows, looked up again a moment later
        and still not known, gets a 503 (counted).
        """
        token = self.token(self.login_page())
        r = self.post_login(token, client=B)
        self.f.clock.pump(self.f.portal.mac_retries)
        self.assertEqual(r.responseCode, 503)
        self.assertIn("could not be identified", r.body().decode())
        self.assertEqual(self.f.firewall.clients, {})
        self.assertEqual(self.f.portal.mac_unknown, 1)

    def test_mac_found_on_second_look(self):
        """
        A neighbour lookup that finds nothing (the client's entry absent
        for a moment, being resolved again) is tried again after a short
        wait, not answered 503 at once: the soak's rare 503s.
        """
        looks = []

        def find_mac(ip):
            looks.append(self.f.clock.seconds())
            return succeed(None if len(looks) == 1 else MAC_A)
        self.f.portal.find_mac = find_mac
        token = self.token(self.login_page())
        r = self.post_login(token)
        self.assertEqual(len(looks), 1)
        self.assertFalse(r.finished, r.responseCode)
        self.f.clock.advance(self.f.portal.mac_retries[0])
        self.assertEqual(len(looks), 2)
        self.assertEqual(r.responseCode, 303)
        self.assertIn(A, self.f.firewall.clients)
        self.assertEqual((self.f.portal.mac_late, self.f.portal.mac_unknown), (1, 0))

    def test_hook_refuses(self):
        """
        A listener first on /portal/authenticate refuses; its message is
        shown, escaped.
        """
        self.f.registry.listen("/portal/authenticate",
                               lambda m: Stop({"ok": False, "message": "no <b>"}), first=True)
        token = self.token(self.login_page())
        r = self.post_login(token)
        self.assertEqual(r.responseCode, 403)
        self.assertIn(b"no &lt;b&gt;", r.body())
        self.assertEqual(self.f.firewall.clients, {})

    def test_firewall_refuses(self):
        """
        A login the firewall refuses (a hook in front of
        /firewall/authorize) answers 403 with the reason, escaped, and
        records no session.
        """
        self.f.registry.listen("/firewall/authorize", lambda m: Stop(
            {"authorized": False, "reason": "banned <here>"}), first=True)
        token = self.token(self.login_page())
        r = self.post_login(token)
        self.assertEqual(r.responseCode, 403)
        self.assertIn(b"Access refused: banned &lt;here&gt;", r.body())
        self.assertIsNone(self.f.sessions.get(A))

    def test_status_and_logout(self):
        """
        The status page has a logout form; posting it de-authorizes the
        client and tells /portal/logout.
        """
        logouts = []
        self.f.registry.watch("/portal/logout", logouts.append)
        token = self.token(self.login_page())
        self.post_login(token)
        self.f.clock.advance(65)
        r = self.f.request(b"GET", b"/status", cookies={CSRF_COOKIE: token.encode()})
        self.assertEqual(r.responseCode, 200)
        self.assertIn(b"0:01:05", r.body())
        self.assertEqual(self.token(r), token)
        bad = self.f.request(b"POST", b"/logout", args={b"csrf": [b"z" * 32]},
                             cookies={CSRF_COOKIE: token.encode()})
        self.assertEqual(bad.responseCode, 403)
        self.assertIn(A, self.f.firewall.clients)
        r = self.f.request(b"POST", b"/logout", args={b"csrf": [token.encode()]},
                           cookies={CSRF_COOKIE: token.encode()})
        self.assertEqual(r.responseCode, 303)
        self.assertEqual(self.f.firewall.clients, {})
        self.assertIsNone(self.f.sessions.get(A))
        self.f.registry.eventual.flush_sync()
        self.assertEqual(logouts, [{"ip": A, "mac": MAC_A, "reason": "logout"}])
        r = self.f.request(b"GET", b"/status")
        self.assertEqual(r.responseCode, 303)

    def test_login_page_when_connected(self):
        """
        A client with a session gets the login form too, with a token (a
        new cookie if it has none), and is told it is connected, with a
        link to its status page; the portal's root sends it to its status.
        """
        self.assertEqual(self.f.request(b"GET", b"/").header(b"location"),
                         f"http://{HOST}/login".encode())
        self.f.sessions.login(A, MAC_A)
        r = self.login_page()
        body = r.body().decode()
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(self.token(r), r.cookies_out[CSRF_COOKIE][0].decode())
        self.assertIn('name="accept" value="1"', body)
        self.assertIn('This device is connected: <a href="/status">your session</a>', body)
        root = self.f.request(b"GET", b"/")
        self.assertEqual((root.responseCode, root.header(b"location")),
                         (303, f"http://{HOST}/status".encode()))

    def test_relogin(self):
        """
        A logged-in client that logs in again as a script does (a new
        cookie jar: GET /login for a token, then POST it) is answered 303
        to its URL; its session goes on as it was (same start, nothing
        told); the status page links to the login page for that.
        """
        logins, logouts = [], []
        self.f.registry.watch("/portal/login", logins.append)
        self.f.registry.watch("/portal/logout", logouts.append)
        self.assertEqual(self.post_login(self.token(self.login_page())).responseCode, 303)
        started = self.f.sessions.get(A).started
        self.f.clock.advance(60)
        status = self.f.request(b"GET", b"/status").body().decode()
        self.assertIn('<a href="/login">Log in again</a>', status)
        page = self.login_page()
        token = page.cookies_out[CSRF_COOKIE][0].decode()
        self.assertEqual(self.token(page), token)
        r = self.post_login(token, url="http://example.com/again")
        self.assertEqual((r.responseCode, r.header(b"location")),
                         (303, b"http://example.com/again"))
        self.assertEqual(self.f.sessions.get(A).started, started)
        self.assertIn(A, self.f.firewall.clients)
        self.f.registry.eventual.flush_sync()
        self.assertEqual((len(logins), logouts), (1, []))

    def test_relogin_csrf(self):
        """
        A logged-in client's login without its cookie's token is refused
        (403, a form with a token to try again); its session stays.
        """
        self.f.sessions.login(A, MAC_A)
        r = self.post_login("x" * 32, cookie="y" * 32)
        self.assertEqual(r.responseCode, 403)
        self.assertIn('name="csrf"', r.body().decode())
        self.assertIsNotNone(self.f.sessions.get(A))
        self.assertIn(b"expired", r.body())

    def test_api(self):
        r = self.f.request(b"GET", b"/api")
        self.assertEqual(r.header(b"content-type"), b"application/captive+json")
        self.assertEqual(json.loads(r.body()), {
            "captive": True, "user-portal-url": f"http://{HOST}/login"})
        f = PortalFixture(session_timeout=3600)
        f.sessions.login(A, MAC_A)
        f.clock.advance(600)
        r = f.request(b"GET", b"/api")
        self.assertEqual(json.loads(r.body()), {
            "captive": False, "user-portal-url": f"http://{HOST}/login",
            "seconds-remaining": 3000, "can-extend-session": False})

    def test_api_idle_only(self):
        """
        With an idle time-out and no session time-out, the API gives no
        seconds-remaining (RFC 8908 5: it is the session's time left);
        with both, the session's, however soon the idle time-out falls.
        """
        f = PortalFixture(idle_timeout=30)
        f.sessions.login(A, MAC_A)
        f.clock.advance(11)
        api = json.loads(f.request(b"GET", b"/api").body())
        self.assertEqual(api, {"captive": False, "user-portal-url": f"http://{HOST}/login",
                               "can-extend-session": False})
        f = PortalFixture(idle_timeout=30, session_timeout=3600)
        f.sessions.login(A, MAC_A)
        f.clock.advance(11)
        api = json.loads(f.request(b"GET", b"/api").body())
        self.assertEqual(api["seconds-remaining"], 3589)

    def test_status_times(self):
        """
        The status page's "Time left" is the session's (none without a
        session time-out); the idle time-out is said apart, in words.
        """
        f = PortalFixture(idle_timeout=1800)
        f.sessions.login(A, MAC_A)
        f.clock.advance(11)
        body = f.request(b"GET", b"/status").body().decode()
        self.assertNotIn("Time left", body)
        self.assertIn("A device that stays idle for 30 minutes is logged out.", body)
        f = PortalFixture(idle_timeout=30, session_timeout=3600)
        f.sessions.login(A, MAC_A)
        f.clock.advance(11)
        body = f.request(b"GET", b"/status").body().decode()
        self.assertIn("<p>Time left: 0:59:49</p>", body)
        self.assertIn("idle for 30 seconds is logged out", body)
        f = PortalFixture()
        f.sessions.login(A, MAC_A)
        body = f.request(b"GET", b"/status").body().decode()
        self.assertNotIn("Time left", body)
        self.assertNotIn("idle", body)

    def test_api_venue(self):
        """
        With venue_info_url set, the API gives it, before and after login.
        """
        f = PortalFixture()
        f.resource = PortalResource(f.portal, f.clock,
                                    venue_info_url="https://example.org/venue")
        self.assertEqual(json.loads(f.request(b"GET", b"/api").body())["venue-info-url"],
                         "https://example.org/venue")
        f.sessions.login(A, MAC_A)
        api = json.loads(f.request(b"GET", b"/api").body())
        self.assertEqual((api["captive"], api["venue-info-url"]),
                         (False, "https://example.org/venue"))

    def test_status_data(self):
        """
        The status page shows the data used, and what is left of a quota.
        """
        f = PortalFixture()
        f.sessions.login(A, MAC_A)
        f.sessions.sample({str(A): {"bytes_up": 1_200_000, "bytes_down": 300_000}})
        body = f.request(b"GET", b"/status").body()
        self.assertIn(b"Data used: 1.5 MB", body)
        self.assertNotIn(b"Data left", body)
        f.sessions.quota_bytes = 2_000_000
        self.assertIn(b"Data left: 500 kB", f.request(b"GET", b"/status").body())

    def test_not_found(self):
        self.assertEqual(self.f.request(b"GET", b"/nope").responseCode, 404)
        self.assertEqual(self.f.request(b"GET", b"/").responseCode, 303)


class FillingSessionStore(SessionStore):
    """
    A session store on a disk that fills: while C{full}, a commit raises
    what sqlite3 raises on a full disk.
    """

    full = False

    def commit(self, writes, durable=True):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().commit(writes, durable)


class FullDiskLoginTests(SynchronousTestCase):
    """
    A login whose session cannot be stored is refused with a 503 and
    undone; the next one, once there is space, works.
    """

    def setUp(self):
        self.store = FillingSessionStore(":memory:")
        self.f = PortalFixture(store=self.store)
        self.logins = []
        self.f.registry.watch("/portal/login", self.logins.append)

    def test_refused_then_works(self):
        """
        With the disk full, the login answers 503 with a page saying why
        and a Retry-After, the client is not in the firewall, has no
        session and no /portal/login event went out. Once the disk has
        room, the same click logs the client in, and its session is
        stored (nothing of the failed login's is left in the file).
        """
        self.store.full = True
        r = self.f.accept(A)
        self.assertEqual(r.responseCode, 503)
        self.assertIn("could not record your session", r.body().decode())
        self.assertEqual(r.header(b"retry-after"), b"60")
        self.assertNotIn(A, self.f.firewall.clients)
        self.assertIsNone(self.f.sessions.get(A))
        self.f.registry.eventual.flush_sync()
        self.assertEqual(self.logins, [])
        self.store.full = False
        r = self.f.accept(A)
        self.assertEqual(r.responseCode, 303)
        self.assertIn(A, self.f.firewall.clients)
        self.assertEqual([s.ip for s in self.store.load()], [A])
        self.f.registry.eventual.flush_sync()
        self.assertEqual(len(self.logins), 1)


class StaticTests(SynchronousTestCase):
    def test_static_files(self):
        """
        The operator's files are served by plain name, with their type and
        no-store; other names, missing files and no template directory get
        a 404.
        """
        import os
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "style.css"), "w") as f:
            f.write("body { color: teal }")
        with open(os.path.join(directory, ".secret"), "w") as f:
            f.write("no")
        f = PortalFixture()
        f.resource = PortalResource(f.portal, f.clock, template_dir=directory)
        ok = f.request(b"GET", b"/static/style.css")
        self.assertEqual((ok.responseCode, ok.body()), (200, b"body { color: teal }"))
        self.assertEqual(ok.header(b"content-type"), b"text/css")
        self.assertEqual(ok.header(b"cache-control"), b"no-store")
        for name in (b".secret", b"..%2Fpage.html", b"sub/style.css", b"missing.png", b""):
            self.assertEqual(f.request(b"GET", b"/static/" + name).responseCode, 404, name)
        self.assertEqual(PortalFixture().request(b"GET", b"/static/style.css").responseCode, 404)


class LayoutTests(SynchronousTestCase):
    def test_two_portals_two_layouts(self):
        """
        Two portals in one process, each with its own L{Pages}: each lays
        out its own pages (login, redirect, not found) with its own
        template, whatever the other was given.
        """
        venues = []
        for name in ("cafe", "library"):
            f = PortalFixture()
            f.resource = PortalResource(f.portal, f.clock,
                                        pages=Pages(f"<main class={name}>$body</main>"))
            venues.append((name, f))
        for name, f in venues + venues[::-1]:
            start = f"<main class={name}>".encode()
            self.assertTrue(f.request(b"GET", b"/login").body().startswith(start), name)
            self.assertTrue(f.request(b"GET", b"/x", b"example.com").body().startswith(start),
                            name)
            self.assertTrue(f.request(b"GET", b"/nope").body().startswith(start), name)

    def test_default_layout(self):
        """
        Without a L{Pages}, a portal lays its pages out with the built-in
        template.
        """
        from netsuite.portal.pages import DEFAULT_TEMPLATE
        body = PortalFixture().request(b"GET", b"/login").body().decode()
        self.assertTrue(body.startswith(DEFAULT_TEMPLATE.partition("$title")[0]))


class BadInputTests(SynchronousTestCase):
    """
    A form field or cookie the portal cannot use gets a 4xx and one log
    line, never a 500 or a traceback.
    """

    def setUp(self):
        self.f = PortalFixture()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.token = b"t" * 32
        self.seen = 0

    def post(self, path=b"/login", cookie=None, **fields):
        args = {b"csrf": [self.token], b"url": [b""], b"accept": [b"1"]}
        args.update({name.encode(): [value] for name, value in fields.items()})
        return self.f.request(b"POST", path, args=args,
                              cookies={CSRF_COOKIE: self.token if cookie is None else cookie})

    def assertOneLine(self):
        events = [self.events[n] for n in range(self.seen, len(self.events))]
        self.seen = len(self.events)
        self.assertEqual([e for e in events if "log_failure" in e], [])
        lines = [e for e in events if "bad input" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1, events)

    def test_csrf_not_ascii(self):
        """
        A csrf field that is not ASCII is a mismatch (403), for the login,
        the logout and the kick alike.
        """
        for path in (b"/login", b"/logout"):
            r = self.post(path, csrf="é".encode() * 32)
            self.assertEqual(r.responseCode, 403, path)
        self.assertEqual(self.f.firewall.clients, {})
        self.assertEqual([e for e in self.events if "log_failure" in e], [])

    def test_undecodable_fields(self):
        """
        A field that is not UTF-8, or holds a control character, or is
        huge: 400 and one line.
        """
        for name in ("csrf", "url", "accept"):
            for value in (b"\xff\xfe", b"a\x00b", b"x" * 5000):
                r = self.post(**{name: value})
                self.assertEqual(r.responseCode, 400, (name, value))
                self.assertIn(b"could not be read", r.body())
                self.assertOneLine()
        r = self.f.request(b"GET", b"/login", args={b"url": [b"\xc3"]})
        self.assertEqual(r.responseCode, 400)
        self.assertOneLine()
        self.assertEqual(self.f.firewall.clients, {})

    def test_password_fields(self):
        """
        The same for the user name and password of a password login.
        """
        self.f.resource.method = PASSWORD
        for name in ("username", "password"):
            r = self.post(**dict({"username": b"alice", "password": b"pw"}, **{name: b"\xff"}))
            self.assertEqual(r.responseCode, 400, name)
            self.assertOneLine()

    def test_bad_cookie(self):
        """
        A cookie that is not a token (not ASCII, too long) is replaced on
        the form and refused on a POST.
        """
        for cookie in ("é".encode() * 30, b"\xff" * 30, b"a" * 5000):
            page = self.f.request(b"GET", b"/login", cookies={CSRF_COOKIE: cookie})
            self.assertEqual(page.responseCode, 200)
            self.assertIn(CSRF_COOKIE, page.cookies_out)
            r = self.post(cookie=cookie)
            self.assertEqual(r.responseCode, 403)
        self.assertEqual(self.f.firewall.clients, {})
