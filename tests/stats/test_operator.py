"""
The operator's traffic pages (L{netsuite.stats.operator}): the portal's
operator credentials, the pages and their escaping, the graphs drawn from
real round-robin files, what a URL may name, the cache's bounds and the
C{[stats.operator]} table.
"""

import base64
import ipaddress
import re
import shutil
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, parse
from netsuite.portal.auth import hash_password
from netsuite.portal.operator import OperatorAuth
from netsuite.portal.testing import FakeRequest
from netsuite.services import all_sections
from netsuite.stats import graphs, layout, tap
from netsuite.stats.model import Totals, Traffic
from netsuite.stats.operator import (IDLE_TIMEOUT, MAX_BODY, BoundedSite, Busy, GraphCache,
                                     OperatorPages, rate)
from netsuite.testing import HeldRunner, SyncRunner, registry_on_clock

from ..portal.test_tls import make_ca_and_certificate
from .png import size
from .test_graphs import T0, make_file

FAST = {"n": 16, "r": 1, "p": 1}
MAC_A, MAC_B = "02:4e:00:00:00:0b", "02:4e:00:00:00:0c"
ADMIN = ipaddress.IPv4Address("10.89.0.2")


def basic(user, password):
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


GOOD = basic("op", "s3cret")


def traffic():
    """Two clients: A moved 3 MB down today, B 1 kB; B's IP would break HTML."""
    t = Traffic()
    t.update(T0, {"10.89.0.11": (MAC_A, Totals(1000, 3_000_000, 10, 10)),
                  '10.89.0.12"><script>x</script>': (MAC_B, Totals(10, 1000, 1, 1))})
    t.update(T0 + 10, {"10.89.0.11": (MAC_A, Totals(2000, 4_000_000, 20, 20)),
                       '10.89.0.12"><script>x</script>': (MAC_B, Totals(10, 1000, 1, 1))})
    return t


class Pages:
    """The site on a Clock, with files for the uplink and client A."""

    def __init__(self, test, runner=None, auth_runner=None, max_renders=8, **auth):
        self.clock = Clock()
        self.clock.advance(T0 + 600)
        self.directory = tempfile.mkdtemp(prefix="statsgraphs-")
        test.addCleanup(shutil.rmtree, self.directory, True)
        make_file(layout.uplink_file(self.directory))
        make_file(layout.client_file(self.directory, MAC_A))
        self.auth = OperatorAuth(("op", hash_password("s3cret", **FAST)),
                                 auth_runner or SyncRunner(), self.clock, **auth)
        self.runner = runner or SyncRunner()
        self.cache = GraphCache(self.runner, self.clock, 10.0, max_renders)
        self.traffic = traffic()
        self.resource = OperatorPages(self.traffic, self.directory, self.auth, self.cache, top=5)

    def get(self, path, auth=GOOD, method=b"GET", client=ADMIN):
        r = FakeRequest(method, path, b"stats.example:8444", client=client, secure=True)
        if auth is not None:
            r.requestHeaders.addRawHeader(b"authorization", auth)
        r.render(self.resource)
        return r


