"""
Tests for L{netsuite.portal.controller}: the operator's mailboxes, the
sampler and time-outs, the firewall in another process, restoring
sessions, finding a MAC from the DHCP leases.
"""

import ipaddress
import os

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.sessions import SessionStore
from netsuite.registry import Stop
from netsuite.registry.interfaces import NO_ANSWER
from netsuite.testing import HeldRunner

from .helpers import A, B, MAC_A, PortalFixture

MAC_B = "02:4e:00:00:00:0c"


class ControllerTests(SynchronousTestCase):
    def send(self, f, path, message):
        return self.successResultOf(f.registry.send(path, message))

    def test_admin_authorize_deauthorize(self):
        f = PortalFixture()
        told = []
        f.registry.watch("/portal/logout", told.append)
        answer = self.send(f, "/portal/authorize", {"ip": A})
        self.assertEqual(answer, {"authorized": True, "ip": A, "mac": MAC_A})
        self.assertIn(A, f.firewall.clients)
        [s] = self.send(f, "/portal/sessions", {})
        self.assertEqual((s["ip"], s["mac"], s["reason"]), (A, MAC_A, "admin"))
        self.assertEqual(self.send(f, "/portal/deauthorize", {"ip": "10.89.0.11"}),
                         {"deauthorized": True, "ip": A})
        self.assertEqual(f.firewall.clients, {})
        f.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "admin"}])
        self.assertEqual(self.send(f, "/portal/deauthorize", {"ip": A}),
                         {"deauthorized": False, "ip": A})

    def test_sessions_in_pages(self):
        """
        /portal/sessions {after, limit}: a page of the sessions in address
        order, those past C{after}; a bad limit answers nothing.
        """
        f = PortalFixture()
        addresses = [f"10.89.0.{n}" for n in (30, 4, 17)]
        for n, ip in enumerate(addresses):
            self.send(f, "/portal/authorize", {"ip": ip, "mac": f"02:4e:00:00:01:{n:02x}"})

        def page(**message):
            return [str(s["ip"]) for s in self.send(f, "/portal/sessions", message)]
        self.assertEqual(page(), ["10.89.0.4", "10.89.0.17", "10.89.0.30"])
        self.assertEqual(page(limit=2), ["10.89.0.4", "10.89.0.17"])
        self.assertEqual(page(limit=2, after="10.89.0.17"), ["10.89.0.30"])
        self.assertEqual(page(after=ipaddress.IPv4Address("10.89.0.30")), [])
        self.assertIs(self.successResultOf(f.registry.send("/portal/sessions", {"limit": 0})),
                      NO_ANSWER)
        self.flushLoggedErrors(ValueError)

    def test_authorize_needs_a_mac(self):
        f = PortalFixture()
        d = f.registry.send("/portal/authorize", {"ip": B})
        self.assertNoResult(d)  # the neighbour table is looked at again first
        f.clock.pump(f.portal.mac_retries)
        answer = self.successResultOf(d)
        self.assertEqual(answer["authorized"], False)
        self.assertIn("no MAC known", answer["error"])
        self.send(f, "/portal/authorize", {"ip": B, "mac": MAC_B})
        self.assertIn(B, f.firewall.clients)

    def test_mac_from_dhcp_leases(self):
        f = PortalFixture(macs={})
        f.registry.declare("/dhcp/leases")
        f.registry.listen("/dhcp/leases", lambda m: Stop(
            [{"ip": ipaddress.IPv4Address(str(m["ip"])), "mac": MAC_B}]))
        self.send(f, "/portal/authorize", {"ip": B})
        self.assertEqual(str(f.firewall.clients[B].mac), MAC_B)

    def test_idle_timeout(self):
        """
        The sampler keeps active clients; an idle one is logged out and
        de-authorized with reason idle-timeout.
        """
        f = PortalFixture(idle_timeout=60)
        told = []
        f.registry.watch("/portal/logout", told.append)
        self.send(f, "/portal/authorize", {"ip": A})
        self.send(f, "/portal/authorize", {"ip": B, "mac": MAC_B})
        f.clock.advance(40)
        f.firewall.add_traffic(A, up=100)
        self.assertEqual(self.successResultOf(f.portal.sample()), [])
        f.clock.advance(30)
        self.assertEqual(self.successResultOf(f.portal.sample()), [(B, "idle-timeout")])
        self.assertEqual(list(f.firewall.clients), [A])
        f.clock.advance(40)
        self.assertEqual(self.successResultOf(f.portal.sample()), [(A, "idle-timeout")])
        f.registry.eventual.flush_sync()
        self.assertEqual([m["reason"] for m in told], ["idle-timeout", "idle-timeout"])

    def test_idle_timeout_counts_ipv6(self):
        """
        A client busy only over IPv6 (its bytes counted by MAC, dual stack
        after login) is active, not idle; its IPv6 bytes count in its
        session's data.
        """
        from netsuite.registry.values import MAC
        f = PortalFixture(idle_timeout=60)
        self.send(f, "/portal/authorize", {"ip": A})
        for _ in range(3):
            f.clock.advance(40)
            f.firewall.add_traffic6(MAC(MAC_A), down=1000)
            self.assertEqual(self.successResultOf(f.portal.sample()), [])
        self.assertEqual(list(f.firewall.clients), [A])
        self.assertEqual(f.sessions.get(A).bytes_used, 3000)
        f.clock.advance(70)
        self.assertEqual(self.successResultOf(f.portal.sample()), [(A, "idle-timeout")])

    def test_session_timeout(self):
        f = PortalFixture(session_timeout=100)
        self.send(f, "/portal/authorize", {"ip": A})
        f.clock.advance(100)
        self.assertEqual(self.successResultOf(f.portal.sample()),
                         [(A, "session-timeout")])
        self.assertEqual(f.firewall.clients, {})

    def test_restore(self):
        """
        A new portal on the same session file authorizes its sessions again.
        """
        path = os.path.abspath(self.mktemp())
        f = PortalFixture(store=SessionStore(path))
        self.send(f, "/portal/authorize", {"ip": A})
        f.sessions.store.close()
        g = PortalFixture(store=SessionStore(path))
        self.assertEqual(g.firewall.clients, {})
        self.successResultOf(g.portal.restore())
        self.assertEqual(g.firewall.clients[A].mac, MAC_A)
        self.assertEqual(g.sessions.get(A).reason, "admin")

    def test_login_waits_for_store(self):
        """
        A login is answered only once its session is stored: a portal
        killed right after a client was let in still has the session.
        """
        runner = HeldRunner()
        f = PortalFixture(runner=runner)
        d = f.portal.login(A, MAC_A, "click")
        self.assertNoResult(d)
        self.assertIn(A, f.firewall.clients)
        runner.run_next()
        self.assertEqual(self.successResultOf(d).ip, A)

    def test_last_logout_survives_restart(self):
        """
        The reason and time of a client's last logout are kept with the
        sessions: a restarted portal (and its operator page) still has them.
        """
        path = os.path.abspath(self.mktemp())
        f = PortalFixture(store=SessionStore(path))
        self.send(f, "/portal/authorize", {"ip": A})
        f.clock.advance(5)
        self.successResultOf(f.portal.logout(A, "operator"))
        f.sessions.store.close()
        g = PortalFixture(store=SessionStore(path))
        self.assertEqual(g.portal.last_logout, {A: ("operator", f.clock.seconds())})

    def test_firewall_elsewhere(self):
        """
        With firewall_process set, the portal addresses the firewall's
        mailboxes as process:/path.
        """
        f = PortalFixture()
        f.portal.firewall_process = "ap"  # the registry's own name: still local
        self.send(f, "/portal/authorize", {"ip": A})
        self.assertIn(A, f.firewall.clients)
        f.portal.firewall_process = "other"
        answer = self.send(f, "/portal/authorize", {"ip": B, "mac": MAC_B})
        self.assertEqual(answer["authorized"], False)
        self.assertNotIn(B, f.firewall.clients)
        self.assertIsNone(f.sessions.get(B))
