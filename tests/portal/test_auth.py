"""
Tests for L{netsuite.portal.auth}: scrypt hashes, the users file and LDAP
back ends, the login rate limit, moving a session, the data quota.
"""

import io
import ipaddress
import json
import os
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netsuite.portal import auth
from netsuite.portal.auth import (PASSWORD, LdapBind, LoginLimiter, UsersFile, bind_dn,
                                  hash_password, parse_users, verify_password)
from netsuite.portal.resource import CSRF_COOKIE, PortalResource
from netsuite.config.fields import Secret
from netsuite.ldap import LdapDirectory, MemoryDirectory
from netsuite.registry import CONTINUE, MAC, Stop
from netsuite.runner import ThreadRunner
from netsuite.testing import HeldRunner, SyncRunner

from ..ldap.people import slapd_with_alice
from .helpers import A, B, MAC_A, PortalFixture
from ..test_clock import watched

MAC_B = "02:4e:00:00:00:0c"
FAST = {"n": 16, "r": 1, "p": 1}


class HashTests(SynchronousTestCase):
    def test_round_trip(self):
        encoded = hash_password("s3cret é", **FAST)
        self.assertTrue(encoded.startswith("scrypt$16$1$1$"))
        self.assertTrue(verify_password("s3cret é", encoded))
        self.assertFalse(verify_password("s3cret e", encoded))

    def test_default_parameters(self):
        encoded = hash_password("x")
        self.assertEqual(encoded.split("$")[:4], ["scrypt", "16384", "8", "1"])
        self.assertTrue(verify_password("x", encoded))

    def test_salted(self):
        self.assertNotEqual(hash_password("x", **FAST), hash_password("x", **FAST))

    def test_malformed_never_matches(self):
        for bad in ["", "plain", "scrypt$16$1$1$", "md5$16$1$1$AA$AA", "scrypt$15$1$1$AA$AA",
                    "scrypt$16$1$1$!!$AA", "scrypt$16$1$1$AA$"]:
            self.assertFalse(verify_password("x", bad), bad)
        self.assertIsNotNone(auth.check_hash("plain"))
        self.assertIsNone(auth.check_hash(""))

    def test_parse_users(self):
        h = hash_password("pw", **FAST)
        users = parse_users(f"# comment\n\nalice:{h}\nbroken line\nbob:plain\n")
        self.assertEqual(users, {"alice": h})

    def test_main(self):
        out = io.StringIO()
        self.assertEqual(auth.main(["hash"], io.StringIO("hunter2\n"), out), 0)
        self.assertTrue(verify_password("hunter2", out.getvalue().strip()))
        self.assertEqual(auth.main(["hash"], io.StringIO(""), io.StringIO(), io.StringIO()), 1)
        self.assertEqual(auth.main([], io.StringIO(""), io.StringIO(), io.StringIO()), 2)

    def test_bind_dn_escaped(self):
        template = "uid={user},ou=people,dc=example,dc=test"
        self.assertEqual(bind_dn(template, "alice"), "uid=alice,ou=people,dc=example,dc=test")
        dn = bind_dn(template, "x,ou=admins+cn=a\\\"<>;= #")
        self.assertTrue(dn.endswith(",ou=people,dc=example,dc=test"))
        self.assertNotIn(",ou=admins", dn)
        self.assertIn("\\,ou\\=admins", dn.replace("\\3d", "\\="))


def password_fixture(test, users=None, ldap=None, move_session=True, quota=0,
                     idle_timeout=0, macs=None):
    f = PortalFixture(idle_timeout=idle_timeout, macs=macs)
    path = test.mktemp()
    with open(path, "w") as file:
        for name, pw in (users or {}).items():
            file.write(f"{name}:{hash_password(pw, **FAST)}\n")
    if users is not None:
        f.registry.listen("/portal/authenticate", UsersFile(path, SyncRunner(), last=ldap is None),
                          first=True)
    if ldap is not None:
        f.registry.listen("/portal/authenticate", ldap, first=True)
    f.portal.move_session = move_session
    f.sessions.quota_bytes = quota
    f.resource = PortalResource(f.portal, f.clock, method=PASSWORD)
    return f


