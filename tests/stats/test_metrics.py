"""
The Prometheus metrics (L{netsuite.stats.metrics}).
"""

import calendar

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from netsuite.config.schema import parse
from netsuite.registry.interfaces import EVENT, Stop
from netsuite.services import all_sections
from netsuite.stats import metricshttp, tap
from netsuite.stats.metrics import (Gatherer, MetricsResource, PortalEvents, Snapshot,
                                    metrics_site, render, sources)
from netsuite.stats.model import Totals, Traffic
from netsuite.system import install_system_mailboxes
from netsuite.testing import HeldRunner, SyncRunner, registry_on_clock

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
NOON = calendar.timegm((2026, 12, 4, 12, 0, 0))


def samples(text):
    """C{{(name, sorted labels): value}} of an exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def config(**metrics_section):
    return parse({"stats": {"enabled": True, "metrics": metrics_section}}, "test.toml",
                 all_sections())


class FamiliesTests(SynchronousTestCase):
    def traffic(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (A, Totals(100, 2000, 3, 4)),
                              "10.0.0.3": (B, Totals(0, 0, 0, 0))}, uplink=Totals(5, 6, 7, 8))
        traffic.update(NOON + 10, {"10.0.0.2": (A, Totals(150, 5000, 4, 9)),
                                   "10.0.0.3": (B, Totals(1, 2, 1, 1))},
                       uplink=Totals(50, 60, 70, 80))
        return traffic

    def test_clients_and_uplink(self):
        """Each client's totals by ip, mac and direction; the uplink's; counts."""
        found = samples(render(Snapshot(self.traffic())).decode())

        def client(name, ip, mac, direction):
            return found[(name, (("direction", direction), ("ip", ip), ("mac", mac)))]
        self.assertEqual(client("netsuite_client_bytes_total", "10.0.0.2", A, "down"), 5000)
        self.assertEqual(client("netsuite_client_bytes_total", "10.0.0.2", A, "up"), 150)
        self.assertEqual(client("netsuite_client_packets_total", "10.0.0.2", A, "down"), 9)
        self.assertEqual(client("netsuite_client_bytes_total", "10.0.0.3", B, "down"), 2)
        self.assertEqual(found[("netsuite_uplink_bytes_total", (("direction", "up"),))], 50)
        self.assertEqual(found[("netsuite_uplink_packets_total", (("direction", "down"),))], 80)
        self.assertEqual(found[("netsuite_clients", ())], 2)
        self.assertEqual(found[("netsuite_stats_samples_total", ())], 2)

    def test_no_uplink_yet(self):
        """Before an uplink reading there is no uplink series (not a false 0)."""
        traffic = Traffic()
        traffic.update(NOON, {})
        names = {name for name, _ in samples(render(Snapshot(traffic)).decode())}
        self.assertNotIn("netsuite_uplink_bytes_total", names)

    def test_gathered(self):
        """
        The gathered answers: DHCP counters and leases by state, the
        portal's sessions, mailbox counters by process and mailbox, each
        source's up.
        """
        registry, clock = registry_on_clock("stats")
        gatherer = Gatherer(registry, clock, {
            "dhcp_counters": ("dhcp:/dhcp/counters", {}),
            "dhcp_leases": ("dhcp:/dhcp/leases", {}),
            "portal_sessions": ("portal:/portal/sessions", {}),
            "mailboxes:portal": ("portal:/system/mailboxes", {}),
            "mailboxes:dns": ("dns:/system/mailboxes", {})}, 10, 5)
        gatherer.answers = {
            "dhcp_counters": {"acks": 7, "offers": 9, "name": "not a number"},
            "dhcp_leases": [{"state": "bound"}, {"state": "bound"}, {"state": "expired"}],
            "portal_sessions": [{"ip": "10.0.0.2"}],
            "mailboxes:portal": [{"path": "/portal/login", "counters": {
                "messages": 3, "stops": 0, "errors": 1, "timeouts": 2, "seconds": 0.25}}]}
        gatherer.up = {name: name in gatherer.answers for name in gatherer.sources}
        events = PortalEvents(registry)
        events.logins = {"click": 2}
        events.logouts = {"idle-timeout": 1}
        found = samples(render(Snapshot(Traffic(), gatherer, events, here="stats")).decode())
        self.assertEqual(found[("netsuite_dhcp_counter_total", (("counter", "acks"),))], 7)
        self.assertNotIn(("netsuite_dhcp_counter_total", (("counter", "name"),)), found)
        self.assertEqual(found[("netsuite_dhcp_leases", (("state", "bound"),))], 2)
        self.assertEqual(found[("netsuite_dhcp_leases", (("state", "expired"),))], 1)
        self.assertEqual(found[("netsuite_portal_sessions", ())], 1)
        self.assertEqual(found[("netsuite_portal_logins_total", (("method", "click"),))], 2)
        self.assertEqual(found[("netsuite_portal_logouts_total",
                                (("reason", "idle-timeout"),))], 1)
        box = (("mailbox", "/portal/login"), ("process", "portal"))
        self.assertEqual(found[("netsuite_mailbox_messages_total", box)], 3)
        self.assertEqual(found[("netsuite_mailbox_errors_total", box)], 1)
        self.assertEqual(found[("netsuite_mailbox_timeouts_total", box)], 2)
        self.assertEqual(found[("netsuite_mailbox_seconds_total", box)], 0.25)
        self.assertEqual(found[("netsuite_source_up", (("address", "dns:/system/mailboxes"),
                                                       ("source", "mailboxes:dns")))], 0)
        self.assertEqual(found[("netsuite_source_up", (("address", "dhcp:/dhcp/counters"),
                                                       ("source", "dhcp_counters")))], 1)

    def test_accounting_counters(self):
        """The accounting log's own counters, when it runs."""
        class Log:
            written, failures, dropped, pending, rotations = 5, 1, 0, 2, 0

        class Accounting:
            log, open, malformed = Log(), {"10.0.0.2": None}, 0
        found = samples(render(Snapshot(Traffic(), accounting=Accounting())).decode())
        self.assertEqual(found[("netsuite_accounting_records_total", ())], 5)
        self.assertEqual(found[("netsuite_accounting_write_failures_total", ())], 1)
        self.assertEqual(found[("netsuite_accounting_pending", ())], 2)
        self.assertEqual(found[("netsuite_accounting_open_sessions", ())], 1)


