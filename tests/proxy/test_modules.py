"""
L{netsuite.proxy.modules}: protocol modules found by name, imported lazily.
"""

import sys

from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.filters import Connection
from netsuite.proxy.modules import MODULES, Passed, UnknownModule, find, find_all, relay

CONN = Connection(("10.0.0.5", 40000), ("192.0.2.9", 143))


class FindTests(SynchronousTestCase):
    def test_known_names(self) -> None:
        self.assertEqual(MODULES["imap"], "netsuite.mailproxy.imap:imap")
        self.assertEqual(MODULES["pop3"], "netsuite.mailproxy.pop3:pop3")
        self.assertIs(find("relay"), relay)

    def test_relay_is_done_at_once(self) -> None:
        client, server = relay(CONN)
        self.assertTrue(client.done and server.done)
        self.assertEqual(Passed().feed(b"x").data, b"x")

    def test_imported_only_when_found(self) -> None:
        """A name maps to a module that is imported by find, not before."""
        sys.modules.pop("tests.proxy.fakemodules", None)
        known = {"lines": "tests.proxy.fakemodules:lines"}
        self.assertNotIn("tests.proxy.fakemodules", sys.modules)
        make = find("lines", known)
        self.assertIn("tests.proxy.fakemodules", sys.modules)
        client, server = make(CONN)
        self.assertFalse(client.done)

    def test_dotted_path(self) -> None:
        from tests.proxy import fakemodules
        self.assertIs(find("tests.proxy.fakemodules:hoarder"), fakemodules.hoarder)

    def test_unknown_name(self) -> None:
        e = self.assertRaises(UnknownModule, find, "smtp")
        self.assertIn("unknown proxy module 'smtp'", str(e))
        self.assertIn("imap, pop3, relay", str(e))

    def test_missing_module(self) -> None:
        e = self.assertRaises(UnknownModule, find, "x", {"x": "netsuite.no_such_thing:f"})
        self.assertIn("cannot import netsuite.no_such_thing", str(e))

    def test_not_callable(self) -> None:
        e = self.assertRaises(UnknownModule, find, "tests.proxy.fakemodules:not_callable")
        self.assertIn("no callable 'not_callable'", str(e))
        self.assertRaises(UnknownModule, find, "tests.proxy.fakemodules:absent")

    def test_find_all(self) -> None:
        found = find_all(["relay", "tests.proxy.fakemodules:lines"])
        self.assertEqual(list(found), ["relay", "tests.proxy.fakemodules:lines"])
