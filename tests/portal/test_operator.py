"""
Tests for the operator page (L{netsuite.portal.operator} through
L{netsuite.portal.resource}): HTTP Basic, HTTPS only, the admin networks,
the limit on password checks, the client list, the kick.
"""

import base64
import ipaddress
import re

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.auth import hash_password
from netsuite.portal.operator import OperatorAuth
from netsuite.portal.resource import CSRF_COOKIE, PortalResource
from netsuite.portal.tls import ApiResource
from netsuite.testing import HeldRunner, SyncRunner

from .helpers import A, B, HOST, MAC_A, FakeRequest, PortalFixture

FAST = {"n": 16, "r": 1, "p": 1}
MAC_B = "02:4e:00:00:00:0c"


def basic(user, password):
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class OperatorTests(SynchronousTestCase):
    def setUp(self):
        self.f = PortalFixture()
        self.runner = SyncRunner()
        self.use(self.runner)

    def use(self, runner, **kw):
        self.f.resource = PortalResource(self.f.portal, self.f.clock,
                                         operator=OperatorAuth(
                                             ("op", hash_password("s3cret", **FAST)),
                                             runner, self.f.clock, **kw))
        self.f.resource.secure_base = "https://portal.example:8443"

    def get(self, auth=None, path=b"/operator", method=b"GET", secure=True, **kw):
        r = FakeRequest(method, path, HOST.encode(), secure=secure, **kw)
        if auth is not None:
            r.requestHeaders.addRawHeader(b"authorization", auth)
        r.render(self.f.resource)
        self.f.registry.eventual.flush_sync()
        return r

    def test_needs_credentials(self):
        for auth in [None, basic("op", "wrong"), basic("other", "s3cret"), b"Basic !!!",
                     b"Bearer x", basic("op", "")]:
            r = self.get(auth)
            self.assertEqual(r.responseCode, 401, auth)
            self.assertIn(b"Basic", r.header(b"www-authenticate"))
            self.assertNotIn(b"<table", r.body())
        r = self.get(None, b"/operator/kick", b"POST", args={b"ip": [str(A).encode()]})
        self.assertEqual(r.responseCode, 401)

    def test_check_off_reactor(self):
        """
        The password check (scrypt) runs through the runner: the page waits
        for it while the reactor answers other requests; a verified pair is
        not checked again.
        """
        runner = HeldRunner()
        self.f.resource.operator.runner = runner
        r = self.get(basic("op", "s3cret"))
        self.assertEqual(len(runner.calls), 1)
        self.assertFalse(r.finished)
        self.assertEqual(self.f.request(b"GET", b"/login").responseCode, 200)
        runner.run_next()
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(self.get(basic("op", "s3cret")).responseCode, 200)
        self.assertEqual(runner.calls, [])

    def test_https_only(self):
        """
        Over plain HTTP the page is refused (403, pointing to the HTTPS
        one) before any credentials are asked for or checked.
        """
        runner = HeldRunner()
        self.f.resource.operator.runner = runner
        for path, method in [(b"/operator", b"GET"), (b"/operator/kick", b"POST")]:
            r = self.get(basic("op", "s3cret"), path, method, secure=False)
            self.assertEqual(r.responseCode, 403)
            self.assertIsNone(r.header(b"www-authenticate"))
            self.assertIn(b"https://portal.example:8443/operator", r.body())
        self.assertEqual(runner.calls, [])

    def test_over_the_https_site(self):
        """
        The HTTPS site (L{ApiResource}) serves the page and the kick,
        which sends the operator back to the HTTPS page.
        """
        self.successResultOf(self.f.registry.send("/portal/authorize", {"ip": A}))
        site = ApiResource(self.f.resource, HOST)

        def over_https(path, method, **kw):
            r = FakeRequest(method, path, b"portal.example:8443", secure=True, **kw)
            r.requestHeaders.addRawHeader(b"authorization", basic("op", "s3cret"))
            r.render(site)
            self.f.registry.eventual.flush_sync()
            return r
        page = over_https(b"/operator", b"GET")
        self.assertEqual(page.responseCode, 200)
        token = re.search(r'name="csrf" value="([^"]+)"', page.body().decode()).group(1)
        r = over_https(b"/operator/kick", b"POST", cookies={CSRF_COOKIE: token.encode()},
                       args={b"ip": [str(A).encode()], b"csrf": [token.encode()]})
        self.assertEqual(r.responseCode, 303)
        self.assertEqual(r.header(b"location"), b"https://portal.example:8443/operator")
        self.assertEqual(self.f.firewall.clients, {})

    def test_admin_networks(self):
        """
        With admin networks, a client outside them gets a 403 and no
        check; one inside gets the page.
        """
        runner = HeldRunner()
        self.use(runner, networks=[ipaddress.IPv4Network("10.89.0.8/30")])
        r = self.get(basic("op", "s3cret"), client=B)
        self.assertEqual(r.responseCode, 403)
        self.assertIsNone(r.header(b"www-authenticate"))
        self.assertEqual(runner.calls, [])
        r = self.get(basic("op", "s3cret"), client=A)
        runner.run_next()
        self.assertEqual(r.responseCode, 200)

    def test_limit_per_client(self):
        """
        A client's sixth unverified login in a minute gets a 429 with
        Retry-After and no scrypt, even while the first five are still
        being checked; another client is still checked; after the window,
        the right password works.
        """
        runner = HeldRunner()
        self.use(runner, max_failures=5, max_checks=0)
        held = [self.get(basic("op", f"guess{n}")) for n in range(5)]
        r = self.get(basic("op", "s3cret"))
        self.assertEqual(r.responseCode, 429)
        self.assertEqual(r.header(b"retry-after"), b"60")
        self.assertIsNone(r.header(b"www-authenticate"))
        self.assertEqual(len(runner.calls), 5)
        while runner.calls:
            runner.run_next()
        self.assertEqual([h.responseCode for h in held], [401] * 5)
        other = self.get(basic("op", "wrong"), client=B)
        runner.run_next()
        self.assertEqual(other.responseCode, 401)
        self.f.clock.advance(60)
        r = self.get(basic("op", "s3cret"))
        runner.run_next()
        self.assertEqual(r.responseCode, 200)

    def test_limit_overall(self):
        """
        Checks count in all, whoever makes them: past max_checks in the
        window every new pair gets a 429; a pair already verified is still
        let in.
        """
        self.use(SyncRunner(), max_failures=0, max_checks=3)
        self.assertEqual(self.get(basic("op", "s3cret")).responseCode, 200)
        for client in [A, B]:
            self.assertEqual(self.get(basic("op", "bad"), client=client).responseCode, 401)
        c = ipaddress.IPv4Address("10.89.0.13")
        r = self.get(basic("op", "bad"), client=c)
        self.assertEqual(r.responseCode, 429)
        self.assertEqual(self.get(basic("op", "s3cret"), client=c).responseCode, 200)

    def test_kick_bad_input(self):
        """
        A kick whose csrf is not ASCII is refused (403); one whose ip is
        not UTF-8 gets a 400 (after the credentials are checked); neither
        a 500.
        """
        self.successResultOf(self.f.registry.send("/portal/authorize", {"ip": A}))
        token = b"k" * 32
        for csrf, ip, code in [("é".encode() * 32, str(A).encode(), 403),
                               (token, b"\xff", 400)]:
            r = self.get(basic("op", "s3cret"), b"/operator/kick", b"POST",
                         args={b"ip": [ip], b"csrf": [csrf]}, cookies={CSRF_COOKIE: token})
            self.assertEqual(r.responseCode, code, csrf)
        self.assertIn(A, self.f.firewall.clients)

    def test_absent_without_config(self):
        f = PortalFixture()
        self.assertEqual(f.request(b"GET", b"/operator").responseCode, 404)

    def test_lists_clients_escaped(self):
        self.f.sessions.login(A, MAC_A, "password", "<b>alice</b>&")
        self.f.sessions.login(B, MAC_B, "click")
        self.successResultOf(self.f.portal.logout(B, "idle-timeout"))
        self.f.clock.advance(42)
        r = self.get(basic("op", "s3cret"))
        self.assertEqual(r.responseCode, 200)
        body = r.body().decode()
        self.assertIn("&lt;b&gt;alice&lt;/b&gt;&amp;", body)
        self.assertNotIn("<b>alice", body)
        self.assertIn(str(MAC_A), body)
        self.assertIn("<td>42</td>", body)
        self.assertIn("idle-timeout", body)
        self.assertEqual(r.header(b"cache-control"), b"no-store")

    def test_graphs_link(self):
        """
        With [portal.operator] graphs_url, the page links to the stats
        service's graphs; without, no link; the key takes https URLs only.
        """
        self.assertNotIn("Traffic graphs", self.get(basic("op", "s3cret")).body().decode())
        self.f.resource.graphs_url = 'https://10.89.0.1:8444/?a="b"'
        body = self.get(basic("op", "s3cret")).body().decode()
        self.assertIn('<a href="https://10.89.0.1:8444/?a=&quot;b&quot;">Traffic graphs</a>',
                      body)
        from netsuite.config.schema import ConfigError, parse
        from netsuite.services import all_sections
        for bad in ("http://10.89.0.1:8444/", "javascript:alert(1)", "https://a b/"):
            with self.assertRaises(ConfigError) as caught:
                parse({"portal": {"operator": {"graphs_url": bad}}}, "t.toml", all_sections())
            self.assertIn("portal.operator.graphs_url", str(caught.exception))

    def test_kick(self):
        self.successResultOf(self.f.registry.send("/portal/authorize", {"ip": A}))
        told = []
        self.f.registry.watch("/portal/logout", told.append)
        page = self.get(basic("op", "s3cret"))
        token = re.search(r'name="csrf" value="([^"]+)"', page.body().decode()).group(1)
        cookie = page.cookies_out[CSRF_COOKIE][0]
        # no CSRF token: refused
        r = self.get(basic("op", "s3cret"), b"/operator/kick", b"POST",
                     args={b"ip": [str(A).encode()]}, cookies={CSRF_COOKIE: cookie})
        self.assertEqual(r.responseCode, 403)
        self.assertIn(A, self.f.firewall.clients)
        r = self.get(basic("op", "s3cret"), b"/operator/kick", b"POST",
                     args={b"ip": [b"nonsense"], b"csrf": [token.encode()]},
                     cookies={CSRF_COOKIE: cookie})
        self.assertEqual(r.responseCode, 400)
        r = self.get(basic("op", "s3cret"), b"/operator/kick", b"POST",
                     args={b"ip": [str(A).encode()], b"csrf": [token.encode()]},
                     cookies={CSRF_COOKIE: cookie})
        self.assertEqual(r.responseCode, 303)
        self.assertEqual(self.f.firewall.clients, {})
        self.f.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "operator"}])
        body = self.get(basic("op", "s3cret")).body().decode()
        self.assertIn("operator", body)