def post(f, username, password, client=A, token="t" * 32):
    return f.request(b"POST", b"/login", client=client, args={
        b"csrf": [token.encode()], b"url": [b""], b"accept": [b"1"],
        b"username": [username.encode()], b"password": [password.encode()]},
        cookies={CSRF_COOKIE: token.encode()})


class UsersFileTests(SynchronousTestCase):
    def test_form_has_fields(self):
        f = password_fixture(self, {"alice": "pw"})
        body = f.request(b"GET", b"/login").body().decode()
        self.assertIn('name="username"', body)
        self.assertIn('type="password" name="password"', body)
        g = PortalFixture()
        self.assertNotIn('name="password"', g.request(b"GET", b"/login").body().decode())

    def test_login(self):
        f = password_fixture(self, {"alice": "pw"})
        seen = []
        f.registry.watch("/portal/login", seen.append)
        r = post(f, "alice", "pw")
        self.assertEqual(r.responseCode, 303)
        self.assertIn(A, f.firewall.clients)
        self.assertEqual(f.sessions.get(A).username, "alice")
        f.registry.eventual.flush_sync()
        self.assertEqual(seen, [{"ip": A, "mac": MAC_A, "reason": "password",
                                 "username": "alice"}])

    def test_refused(self):
        f = password_fixture(self, {"alice": "pw"})
        for user, pw in [("alice", "wrong"), ("mallory", "pw")]:
            r = post(f, user, pw)
            self.assertEqual(r.responseCode, 403, user)
            self.assertNotIn(A, f.firewall.clients)
        r = post(f, "alice", "")
        self.assertEqual(r.responseCode, 400)

    def test_unknown_user_same_answer(self):
        """
        An unknown user name and a wrong password get the same page.
        """
        f = password_fixture(self, {"alice": "pw"})
        wrong, unknown = post(f, "alice", "wrong"), post(f, "mallory", "wrong")
        self.assertEqual((wrong.responseCode, unknown.responseCode), (403, 403))
        self.assertEqual(unknown.body(), wrong.body())
        self.assertIn(b"wrong username or password", unknown.body())

    def test_unknown_user_same_cost(self):
        """
        For an unknown user the file runs the same scrypt (the parameters
        of its hashes) in the runner before answering; with a back end
        after it, it then goes on down the chain.
        """
        path = self.mktemp()
        with open(path, "w") as file:
            file.write(f"alice:{hash_password('pw', **FAST)}\n")
        message = {"method": PASSWORD, "username": "mallory", "password": "pw"}
        for last, answer in [(True, "Stop({'ok': False, 'message': 'wrong username or "
                                    "password'})"), (False, "CONTINUE")]:
            runner = HeldRunner()
            d = UsersFile(path, runner, last=last)(message)
            self.assertNoResult(d)
            [(_, fn, (password, encoded))] = runner.calls
            self.assertIs(fn, verify_password)
            self.assertTrue(encoded.startswith("scrypt$16$1$1$"), encoded)
            self.assertFalse(verify_password("pw", encoded))
            runner.run_next()
            self.assertEqual(repr(self.successResultOf(d)), answer)
        runner = HeldRunner()
        UsersFile("/nonexistent", runner, last=True)(message)
        self.assertTrue(runner.calls[0][2][1].startswith("scrypt$16384$8$1$"))

    def test_click_method_not_accepted_by_file(self):
        uf = UsersFile("/nonexistent", SyncRunner())
        self.assertEqual(repr(uf({"method": "click"})), "CONTINUE")

    def test_file_reloaded(self):
        uf = UsersFile(self.mktemp(), SyncRunner())
        with open(uf.path, "w") as file:
            file.write(f"bob:{hash_password('pw2', **FAST)}\n")
        self.assertIn("bob", uf.users())
        with open(uf.path, "a") as file:
            file.write(f"carol:{hash_password('pw3', **FAST)}\n")
        self.assertIn("carol", uf.users())
        os.remove(uf.path)
        self.assertEqual(uf.users(), {})


