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


class _FirewallProcess:
    """
    Another process's registry, as the portal's peers reach it: calls go
    to C{registry}; a watch attaches at once and L{come_back} attaches it
    again, as a bus client does after the process restarted.
    """

    def __init__(self, registry):
        self.registry = registry
        self.on_attach = []

    def registry_for(self, name):
        assert name == "fw", name
        return self

    def send(self, path, message=None):
        return self.registry.send(path, message)

    def watch(self, path, fn, on_attach=None):
        handle = self.registry.watch(path, fn)
        if on_attach is not None:
            self.on_attach.append(on_attach)
            on_attach()
        return handle

    def come_back(self):
        for again in self.on_attach:
            again()


class FirewallElsewhereTests(SynchronousTestCase):
    """
    With the firewall in another process (C{firewall_process}), the portal
    makes the firewall's clients its sessions each time it reaches that
    process: after it restarted (a kill -9 left clients the new run
    drops), and so once more at the portal's own start.
    """

    def setUp(self):
        from twisted.internet.defer import succeed
        from twisted.internet.task import Clock
        from netsuite.firewall.memory import MemoryFirewall
        from netsuite.firewall.service import FirewallService
        from netsuite.portal.controller import Portal
        from netsuite.portal.leaseends import DeauthorizedEnds
        from netsuite.portal.sessions import Sessions, SessionStore
        from netsuite.portal.testing import LAN
        from netsuite.registry.registry import Registry
        from netsuite.testing import SyncRunner
        self.clock = Clock()
        fw_registry = Registry("fw", self.clock)
        self.firewall = MemoryFirewall(self.clock, LAN)
        FirewallService(self.firewall, fw_registry, self.clock, 0).startService()
        self.process = _FirewallProcess(fw_registry)
        registry = Registry("portal", self.clock, peers=self.process)
        self.sessions = Sessions(SessionStore(":memory:"), self.clock, SyncRunner())
        self.portal = Portal(registry, self.sessions, "portal.test", firewall_process="fw",
                             find_mac=lambda ip: succeed(MAC_A))
        self.ends = DeauthorizedEnds(self.portal, "fw")
        self.assertTrue(self.ends.start())
        self.addCleanup(self.ends.stop)
        self.successResultOf(self.portal.login(A, MAC_A, "click"))

    def test_firewall_restarted(self):
        """
        A firewall process that came back without the clients (its start
        dropped those a crashed run left in the kernel) has the sessions'
        clients again once the portal's watch attaches there again.
        """
        import ipaddress
        self.firewall.clients.clear()
        self.process.come_back()
        self.assertEqual(list(self.firewall.clients), [A])
        self.assertEqual(str(self.firewall.clients[A].mac), str(MAC_A))
        self.assertIsNotNone(self.sessions.get(ipaddress.IPv4Address(A)))

    def test_stray_deauthorized(self):
        """
        A client the firewall lets through without a session (a login cut
        short by a crash after the firewall's answer) is deauthorized when
        the portal restores; the sessions' clients stay.
        """
        import ipaddress
        stray = ipaddress.IPv4Address("10.89.0.77")
        self.successResultOf(self.firewall.authorize(stray, MAC("02:00:00:00:00:77")))
        self.process.come_back()
        self.assertEqual(list(self.firewall.clients), [A])

    def test_restore_answers_counts(self):
        """L{Portal.restore} fires with (sessions restored, strays deauthorized)."""
        import ipaddress
        self.successResultOf(self.firewall.authorize(ipaddress.IPv4Address("10.89.0.78"),
                                                     MAC("02:00:00:00:00:78")))
        self.assertEqual(self.successResultOf(self.portal.restore()), (1, 1))
        self.assertEqual(self.successResultOf(self.portal.restore()), (1, 0))
