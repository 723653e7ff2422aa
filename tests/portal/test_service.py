"""
Tests for L{netsuite.portal.service} and L{netsuite.portal.tap}.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from netsuite.portal import tap
from netsuite.services import find_service
from netsuite.portal.service import NeighbourTable, PortalService
from netsuite.registry.values import MAC

from .helpers import A, MAC_A, PortalFixture

PLUGIN = find_service("portal")

ARP = """IP address       HW type     Flags       HW address            Mask     Device
10.89.0.11       0x1         0x2         02:4e:00:00:00:0b     *        br-lan
10.89.0.12       0x1         0x0         00:00:00:00:00:00     *        br-lan
"""


class NeighbourTests(SynchronousTestCase):
    def test_table(self):
        """
        Complete entries give the MAC; incomplete and unknown ones none.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(ARP)
        table = NeighbourTable(path)
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        self.assertIsNone(table("10.89.0.12"))
        self.assertIsNone(table("10.89.0.13"))

    def table(self, text=ARP):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        now, slept, reads = [0.0], [], []
        table = NeighbourTable(path, ttl=1.0, retry=0.05, now=lambda: now[0],
                               sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
        real = table._reread
        table._reread = lambda: (reads.append(now[0]), real())
        return path, table, now, slept, reads

    def test_cached(self):
        """
        While the addresses asked for are in it, the table is read again
        only after ttl seconds, not on every lookup.
        """
        path, table, now, slept, reads = self.table()
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        now[0] = 0.5
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        now[0] = 1.1
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        self.assertEqual((reads, slept), ([0.0, 1.1], []))

    def test_new_client_soon_after_a_read(self):
        """
        A client that appeared after the last read, asked for within
        retry seconds of it, is found: its lookup waits out the rest of
        retry and reads again (it got None, and its login a 503, before).
        """
        path, table, now, slept, reads = self.table()
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        with open(path, "a") as f:
            f.write("10.89.0.13       0x1         0x2         02:4e:00:00:00:0d     *        br-lan\n")
        now[0] = 0.02
        self.assertEqual(table("10.89.0.13"), MAC("02:4e:00:00:00:0d"))
        self.assertEqual(len(slept), 1)
        self.assertAlmostEqual(slept[0], 0.03)
        self.assertEqual(len(reads), 2)

    def test_misses_read_at_most_every_retry(self):
        """
        An address the table does not have costs a read, at most one per
        retry seconds, and gets None.
        """
        path, table, now, slept, reads = self.table()
        self.assertIsNone(table("10.89.0.99"))  # its own first read
        now[0] = 0.01
        self.assertIsNone(table("10.89.0.99"))  # waits, reads once more
        self.assertEqual(reads, [0.0, 0.05])
        now[0] = 0.2
        self.assertIsNone(table("10.89.0.99"))  # the last read is older: one read, no wait
        self.assertEqual(reads, [0.0, 0.05, 0.2])
        self.assertEqual(len(slept), 1)


class TapTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_options(self):
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            '[portal]\nport = 8080\nidle_timeout = 5.0\nfirewall_process = "ap"\n')])
        self.assertTrue(options.config.portal.enabled)
        self.assertEqual(options.config.portal.port, 8080)
        self.assertEqual(tap.portal_host(options.config.portal), "10.89.0.1:8080")

    def test_host_needed(self):
        options = PLUGIN.options()
        self.assertRaises(usage.UsageError, options.parseOptions, ["--config", self.write(
            '[portal]\ninterface_address = ""\n')])

    def test_unknown_key(self):
        self.assertRaises(usage.UsageError, PLUGIN.options().parseOptions, [
            "--config", self.write("[portal]\nprot = 1\n")])

    def test_make_service(self):
        """
        makeService builds the process with the portal (and the firewall
        when enabled, without building the portal twice).
        """
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            f'[portal]\nsession_file = "{os.path.abspath(self.mktemp())}"\n')])
        top = PLUGIN.makeService(options)
        self.assertEqual(len([s for s in top if isinstance(s, PortalService)]), 1)
        self.assertIn("/portal/authenticate", [m["path"] for m in top.registry.describe()])

    def test_front_limits(self):
        """
        head_timeout, max_connections and max_connections_per_client reach
        the site; a count that is not a positive integer is refused.
        """
        session_file = os.path.abspath(self.mktemp())
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            f'[portal]\nsession_file = "{session_file}"\nhead_timeout = 4.5\n'
            f'max_connections = 100\nmax_connections_per_client = 3\n'
            f'max_connections_ipv6 = 7\nport = 8080\n')])
        [service] = [s for s in PLUGIN.makeService(options) if isinstance(s, PortalService)]
        site = service.site
        self.assertEqual((site.head_timeout, site.max_connections, site.max_per_client,
                          site.max_ipv6), (4.5, 100, 3, 7))
        self.assertEqual(service.ipv6_port, 8080)
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            f'[portal]\nsession_file = "{session_file}"\nipv6 = false\n')])
        [service] = [s for s in PLUGIN.makeService(options) if isinstance(s, PortalService)]
        self.assertIsNone(service.ipv6_port)
        options = PLUGIN.options()
        self.assertRaises(Exception, options.parseOptions, ["--config", self.write(
            f'[portal]\nsession_file = "{session_file}"\nmax_connections = 0\n')])

    def test_template_dir(self):
        """
        template_dir's page.html lays out the pages and its files are the
        portal's /static/; a template_dir that is not a directory is named
        in the error.
        """
        from netsuite.config.schema import ConfigError
        from .helpers import FakeRequest, HOST
        directory = self.mktemp()
        os.mkdir(directory)
        with open(os.path.join(directory, "page.html"), "w") as f:
            f.write("<main class=venue><img src=/static/logo.png>$body</main>")
        with open(os.path.join(directory, "logo.png"), "wb") as f:
            f.write(b"\x89PNG-logo")
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            f'[portal]\nsession_file = ":memory:"\ntemplate_dir = "{directory}"\n'
            'host = "10.89.0.1:5280"\n')])
        top = PLUGIN.makeService(options)
        [service] = [s for s in top if isinstance(s, PortalService)]
        resource = service.site.resource
        page = FakeRequest(b"GET", b"/login", HOST.encode())
        page.render(resource)
        self.assertTrue(page.body().startswith(b"<main class=venue>"))
        logo = FakeRequest(b"GET", b"/static/logo.png", HOST.encode())
        logo.render(resource)
        self.assertEqual((logo.responseCode, logo.header(b"content-type"), logo.body()),
                         (200, b"image/png", b"\x89PNG-logo"))
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(
            f'[portal]\nsession_file = ":memory:"\ntemplate_dir = "{directory}/nope"\n')])
        error = self.assertRaises(ConfigError, PLUGIN.makeService, options)
        self.assertIn("portal.template_dir", str(error))


