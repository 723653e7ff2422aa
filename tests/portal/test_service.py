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

from .helpers import PortalFixture

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

    def test_cached(self):
        """
        The table is read again after ttl seconds, or after retry seconds
        for an address it does not know; not on every lookup.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(ARP)
        now = [0.0]
        table = NeighbourTable(path, ttl=1.0, retry=0.05, now=lambda: now[0])
        self.assertEqual(table("10.89.0.11"), MAC("02:4e:00:00:00:0b"))
        with open(path, "a") as f:
            f.write("10.89.0.13       0x1         0x2         02:4e:00:00:00:0d     *        br-lan\n")
        self.assertIsNone(table("10.89.0.13"))  # read 0 s ago: not again yet
        now[0] = 0.1
        self.assertEqual(table("10.89.0.13"), MAC("02:4e:00:00:00:0d"))


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
            f'max_connections = 100\nmax_connections_per_client = 3\n')])
        [service] = [s for s in PLUGIN.makeService(options) if isinstance(s, PortalService)]
        site = service.site
        self.assertEqual((site.head_timeout, site.max_connections, site.max_per_client),
                         (4.5, 100, 3))
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