class RateLimitTests(SynchronousTestCase):
    def test_limiter(self):
        f = PortalFixture()
        limiter = LoginLimiter(f.clock, 3, 60)
        for _ in range(3):
            self.assertIsNone(limiter.retry_after(A))
            limiter.failed(A)
            f.clock.advance(10)
        self.assertEqual(limiter.retry_after(A), 30)
        self.assertIsNone(limiter.retry_after(B))
        f.clock.advance(30)
        self.assertIsNone(limiter.retry_after(A))
        limiter.failed(A)
        self.assertEqual(limiter.retry_after(A), 10)
        limiter.succeeded(A)
        self.assertIsNone(limiter.retry_after(A))
        self.assertIsNone(LoginLimiter(f.clock, 0, 60).retry_after(A))

    def test_clock_step_back(self):
        """
        After the wall clock steps an hour back, a client locked out for
        30 s more waits 30 s, not an hour and 30 s.
        """
        clock, watch = watched()
        limiter = LoginLimiter(clock, 3, 60)
        for _ in range(3):
            limiter.failed(A)
            clock.advance(10)
        clock.step(-3600)
        watch.check()
        self.assertEqual(limiter.retry_after(A), 30)
        clock.advance(30)
        self.assertIsNone(limiter.retry_after(A))

    def test_attempts(self):
        """
        Attempts count whatever their outcome: past max_attempts in the
        window, the client waits until the oldest leaves it.
        """
        f = PortalFixture()
        limiter = LoginLimiter(f.clock, 5, 60, max_attempts=3)
        for _ in range(3):
            self.assertIsNone(limiter.retry_after(A))
            limiter.attempted(A)
            limiter.succeeded(A)
            f.clock.advance(10)
        self.assertEqual(limiter.retry_after(A), 30)
        self.assertIsNone(limiter.retry_after(B))
        f.clock.advance(30)
        self.assertIsNone(limiter.retry_after(A))

    def test_keys(self):
        """
        A client is several keys (IP, MAC): each counts, the most limited
        one decides.
        """
        f = PortalFixture()
        limiter = LoginLimiter(f.clock, 2, 60)
        limiter.failed(A, MAC_A)
        f.clock.advance(10)
        limiter.failed(B, MAC_A)
        self.assertIsNone(limiter.retry_after(A))
        self.assertEqual(limiter.retry_after(A, MAC_A), 50)
        limiter.succeeded(A, MAC_A)
        self.assertIsNone(limiter.retry_after(B, MAC_A))

    def test_books_bounded(self):
        """
        Keys whose times have left the window are dropped as new ones
        come: a stream of new addresses does not grow the books forever.
        """
        f = PortalFixture()
        limiter = LoginLimiter(f.clock, 5, 60, max_attempts=5)
        for n in range(20000):
            key = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            limiter.failed(key)
            limiter.attempted(key)
            f.clock.advance(0.1)  # 600 keys a window
        self.assertLess(len(limiter._failures), 2048)
        self.assertLess(len(limiter._attempts), 2048)
        self.assertEqual(limiter.retry_after(key), None)
        for _ in range(4):
            limiter.failed(key)
        self.assertEqual(limiter.retry_after(key), 60)

    def test_web_429_by_mac(self):
        """
        A device that takes another address keeps its count: failures
        count per MAC as well as per IP.
        """
        c = ipaddress.IPv4Address("10.89.0.13")
        f = password_fixture(self, {"alice": "pw"}, macs={A: MAC_A, B: MAC_A, c: MAC_A})
        for client in [A, A, A, B, B]:
            self.assertEqual(post(f, "alice", "bad", client=client).responseCode, 403)
            f.clock.advance(1)
        r = post(f, "alice", "pw", client=c)
        self.assertEqual(r.responseCode, 429)
        self.assertEqual(r.header(b"retry-after"), b"55")
        self.assertNotIn(c, f.firewall.clients)
        f.clock.advance(55)
        self.assertEqual(post(f, "alice", "pw", client=c).responseCode, 303)

    def test_web_429_click_through(self):
        """
        Click-through logins are limited too: the fourth login in a minute
        from one client (logging out between) gets a 429.
        """
        f = PortalFixture()
        f.resource.limiter = LoginLimiter(f.clock, 5, 60, max_attempts=3)
        token = "t" * 32
        for n in range(4):
            r = f.request(b"POST", b"/login", args={
                b"csrf": [token.encode()], b"url": [b""], b"accept": [b"1"]},
                cookies={CSRF_COOKIE: token.encode()})
            self.assertEqual(r.responseCode, 303 if n < 3 else 429, n)
            self.successResultOf(f.portal.logout(A, "logout"))
            f.clock.advance(1)
        self.assertIn(b"Too many login attempts", r.body())

    def test_web_429(self):
        """
        Five failures in a minute: the sixth attempt (even a right one)
        gets a 429 with Retry-After; other IPs are unaffected; after the
        window the right password works.
        """
        f = password_fixture(self, {"alice": "pw", "bob": "pw"}, macs={A: MAC_A, B: MAC_B})
        for _ in range(5):
            self.assertEqual(post(f, "alice", "bad").responseCode, 403)
            f.clock.advance(1)
        r = post(f, "alice", "pw")
        self.assertEqual(r.responseCode, 429)
        self.assertEqual(r.header(b"retry-after"), b"55")
        self.assertNotIn(A, f.firewall.clients)
        self.assertEqual(post(f, "bob", "pw", client=B).responseCode, 303)
        f.clock.advance(55)
        self.assertEqual(post(f, "alice", "pw").responseCode, 303)


