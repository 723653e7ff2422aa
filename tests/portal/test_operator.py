"""
Tests for the operator page (L{netsuite.portal.operator} through
L{netsuite.portal.resource}): HTTP Basic, the client list, the kick.
"""

import base64
import re

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.auth import hash_password
from netsuite.portal.operator import OperatorAuth
from netsuite.portal.resource import CSRF_COOKIE, PortalResource
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
        self.f.resource = PortalResource(self.f.portal, self.f.clock,
                                         operator=OperatorAuth(
                                             ("op", hash_password("s3cret", **FAST)),
                                             self.runner))

    def get(self, auth=None, path=b"/operator", method=b"GET", **kw):
        r = FakeRequest(method, path, HOST.encode(), **kw)
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
        for it; a verified pair is not checked again.
        """
        runner = HeldRunner()
        self.f.resource.operator.runner = runner
        r = self.get(basic("op", "s3cret"))
        self.assertEqual(len(runner.calls), 1)
        self.assertFalse(r.finished)
        runner.run_next()
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(self.get(basic("op", "s3cret")).responseCode, 200)
        self.assertEqual(runner.calls, [])

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
