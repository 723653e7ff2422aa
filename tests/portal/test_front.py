"""
Tests for L{netsuite.portal.front}: the site's connections and the
redirect front.
"""

from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.front import PortalSite
from netsuite.portal.pages import Pages

from .helpers import A, PortalFixture


class PortalSiteTests(SynchronousTestCase):
    def test_drop_client(self):
        """
        drop_client aborts every open connection from one address except
        the one given to keep, and leaves other clients' alone.
        """
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        from twisted.web.resource import Resource

        site = PortalSite(Resource(), timeout=None)  # no channel timers on the reactor
        transports = []
        for host in ("10.89.0.11", "10.89.0.11", "10.89.0.12"):
            protocol = site.buildProtocol(Address("TCP", host, 40000))
            transport = StringTransport(peerAddress=Address("TCP", host, 40000))
            protocol.makeConnection(transport)
            transports.append((protocol, transport))
        keep = transports[0][0]
        self.assertEqual(site.drop_client("10.89.0.11", keep=keep), 1)
        self.assertEqual([t.disconnecting for _, t in transports], [False, True, False])


class RedirectFrontTests(SynchronousTestCase):
    """
    L{RedirectFront}: plain foreign GETs and HEADs answered from bytes,
    everything else handed to twisted.web on the same connection.
    """

    def setUp(self):
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        self.f = PortalFixture()
        self.site = PortalSite(self.f.resource, reactor=self.f.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)
        peer = Address("TCP", str(A), 40000)
        self.protocol = self.site.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)
        self.f.registry.eventual.flush_sync()
        return self.transport.value()

    def responses(self, raw):
        """
        The (status line, headers, body) of each response in C{raw}.
        """
        found = []
        while raw:
            head, _, rest = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = {name.lower(): value for name, value in
                       (line.split(b": ", 1) for line in lines[1:])}
            size = int(headers.get(b"content-length", b"0"))
            found.append((lines[0], headers, rest[:size]))
            raw = rest[size:]
        return found

    def test_same_redirect_as_the_site(self):
        """
        The front's 307 carries the Location, Refresh, Cache-Control and
        page that the full site gives the same request.
        """
        raw = self.send(b"GET /some/page?x=1&y=2 HTTP/1.1\r\nHost: Example.com\r\n"
                        b"User-Agent: curl/7.88\r\nAccept: */*\r\n\r\n")
        [(status, headers, body)] = self.responses(raw)
        full = self.f.request(b"GET", b"/some/page?x=1&y=2", b"example.com")
        self.assertEqual(status, b"HTTP/1.1 307 Temporary Redirect")
        self.assertEqual(headers[b"location"], full.header(b"location"))
        self.assertEqual(headers[b"refresh"], full.header(b"refresh"))
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertEqual(headers[b"content-type"], b"text/html; charset=utf-8")
        self.assertEqual(body, full.body())
        self.assertIn(b"date", headers)
        self.assertFalse(self.transport.disconnecting)
        self.assertIsNone(self.protocol.wrappedProtocol.channel)
        self.assertEqual(self.site.redirected, 1)

    def test_pipelined_and_split(self):
        """
        Requests arriving together, or a head split over reads, each get
        their answer in order; the connection stays open (HTTP/1.1).
        """
        raw = self.send(b"GET /a HTTP/1.1\r\nHost: a.example\r\n\r\nGET /b HTTP/1.1\r\nHo")
        raw = self.send(b"st: b.example\r\n\r\n")
        locations = [h[b"location"] for _, h, _ in self.responses(raw)]
        self.assertEqual(locations, [
            b"http://10.89.0.1:5280/login?url=" + quote("http://a.example/a", safe="").encode(),
            b"http://10.89.0.1:5280/login?url=" + quote("http://b.example/b", safe="").encode()])
        self.assertFalse(self.transport.disconnecting)

    def test_head_and_close(self):
        """
        A HEAD gets the head only; HTTP/1.0 without keep-alive, or
        Connection: close, closes after the answer.
        """
        raw = self.send(b"HEAD / HTTP/1.0\r\nHost: a.example\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 307 "))
        self.assertIn(b"Connection: close", head)
        self.assertEqual(body, b"")
        self.assertTrue(self.transport.disconnecting)

    def test_keep_alive_1_0(self):
        raw = self.send(b"GET / HTTP/1.0\r\nHost: a.example\r\nConnection: Keep-Alive\r\n\r\n")
        self.assertIn(b"Connection: keep-alive", raw)
        self.assertFalse(self.transport.disconnecting)

    def test_event_when_watched(self):
        """
        C{/portal/request} still hears the front's requests.
        """
        seen = []
        self.f.registry.watch("/portal/request", seen.append)
        self.send(b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual(seen, [{"ip": A, "host": "example.com", "path": "/x",
                                 "method": "GET"}])

    def test_hands_over(self):
        """
        The portal's own pages, the probes, requests with a body, other
        methods, odd heads: twisted.web answers them on the same
        connection, and every later request there.
        """
        cases = [
            (b"GET / HTTP/1.1\r\nHost: 10.89.0.1:5280\r\n\r\n", b" 303 "),
            (b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\n\r\n",
             b" 307 "),
            (b"POST /x HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2\r\n\r\nab", b" 307 "),
            (b"OPTIONS / HTTP/1.1\r\nHost: a.example\r\n\r\n", b" 307 "),
            (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", b" 307 "),
            (b"GET / HTTP/1.1\r\n\r\n", b" 307 "),
        ]
        for request, status in cases:
            self.setUp()
            raw = self.send(request)
            self.assertIsNotNone(self.protocol.wrappedProtocol.channel, request)
            self.assertIn(status, raw.split(b"\r\n", 1)[0], request)
            self.assertEqual(self.site.redirected, 0)
        raw = self.send(b"GET /later HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(self.site.redirected, 0)

    def test_overlong_head(self):
        """
        A head longer than the front reads is twisted.web's to refuse.
        """
        raw = self.send(b"GET / HTTP/1.1\r\nHost: a.example\r\nX: " + b"y" * 20000)
        self.assertIsNotNone(self.protocol.wrappedProtocol.channel)
        self.assertTrue(self.transport.disconnecting or raw.startswith(b"HTTP/1.1 4"))

    def test_idle_timeout(self):
        """
        A connection that sends nothing is dropped after the site's timeout.
        """
        self.f.clock.advance(self.site.timeOut + 1)
        self.assertTrue(self.transport.disconnecting)

    def test_date(self):
        """
        The Date header is the site's reactor's time, made again when the
        second changes.
        """
        from twisted.web.http import datetimeToString
        request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
        dates = []
        for step in (0, 0.5, 0.6):
            self.f.clock.advance(step)
            self.transport.clear()
            [(_, headers, _)] = self.responses(self.send(request))
            dates.append(headers[b"date"])
        self.assertEqual(dates, [datetimeToString(1000)] * 2 + [datetimeToString(1001)])

    def test_template_change(self):
        """
        Redirect pages kept from before a template change are not served
        after it.
        """
        self.send(b"GET /t HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.f.resource.pages = Pages("<main>$body</main>")
        self.transport.clear()
        [(_, _, body)] = self.responses(self.send(b"GET /t HTTP/1.1\r\nHost: a.example\r\n\r\n"))
        self.assertTrue(body.startswith(b"<main><meta http-equiv"), body)