class CodeMethodTests(SynchronousTestCase):
    """
    C{method = "code"}: the form asks for an access code, and a back end on
    C{/portal/authenticate} (a voucher process, over the bus) decides.
    """

    def fixture(self):
        f = PortalFixture()
        f.resource = PortalResource(f.portal, f.clock, method=auth.CODE)
        asked = []

        def vouchers(message):
            asked.append(message)
            if message.get("method") == auth.CODE:
                return Stop({"ok": message.get("code") == "ABC-123", "message": "bad code"})
            return CONTINUE
        f.registry.listen("/portal/authenticate", vouchers, first=True)
        return f, asked

    def post(self, f, code):
        token = "t" * 32
        return f.request(b"POST", b"/login", args={
            b"csrf": [token.encode()], b"url": [b""], b"accept": [b"1"],
            b"code": [code.encode()]}, cookies={CSRF_COOKIE: token.encode()})

    def test_form(self):
        f, _ = self.fixture()
        body = f.request(b"GET", b"/login").body().decode()
        self.assertIn('name="code"', body)
        self.assertNotIn('name="password"', body)

    def test_login(self):
        """
        The right code logs in, a wrong one is refused with the back end's
        message; the back end sees the code and the method.
        """
        f, asked = self.fixture()
        r = self.post(f, "nope")
        self.assertEqual(r.responseCode, 403)
        self.assertIn(b"bad code", r.body())
        self.assertNotIn(A, f.firewall.clients)
        self.assertEqual(self.post(f, " ABC-123 ").responseCode, 303)
        self.assertIn(A, f.firewall.clients)
        self.assertEqual([(m["method"], m["code"]) for m in asked],
                         [("code", "nope"), ("code", "ABC-123")])

    def test_empty_code(self):
        f, asked = self.fixture()
        self.assertEqual(self.post(f, "  ").responseCode, 400)
        self.assertEqual(asked, [])

    def test_click_through_refuses_code(self):
        """
        With nobody answering codes, the stock click-through does not let
        a code login in.
        """
        f = PortalFixture()
        f.resource = PortalResource(f.portal, f.clock, method=auth.CODE)
        self.assertEqual(self.post(f, "anything").responseCode, 403)
        self.assertNotIn(A, f.firewall.clients)

    def test_install_method(self):
        """
        C{method} overrides the choice made from the configured back ends.
        """
        f = PortalFixture()
        section = SimpleNamespace(users_file="", ldap_url="", ldap_bind_dn="", ldap_deadline=1.0,
                                  max_failures=5, failure_window=60.0, move_session=True,
                                  quota_bytes=0, max_attempts=20, method="code")
        operator = SimpleNamespace(username="", password_hash="")
        self.assertEqual(auth.install(f.portal, section, operator, f.clock, SyncRunner())["method"], "code")
        section.method = ""
        self.assertEqual(auth.install(f.portal, section, operator, f.clock, SyncRunner())["method"], "click")


