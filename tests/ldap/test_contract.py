"""
One contract for L{IDirectory}: the in-memory fake always, the real
L{LdapDirectory} against a real slapd on loopback. Both are blocking; the
tests call them directly (the services call them through a runner).
"""

import threading

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite.ldap import (DirectoryError, IDirectory, LdapDirectory, MemoryDirectory,
                           escape_dn_value, escape_filter_value, server_address, url_error)
from netsuite.ldap.directory import open_connection

from .people import slapd_with_alice

SUFFIX = "dc=example,dc=test"
ADMIN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
HOSTS = f"ou=hosts,{SUFFIX}"
ALICE = f"uid=alice,{PEOPLE}"


def host_attributes(cn, mac, ip):
    return {"objectClass": ["device", "ieee802Device", "ipHost"], "cn": cn,
            "macAddress": mac, "ipHostNumber": ip}


HOST_ENTRIES = [(f"cn=h{i},{HOSTS}", host_attributes(f"h{i}", f"02:00:00:00:00:{i:02x}",
                                                     f"10.0.0.{i}")) for i in range(1, 6)]


class DirectoryContract:
    """
    What every directory does. C{setUp} makes C{self.directory} (searching
    as the admin) holding L{HOST_ENTRIES}, C{ou=people} and alice
    (password C{wonderland}).
    """

    def test_interface(self):
        self.assertTrue(verifyObject(IDirectory, self.directory))

    def test_search(self):
        """
        A search gives each matching entry's DN and the asked attributes,
        names lower-cased, values as text.
        """
        entries = self.directory.search(
            HOSTS, "(&(objectClass=ieee802Device)(macAddress=02:00:00:00:00:03))",
            ["ipHostNumber", "cn"], 8, 5.0)
        self.assertEqual(entries, ((f"cn=h3,{HOSTS}",
                                    {"iphostnumber": ("10.0.0.3",), "cn": ("h3",)}),))

    def test_noMatch(self):
        entries = self.directory.search(HOSTS, "(macAddress=02:00:00:00:00:99)",
                                        ["cn"], 8, 5.0)
        self.assertEqual(entries, ())

    def test_escapedValue(self):
        """
        An escaped C{*} matches itself only, not every entry.
        """
        entries = self.directory.search(
            HOSTS, f"(macAddress={escape_filter_value('*')})", ["cn"], 8, 5.0)
        self.assertEqual(entries, ())

    def test_limit(self):
        """
        More matches than the limit is not an error: the first C{limit} come back.
        """
        entries = self.directory.search(HOSTS, "(objectClass=ieee802Device)", ["cn"], 2, 5.0)
        self.assertEqual(len(entries), 2)

    def test_noSuchBase(self):
        """
        A search under a base that does not exist is the directory's error.
        """
        self.assertRaises(DirectoryError, self.directory.search,
                          f"ou=nowhere,{SUFFIX}", "(cn=*)", ["cn"], 8, 5.0)

    def test_bind(self):
        """
        A bind with the right password is True; a wrong password, an
        unknown DN and an empty password are False.
        """
        self.assertIs(self.directory.bind(ALICE, "wonderland", 5.0), True)
        self.assertIs(self.directory.bind(ALICE, "nope", 5.0), False)
        self.assertIs(self.directory.bind(f"uid=bob,{PEOPLE}", "wonderland", 5.0), False)
        self.assertIs(self.directory.bind(ALICE, "", 5.0), False)

    def test_bind_read(self):
        """
        bind_read() binds and reads the entry's asked attributes as that
        user (absent ones left out); refused credentials are None, no
        attributes asked {}.
        """
        self.assertEqual(self.directory.bind_read(ALICE, "wonderland", ["uid", "description"],
                                                  5.0), {"uid": ("alice",)})
        self.assertEqual(self.directory.bind_read(ALICE, "wonderland", [], 5.0), {})
        self.assertIsNone(self.directory.bind_read(ALICE, "nope", ["uid"], 5.0))
        self.assertIsNone(self.directory.bind_read(ALICE, "", ["uid"], 5.0))

    def test_bindEscaped(self):
        """
        A user name made to look like more of a DN stays one (escaped)
        value, and logs nobody in.
        """
        dn = f"uid={escape_dn_value('alice,ou=people')},{PEOPLE}"
        self.assertIs(self.directory.bind(dn, "wonderland", 5.0), False)

    def test_badServiceAccount(self):
        """
        Searching as an account whose password is wrong is the directory's
        error, not an empty answer.
        """
        directory = self.make(ADMIN, "wrong")
        self.addCleanup(directory.close)
        self.assertRaises(DirectoryError, directory.search, HOSTS, "(cn=*)", ["cn"], 8, 5.0)