class ServiceTests(TestCase):
    @inlineCallbacks
    def test_serves(self):
        """
        The service listens; a request for another host is redirected.
        """
        from twisted.web.server import Site
        from netsuite.portal.resource import PortalResource
        f = PortalFixture()
        service = PortalService(f.portal, Site(PortalResource(f.portal, f.clock)), reactor,
                                "tcp:0:interface=127.0.0.1", 0)
        service.startService()
        self.addCleanup(service.stopService)
        port = service.port.getHost().port
        response = yield Agent(reactor).request(b"GET", b"http://127.0.0.1:%d/x" % port)
        self.assertEqual(response.code, 307)
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        yield readBody(response)


    @inlineCallbacks
    def test_serves_ipv6(self):
        """
        With ipv6_port, the service listens on [::] too, IPv6 only (beside
        an IPv4 listener on every address, same port): an IPv6 client gets
        the redirect, and a stop closes both.
        """
        import socket
        from twisted.web.server import Site
        from netsuite.portal.resource import PortalResource
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        f = PortalFixture()
        service = PortalService(f.portal, Site(PortalResource(f.portal, f.clock)), reactor,
                                f"tcp:{port}:interface=0.0.0.0", 0, ipv6_port=port)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(service.port6.getHost().port, port)
        for url in (b"http://127.0.0.1:%d/x" % port, b"http://[::1]:%d/x" % port):
            response = yield Agent(reactor).request(b"GET", url)
            self.assertEqual(response.code, 307, url)
            self.assertTrue(response.headers.getRawHeaders(b"location")[0].startswith(
                b"http://10.89.0.1:5280/login?url="))
            yield readBody(response)
        yield service.stopService()
        self.assertIsNone(service.port6)
        again = socket.socket(socket.AF_INET6)
        self.addCleanup(again.close)
        again.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("::", port))  # no listener left (TIME_WAIT aside)