class MoveSessionTests(SynchronousTestCase):
    def test_moves_to_new_mac(self):
        f = password_fixture(self, {"alice": "pw"}, macs={A: MAC_A, B: MAC_B})
        told = []
        f.registry.watch("/portal/logout", told.append)
        self.assertEqual(post(f, "alice", "pw").responseCode, 303)
        started = f.sessions.get(A).started
        f.firewall.add_traffic(A, up=500)
        f.sessions.quota_bytes = 10000
        self.successResultOf(f.portal.sample())
        f.clock.advance(100)
        self.assertEqual(post(f, "alice", "pw", client=B).responseCode, 303)
        self.assertEqual(list(f.firewall.clients), [B])
        self.assertIsNone(f.sessions.get(A))
        moved = f.sessions.get(B)
        self.assertEqual((moved.mac, moved.username, moved.started, moved.bytes_used),
                         (MAC(MAC_B), "alice", started, 500))
        f.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "moved"}])
        self.assertEqual(f.portal.last_logout[A][0], "moved")

    def test_same_ip_new_mac(self):
        """
        A login on the same IP from a new MAC replaces the session, and the
        old one's end is told (reason moved) and remembered.
        """
        f = password_fixture(self, {"alice": "pw"})
        told = []
        f.registry.watch("/portal/logout", told.append)
        post(f, "alice", "pw")
        f.macs[A] = MAC_B
        post(f, "alice", "pw")
        self.assertEqual(str(f.firewall.clients[A].mac), MAC_B)
        self.assertEqual(len(f.sessions.all()), 1)
        f.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "moved"}])
        self.assertEqual(f.portal.last_logout[A][0], "moved")

    def test_relogin_keeps_session(self):
        """
        Logging in again as the same user from the same device keeps the
        session: its start, the data it used (its quota is not renewed),
        nothing told on /portal/login or /portal/logout.
        """
        f = password_fixture(self, {"alice": "pw"}, quota=1000)
        told = []
        f.registry.watch("/portal/login", told.append)
        f.registry.watch("/portal/logout", told.append)
        post(f, "alice", "pw")
        f.firewall.add_traffic(A, up=600)
        self.successResultOf(f.portal.sample())
        before = f.sessions.get(A)
        f.clock.advance(100)
        self.assertEqual(post(f, "alice", "pw").responseCode, 303)
        f.firewall.add_traffic(A, up=10)
        self.successResultOf(f.portal.sample())
        after = f.sessions.get(A)
        self.assertEqual((after.started, after.username, after.bytes_used),
                         (before.started, "alice", 610))
        f.registry.eventual.flush_sync()
        self.assertEqual([m.get("reason") for m in told], ["password"])

    def test_relogin_as_another_user(self):
        """
        Another user logging in on a device with a session replaces it:
        the first user's session ends (reason replaced, told and
        remembered), the new one is the new user's, from now.
        """
        f = password_fixture(self, {"alice": "pw", "bob": "pw2"})
        told = []
        f.registry.watch("/portal/logout", told.append)
        post(f, "alice", "pw")
        f.clock.advance(100)
        self.assertEqual(post(f, "bob", "pw2").responseCode, 303)
        session = f.sessions.get(A)
        self.assertEqual((session.username, session.started), ("bob", f.clock.seconds()))
        self.assertIn(A, f.firewall.clients)
        f.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "replaced"}])
        self.assertEqual(f.portal.last_logout[A][0], "replaced")

    def test_not_moved_when_off(self):
        f = password_fixture(self, {"alice": "pw"}, move_session=False,
                             macs={A: MAC_A, B: MAC_B})
        post(f, "alice", "pw")
        post(f, "alice", "pw", client=B)
        self.assertEqual(sorted(f.firewall.clients), [A, B])
        self.assertEqual(len(f.sessions.by_username("alice")), 2)


