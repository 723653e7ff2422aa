"""
Tests for L{netsuite.portal.front}: the site's connections and the
redirect front.
"""

from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from netsuite.portal.front import HEAD_LIMIT, PortalSite, declare_front
from netsuite.portal.redirects import RedirectCache
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

    def test_drop_client_keeps_handed_over(self):
        """
        After a hand-over, the channel's transport names its connection
        (what the login passes as C{keep}).
        """
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        from twisted.web.resource import Resource

        site = PortalSite(Resource(), timeout=None)
        transports = []
        for port in (40000, 40001):
            protocol = site.buildProtocol(Address("TCP", "10.89.0.11", port))
            transport = StringTransport(peerAddress=Address("TCP", "10.89.0.11", port))
            protocol.makeConnection(transport)
            transports.append(transport)
        protocol.dataReceived(b"OPTIONS / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        keep = protocol.wrappedProtocol._http.transport  # the HTTPChannel's, as request.channel
        self.assertEqual(site.drop_client("10.89.0.11", keep=keep), 1)
        self.assertEqual([t.disconnecting for t in transports], [True, False])


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

    def test_control_in_content_type(self):
        """
        A form whose Content-Type holds a form feed (twisted.web's email
        parser raises ValueError for it; found by tests.fuzz.portal_forms)
        is read as one without a form: answered, nothing raised.
        """
        raw = self.send(b"POST /login HTTP/1.1\r\nHost: 10.89.0.1:5280\r\n"
                        b"Content-Type: application/\x0c-www-form-urlencoded\r\n"
                        b"Content-Length: 8\r\n\r\naccept=1")
        [(status, headers, body)] = self.responses(raw)
        self.assertEqual(status, b"HTTP/1.1 403 Forbidden")

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
        A head longer than L{HEAD_LIMIT} gets 431 and the connection is
        closed, whether it arrives whole in one read or in pieces; nothing
        is handed to twisted.web and nothing is redirected.
        """
        head = b"GET / HTTP/1.1\r\nHost: a.example\r\nX: " + b"y" * 60000 + b"\r\n\r\n"
        self.assertGreater(len(head), 7 * HEAD_LIMIT)
        for pieces in ([head], [head[i:i + 1000] for i in range(0, len(head), 1000)]):
            self.setUp()
            for piece in pieces:
                raw = self.send(piece)
                if self.transport.disconnecting:
                    break
            self.assertTrue(raw.startswith(b"HTTP/1.1 431 "), raw[:40])
            self.assertTrue(self.transport.disconnecting)
            self.assertIsNone(self.protocol.wrappedProtocol.channel)
            self.assertEqual(self.site.redirected, 0)
            self.assertEqual(self.site.refused, {"head-too-large": 1})

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

    def test_head_deadline(self):
        """
        A whole head must arrive within the site's head_timeout of its
        first byte: one byte every 9 seconds (each within the idle
        timeout) is cut at the deadline, counted and logged.
        """
        self.assertEqual(self.site.head_timeout, 10.0)
        self.f.clock.advance(50)  # idle before the first byte: the site's timeOut
        self.assertFalse(self.transport.disconnecting)
        for byte in b"GET / HT":
            self.send(bytes([byte]))
            if self.transport.disconnecting:
                break
            self.f.clock.advance(9)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.f.clock.seconds(), 1000 + 50 + 9 + 9)
        self.assertEqual(self.site.refused, {"head-timeout": 1})

    def test_byte_every_59_seconds(self):
        """
        One byte every 59 seconds (under the site's 60 s timeOut, which
        used to restart on every byte) is cut at the head deadline.
        """
        self.send(b"G")
        self.f.clock.advance(self.site.head_timeout - 0.1)
        self.assertFalse(self.transport.disconnecting)
        self.f.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.site.head_timeout < 59 < self.site.timeOut)

    def test_idle_between_requests(self):
        """
        Between whole requests a connection may stay idle for the site's
        timeOut, not only the head deadline.
        """
        self.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.f.clock.advance(self.site.timeOut - 1)
        self.assertFalse(self.transport.disconnecting)
        self.f.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.site.refused, {})

    def test_bad_url(self):
        """
        A target that is no URL gets 400 and one counted refusal, never a
        traceback: from the front, and from twisted.web (a request the
        front hands over).
        """
        raw = self.send(b"GET http://[x/ HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:40])
        self.assertTrue(self.transport.disconnecting)
        self.setUp()
        raw = self.send(b"POST http://[x/ HTTP/1.1\r\nHost: a.example\r\n"
                        b"Content-Length: 0\r\n\r\n")
        self.assertIsNotNone(self.protocol.wrappedProtocol.channel)
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:40])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.site.refused, {"bad-request": 1})

    def test_counts_mailbox(self):
        """
        C{/portal/front} answers the redirects, the open connections and
        the refusals by kind.
        """
        declare_front(self.f.registry, self.site)
        self.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET http://[x/ HTTP/1.1\r\n"
                  b"Host: a.example\r\n\r\n")
        counts = self.successResultOf(self.f.registry.send("/portal/front", {}))
        self.assertEqual(counts, {"redirected": 1, "connections": 1, "connections_ipv6": 0,
                                  "waiting": 0,
                                  "refused": {"bad-request": 1}})


class PausingTransport:
    """
    A StringTransport that, like a real one, pauses its producer once more
    than C{limit} bytes wait to be sent.
    """

    def __new__(cls, limit, **kwargs):
        from twisted.internet.testing import StringTransport

        class Pausing(StringTransport):
            def write(self, data):
                StringTransport.write(self, data)
                if self.producer is not None and len(self.value()) > limit:
                    self.producer.pauseProducing()

            def writeSequence(self, data):
                self.write(b"".join(data))
        return Pausing(**kwargs)


class BackPressureTests(SynchronousTestCase):
    """
    The front honours back-pressure: while its answers wait it answers no
    more and stops reading.
    """

    def setUp(self):
        from twisted.internet.address import IPv4Address as Address
        self.f = PortalFixture()
        self.site = PortalSite(self.f.resource, reactor=self.f.clock)
        peer = Address("TCP", str(A), 40000)
        self.protocol = self.site.buildProtocol(peer)
        self.transport = PausingTransport(4096, peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def test_producer(self):
        """
        The front is the transport's streaming producer.
        """
        self.assertIs(self.transport.producer, self.protocol.wrappedProtocol)
        self.assertTrue(self.transport.streaming)

    def test_waiting_counted(self):
        """
        C{/portal/front}'s C{waiting} counts the connections paused because
        their client does not read, until it reads again.
        """
        request = b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
        self.protocol.dataReceived(request * 200)
        self.assertEqual(self.site.front_counts()["waiting"], 1)
        while self.transport.producerState == "paused":
            self.transport.clear()
            self.protocol.wrappedProtocol.resumeProducing()
        self.assertEqual(self.site.front_counts()["waiting"], 0)

    def test_paused_while_output_waits(self):
        """
        200 pipelined GETs in one read: the front answers until the
        transport's buffer is full, then pauses the transport's reading;
        each time the transport has room again (resume) it answers more,
        until all are answered and the transport reads again.
        """
        request = b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
        self.protocol.dataReceived(request * 200)
        first = self.transport.value()
        self.assertEqual(self.transport.producerState, "paused")
        answered = first.count(b" 307 ")
        self.assertLess(answered, 200)
        self.assertLess(len(first), 4096 + len(first) // answered + 1)
        rounds = 0
        while self.transport.producerState == "paused":
            rounds += 1
            self.assertLess(rounds, 200)
            self.transport.clear()
            self.protocol.wrappedProtocol.resumeProducing()
            answered += self.transport.value().count(b" 307 ")
        self.assertEqual(answered, 200)
        self.assertEqual(self.site.redirected, 200)
        self.assertEqual(self.transport.producerState, "producing")

    def test_hand_over_after_pause(self):
        """
        A request for twisted.web queued behind the redirects while paused
        is handed over on resume, and the transport reads again.
        """
        request = b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
        self.protocol.dataReceived(request * 200 + b"GET /login HTTP/1.1\r\n"
                                   b"Host: 10.89.0.1:5280\r\n\r\n")
        sent = b""
        while self.transport.producerState == "paused":
            sent += self.transport.value()
            self.transport.clear()
            self.protocol.wrappedProtocol.resumeProducing()
        self.f.registry.eventual.flush_sync()
        self.assertIsNotNone(self.protocol.wrappedProtocol.channel)
        self.assertIn(b"HTTP/1.1 200 OK", sent + self.transport.value())
        self.assertEqual(self.site.redirected, 200)

    def test_bounded_while_paused(self):
        """
        A client that sends more than 64 KiB ahead while its answers wait
        is cut and counted.
        """
        request = b"GET /p HTTP/1.1\r\nHost: a.example\r\n\r\n"
        self.protocol.dataReceived(request * 200)
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.dataReceived(request * 100)
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(request * 2000)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.site.refused, {"pipeline-overflow": 1})
        self.assertEqual(self.protocol.wrappedProtocol.buffer, b"")


class HandedOverBackPressureTests(SynchronousTestCase):
    """
    After a hand-over the front gives twisted.web's channel one request at
    a time, none while the transport's buffer is full: a client that does
    not read gets no more answers queued than the buffer's bound and one
    page.
    """

    PAGE = b"GET /login HTTP/1.1\r\nHost: 10.89.0.1:5280\r\n\r\n"

    def setUp(self):
        from twisted.internet.address import IPv4Address as Address
        self.f = PortalFixture()
        self.site = PortalSite(self.f.resource, reactor=self.f.clock, timeout=None)
        peer = Address("TCP", str(A), 40000)
        self.protocol = self.site.buildProtocol(peer)
        self.front = self.protocol.wrappedProtocol
        self.transport = PausingTransport(4096, peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)
        self.f.registry.eventual.flush_sync()
        self.f.clock.advance(0)

    def test_client_that_never_reads(self):
        """
        54 KB of pipelined GETs for a twisted.web page in one read, from a
        client that never reads: the transport holds at most its bound and
        one page (before, every request read was answered at once: over
        3 MB), the front stays its producer and stops reading; more sent
        ahead than the front's bound cuts the connection.
        """
        self.send(self.PAGE * (54000 // len(self.PAGE)))
        held = self.transport.value()
        page = len(held) // held.count(b"HTTP/1.1 200 OK")
        self.assertLess(len(held), 4096 + page + 1)
        self.assertIs(self.transport.producer, self.front)
        self.assertEqual(self.transport.producerState, "paused")
        self.send(self.PAGE * 100)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), held)
        self.send(self.PAGE * 300)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.site.refused, {"pipeline-overflow": 1})

    def test_all_answered_as_the_client_reads(self):
        """
        Each time the transport has room again the front gives the channel
        more, until every request is answered, in order, and the transport
        reads again.
        """
        count = 400
        self.send(b"".join(self.PAGE.replace(b"/login", b"/login?n=%d" % i)
                           for i in range(count)))
        sent, rounds = b"", 0
        while self.transport.producerState == "paused":
            rounds += 1
            self.assertLess(rounds, count)
            self.assertLess(len(self.transport.value()), 4096 + 8192)
            sent += self.transport.value()
            self.transport.clear()
            self.front.resumeProducing()
            self.f.registry.eventual.flush_sync()
            self.f.clock.advance(0)
        sent += self.transport.value()
        self.assertEqual(sent.count(b"HTTP/1.1 200 OK"), count)
        self.assertGreater(rounds, 10)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertFalse(self.transport.disconnecting)

    def test_one_request_at_a_time(self):
        """
        While the channel waits for a request's answer (a resource that
        answers later), the front gives it nothing more and stops reading;
        once answered, the next request is given and reading resumes when
        all are.
        """
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET

        class Held(Resource):
            isLeaf = True

            def __init__(self):
                Resource.__init__(self)
                self.requests = []

            def render(self, request):
                self.requests.append(request)
                return NOT_DONE_YET

        held = Held()
        site = PortalSite(held, reactor=self.f.clock, timeout=None)
        protocol = site.buildProtocol(Address("TCP", str(A), 40001))
        transport = StringTransport(peerAddress=Address("TCP", str(A), 40001))
        protocol.makeConnection(transport)
        # OPTIONS: the front hands over at once, without looking at a portal
        protocol.dataReceived(b"".join(b"OPTIONS /%d HTTP/1.1\r\nHost: a.example\r\n\r\n" % i
                                       for i in range(3)))
        self.assertEqual([r.uri for r in held.requests], [b"/0"])
        self.assertEqual(transport.producerState, "paused")
        for i in range(3):
            held.requests[i].write(b"answer %d" % i)
            held.requests[i].finish()
            self.f.clock.advance(0)
            self.assertEqual(len(held.requests), min(i + 2, 3))
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"OPTIONS /3 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(held.requests[-1].uri, b"/3")


    def test_request_producer_paused(self):
        """
        A request's own streaming producer (what twisted.web's static files
        use) is paused through the front while the transport's buffer is
        full and resumed when it has room, as with twisted.web alone.
        """
        from twisted.internet.address import IPv4Address as Address
        from twisted.web.resource import Resource
        from twisted.web.server import NOT_DONE_YET
        from zope.interface import implementer
        from twisted.internet.interfaces import IPushProducer

        @implementer(IPushProducer)
        class Producer:
            def __init__(self, request):
                self.request, self.calls = request, []

            def pauseProducing(self):
                self.calls.append("pause")

            def resumeProducing(self):
                self.calls.append("resume")

            def stopProducing(self):
                self.calls.append("stop")

        producers = []

        class Streaming(Resource):
            isLeaf = True

            def render(self, request):
                producers.append(Producer(request))
                request.registerProducer(producers[-1], True)
                request.write(b"x" * 5000)  # more than the transport's bound
                return NOT_DONE_YET

        site = PortalSite(Streaming(), reactor=self.f.clock, timeout=None)
        protocol = site.buildProtocol(Address("TCP", str(A), 40002))
        transport = PausingTransport(4096, peerAddress=Address("TCP", str(A), 40002))
        protocol.makeConnection(transport)
        protocol.dataReceived(b"OPTIONS /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(producers[0].calls, ["pause"])
        transport.clear()
        protocol.wrappedProtocol.resumeProducing()
        self.assertEqual(producers[0].calls, ["pause", "resume"])
        producers[0].request.unregisterProducer()
        producers[0].request.finish()
        self.assertIn(b"0\r\n\r\n", transport.value())


class RedirectCacheTests(SynchronousTestCase):
    def test_bytes_bounded(self):
        """
        The redirects kept stay within the cache's bytes, the oldest going
        first; one too large to keep is answered, not kept.
        """
        f = PortalFixture()
        cache = f.resource._redirects
        for i in range(4096):
            location, body = f.resource.foreign_redirect("a.example", "/%d/" % i + "x" * 8000)
            self.assertIn(b"login?url=", location)
        self.assertEqual(len(cache), 0)
        for i in range(20000):
            f.resource.foreign_redirect("a.example", "/%d/" % i + "x" * 100)
        self.assertLessEqual(cache.size, cache.max_bytes)
        self.assertLess(len(cache), 20000)
        self.assertIsNotNone(cache.get(("a.example", "/19999/" + "x" * 100)))
        self.assertIsNone(cache.get(("a.example", "/0/" + "x" * 100)))

    def test_put(self):
        """
        put counts the bytes of key and value, drops the oldest to make
        room, and keeps nothing over a 64th of the whole.
        """
        cache = RedirectCache(max_bytes=640)
        cache.put(("k1",), (b"a", b"b"))
        cache.put(("k2", "x"), (b"a", b"b"))
        cache.put(("big",), (b"a" * 5, b"b" * 5))
        self.assertEqual((len(cache), cache.size), (2, 9))
        for i in range(200):
            cache.put(("k", "%03d" % i), (b"a", b"b"))
        self.assertLessEqual(cache.size, 640)
        self.assertGreater(cache.size, 640 - 6)
        self.assertIsNone(cache.get(("k1",)))
        self.assertEqual(cache.get(("k", "199")), (b"a", b"b"))
        cache.clear()
        self.assertEqual((len(cache), cache.size), (0, 0))


class ConnectionCapTests(SynchronousTestCase):
    """
    Connections are capped per client address and in total; a cap hit is
    counted every time and logged once per client per minute.
    """

    def setUp(self):
        from twisted.logger import globalLogPublisher
        from twisted.internet.testing import EventLoggingObserver
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.f = PortalFixture()
        self.site = PortalSite(self.f.resource, reactor=self.f.clock, max_connections=5,
                               max_per_client=2)

    def connect(self, host):
        from twisted.internet.address import IPv4Address as Address
        from twisted.internet.testing import StringTransport
        peer = Address("TCP", host, 40000)
        protocol = self.site.buildProtocol(peer)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=peer))
        return protocol

    def refusals(self):
        return [e for e in self.events if e.get("netsuite_event") == "portal-refused"]

    def test_per_client(self):
        """
        A third connection from one address is refused (others still get
        theirs); once one closes, the address may connect again.
        """
        first = self.connect("10.89.0.11")
        self.assertIsNotNone(self.connect("10.89.0.11"))
        for _ in range(5):
            self.assertIsNone(self.connect("10.89.0.11"))
        self.assertIsNotNone(self.connect("10.89.0.12"))
        self.assertEqual(self.site.refused, {"client-cap": 5})
        self.assertEqual(len(self.refusals()), 1)
        first.connectionLost(None)
        self.assertIsNotNone(self.connect("10.89.0.11"))
        self.assertIsNone(self.connect("10.89.0.11"))
        self.assertEqual(len(self.refusals()), 1)
        self.f.clock.advance(61)
        self.assertIsNone(self.connect("10.89.0.11"))
        self.assertEqual(len(self.refusals()), 2)
        self.assertEqual(self.refusals()[-1]["client"], "10.89.0.11")

    def test_total(self):
        """
        Past max_connections every client is refused.
        """
        for i in range(5):
            self.assertIsNotNone(self.connect("10.89.0.%d" % (20 + i)))
        self.assertIsNone(self.connect("10.89.0.40"))
        self.assertIsNone(self.connect("10.89.0.41"))
        self.assertEqual(self.site.refused, {"total-cap": 2})
        self.assertEqual(len(self.refusals()), 2)

    def test_ipv6(self):
        """
        IPv6 clients are capped per address as IPv4's, and all together at
        max_ipv6 (one client making up addresses cannot fill the portal);
        IPv4 clients still connect; /portal/front counts them.
        """
        from twisted.internet.address import IPv6Address as Address
        from twisted.internet.testing import StringTransport
        self.site = PortalSite(self.f.resource, reactor=self.f.clock, max_connections=10,
                               max_per_client=2, max_ipv6=3)

        def connect6(host):
            peer = Address("TCP", host, 40000)
            protocol = self.site.buildProtocol(peer)
            if protocol is not None:
                protocol.makeConnection(StringTransport(peerAddress=peer))
            return protocol
        first = connect6("2001:db8:89::1:1")
        self.assertIsNotNone(connect6("2001:db8:89::1:1"))
        self.assertIsNone(connect6("2001:db8:89::1:1"))
        self.assertIsNotNone(connect6("2001:db8:89::1:2"))
        self.assertIsNone(connect6("2001:db8:89::1:3"))
        self.assertIsNotNone(self.connect("10.89.0.11"))
        self.assertEqual(self.site.refused, {"client-cap": 1, "ipv6-cap": 1})
        self.assertEqual(self.site.front_counts()["connections_ipv6"], 3)
        first.connectionLost(None)
        self.assertEqual(self.site.front_counts()["connections_ipv6"], 2)
        self.assertIsNotNone(connect6("2001:db8:89::1:3"))

    def test_ipv6_redirect(self):
        """
        The front answers an IPv6 client's plain foreign GET with the same
        307 as an IPv4 client's.
        """
        from twisted.internet.address import IPv6Address as Address
        from twisted.internet.testing import StringTransport
        answers = []
        for peer in (Address("TCP", "2001:db8:89::1:1", 40000),
                     Address("TCP", "10.89.0.11", 40000)):
            protocol = self.site.buildProtocol(peer)
            transport = StringTransport(peerAddress=peer)
            protocol.makeConnection(transport)
            protocol.dataReceived(b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
            answers.append(transport.value())
        self.assertTrue(answers[0].startswith(b"HTTP/1.1 307 "), answers[0][:40])
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(self.site.redirected, 2)

    def test_notices_bounded(self):
        """
        Refusals from more addresses than the notices keep in a minute are
        still counted, but the notices (and the log lines) stop growing.
        """
        for i in range(5000):
            self.site.refuse("client-cap", "10.%d.%d.1" % (i // 256, i % 256))
        self.assertEqual(self.site.refused, {"client-cap": 5000})
        self.assertEqual(len(self.refusals()), 4096)
        self.f.clock.advance(61)
        self.site.refuse("client-cap", "10.0.0.1")
        self.assertEqual(len(self.refusals()), 4097)
