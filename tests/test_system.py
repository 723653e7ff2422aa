"""
Tests for L{netsuite.system}: the /system mailboxes every process has.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.registry import NO_ANSWER, Continue, Registry, Stop
from netsuite.system import LogToMailbox, install_system_mailboxes


class FakePeers:
    """
    Other processes: one registry named C{beta}.
    """

    def __init__(self, clock):
        self.beta = Registry("beta", clock)
        self.beta.declare("/beta/ask")

    def registry_for(self, name):
        if name != "beta":
            raise LookupError(name)
        return self.beta


class SystemMailboxTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.peers = FakePeers(self.clock)
        self.registry = Registry("alpha", self.clock, peers=self.peers)
        install_system_mailboxes(self.registry, self.clock)

    def test_ping(self):
        """
        /system/ping answers the process name, its pid and its uptime.
        """
        self.clock.advance(5)
        answer = self.successResultOf(self.registry.send("/system/ping"))
        self.assertEqual(answer["process"], "alpha")
        self.assertIsInstance(answer["pid"], int)
        self.assertEqual(answer["uptime"], 5.0)

    def test_ping_hooked(self):
        """
        A listener put first on /system/ping answers instead of the stock one.
        """
        self.registry.listen("/system/ping", lambda m: Stop("mine"), first=True)
        self.assertEqual(self.successResultOf(self.registry.send("/system/ping")), "mine")

    def test_mailboxes(self):
        """
        /system/mailboxes lists the mailboxes under the given prefix.
        """
        self.registry.declare("/dhcp/lookup")
        listing = self.successResultOf(self.registry.send("/system/mailboxes",
                                                          {"prefix": "/dhcp"}))
        self.assertEqual([box["path"] for box in listing], ["/dhcp/lookup"])
        everything = self.successResultOf(self.registry.send("/system/mailboxes"))
        self.assertEqual([box["path"] for box in everything],
                         ["/dhcp/lookup", "/system/log", "/system/mailboxes",
                          "/system/ping", "/system/relay"])

    def test_mailboxesReasons(self):
        """
        /system/mailboxes shows each listener's verdicts by reason.
        """
        self.registry.declare("/dhcp/lookup")
        self.registry.listen("/dhcp/lookup", lambda m: Continue("miss"), tags={"hook": "ldap"})
        self.registry.send("/dhcp/lookup")
        [box] = self.successResultOf(self.registry.send("/system/mailboxes",
                                                        {"prefix": "/dhcp/lookup"}))
        self.assertEqual(box["listeners"][0]["counters"]["reasons"], {"miss": 1})

    def test_log(self):
        """
        A message sent to /system/log is written to the log at its level.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        result = self.successResultOf(self.registry.send("/system/log",
                                                         {"text": "hello", "level": "warn"}))
        self.assertIs(result, NO_ANSWER)
        [event] = [e for e in events if e.get("text") == "hello"]
        self.assertEqual(event["log_level"], LogLevel.warn)

    def test_relay(self):
        """
        /system/relay sends the message on to another process and answers
        its result; with no answer there, it answers nothing.
        """
        self.peers.beta.listen("/beta/ask", lambda m: Stop(m["n"] * 2))
        answer = self.successResultOf(self.registry.send(
            "/system/relay", {"to": "beta:/beta/ask", "message": {"n": 21}}))
        self.assertEqual(answer, 42)
        local = self.successResultOf(self.registry.send("/system/relay",
                                                        {"to": "/system/ping"}))
        self.assertEqual(local["process"], "alpha")

    def test_relay_unreachable(self):
        """
        A relay to a process that cannot be found is skipped, logged, and
        the send ends with no answer.
        """
        result = self.successResultOf(self.registry.send(
            "/system/relay", {"to": "gamma:/x/y"}))
        self.assertIs(result, NO_ANSWER)
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)


class LogToMailboxTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.registry = Registry("alpha", self.clock)
        install_system_mailboxes(self.registry, self.clock)
        self.observer = LogToMailbox(self.registry, LogLevel.info)
        self.log = Logger(namespace="test", observer=self.observer)

    def test_watchers_get_events(self):
        """
        Watchers of /system/log receive log events at or above the level,
        with their text formatted; debug events are left out.
        """
        seen = []
        self.registry.watch("/system/log", seen.append)
        self.log.info("lease {ip} granted", ip="10.0.0.5")
        self.log.debug("noise")
        self.registry.eventual.flush_sync()
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0]["text"], "lease 10.0.0.5 granted")
        self.assertEqual((seen[0]["level"], seen[0]["namespace"]), ("info", "test"))

    def test_no_watchers_no_work(self):
        """
        Without watchers nothing is queued.
        """
        self.log.error("boom")
        self.assertEqual(self.registry.eventual._calls, [])