class StopTests(SynchronousTestCase):
    """
    What a clean stop does with the sessions (C{[portal] keep_sessions}).
    """

    def stopped(self, keep_sessions, firewall_keeps_clients=False):
        """
        A portal on a session file with A logged in, stopped; return the
        fixture, the logouts it told and a new portal on that file, restored.
        """
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.server import Site
        from netsuite.portal.resource import PortalResource
        from netsuite.portal.sessions import SessionStore
        path = os.path.abspath(self.mktemp())
        f = PortalFixture(store=SessionStore(path))
        told = []
        f.registry.watch("/portal/logout", told.append)
        self.successResultOf(f.portal.login(A, MAC_A, "click"))
        service = PortalService(f.portal, Site(PortalResource(f.portal, f.clock)),
                                MemoryReactorClock(), "tcp:0", 0,
                                keep_sessions=keep_sessions,
                                firewall_keeps_clients=firewall_keeps_clients)
        service.startService()
        self.successResultOf(service.stopService())
        f.registry.eventual.flush_sync()
        f.sessions.store.close()
        g = PortalFixture(store=SessionStore(path))
        self.successResultOf(g.portal.restore())
        return f, told, g

    def test_keep(self):
        """
        keep_sessions: the session stays stored; the next start authorizes
        it again (as after a crash).
        """
        f, told, g = self.stopped(True)
        self.assertEqual(told, [])
        self.assertIn(A, f.firewall.clients)
        self.assertEqual(g.firewall.clients[A].mac, MAC_A)

    def test_end(self):
        """
        Not keeping them: every session ends with reason stopped (told, and
        kept as the client's last logout); the next start authorizes
        nobody. The firewall in this process, which lets its clients go as
        it stops, is not asked one by one.
        """
        f, told, g = self.stopped(False)
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "reason": "stopped"}])
        self.assertIn(A, f.firewall.clients)  # its own stop (next) lets it go
        self.assertEqual(g.sessions.all(), [])
        self.assertEqual(g.firewall.clients, {})
        self.assertEqual(g.portal.last_logout[A][0], "stopped")

    def test_end_firewall_keeps_clients(self):
        """
        Not keeping sessions while the firewall keeps its clients: the
        portal deauthorizes them, so no client stays let through without a
        session (one that nothing would ever time out).
        """
        f, told, g = self.stopped(False, firewall_keeps_clients=True)
        self.assertEqual(f.firewall.clients, {})
        self.assertEqual(g.firewall.clients, {})

    def test_firewall_here(self):
        """
        The portal knows whether the firewall it drives is in its process.
        """
        f = PortalFixture()
        self.assertTrue(f.portal.firewall_here())
        f.portal.firewall_process = "ap"  # its own name
        self.assertTrue(f.portal.firewall_here())
        f.portal.firewall_process = "fw"
        self.assertFalse(f.portal.firewall_here())

    def test_end_all_deauthorizes(self):
        """
        end_all asks the firewall (wherever it is) to deauthorize each
        session it ends, and fires with how many.
        """
        f = PortalFixture()
        self.successResultOf(f.portal.login(A, MAC_A, "click"))
        self.assertEqual(self.successResultOf(f.portal.end_all()), 1)
        self.assertEqual(f.firewall.clients, {})
        self.assertEqual(f.sessions.all(), [])


class KeepSessionsConfigTests(SynchronousTestCase):
    def config(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        options = PLUGIN.options()
        options.parseOptions(["--config", path])
        return options.config

    def test_follows_firewall(self):
        """
        By default a stop keeps the sessions exactly when the firewall
        keeps its clients (one config for every process).
        """
        self.assertFalse(tap.keep_sessions(self.config("[portal]\n")))
        self.assertTrue(tap.keep_sessions(self.config(
            "[firewall]\nkeep_clients = true\n[portal]\n")))

    def test_explicit(self):
        self.assertTrue(tap.keep_sessions(self.config("[portal]\nkeep_sessions = true\n")))
        self.assertFalse(tap.keep_sessions(self.config(
            "[firewall]\nkeep_clients = true\n[portal]\nkeep_sessions = false\n")))

    def test_bad_value(self):
        with self.assertRaises(usage.UsageError) as e:
            self.config('[portal]\nkeep_sessions = "maybe"\n')
        self.assertIn('true, false or "firewall"', str(e.exception))