class MemoryDirectoryTests(DirectoryContract, SynchronousTestCase):
    def make(self, bind_dn, password):
        directory = MemoryDirectory(bind_dn, password)
        directory.add(SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": "example",
                               "o": "example"})
        directory.add(ADMIN, {"objectClass": "person", "cn": "admin", "sn": "a",
                              "userPassword": "secret"})
        directory.add(HOSTS, {"objectClass": "organizationalUnit", "ou": "hosts"})
        directory.add(PEOPLE, {"objectClass": "organizationalUnit", "ou": "people"})
        directory.add(ALICE, {"objectClass": ["account", "simpleSecurityObject"],
                              "uid": "alice", "userPassword": "wonderland"})
        for dn, attributes in HOST_ENTRIES:
            directory.add(dn, attributes)
        return directory

    def setUp(self):
        self.directory = self.make(ADMIN, "secret")

    def test_reuse(self):
        """
        Searches in one thread share one connection; a refused connection
        fails the search, and the next one connects afresh.
        """
        for _ in range(3):
            self.directory.search(HOSTS, "(cn=h1)", ["cn"], 8, 5.0)
        self.assertEqual(len(self.directory.opened), 1)
        self.directory.close()
        self.directory.refuse = 1
        self.assertRaises(Exception, self.directory.search, HOSTS, "(cn=h1)", ["cn"], 8, 5.0)
        self.assertEqual(len(self.directory.search(HOSTS, "(cn=h1)", ["cn"], 8, 5.0)), 1)


class SlapdDirectoryTests(DirectoryContract, SynchronousTestCase):
    """
    The real directory against slapd (OpenLDAP) on loopback.
    """

    def setUp(self):
        self.slapd = slapd_with_alice(
            self, SUFFIX, [(f"h{i}", f"02:00:00:00:00:{i:02x}", f"10.0.0.{i}")
                           for i in range(1, 6)])
        self.directory = self.make(self.slapd.admin_dn, self.slapd.password)
        self.addCleanup(self.directory.close)

    def make(self, bind_dn, password):
        return LdapDirectory(self.slapd.url, bind_dn, password)

    def test_down(self):
        """
        A directory that is not running is an error, for searches and
        binds alike (not "no entry", not "wrong password").
        """
        self.slapd.stop()
        directory = self.make(ADMIN, "secret")
        self.assertRaises(Exception, directory.search, HOSTS, "(cn=h1)", ["cn"], 8, 2.0)
        self.assertRaises(Exception, directory.bind, ALICE, "wonderland", 2.0)

    def test_hungServer(self):
        """
        A server that accepts TCP and never answers (SIGSTOP) costs no more
        than the budget: the deadline covers the whole request.
        """
        self.slapd.pause()
        self.addCleanup(self.slapd.resume)
        directory = self.make(ADMIN, "secret")
        self.assertRaises(Exception, directory.search, HOSTS, "(cn=h1)", ["cn"], 1.0)


    def test_closeCutsHungSearch(self):
        """
        C{close} (a stopping process) does not wait for a search blocked on
        a hung server: it returns at once, and the search fails at once
        instead of at its deadline, without trying a new connection.
        """
        searches = []
        second = threading.Event()

        def opener(*args):
            connection = open_connection(*args)
            search = connection.search

            def counted(*a, **kw):
                searches.append(1)
                if len(searches) == 2:
                    second.set()
                return search(*a, **kw)
            connection.search = counted
            return connection
        directory = LdapDirectory(self.slapd.url, self.slapd.admin_dn, self.slapd.password,
                                  open_connection=opener)
        bound, paused = threading.Event(), threading.Event()
        outcome = []

        def searcher():
            directory.search(HOSTS, "(cn=h1)", ["cn"], 8, 5.0)  # connected and bound
            bound.set()
            paused.wait(30)
            try:
                outcome.append(directory.search(HOSTS, "(cn=h1)", ["cn"], 8, 60.0))
            except Exception as e:
                outcome.append(e)
        worker = threading.Thread(target=searcher, daemon=True)
        worker.start()
        self.addCleanup(self.slapd.resume)
        self.assertTrue(bound.wait(30))
        self.slapd.pause()
        paused.set()
        self.assertTrue(second.wait(30))
        closing = threading.Thread(target=directory.close, daemon=True)
        closing.start()
        closing.join(10)  # a guard: before, close waited for the 60 s deadline
        self.assertFalse(closing.is_alive())
        worker.join(10)
        self.assertFalse(worker.is_alive())
        self.assertEqual(len(outcome), 1)
        self.assertIsInstance(outcome[0], Exception)


class UrlTests(SynchronousTestCase):
    def test_addresses(self):
        self.assertEqual(server_address("ldap://10.0.0.1"), ("10.0.0.1", 389, False))
        self.assertEqual(server_address("ldaps://dir.example:1636/dc=x"),
                         ("dir.example", 1636, True))
        for bad in ("http://x", "ldap://", "x"):
            self.assertRaises(ValueError, server_address, bad)
            self.assertIsNotNone(url_error(bad))
        self.assertIsNone(url_error("ldap://127.0.0.1:389"))
