"""
Tests for L{netsuite.portal.web}: the redirect, the pages, CSRF, login
and logout through the firewall's mailboxes, the probes and the API.
"""

import json
import re
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.web import CSRF_COOKIE, safe_url
from netsuite.registry import Stop

from .helpers import A, B, HOST, MAC_A, PortalFixture


class SafeURLTests(SynchronousTestCase):
    def test_accepts_http(self):
        self.assertEqual(safe_url("http://example.com/a?b=c"), "http://example.com/a?b=c")
        self.assertEqual(safe_url("https://example.com/"), "https://example.com/")

    def test_refuses_other_schemes(self):
        for url in ["javascript:alert(1)", "JavaScript://example.com/%0aalert(1)",
                    "data:text/html,x", "//evil.example/", "http:\\\\evil", "ftp://x/",
                    "http://", "http://a b/", "http://x/\r\nSet-Cookie: a=b", "", None]:
            self.assertIsNone(safe_url(url), url)

    def test_escapes_quotes(self):
        self.assertEqual(safe_url('http://x/"<a>'), "http://x/%22%3Ca%3E")


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
        token = self.token(self.login_page())
        r = self.post_login(token, client=B)
        self.assertEqual(r.responseCode, 503)
        self.assertEqual(self.f.firewall.clients, {})

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

    def test_api_venue(self):
        """
        With venue_info_url set, the API gives it, before and after login.
        """
        from netsuite.portal.web import PortalResource
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



class PortalSiteTests(SynchronousTestCase):
    def test_drop_client(self):
        """
        drop_client aborts every open connection from one address except
        the one given to keep, and leaves other clients' alone.
        """
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        from twisted.web.resource import Resource
        from netsuite.portal.web import PortalSite

        site = PortalSite(Resource(), timeout=None)  # no channel timers on the reactor
        transports = []
        for host in ("10.89.0.11", "10.89.0.11", "10.89.0.12"):
            protocol = site.buildProtocol(Address("TCP", host, 40000))
            transport = StringTransport(peerAddress=Address("TCP", host, 40000))
            protocol.makeConnection(transport)
            transports.append((protocol, transport))
        keep = transports[0][0]
        self.assertEqual(site.drop_client("10.89.0.11", keep=keep), 1)
        self.assertEqual([t.disconnecting for _, t in transports], [False, True, False])


class TemplateTests(SynchronousTestCase):
    def test_use_template(self):
        """
        An operator's template lays out the pages: $title escaped, $body
        as the page's own HTML.
        """
        from netsuite.portal import web
        self.addCleanup(web.use_template, web.DEFAULT_TEMPLATE)
        web.use_template("<main data-x='1'><h2>$title</h2>$body</main>")
        self.assertEqual(web._page("A <b>", "<p>hi</p>"),
                         b"<main data-x='1'><h2>A &lt;b&gt;</h2><p>hi</p></main>")


class StaticTests(SynchronousTestCase):
    def test_static_files(self):
        """
        The operator's files are served by plain name, with their type and
        no-store; other names, missing files and no template directory get
        a 404.
        """
        import os
        from netsuite.portal.web import PortalResource
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


