"""
Tests for L{netsuite.portal.rates} and the rates the login back ends give:
the users file's third field, LDAP attributes, the answer on
C{/portal/authenticate} passed to C{/firewall/authorize} and kept in the
session across a restore.
"""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError
from netsuite.ldap import MemoryDirectory
from netsuite.portal.auth import PASSWORD, LdapBind, UsersFile, hash_password, read_users
from netsuite.portal.rates import answer_rates, attribute_rates, check_rate, parse_rates
from netsuite.portal.resource import PortalResource
from netsuite.portal.sessions import SessionStore
from netsuite.registry import Stop
from netsuite.testing import SyncRunner

from .helpers import A, MAC_A, PortalFixture
from .test_auth import FAST, post

PEOPLE = "ou=people,dc=t"


class ParseTests(SynchronousTestCase):
    def test_parse_rates(self):
        """
        up_kbit=N and down_kbit=N, either left out, commas or spaces
        between; anything else is refused saying what is wrong.
        """
        self.assertEqual(parse_rates("up_kbit=1000,down_kbit=4000"),
                         {"up_kbit": 1000, "down_kbit": 4000})
        self.assertEqual(parse_rates(" down_kbit=0 "), {"down_kbit": 0})
        self.assertEqual(parse_rates("up_kbit=5 down_kbit=6"), {"up_kbit": 5, "down_kbit": 6})
        for bad, said in (("", "no rate"), ("up=5", "is not"), ("up_kbit=-1", "whole number"),
                          ("up_kbit=fast", "whole number"), ("up_kbit=1.5", "whole number"),
                          ("down_kbit=10000001", "whole number"),
                          ("up_kbit=1,up_kbit=2", "twice")):
            error = self.assertRaises(ValueError, parse_rates, bad)
            self.assertIn(said, str(error), bad)

    def test_answer_and_attributes(self):
        """
        An answer's rates are checked (None is no rate); a directory entry's
        are its first values of the named attributes, absent ones left out.
        """
        self.assertEqual(answer_rates({"ok": True, "up_kbit": 5, "down_kbit": None}),
                         {"up_kbit": 5})
        self.assertEqual(answer_rates({"ok": True}), {})
        self.assertRaises(ValueError, answer_rates, {"ok": True, "up_kbit": True})
        self.assertRaises(ValueError, answer_rates, {"ok": True, "down_kbit": -5})
        self.assertEqual(attribute_rates({"upkbit": ("100",), "downkbit": ("200", "7")},
                                         "upKbit", "downKbit"), {"up_kbit": 100, "down_kbit": 200})
        self.assertEqual(attribute_rates({"upkbit": ("100",)}, "", "downKbit"), {})
        self.assertRaises(ValueError, attribute_rates, {"upkbit": ("lots",)}, "upKbit", "")
        self.assertEqual(check_rate("x", " 12 "), 12)