class AuthTests(SynchronousTestCase):
    def test_credentials_required(self):
        """
        Every page, the graphs too, is a 401 asking for Basic credentials
        without the operator's, and shows nothing.
        """
        p = Pages(self, max_failures=0, max_checks=0)
        for path in (b"/", b"/client/02-4e-00-00-00-0b", b"/graph/uplink/hour.png", b"/nothing"):
            for auth in (None, basic("op", "wrong"), basic("other", "s3cret"), b"Bearer x"):
                r = p.get(path, auth)
                self.assertEqual(r.responseCode, 401, (path, auth))
                self.assertIn(b'Basic realm="netsuite portal operator"',
                              r.header(b"www-authenticate"))
                self.assertNotIn(b"<img", r.body())
                self.assertNotIn(b"PNG", r.body())
        self.assertEqual(p.cache.renders, 0)

    def test_admin_networks(self):
        """A client outside the admin networks gets a 403 and no question."""
        p = Pages(self, networks=[ipaddress.IPv4Network("10.89.0.0/30")])
        r = p.get(b"/", client=ipaddress.IPv4Address("10.89.0.11"))
        self.assertEqual(r.responseCode, 403)
        self.assertIsNone(r.header(b"www-authenticate"))
        self.assertEqual(p.get(b"/").responseCode, 200)

    def test_rate_limited(self):
        """Past the wrong passwords allowed, a 429 with Retry-After."""
        p = Pages(self, max_failures=2)
        for _ in range(2):
            self.assertEqual(p.get(b"/", basic("op", "bad")).responseCode, 401)
        r = p.get(b"/", basic("op", "bad"))
        self.assertEqual(r.responseCode, 429)
        self.assertTrue(r.header(b"retry-after"))

    def test_check_in_runner(self):
        """The scrypt check runs through the runner: the page waits for it."""
        held = HeldRunner()
        p = Pages(self, auth_runner=held)
        r = p.get(b"/")
        self.assertFalse(r.finished)
        held.run_next()
        self.assertEqual((r.finished, r.responseCode), (1, 200))

    def test_no_credentials_configured(self):
        """Without [portal.operator] credentials every page is a 404."""
        p = Pages(self)
        p.resource.auth = None
        self.assertEqual(p.get(b"/").responseCode, 404)

    def test_get_only(self):
        self.assertEqual(Pages(self).get(b"/", method=b"POST").responseCode, 405)


class PageTests(SynchronousTestCase):
    def setUp(self):
        self.p = Pages(self)

    def test_index(self):
        """
        The index shows the uplink's three graphs and the top talkers,
        biggest first, each linking to its page, with what it moved
        today and its rates.
        """
        r = self.p.get(b"/")
        self.assertEqual(r.responseCode, 200)
        self.assertEqual(r.header(b"content-type"), b"text/html; charset=utf-8")
        self.assertIn(b"default-src 'none'", r.header(b"content-security-policy"))
        body = r.body().decode()
        for period in ("hour", "day", "week"):
            self.assertIn(f'<img src="/graph/uplink/{period}.png"', body)
        links = re.findall(r'<a href="/client/([^"]+)">', body)
        self.assertEqual(links, ["02-4e-00-00-00-0b", "02-4e-00-00-00-0c"])
        self.assertIn("<td>4 MB</td><td>2 kB</td>", body)
        self.assertIn(f"<td>{rate(100_000)}</td><td>{rate(100)}</td>", body)

    def test_escaped(self):
        """What comes from the traffic (an address) is escaped in the HTML."""
        for path in (b"/", b"/client/" + MAC_B.encode()):
            body = self.p.get(path).body().decode()
            self.assertNotIn("<script>", body)
            self.assertIn("10.89.0.12&quot;&gt;&lt;script&gt;x&lt;/script&gt;", body)

    def test_client(self):
        """A client's page: its graphs, its address and usage, a way back."""
        for name in (b"02-4e-00-00-00-0b", b"02:4e:00:00:00:0B"):
            r = self.p.get(b"/client/" + name)
            self.assertEqual(r.responseCode, 200, name)
            body = r.body().decode()
            for period in ("hour", "day", "week"):
                self.assertIn(f'<img src="/graph/02-4e-00-00-00-0b/{period}.png"', body)
            self.assertIn("10.89.0.11: today 4 MB down", body)
            self.assertIn('<a href="/">', body)
        body = self.p.get(b"/client/02-4e-00-00-00-99").body().decode()
        self.assertIn("Not online now.", body)

    def test_graph(self):
        """A graph is a PNG of rrdtool's drawing, of the file the URL names."""
        for path in (b"/graph/uplink/hour.png", b"/graph/02-4e-00-00-00-0b/day.png",
                     b"/graph/02:4e:00:00:00:0b/week.png?x=1"):
            r = self.p.get(path)
            self.assertEqual((r.responseCode, r.header(b"content-type")),
                             (200, b"image/png"), path)
            width, height = size(r.body())
            self.assertGreater(width, graphs.WIDTH)
            self.assertGreater(height, graphs.HEIGHT)

    def test_not_found(self):
        """
        Bad names, periods and paths are 404s (never a file outside the
        directory, never rrdtool asked); a client with no file is a 404.
        """
        for path in (b"/graph/uplink/year.png", b"/graph/uplink/hour", b"/graph/../hour.png",
                     b"/graph/..%2f..%2fetc%2fpasswd/hour.png", b"/graph/uplink/../hour.png",
                     b"/graph//hour.png", b"/client/uplink", b"/client/../../etc",
                     b"/client/", b"/index.html", b"//", b"/graph/uplink/hour.png/x",
                     b"/client/02-4e-00-00-00-0b/x"):
            self.assertEqual(self.p.get(path).responseCode, 404, path)
        self.assertEqual(self.p.cache.renders, 0)
        r = self.p.get(b"/graph/02-4e-00-00-00-99/hour.png")
        self.assertEqual(r.responseCode, 404)

    def test_busy(self):
        """Past max_renders drawings under way, a graph is a 503 with Retry-After."""
        held = HeldRunner()
        p = Pages(self, runner=held, max_renders=1)
        first = p.get(b"/graph/uplink/hour.png")
        second = p.get(b"/graph/uplink/day.png")
        self.assertEqual(second.responseCode, 503)
        self.assertTrue(second.header(b"retry-after"))
        held.run_next()
        self.assertEqual(first.responseCode, 200)

    def test_failed_drawing(self):
        """A drawing that fails is a 500 (logged), and is not kept."""
        held = HeldRunner()
        p = Pages(self, runner=held)
        r = p.get(b"/graph/uplink/hour.png")
        held.run_next(fail_with=RuntimeError("rrdtool broke"))
        self.assertEqual(r.responseCode, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(p.cache), 0)


class CacheTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.runner = HeldRunner()
        self.drawn = []

        def draw(path, args):
            self.drawn.append(path)
            return b"png of " + path.encode()
        self.cache = GraphCache(self.runner, self.clock, 10.0, 2, max_entries=3, draw=draw)

    def test_once_per_refresh(self):
        """
        Asked twice while it is drawn, a graph is drawn once; asked again
        within refresh seconds it is not drawn again; after, it is.
        """
        one, two = self.cache.get("k", "a", []), self.cache.get("k", "a", [])
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(one), b"png of a")
        self.assertEqual(self.successResultOf(two), b"png of a")
        self.clock.advance(9.9)
        self.assertEqual(self.successResultOf(self.cache.get("k", "a", [])), b"png of a")
        self.assertEqual(self.cache.renders, 1)
        self.clock.advance(0.1)
        later = self.cache.get("k", "a", [])
        self.runner.run_next()
        self.successResultOf(later)
        self.assertEqual(self.cache.renders, 2)

    def test_bounded_drawings(self):
        """At most max_renders drawings under way: the next one fails with Busy."""
        self.cache.get("a", "a", [])
        self.cache.get("b", "b", [])
        self.failureResultOf(self.cache.get("c", "c", []), Busy)
        self.runner.run_next()
        self.assertNoResult(self.cache.get("c", "c", []))

    def test_bounded_entries(self):
        """At most max_entries PNGs kept, the least recently asked for going first."""
        for key in "abc":
            self.cache.get(key, key, [])
            self.runner.run_next()
        self.clock.advance(1)
        self.successResultOf(self.cache.get("a", "a", []))  # a is fresh again
        self.cache.get("d", "d", [])
        self.runner.run_next()
        self.assertEqual(len(self.cache), 3)
        self.successResultOf(self.cache.get("a", "a", []))
        self.assertNoResult(self.cache.get("b", "b", []))  # b went: drawn again