class GathererTests(SynchronousTestCase):
    def setUp(self):
        self.registry, self.clock = registry_on_clock("stats", default_deadline=30)
        install_system_mailboxes(self.registry, self.clock)
        self.registry.declare("/dhcp/counters")
        self.registry.listen("/dhcp/counters", lambda m: Stop({"acks": 3}))
        self.slow = []
        self.registry.declare("/portal/sessions")
        self.registry.listen("/portal/sessions", lambda m: self.slow.append(Deferred())
                             or self.slow[-1])

    def test_round(self):
        """
        Each interval every source is asked; one that does not answer
        within the deadline is a gap and down, the others are there.
        """
        gatherer = Gatherer(self.registry, self.clock, {
            "dhcp_counters": ("/dhcp/counters", {}),
            "portal_sessions": ("/portal/sessions", {}),
            "mailboxes:": ("/system/mailboxes", {"prefix": "/dhcp"})}, 10, 5)
        gatherer.start()
        self.addCleanup(gatherer.stop)
        self.assertEqual(gatherer.answers["dhcp_counters"], {"acks": 3})
        self.assertEqual([m["path"] for m in gatherer.answers["mailboxes:"]],
                         ["/dhcp/counters"])
        self.assertNotIn("portal_sessions", gatherer.up)
        self.clock.advance(5)
        self.assertEqual(gatherer.up, {"dhcp_counters": True, "portal_sessions": False,
                                       "mailboxes:": True})
        self.assertNotIn("portal_sessions", gatherer.answers)
        self.clock.advance(5)  # the next round
        self.assertEqual((gatherer.rounds, len(self.slow)), (2, 2))
        self.assertEqual(gatherer.answers["mailboxes:"][0]["counters"]["messages"], 2)

    def test_deadline_within_interval(self):
        """A round still under way when the next is due is not doubled."""
        gatherer = Gatherer(self.registry, self.clock,
                            {"portal_sessions": ("/portal/sessions", {})}, 2, 60)
        self.assertEqual(gatherer.deadline, 2)
        gatherer._busy = 1  # as if a round hung
        gatherer.start()
        self.addCleanup(gatherer.stop)
        self.assertEqual((gatherer.rounds, self.slow), (0, []))

    def test_unknown_local(self):
        """A local mailbox that is not there is a gap, not an error."""
        gatherer = Gatherer(self.registry, self.clock, {"x": ("/nothing/here", {})}, 10, 5)
        gatherer.start()
        self.addCleanup(gatherer.stop)
        self.assertEqual(gatherer.up, {"x": False})

    def test_sources(self):
        """The configured processes' /system/mailboxes; DHCP and the portal's figures."""
        found = sources(config(processes=["portal", "stats"], dhcp_process="dhcp"), "stats")
        self.assertEqual(found["dhcp_counters"][0], "dhcp:/dhcp/counters")
        self.assertEqual(found["portal_sessions"][0], "/portal/sessions")
        self.assertEqual(found["mailboxes:portal"][0], "portal:/system/mailboxes")
        self.assertEqual(found["mailboxes:"][0], "/system/mailboxes")
        self.assertEqual(sorted(sources(config(), "stats")),
                         ["dhcp_counters", "dhcp_leases", "mailboxes:", "portal_sessions"])


