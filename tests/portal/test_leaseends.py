"""
Tests for L{netsuite.portal.leaseends}: a session ends with its client's
DHCP lease.
"""

from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.server import EVENTS as DHCP_EVENTS
from netsuite.portal.leaseends import LEASE_EXPIRED, LEASE_RELEASED, LeaseEnds
from netsuite.portal.testing import MAC_A, A, PortalFixture
from netsuite.registry.registry import declare_service
from netsuite.registry.values import MAC


class LeaseEndsTests(SynchronousTestCase):
    def setUp(self):
        self.f = PortalFixture()
        declare_service(self.f.registry, "dhcp", {}, DHCP_EVENTS, {})
        self.logouts = []
        self.f.registry.watch("/portal/logout", self.logouts.append)
        self.ends = LeaseEnds(self.f.portal)
        self.assertTrue(self.ends.start())
        self.addCleanup(self.ends.stop)
        self.assertEqual(self.f.accept(A).responseCode, 303)

    def lease_event(self, path, ip=A, mac=MAC_A):
        self.f.registry.send(path, {"ip": ip, "mac": mac, "subnet": "lan"})
        self.f.registry.eventual.flush_sync()

    def test_released(self):
        """
        The client's DHCPRELEASE ends its session (reason lease-released)
        and takes it out of the firewall.
        """
        self.lease_event("/dhcp/lease/released")
        self.assertIsNone(self.f.sessions.get(A))
        self.assertNotIn(A, self.f.firewall.clients)
        self.assertEqual([(m["ip"], m["reason"]) for m in self.logouts], [(A, LEASE_RELEASED)])

    def test_expired(self):
        """
        An expired lease ends the session too (reason lease-expired).
        """
        self.lease_event("/dhcp/lease/expired")
        self.assertIsNone(self.f.sessions.get(A))
        self.assertEqual([m["reason"] for m in self.logouts], [LEASE_EXPIRED])

    def test_other_device(self):
        """
        A lease of another MAC at the same address, another address, or a
        malformed event ends nothing.
        """
        self.lease_event("/dhcp/lease/released", mac=MAC("02:00:00:00:00:99"))
        self.lease_event("/dhcp/lease/expired", ip="10.89.0.99")
        self.f.registry.send("/dhcp/lease/released", {"ip": "not an address"})
        self.f.registry.eventual.flush_sync()
        self.assertIsNotNone(self.f.sessions.get(A))
        self.assertEqual(self.logouts, [])

    def test_off(self):
        """
        Once stopped (or never started: C{end_with_lease = false}), a lease
        event ends nothing.
        """
        self.ends.stop()
        self.lease_event("/dhcp/lease/released")
        self.assertIsNotNone(self.f.sessions.get(A))

    def test_no_dhcp_here(self):
        """
        Without a DHCP server in this process (and no dhcp_process), it
        says so and watches nothing.
        """
        f = PortalFixture()
        self.assertFalse(LeaseEnds(f.portal).start())



class DeauthorizedEndsTests(SynchronousTestCase):
    def setUp(self):
        from netsuite.portal.leaseends import DeauthorizedEnds
        self.f = PortalFixture()
        self.logouts = []
        self.f.registry.watch("/portal/logout", self.logouts.append)
        self.ends = DeauthorizedEnds(self.f.portal)
        self.assertTrue(self.ends.start())
        self.addCleanup(self.ends.stop)
        self.assertEqual(self.f.accept(A).responseCode, 303)

    def test_operator_deauthorize(self):
        """
        A client the firewall deauthorizes (an operator's
        /firewall/deauthorize) loses its session, so the portal does not
        authorize it again at its next start.
        """
        self.f.registry.send("/firewall/deauthorize", {"ip": A})
        self.f.registry.eventual.flush_sync()
        self.assertIsNone(self.f.sessions.get(A))
        self.assertEqual([m["reason"] for m in self.logouts], ["deauthorized"])

    def test_logged_in_again(self):
        """
        An event about a client the firewall lets through again (it logged
        in since) ends nothing; nor does the portal's own logout (no
        session left).
        """
        self.f.registry.send("/firewall/deauthorized", {"ip": A})  # but still authorized
        self.f.registry.eventual.flush_sync()
        self.assertIsNotNone(self.f.sessions.get(A))
        self.f.portal.logout(A, "logout")
        self.f.registry.eventual.flush_sync()
        self.assertEqual([m["reason"] for m in self.logouts], ["logout"])