class SiteTests(SynchronousTestCase):
    """What one stranger can hold of the site (L{BoundedSite})."""

    def setUp(self):
        self.p = Pages(self)
        self.site = BoundedSite(self.p.resource, max_connections=2, reactor=self.p.clock)

    def connect(self):
        channel = self.site.buildProtocol(IPv4Address("TCP", "10.89.0.2", 40000))
        if channel is not None:
            channel.makeConnection(StringTransport(peerAddress=IPv4Address(
                "TCP", "10.89.0.2", 40000)))
        return channel

    def test_connections(self):
        """Past max_connections open, a new one is refused; one closed frees a place."""
        one, _ = self.connect(), self.connect()
        self.assertIsNone(self.connect())
        one.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.connect())

    def test_body(self):
        """A request body past MAX_BODY bytes cuts the connection."""
        channel = self.connect()
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                             + b"x" * MAX_BODY)
        self.assertFalse(channel.transport.disconnecting)
        channel.dataReceived(b"x")
        self.assertTrue(channel.transport.disconnected)  # aborted

    def test_idle(self):
        """An idle connection is closed after IDLE_TIMEOUT seconds."""
        channel = self.connect()
        self.p.clock.advance(IDLE_TIMEOUT - 1)
        self.assertFalse(channel.transport.disconnecting)
        self.p.clock.advance(1)
        self.assertTrue(channel.transport.disconnecting)

    def test_page(self):
        """A whole request through the site: a page."""
        channel = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: " + GOOD
                             + b"\r\n\r\n")
        self.assertIn(b"HTTP/1.1 200 OK", channel.transport.value())
        self.assertIn(b"Top talkers today", channel.transport.value())


class ConfigTests(SynchronousTestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="statsgraphs-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        _, self.cert, self.key = make_ca_and_certificate(self.directory, "stats.example")

    def config(self, operator=None, credentials=True):
        portal = {"operator": {"username": "op", "password_hash": hash_password("x", **FAST)}}
        return parse({"stats": {"enabled": True, "directory": self.directory,
                                "operator": operator or {}},
                      "portal": portal if credentials else {}}, "test.toml", all_sections())

    def enabled(self, **more):
        return dict({"enabled": True, "host": "stats.example", "tls_certificate": self.cert,
                     "tls_key": self.key, "port": 18444}, **more)

    def test_off_by_default(self):
        """Off: no site."""
        registry, clock = registry_on_clock("ap")
        service = tap.serviceFromConfig(self.config(), registry, clock)
        self.assertRaises(KeyError, service.getServiceNamed, "stats-operator")

    def test_site(self):
        """On, with a certificate naming its host: the HTTPS site is a child."""
        config = self.config(self.enabled())
        tap.check(config)
        registry, clock = registry_on_clock("ap")
        service = tap.serviceFromConfig(config, registry, clock)
        site = service.getServiceNamed("stats-operator")
        self.assertEqual(site.endpoint.url, "https://stats.example:18444/")
        # once it listens, it says where
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        site.endpoint.endpoint = type("Listening", (), {"listen": lambda _, f: succeed("port")})()
        self.assertEqual(self.successResultOf(site.endpoint.listen(None)), "port")
        self.assertEqual([e["url"] for e in events if "url" in e],
                         ["https://stats.example:18444/"])

    def test_problems(self):
        """No credentials, no certificate, a certificate of another name: errors saying so."""
        for config, words in (
                (self.config(self.enabled(), credentials=False), "[portal.operator]"),
                (self.config(self.enabled(tls_key="")), "tls_certificate and tls_key"),
                (self.config(self.enabled(host="other.example")), "does not name host"),
                (self.config(self.enabled(host="", interface_address="")), "needs host")):
            with self.assertRaises(ConfigError) as caught:
                tap.check(config)
            self.assertIn("[stats.operator]", str(caught.exception))
            self.assertIn(words, str(caught.exception))

    def test_bad_values(self):
        for key, value in (("port", 0), ("refresh", 0), ("max_renders", 0),
                           ("interface_address", "x"), ("top", -1)):
            with self.assertRaises(ConfigError) as caught:
                self.config({key: value})
            self.assertIn(f"stats.operator.{key}", str(caught.exception))