class QuotaTests(SynchronousTestCase):
    def test_quota(self):
        f = password_fixture(self, {"alice": "pw"}, quota=1000)
        told = []
        f.registry.watch("/portal/logout", told.append)
        post(f, "alice", "pw")
        api = json.loads(f.request(b"GET", b"/api").body())
        self.assertEqual(api["bytes-remaining"], 1000)
        f.firewall.add_traffic(A, up=300, down=400)
        self.assertEqual(self.successResultOf(f.portal.sample()), [])
        api = json.loads(f.request(b"GET", b"/api").body())
        self.assertEqual(api["bytes-remaining"], 300)
        f.firewall.add_traffic(A, down=300)
        self.assertEqual(self.successResultOf(f.portal.sample()), [(A, "quota")])
        self.assertEqual(f.firewall.clients, {})
        f.registry.eventual.flush_sync()
        self.assertEqual(told[-1]["reason"], "quota")

    def test_counters_started_again(self):
        """
        When the firewall's counters start again (it was restarted), what
        the session used before still counts against its quota.
        """
        f = password_fixture(self, {"alice": "pw"}, quota=1000)
        post(f, "alice", "pw")
        f.firewall.add_traffic(A, up=900)
        self.successResultOf(f.portal.sample())
        f.firewall.wipe()  # a firewall restart: its entry for A is made anew, from 0
        self.successResultOf(f.registry.send("/firewall/authorize", {"ip": A, "mac": MAC_A}))
        f.firewall.add_traffic(A, up=10)
        self.successResultOf(f.portal.sample())
        self.assertEqual(f.sessions.get(A).bytes_used, 910)
        self.assertEqual(json.loads(f.request(b"GET", b"/api").body())["bytes-remaining"], 90)

    def test_restore_keeps_bytes_used(self):
        """
        A portal restarted beside a firewall that starts afresh keeps the
        sessions' byte counts: restoring reads the new counters at once,
        before the client can pass its old count again.
        """
        from netsuite.portal.sessions import SessionStore
        path = os.path.abspath(self.mktemp())
        f = PortalFixture(store=SessionStore(path))
        f.sessions.quota_bytes = 10000
        self.successResultOf(f.registry.send("/portal/authorize", {"ip": A}))
        f.firewall.add_traffic(A, up=900)
        self.successResultOf(f.portal.sample())
        f.sessions.store.close()
        g = PortalFixture(store=SessionStore(path))
        g.sessions.quota_bytes = 10000
        self.successResultOf(g.portal.restore())
        g.firewall.add_traffic(A, up=1000)  # more than before the restart
        self.successResultOf(g.portal.sample())
        self.assertEqual(g.sessions.get(A).bytes_used, 1900)

    def test_no_quota_no_field(self):
        f = PortalFixture()
        f.sessions.login(A, MAC_A)
        self.assertNotIn("bytes-remaining", json.loads(f.request(b"GET", b"/api").body()))

    def test_store_keeps_username_and_bytes(self):
        from netsuite.portal.sessions import SessionStore
        path = os.path.abspath(self.mktemp())
        f = PortalFixture(store=SessionStore(path))
        f.sessions.login(A, MAC_A, "password", "alice", bytes_base=42)
        self.assertTrue(self.successResultOf(f.sessions.durable()))
        f.sessions.store.close()
        g = PortalFixture(store=SessionStore(path))
        s = g.sessions.get(A)
        self.assertEqual((s.username, s.bytes_used), ("alice", 42))