class UsersFileRatesTests(SynchronousTestCase):
    def write(self, text):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_read_users(self):
        """
        A third field gives the user's rates; a line with a bad rate is left
        out (that user cannot log in) and described with the file and line.
        """
        h = hash_password("pw", **FAST)
        users, rates, errors = read_users(
            f"alice:{h}:up_kbit=1000,down_kbit=4000\nbob:{h}\ncarol:{h}:down_kbit=lots\n"
            "broken\n", "/etc/users")
        self.assertEqual(users, {"alice": h, "bob": h})
        self.assertEqual(rates, {"alice": {"up_kbit": 1000, "down_kbit": 4000}})
        self.assertEqual([bad_rate for _, bad_rate in errors], [True, False])
        self.assertTrue(errors[0][0].startswith("/etc/users line 3: user 'carol': down_kbit "))
        self.assertTrue(errors[1][0].startswith("/etc/users line 4: not username:"))

    def test_check_at_start(self):
        """
        At start a bad rate is a ConfigError naming the file and the line; a
        file without one passes.
        """
        h = hash_password("pw", **FAST)
        path = self.write(f"# users\nalice:{h}:up_kbit=10\nbob:{h}:up_kbit=-3\n")
        error = self.assertRaises(ConfigError, UsersFile(path, SyncRunner()).check)
        self.assertIn(f"{path} line 3: user 'bob'", str(error))
        UsersFile(self.write(f"alice:{h}:up_kbit=10\nbroken\n"), SyncRunner()).check()
        UsersFile("/nonexistent", SyncRunner()).check()

    def test_login_passes_rates(self):
        """
        A login of a user with rates authorizes the client with them, keeps
        them in the session, and a restored session asks for them again; a
        user without rates gets the firewall's defaults.
        """
        h = hash_password("pw", **FAST)
        path = self.write(f"alice:{h}:up_kbit=1000,down_kbit=4000\nbob:{h}\n")
        store = os.path.abspath(self.mktemp())
        f = self.fixture(SessionStore(store), path)
        self.assertEqual(post(f, "alice", "pw").responseCode, 303)
        client = f.firewall.clients[A]
        self.assertEqual((client.up_kbit, client.down_kbit), (1000, 4000))
        session = f.sessions.get(A)
        self.assertEqual((session.up_kbit, session.down_kbit), (1000, 4000))
        self.assertTrue(self.successResultOf(f.sessions.durable()))
        f.sessions.store.close()
        g = self.fixture(SessionStore(store), path)
        self.successResultOf(g.portal.restore())
        client = g.firewall.clients[A]
        self.assertEqual((client.up_kbit, client.down_kbit), (1000, 4000))
        self.assertEqual(post(g, "bob", "pw").responseCode, 303)
        client = g.firewall.clients[A]
        self.assertEqual((client.up_kbit, client.down_kbit), (50, 60))
        self.assertEqual(g.sessions.get(A).up_kbit, None)

    def fixture(self, store, path):
        f = PortalFixture(store=store)
        f.firewall.default_limits = (50, 60)
        f.registry.listen("/portal/authenticate", UsersFile(path, SyncRunner(), last=True),
                          first=True)
        f.resource = PortalResource(f.portal, f.clock, method=PASSWORD)
        return f

    def test_relogin_new_rates(self):
        """
        A login again as the same user keeps the session, with the rates
        the back end gives now.
        """
        f = PortalFixture()
        answers = [{"ok": True, "up_kbit": 10}, {"ok": True, "up_kbit": 20, "down_kbit": 0}]
        f.registry.listen("/portal/authenticate", lambda m: Stop(answers.pop(0)), first=True)
        for want in ((10, 0), (20, 0)):
            ok, _, rates = self.successResultOf(f.portal.authenticate(A, MAC_A, PASSWORD))
            self.successResultOf(f.portal.login(A, MAC_A, PASSWORD, "alice", rates))
            client = f.firewall.clients[A]
            self.assertEqual((client.up_kbit, client.down_kbit), want)
        self.assertEqual((f.sessions.get(A).up_kbit, f.sessions.get(A).down_kbit), (20, 0))

    def test_bad_answer_refused(self):
        """
        A back end answering with a rate that is none refuses the login.
        """
        f = PortalFixture()
        f.registry.listen("/portal/authenticate",
                          lambda m: Stop({"ok": True, "down_kbit": "fast"}), first=True)
        ok, message, rates = self.successResultOf(f.portal.authenticate(A, MAC_A, PASSWORD))
        self.assertEqual((ok, rates), (False, {}))
        self.assertIn("rate", message)


class LdapRatesTests(SynchronousTestCase):
    def directory(self, **attributes):
        directory = MemoryDirectory()
        directory.add(f"uid=alice,{PEOPLE}", dict({"objectClass": "account", "uid": "alice",
                                                   "userPassword": "pw"}, **attributes))
        return directory

    def login(self, directory, up="upKbit", down="downKbit", password="pw"):
        backend = LdapBind(directory, f"uid={{user}},{PEOPLE}", 2.0, Clock(), SyncRunner(),
                           up, down)
        return self.successResultOf(backend({"method": PASSWORD, "username": "alice",
                                             "password": password})).value

    def test_attributes(self):
        """
        The attributes named are read after the bind and become the
        answer's rates; absent ones are left out; none named, none read.
        """
        directory = self.directory(upKbit="1000", downKbit="4000")
        self.assertEqual(self.login(directory), {"ok": True, "username": "alice",
                                                 "up_kbit": 1000, "down_kbit": 4000})
        self.assertEqual(self.login(self.directory(downKbit="4000")),
                         {"ok": True, "username": "alice", "down_kbit": 4000})
        self.assertEqual(self.login(directory, "", ""), {"ok": True, "username": "alice"})
        self.assertFalse(self.login(directory, password="wrong")["ok"])

    def test_bad_attribute(self):
        """
        A value that is no rate refuses the login, saying so.
        """
        answer = self.login(self.directory(downKbit="fast"))
        self.assertFalse(answer["ok"])
        self.assertIn("rate limit", answer["message"])