class PortalEventsTests(SynchronousTestCase):
    def test_counts(self):
        registry, clock = registry_on_clock("ap")
        for path in ("/portal/login", "/portal/logout"):
            registry.declare(path, kind=EVENT)
        events = PortalEvents(registry)
        events.start()
        for reason in ("click", "click", "password"):
            registry.send("/portal/login", {"ip": "10.0.0.2", "reason": reason})
        registry.send("/portal/logout", {"ip": "10.0.0.2", "reason": "logout"})
        registry.eventual.flush_sync()
        events.stop()
        registry.send("/portal/logout", {"ip": "10.0.0.2", "reason": "logout"})
        registry.eventual.flush_sync()
        self.assertEqual((events.logins, events.logouts),
                         ({"click": 2, "password": 1}, {"logout": 1}))


def get(resource, path=b"metrics"):
    request = DummyRequest([path])
    request.method = b"GET"
    return request, resource.render(request)


class ResourceTests(SynchronousTestCase):
    def snapshot(self):
        traffic = Traffic()
        traffic.update(NOON, {"10.0.0.2": (A, Totals(1, 2, 3, 4))})
        return Snapshot(traffic)

    def test_scrape(self):
        """GET /metrics: the text exposition, rendered by the runner."""
        runner = SyncRunner()
        resource = MetricsResource(self.snapshot, runner)
        request, result = get(resource)
        self.assertEqual((result, request.finished, runner.calls), (NOT_DONE_YET, 1, 1))
        text = b"".join(request.written).decode()
        self.assertIn(b"text/plain", request.responseHeaders.getRawHeaders(b"content-type")[0])
        found = samples(text)
        self.assertEqual(found[("netsuite_client_bytes_total", (
            ("direction", "down"), ("ip", "10.0.0.2"), ("mac", A)))], 2)

    def test_not_found(self):
        request, result = get(MetricsResource(self.snapshot, SyncRunner()), b"other")
        self.assertEqual(request.responseCode, 404)

    def test_bounded_scrapes(self):
        """Past max_scrapes rendering at once, a scrape is answered 503."""
        runner = HeldRunner()
        resource = MetricsResource(self.snapshot, runner, max_scrapes=1)
        first, _ = get(resource)
        second, result = get(resource)
        self.assertEqual((second.responseCode, resource.refused), (503, 1))
        runner.run_next()
        self.assertEqual(first.finished, 1)
        third, _ = get(resource)
        runner.run_next()
        self.assertEqual((third.finished, resource.scrapes), (1, 2))

    def test_client_gone(self):
        """A scraper that hangs up before the rendering is done gets nothing written."""
        runner = HeldRunner()
        resource = MetricsResource(self.snapshot, runner)
        request, _ = get(resource)
        request.processingFailed(Exception("gone"))  # fires notifyFinish's errback
        runner.run_next()
        self.assertEqual((request.written, resource.scraping), ([], 0))


class SiteTests(SynchronousTestCase):
    def test_bounded_connections(self):
        """At most max_connections are held; a closed one makes room."""
        site = metrics_site(MetricsResource(lambda: None, SyncRunner()), 2,
                            MemoryReactorClock())
        channels = [site.buildProtocol(("127.0.0.1", 1000 + n)) for n in range(3)]
        self.assertIsNone(channels[2])
        self.assertEqual((site.open, site.refused), (2, 1))
        channels[0].makeConnection(StringTransport())
        channels[0].connectionLost(None)
        self.assertIsNotNone(site.buildProtocol(("127.0.0.1", 2000)))


class PartTests(SynchronousTestCase):
    def test_listens_on_loopback(self):
        """By default the metrics listen on 127.0.0.1:9420."""
        registry, clock = registry_on_clock("stats")
        reactor = MemoryReactorClock()
        service = tap.serviceFromConfig(config(), registry, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [(port, factory, backlog, interface)] = [
            s for s in reactor.tcpServers if isinstance(s[1], metricshttp._BoundedSite)]
        self.assertEqual((port, interface), (9420, "127.0.0.1"))
        self.assertIs(factory.resource, service.metrics)

    def test_disabled(self):
        registry, clock = registry_on_clock("stats")
        reactor = MemoryReactorClock()
        tap.serviceFromConfig(config(enabled=False), registry, reactor).startService()
        self.assertEqual([s for s in reactor.tcpServers
                          if isinstance(s[1], metricshttp._BoundedSite)], [])