class LdapBindUnitTests(SynchronousTestCase):
    def test_answers(self):
        f = PortalFixture()
        calls = []

        class Runner:
            def run(self, fn, *args):
                calls.append(args)
                return succeed({} if args[1] == "right" else None)
        backend = LdapBind(MemoryDirectory(), "uid={user},dc=t", 2.0, f.clock, Runner())
        answer = self.successResultOf(backend({"method": PASSWORD, "username": "a,b",
                                               "password": "right"}))
        self.assertEqual(answer, Stop({"ok": True, "username": "a,b"}))
        self.assertEqual(calls[0][:2], ("uid=a\\,b,dc=t", "right"))
        answer = self.successResultOf(backend({"method": PASSWORD, "username": "a",
                                               "password": "wrong"}))
        self.assertFalse(answer.value["ok"])
        self.assertEqual(repr(backend({"method": "click"})), "CONTINUE")
        self.assertEqual(repr(backend({"method": PASSWORD, "username": "a",
                                       "password": ""})), "CONTINUE")

    def test_deadline(self):
        f = PortalFixture()
        backend = LdapBind(MemoryDirectory(), "uid={user},dc=t", 2.0, f.clock, HeldRunner())
        d = backend({"method": PASSWORD, "username": "a", "password": "p"})
        self.assertNoResult(d)
        f.clock.advance(2)
        answer = self.successResultOf(d)
        self.assertFalse(answer.value["ok"])
        self.assertIn("unavailable", answer.value["message"])

    def test_install(self):
        f = PortalFixture()
        path = self.mktemp()
        open(path, "w").close()
        section = SimpleNamespace(users_file=path, ldap_url="ldap://127.0.0.1:1/",
                                  ldap_bind_dn="uid={user},dc=t", ldap_deadline=1.0,
                                  ldap_up_attribute="", ldap_down_attribute="",
                                  max_failures=3, failure_window=30.0, move_session=False,
                                  quota_bytes=99, max_attempts=7, method="")
        operator = SimpleNamespace(username="op", password_hash=Secret(hash_password("x", **FAST)),
                                   admin_networks=[ipaddress.IPv4Network("10.89.1.0/24")],
                                   max_failures=2, max_checks=9, failure_window=10.0)
        kw = auth.install(f.portal, section, operator, f.clock, SyncRunner())
        self.assertEqual(kw["method"], PASSWORD)
        self.assertEqual(kw["operator"].username, "op")
        self.assertTrue(kw["operator"].serves(ipaddress.IPv4Address("10.89.1.5")))
        self.assertFalse(kw["operator"].serves(A))
        self.assertEqual((kw["limiter"].max_failures, kw["limiter"].max_attempts), (3, 7))
        self.assertEqual((f.portal.move_session, f.sessions.quota_bytes), (False, 99))
        listeners = f.registry.describe("/portal/authenticate")[0]["listeners"]
        self.assertEqual([l["tags"].get("backend") for l in listeners],
                         ["users-file", "ldap", None])


class SlapdBindTests(TestCase):
    """
    The LDAP back end against a real slapd with a people entry.
    """

    timeout = 60

    def setUp(self):
        self.runner = ThreadRunner(reactor, threads=2, name="test-ldap-bind")
        self.addCleanup(self.runner.stop)
        self.slapd = slapd_with_alice(self)

    @inlineCallbacks
    def test_bind(self):
        backend = LdapBind(LdapDirectory(self.slapd.url),
                           "uid={user},ou=people," + self.slapd.suffix, 5.0, reactor, self.runner)
        answer = yield backend({"method": PASSWORD, "username": "alice",
                                "password": "wonderland"})
        self.assertEqual(answer.value, {"ok": True, "username": "alice"})
        for user, pw in [("alice", "nope"), ("bob", "wonderland"), ("*", "wonderland"),
                         ("alice,ou=people", "wonderland")]:
            answer = yield backend({"method": PASSWORD, "username": user, "password": pw})
            self.assertEqual(answer.value, {"ok": False, "message": auth.WRONG}, user)

    @inlineCallbacks
    def test_down(self):
        url = self.slapd.url
        self.slapd.stop()
        backend = LdapBind(LdapDirectory(url), "uid={user},ou=people,dc=example,dc=test", 2.0,
                           reactor, self.runner)
        answer = yield backend({"method": PASSWORD, "username": "alice",
                                "password": "wonderland"})
        self.assertFalse(answer.value["ok"])
        self.assertIn("unavailable", answer.value["message"])