class RedirectFrontTests(SynchronousTestCase):
    """
    L{RedirectFront}: plain foreign GETs and HEADs answered from bytes,
    everything else handed to twisted.web on the same connection.
    """

    def setUp(self):
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        from netsuite.portal.web import PortalSite
        self.f = PortalFixture()
        self.site = PortalSite(self.f.resource, reactor=self.f.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)
        peer = Address("TCP", str(A), 40000)
        self.protocol = self.site.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)
        self.f.registry.eventual.flush_sync()
        return self.transport.value()

    def responses(self, raw):
        """
        The (status line, headers, body) of each response in C{raw}.
        """
        found = []
        while raw:
            head, _, rest = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = {name.lower(): value for name, value in
                       (line.split(b": ", 1) for line in lines[1:])}
            size = int(headers.get(b"content-length", b"0"))
            found.append((lines[0], headers, rest[:size]))
            raw = rest[size:]
        return found

    def test_same_redirect_as_the_site(self):
        """
        The front's 307 carries the Location, Refresh, Cache-Control and
        page that the full site gives the same request.
        """
        raw = self.send(b"GET /some/page?x=1&y=2 HTTP/1.1\r\nHost: Example.com\r\n"
                        b"User-Agent: curl/7.88\r\nAccept: */*\r\n\r\n")
        [(status, headers, body)] = self.responses(raw)
        full = self.f.request(b"GET", b"/some/page?x=1&y=2", b"example.com")
        self.assertEqual(status, b"HTTP/1.1 307 Temporary Redirect")
        self.assertEqual(headers[b"location"], full.header(b"location"))
        self.assertEqual(headers[b"refresh"], full.header(b"refresh"))
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertEqual(headers[b"content-type"], b"text/html; charset=utf-8")
        self.assertEqual(body, full.body())
        self.assertIn(b"date", headers)
        self.assertFalse(self.transport.disconnecting)
        self.assertIsNone(self.protocol.wrappedProtocol.channel)
        self.assertEqual(self.site.redirected, 1)

    def test_pipelined_and_split(self):
        """
        Requests arriving together, or a head split over reads, each get
        their answer in order; the connection stays open (HTTP/1.1).
        """
        raw = self.send(b"GET /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHo")
        raw = self.send(b"st: b.example\r\n\r\n")
        locations = [h[b"location"] for _, h, _ in self.responses(raw)]
        self.assertEqual(locations, [
            b"http://10.89.0.1:5280/login?url=" + quote("http://a.example/a", safe="").encode(),
            b"http://10.89.0.1:5280/login?url=" + quote("http://b.example/b", safe="").encode()])
        self.assertFalse(self.transport.disconnecting)

    def test_head_and_close(self):
        """
        A HEAD gets the head only; HTTP/1.0 without keep-alive, or
        Connection: close, closes after the answer.
        """
        raw = self.send(b"HEAD / HTTP/1.0\r\nHost: a.example\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 307 "))
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"")
        self.assertTrue(self.transport.disconnecting)

    def test_keep_alive_1_0(self):
        raw = self.send(b"GET / HTTP/1.0\r\nHost: a.example\r\nConnection: Keep-Alive\r\n\r\n")
        self.assertIn(b"Connection: keep-alive", raw)
        self.assertFalse(self.transport.disconnecting)

    def test_event_when_watched(self):
        """
        C{/portal/request} still hears the front's requests.
        """
        seen = []
        self.f.registry.watch("/portal/request", seen.append)
        self.send(b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual(seen, [{"ip": A, "host": "example.com", "path": "/x",
                                 "method": "GET"}])

    def test_hands_over(self):
        """
        The portal's own pages, the probes, requests with a body, other
        methods, odd heads: twisted.web answers them on the same
        connection, and every later request there.
        """
        cases = [
            (b"GET / HTTP/1.1\r\nHost: 10.89.0.1:5280\r\n\r\n", b" 303 "),
            (b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\n\r\n",
             b" 307 "),
            (b"POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nab", b" 307 "),
            (b"OPTIONS / HTTP/1.1\r\nHost: a.example\r\n\r\n", b" 307 "),
            (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", b" 307 "),
            (b"GET / HTTP/1.1\r\n\r\n", b" 307 "),
        ]
        for request, status in cases:
            self.setUp()
            raw = self.send(request)
            self.assertIsNotNone(self.protocol.wrappedProtocol.channel, request)
            self.assertIn(status, raw.split(b"\r\n", 1)[0], request)
            self.assertEqual(self.site.redirected, 0)
        raw = self.send(b"GET /later HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(self.site.redirected, 0)

    def test_overlong_head(self):
        """
        A head longer than the front reads is twisted.web's to refuse.
        """
        raw = self.send(b"GET / HTTP/1.1\r\nHost: a.example\r\nX: " + b"y" * 20000)
        self.assertIsNotNone(self.protocol.wrappedProtocol.channel)
        self.assertTrue(self.transport.disconnecting or raw.startswith(b"HTTP/1.1 4"))

    def test_idle_timeout(self):
        """
        A connection that sends nothing is dropped after the site's timeout.
        """
        self.f.clock.advance(self.site.timeOut + 1)
        self.assertTrue(self.transport.disconnecting)

    def test_template_change(self):
        """
        Redirect pages kept from before a template change are not served
        after it.
        """
        from netsuite.portal import web
        self.send(b"GET /t HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.addCleanup(web.use_template, web.DEFAULT_TEMPLATE)
        web.use_template("<main>$body</main>")
        self.transport.clear()
        [(_, _, body)] = self.responses(self.send(b"GET /t HTTP/1.1\r\nHost: a.example\r\n\r\n"))
        self.assertTrue(body.startswith(b"<main><meta http-equiv"), body)
