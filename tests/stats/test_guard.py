"""
L{netsuite.stats.guard}: the queue's SYNs through the reader (a fake
queue), the verdicts, the detections' event and actions, on a Clock.
"""

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, parse
from netsuite.nfqueue import QueueReader
from netsuite.registry import Registry
from netsuite.registry.interfaces import NO_ANSWER, Stop
from netsuite.services import all_sections
from netsuite.stats import tap
from netsuite.stats.extrusion import Detectors, Thresholds
from netsuite.stats.guard import Guard, GuardService, actions_from_config

from ..proxy.test_nfqueue import FakePacket, FakeQueue, tcp4, tcp6

CLIENT = "10.89.0.11"
MAC = bytes.fromhex("024e00000011") + b"\0\0"


class Packet(FakePacket):
    def __init__(self, payload, hw=MAC):
        FakePacket.__init__(self, payload)
        self.hw = hw

    def get_hw(self):
        return self.hw


def config(extrusion=None, firewall=None, **stats):
    data = {"stats": dict({"enabled": True, "extrusion": dict(
        {"enabled": True}, **(extrusion or {}))}, **stats)}
    if firewall is not None:
        data["firewall"] = firewall
    return parse(data, "test.toml", all_sections())


class GuardTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.registry = Registry("stats", self.reactor, default_deadline=2.0)
        self.events = []
        self.sent = {"/smtpgate/close": [], "/portal/deauthorize": []}

    def make(self, actions=("smtp:close-smtp",), **thresholds):
        t = Thresholds(**dict({"destinations": 20, "ports": 10, "smtp": 5, "rate": 0,
                               "hold_off": 300.0}, **thresholds))
        self.guard = Guard(self.registry, self.reactor, Detectors(t),
                           actions_from_config(list(actions)), quarantine_seconds=60.0,
                           deadline=5.0)
        self.queue = FakeQueue()
        self.reader = QueueReader(self.reactor, self.guard, 3, make_queue=lambda: self.queue)
        self.reader.start()
        self.registry.watch("/stats/extrusion", self.events.append)

    def stand_in(self, path, answer):
        """A stand-in for another service's mailbox, here."""
        self.registry.declare(path)
        self.registry.listen(path, lambda m: self.sent[path].append(m) or answer)

    def syns(self, dests, src=CLIENT, sport=40000, hw=None):
        """SYNs from C{src} (its MAC 02:4e:00:00:00:LAST-OCTET, unless C{hw})."""
        if hw is None:
            hw = bytes.fromhex("024e000000") + bytes([int(src.rsplit(".", 1)[1])]) + b"\0\0"
        packets = [Packet(tcp4(src, sport + i, host, port), hw) for i, (host, port) in
                   enumerate(dests)]
        self.queue.pending += packets
        self.reader.doRead()
        self.registry.eventual.flush_sync()
        return [p.verdict for p in packets]

    def test_scan_event(self):
        """
        A scan: every SYN accepted, one /stats/extrusion event with the
        evidence (typed addresses, the MAC from the packet), logged.
        """
        self.make(actions=())
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        verdicts = self.syns([(f"192.0.2.{i}", 80) for i in range(25)])
        self.assertEqual(verdicts, ["accept"] * 25)
        [event] = self.events
        self.assertEqual({k: v for k, v in event.items() if k != "samples"}, {
            "ip": self.ip(CLIENT), "mac": "02:4e:00:00:00:0b", "detector": "destinations",
            "count": 20, "window": 60.0, "threshold": 20})
        self.assertEqual(len(event["samples"]), 10)
        self.assertEqual(event["samples"][-1], {"ip": self.ip("192.0.2.19"), "port": 80})
        self.assertTrue([e for e in logged if e.get("netsuite_event") == "extrusion"])

    def ip(self, text):
        import ipaddress
        return ipaddress.ip_address(text)

    def test_smtp_burst_closes(self):
        """
        The SMTP burst's default action: /smtpgate/close {ip, reason:
        smtp-burst}; a scan does not close SMTP.
        """
        self.make()
        self.stand_in("/smtpgate/close", Stop({"closed": True, "ip": CLIENT}))
        self.syns([(f"192.0.2.{i}", 80) for i in range(25)])
        self.assertEqual(self.sent["/smtpgate/close"], [])
        self.syns([("198.51.100.1", 25)] * 5, src="10.89.0.12")
        self.assertEqual(self.sent["/smtpgate/close"],
                         [{"ip": self.ip("10.89.0.12"), "reason": "smtp-burst"}])
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual((counters["actions"], counters["action_errors"], counters["smtp"],
                          counters["destinations"], counters["clients"]), (1, 0, 1, 1, 2))

    def test_quarantine(self):
        """
        A quarantined client's SYNs are dropped by verdict (counted) for
        quarantine_seconds, another client's accepted; then accepted again.
        """
        self.make(actions=("*:quarantine",))
        verdicts = self.syns([("192.0.2.9", port) for port in range(1, 13)])
        # the verdicts of one read go out before the detectors see it
        self.assertEqual(verdicts, ["accept"] * 12)
        self.assertEqual(self.syns([("192.0.2.9", 80)] * 2), ["drop"] * 2)
        self.assertEqual(self.syns([("192.0.2.9", 80)], src="10.89.0.12"), ["accept"])
        self.reactor.advance(59)
        self.assertEqual(self.syns([("192.0.2.9", 80)]), ["drop"])
        self.reactor.advance(1)
        self.assertEqual(self.syns([("192.0.2.9", 80)]), ["accept"])
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual((counters["quarantine_dropped"], counters["quarantined"]), (3, 0))

    def test_quarantine_by_mac(self):
        """
        A quarantine holds the client's MAC too: its SYNs from another
        address (IPv6, a new lease) are dropped as well.
        """
        self.make(actions=("ports:quarantine",))
        self.syns([("192.0.2.9", port) for port in range(1, 11)])
        self.assertEqual(self.syns([("192.0.2.9", 80)], src="10.89.0.99",
                                   hw=bytes.fromhex("024e0000000b0000")), ["drop"])
        self.assertEqual(self.syns([("192.0.2.9", 80)], src="10.89.0.99"), ["accept"])
        # quarantine_mac = false: the address only
        self.setUp()
        self.make(actions=("ports:quarantine",))
        self.guard.quarantine_mac = False
        self.syns([("192.0.2.9", port) for port in range(1, 11)])
        self.assertEqual(self.syns([("192.0.2.9", 80)]), ["drop"])
        self.assertEqual(self.syns([("192.0.2.9", 80)], src="10.89.0.99",
                                   hw=bytes.fromhex("024e0000000b0000")), ["accept"])

    def test_ipv6_client(self):
        """
        An IPv6 client's detection: the event carries its IPv6 address;
        the SMTP gate is asked about the IPv4 address of its MAC, or, with
        none known, the action is skipped (counted).
        """
        self.make()
        self.stand_in("/smtpgate/close", Stop({"closed": True}))
        hw = bytes.fromhex("024e000000160000")
        packets = [Packet(tcp6("2001:db8:89::16", 40000 + i, "2001:db8:100::1", 25), hw)
                   for i in range(5)]
        self.queue.pending += packets
        self.reader.doRead()
        self.registry.eventual.flush_sync()
        self.assertEqual(self.events[0]["ip"], self.ip("2001:db8:89::16"))
        self.assertEqual(self.sent["/smtpgate/close"], [])
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual(counters["actions_skipped"], 1)
        # the same MAC seen on IPv4 first
        self.syns([("192.0.2.9", 80)], src="10.89.0.22")
        hw2 = bytes.fromhex("024e000000170000")
        self.syns([("192.0.2.9", 80)], src="10.89.0.23", hw=hw2)
        self.queue.pending += [Packet(tcp6("2001:db8:89::17", 40000 + i, "2001:db8:100::1", 25),
                                      hw2) for i in range(5)]
        self.reader.doRead()
        self.registry.eventual.flush_sync()
        self.assertEqual(self.sent["/smtpgate/close"],
                         [{"ip": self.ip("10.89.0.23"), "reason": "smtp-burst"}])

    def test_quarantine_mailbox(self):
        """/stats/extrusion/quarantine quarantines an address, seconds 0 releases it."""
        self.make(actions=())
        answer = self.successResultOf(self.registry.send(
            "/stats/extrusion/quarantine", {"ip": CLIENT, "seconds": 30}))
        self.assertEqual(answer, {"ip": self.ip(CLIENT), "seconds": 30.0})
        self.assertEqual(self.syns([("192.0.2.9", 80)]), ["drop"])
        self.successResultOf(self.registry.send("/stats/extrusion/quarantine",
                                                {"ip": CLIENT, "seconds": 0}))
        self.assertEqual(self.syns([("192.0.2.9", 80)]), ["accept"])
        self.assertEqual(self.successResultOf(self.registry.send(
            "/stats/extrusion/quarantine", {"ip": "nonsense"})), NO_ANSWER)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_actions_failing(self):
        """
        An action whose listener never answers, one that is missing and one
        that refuses: each counted and logged, the reader never held up.
        """
        self.make(actions=("ports:deauthorize", "ports:close-smtp"), smtp=0,
                  destinations=0)
        self.registry.declare("/portal/deauthorize")
        self.registry.listen("/portal/deauthorize", lambda m: Deferred())
        verdicts = self.syns([("192.0.2.9", port) for port in range(1, 11)])
        self.assertEqual(verdicts, ["accept"] * 10)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.syns([("192.0.2.10", 80)]), ["accept"], "not held up")
        self.reactor.advance(5)
        self.registry.eventual.flush_sync()
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual((counters["actions"], counters["action_errors"]), (2, 2))
        # a refusal: an answer without what was asked
        self.stand_in("/smtpgate/close", Stop({"error": "no"}))
        self.syns([("192.0.2.77", port) for port in range(1, 11)], src="10.89.0.13")
        self.reactor.advance(5)
        self.registry.eventual.flush_sync()
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual((counters["actions"], counters["action_errors"]), (4, 4))
        self.flushLoggedErrors()

    def test_malformed_dropped(self):
        """What is not a SYN is dropped and counted; the detectors never see it."""
        self.make(actions=())
        self.queue.pending.append(Packet(b"junk"))
        self.reader.doRead()
        counters = self.successResultOf(self.registry.send("/stats/extrusion/counters", {}))
        self.assertEqual((counters["queue_dropped"], counters["connections"]), (1, 0))

    def test_no_mac(self):
        """A packet without a hardware address: the event's mac is ""."""
        self.make(actions=(), ports=2)
        self.queue.pending += [Packet(tcp4(CLIENT, 1, "192.0.2.9", p), hw=None) for p in (1, 2)]
        self.reader.doRead()
        self.registry.eventual.flush_sync()
        self.assertEqual(self.events[0]["mac"], "")


