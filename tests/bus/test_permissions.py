# -*- test-case-name: tests.bus.test_permissions -*-
"""
Tests for L{netsuite.bus.permissions}: who may send to, hook and watch
which mailboxes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.permissions import (HOOK, SEND, TCP, WATCH, Grant, Permissions, check_prefix,
                                      uid_peer)
from netsuite.registry import InvalidAddress

OWN = 998
ALICE = uid_peer(1000)
BOB = uid_peer(1001)


def permissions(*grants: Grant) -> Permissions:
    return Permissions(grants, trusted_uids=(0, OWN))


class DecisionTests(SynchronousTestCase):
    """
    L{Permissions.allows}: root and our own uid everything; others what
    their grants give.
    """

    def test_trusted(self) -> None:
        """
        Root and the daemon's own uid may do everything, with no grant.
        """
        p = permissions()
        for peer in (uid_peer(0), uid_peer(OWN)):
            for verb in (SEND, HOOK, WATCH):
                self.assertTrue(p.allows(peer, verb, "/portal/authenticate"))
                self.assertTrue(p.allows(peer, verb, "firewall:/firewall/authorize"))
            self.assertTrue(p.unrestricted(peer))

    def test_nothingWithoutGrant(self) -> None:
        """
        Another uid, and a TCP peer, may do nothing without a grant but
        send to /system/ping.
        """
        p = permissions(Grant(BOB, ["/"], ["/"], ["/"]))
        for peer in (ALICE, TCP):
            self.assertFalse(p.unrestricted(peer))
            for verb in (SEND, HOOK, WATCH):
                self.assertFalse(p.allows(peer, verb, "/firewall/authorize"))
                self.assertFalse(p.allows(peer, verb, "/system/mailboxes"))
            self.assertTrue(p.allows(peer, SEND, "/system/ping"))
            self.assertFalse(p.allows(peer, HOOK, "/system/ping"))
            self.assertFalse(p.allows(peer, WATCH, "/system/ping"))

    def test_exactlyWhatIsGranted(self) -> None:
        """
        Each verb is granted on its own prefixes.
        """
        p = permissions(Grant(ALICE, send=["/dhcp/"], hook=["/dhcp/lookup"],
                              watch=["/portal/login"]))
        self.assertTrue(p.allows(ALICE, SEND, "/dhcp/leases"))
        self.assertTrue(p.allows(ALICE, HOOK, "/dhcp/lookup"))
        self.assertFalse(p.allows(ALICE, HOOK, "/dhcp/leases"))
        self.assertTrue(p.allows(ALICE, WATCH, "/portal/login"))
        self.assertFalse(p.allows(ALICE, WATCH, "/dhcp/lookup"))
        self.assertFalse(p.allows(ALICE, SEND, "/portal/login"))
        self.assertFalse(p.allows(BOB, SEND, "/dhcp/leases"))

    def test_pathBoundaries(self) -> None:
        """
        A prefix covers its own path and those below it, on a C{/}
        boundary, with or without a trailing C{/}.
        """
        for prefix in ("/dhcp", "/dhcp/"):
            p = permissions(Grant(ALICE, send=[prefix]))
            self.assertTrue(p.allows(ALICE, SEND, "/dhcp"))
            self.assertTrue(p.allows(ALICE, SEND, "/dhcp/lookup"))
            self.assertTrue(p.allows(ALICE, SEND, "/dhcp/a/b"))
            self.assertFalse(p.allows(ALICE, SEND, "/dhcpx"))
            self.assertFalse(p.allows(ALICE, SEND, "/dhcpx/lookup"))
            self.assertFalse(p.allows(ALICE, SEND, "/portal/dhcp"))

    def test_rootPrefix(self) -> None:
        """
        C{/} covers every mailbox; a grant of every verb on C{/} makes
        the peer unrestricted.
        """
        p = permissions(Grant(TCP, ["/"], ["/"], ["/"]), Grant(ALICE, send=["/"]))
        self.assertTrue(p.allows(ALICE, SEND, "/firewall/authorize"))
        self.assertFalse(p.allows(ALICE, WATCH, "/firewall/authorize"))
        self.assertFalse(p.unrestricted(ALICE))
        self.assertTrue(p.unrestricted(TCP))

    def test_grantsAddUp(self) -> None:
        """
        Several grants for one peer add up.
        """
        p = permissions(Grant(ALICE, send=["/dhcp"]), Grant(ALICE, send=["/portal"]))
        self.assertTrue(p.allows(ALICE, SEND, "/dhcp/lookup"))
        self.assertTrue(p.allows(ALICE, SEND, "/portal/login"))

    def test_addressesNormalised(self) -> None:
        """
        The path decides, whichever process the address names (this one, or
        one a send is forwarded to).
        """
        p = permissions(Grant(ALICE, send=["/dhcp"]))
        self.assertTrue(p.allows(ALICE, SEND, "dhcp:/dhcp/lookup"))
        self.assertTrue(p.allows(ALICE, SEND, "other:/dhcp/lookup"))
        self.assertFalse(p.allows(ALICE, SEND, "dhcp:/portal/login"))

    def test_invalidAddress(self) -> None:
        """
        An address that is not one raises L{InvalidAddress}, as the
        registry would.
        """
        p = permissions(Grant(ALICE, send=["/"]))
        self.assertRaises(InvalidAddress, p.allows, ALICE, SEND, "dhcp")
        self.assertRaises(InvalidAddress, p.allows, ALICE, SEND, "/dhcp/")

    def test_everyone(self) -> None:
        """
        L{Permissions.everyone} lets every peer do everything.
        """
        p = Permissions.everyone()
        for peer in (ALICE, TCP):
            self.assertTrue(p.unrestricted(peer))
            self.assertTrue(p.allows(peer, WATCH, "/portal/authenticate"))


class RelayTests(SynchronousTestCase):
    """
    L{Permissions.may_send}: a send to /system/relay is a send to its C{to}.
    """

    def test_plain(self) -> None:
        p = permissions(Grant(ALICE, send=["/dhcp"]))
        self.assertIsNone(p.may_send(ALICE, "/dhcp/lookup", {}))
        self.assertEqual(p.may_send(ALICE, "/portal/login", {}), "/portal/login")

    def test_relayNeedsTheTarget(self) -> None:
        """
        Relaying needs send on /system/relay and on the address relayed to.
        """
        p = permissions(Grant(ALICE, send=["/system/relay", "/dhcp"]))
        self.assertIsNone(p.may_send(ALICE, "/system/relay",
                                     {"to": "dhcp:/dhcp/lookup", "message": {}}))
        self.assertEqual(p.may_send(ALICE, "/system/relay", {"to": "fw:/firewall/authorize"}),
                         "fw:/firewall/authorize")
        self.assertEqual(p.may_send(BOB, "/system/relay", {"to": "/dhcp/lookup"}),
                         "/system/relay")

    def test_relayWithinRelay(self) -> None:
        """
        A relay of a relay is followed to its end.
        """
        p = permissions(Grant(ALICE, send=["/system/relay", "/dhcp"]))
        inner = {"to": "b:/system/relay", "message": {"to": "/firewall/authorize"}}
        self.assertEqual(p.may_send(ALICE, "/system/relay", {"to": "a:/system/relay",
                                                             "message": inner}),
                         "/firewall/authorize")
        deep: dict = {"to": "/dhcp/lookup"}
        for _ in range(10):
            deep = {"to": "/system/relay", "message": deep}
        self.assertIsNotNone(p.may_send(ALICE, "/system/relay", deep))

    def test_relayToNothing(self) -> None:
        """
        A relay whose C{to} is no address is refused.
        """
        p = permissions(Grant(ALICE, send=["/"]))
        self.assertIsNotNone(p.may_send(ALICE, "/system/relay", {"to": 7}))
        self.assertIsNotNone(p.may_send(ALICE, "/system/relay", {}))

    def test_trustedRelays(self) -> None:
        self.assertIsNone(permissions().may_send(uid_peer(0), "/system/relay",
                                                 {"to": "fw:/firewall/authorize"}))


class ShowsTests(SynchronousTestCase):
    """
    L{Permissions.shows}: what Describe lists for a peer.
    """

    def test_shows(self) -> None:
        p = permissions(Grant(ALICE, watch=["/portal/login"], hook=["/dhcp"]))
        self.assertTrue(p.shows(ALICE, "/portal/login"))
        self.assertTrue(p.shows(ALICE, "/dhcp/lookup"))
        self.assertTrue(p.shows(ALICE, "/system/ping"))
        self.assertFalse(p.shows(ALICE, "/portal/authenticate"))
        self.assertFalse(p.shows(TCP, "/portal/login"))


class PrefixTests(SynchronousTestCase):
    """
    L{check_prefix} and L{Grant} accept mailbox path prefixes only.
    """

    def test_good(self) -> None:
        for prefix in ("/", "/dhcp", "/dhcp/", "/dhcp/lookup", "/a.b/c-d_e+"):
            self.assertIsNone(check_prefix(prefix), prefix)

    def test_bad(self) -> None:
        for prefix in ("", "dhcp", "dhcp:/dhcp", "//", "/dhcp//", "/dh cp", 7, None):
            self.assertIsNotNone(check_prefix(prefix), prefix)
            self.assertRaises(ValueError, Grant, ALICE, [prefix])