class ServiceTests(SynchronousTestCase):
    def test_part(self):
        """
        With [stats.extrusion] enabled the stats service reads the queue
        configured, once started; without CAP_NET_ADMIN it says so and
        unbinds it; stopped, it unbinds it.
        """
        reactor = MemoryReactorClock()
        registry = Registry("stats", reactor)
        queue = FakeQueue()
        from netsuite.stats.guard import add_extrusion
        service = tap.StatsService(tap.Traffic())
        add_extrusion(service, config({"queue": 9, "queue_length": 64}), registry, reactor,
                      make_queue=lambda: queue)
        [part] = list(service)
        self.assertIsInstance(part, GuardService)
        part.can_give_verdicts = lambda: True
        service.privilegedStartService()
        service.startService()
        self.assertEqual((queue.bound[0], queue.bound[2]), (9, 64))
        self.assertIn(part.reader, reactor.getReaders())
        service.stopService()
        self.assertIsNone(queue.bound)
        self.assertEqual(reactor.getDelayedCalls(), [])
        # without the capability
        part.can_give_verdicts = lambda: False
        part.privilegedStartService()
        part.startService()
        self.assertIsNone(queue.bound)
        self.assertNotIn(part.reader, reactor.getReaders())
        part.stopService()

    def test_bind_fails(self):
        """A queue that cannot be bound: the process does not start (critical)."""
        reactor = MemoryReactorClock()

        class Refusing(FakeQueue):
            def bind(self, *a, **kw):
                raise OSError(1, "Operation not permitted")

        guard = Guard(Registry("stats", reactor), reactor, Detectors(Thresholds()), {})
        reader = QueueReader(reactor, guard, 4, make_queue=Refusing)
        part = GuardService(guard, reader, reactor, can_give_verdicts=lambda: True)
        self.assertRaises(SystemExit, part.privilegedStartService)

    def test_off(self):
        """Disabled (the default): no part, no mailbox."""
        reactor = MemoryReactorClock()
        registry = Registry("stats", reactor)
        parsed = parse({"stats": {"enabled": True}}, "test.toml", all_sections())
        service = tap.serviceFromConfig(parsed, registry, reactor)
        self.assertFalse([child for child in service if isinstance(child, GuardService)])
        self.failureResultOf(registry.send("/stats/extrusion/counters", {}))

    def test_config(self):
        """
        Bad keys name the key; the queue must be the firewall's when both
        are set; actions expand * to every detector.
        """
        for key, value in [("actions", ["smtp:explode"]), ("actions", ["scan:quarantine"]),
                           ("smtp", -1), ("rate_window", 0), ("queue", 70000)]:
            with self.assertRaises(ConfigError) as caught:
                config({key: value})
            self.assertIn(f"stats.extrusion.{key}", str(caught.exception))
        mismatch = config({"queue": 2}, firewall={"extrusion_queue": 3})
        error = self.assertRaises(ConfigError, tap.check, mismatch)
        self.assertIn("[stats.extrusion] queue (2) is not [firewall] extrusion_queue (3)",
                      str(error))
        tap.check(config({"queue": 3}, firewall={"extrusion_queue": 3}))
        tap.check(config({"queue": 2}))
        self.assertEqual(actions_from_config(["*:quarantine", "smtp:close-smtp"]), {
            "destinations": ["quarantine"], "ports": ["quarantine"],
            "smtp": ["quarantine", "close-smtp"], "rate": ["quarantine"]})
