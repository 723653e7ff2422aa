"""
The SMTP gate (L{netsuite.smtpgate.gate}) on a Clock, with the in-memory
firewall behind its real mailboxes and a registry standing in for the mail
proxy and the portal.
"""

import ipaddress

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.memory import MemoryFirewall
from netsuite.firewall.service import FirewallService
from netsuite.registry import EVENT, Stop
from netsuite.registry.values import MAC
from netsuite.smtpgate.gate import SmtpGate
from netsuite.testing import registry_on_clock

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
B = ipaddress.IPv4Address("10.89.0.12")
C = ipaddress.IPv4Address("10.89.0.13")
IMAP = ipaddress.IPv4Address("192.0.2.10")
OTHER = ipaddress.IPv4Address("192.0.2.20")
SMTP1 = ipaddress.IPv4Address("198.51.100.25")
SMTP2 = ipaddress.IPv4Address("198.51.100.26")


def login(ip=A, server=IMAP, outcome="success", **more):
    return dict({"ip": ip, "mac": MAC("02:4e:00:00:00:0b"), "server": server, "port": 143,
                 "protocol": "imap", "user": "alice", "outcome": outcome,
                 "evidence": "seen"}, **more)


class GateTests(SynchronousTestCase):
    def setUp(self):
        self.make()

    def make(self, **kw):
        self.registry, self.clock = registry_on_clock("ap")
        self.firewall = MemoryFirewall(self.clock, LAN)
        FirewallService(self.firewall, self.registry, self.clock, check_interval=0)
        self.successResultOf(self.firewall.start())
        # the mail proxy's and the portal's events, as they declare them
        self.registry.declare("/mailproxy/login", kind=EVENT)
        self.registry.declare("/portal/logout", kind=EVENT)
        self.gate = SmtpGate(self.registry, **kw)
        self.gate.start()
        self.addCleanup(self.gate.stop)
        self.events = []
        for path in ("/smtpgate/opened", "/smtpgate/closed"):
            self.registry.watch(path, lambda m, path=path: self.events.append((path, m)))

    def publish(self, path, message):
        self.successResultOf(self.registry.send(path, message))
        self.registry.eventual.flush_sync()

    def windows(self):
        return self.successResultOf(self.firewall.smtp_windows())

    def test_success_opens_towards_the_server_only(self):
        """
        A successful login opens SMTP for that client towards the server
        that authenticated it, for the window, and says so.
        """
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {A: {IMAP: 900}})
        self.assertEqual(self.events, [("/smtpgate/opened", {
            "ip": A, "servers": [IMAP], "seconds": 900, "reason": "server"})])
        self.assertEqual(self.gate.counters["opened"], 1)

    def test_in_use_opens(self):
        """
        POP3's -ERR [IN-USE] proves the credentials: it opens too.
        """
        self.publish("/mailproxy/login", login(outcome="in-use", protocol="pop3"))
        self.assertEqual(self.windows(), {A: {IMAP: 900}})

    def test_failures_open_nothing(self):
        """
        A failed login opens nothing and is counted; so is a malformed event.
        """
        self.publish("/mailproxy/login", login(outcome="failure"))
        self.publish("/mailproxy/login", login(outcome="maybe"))
        self.publish("/mailproxy/login", {"ip": "nonsense", "outcome": "success"})
        self.publish("/mailproxy/login", login(server=None))
        self.assertEqual(self.windows(), {})
        self.assertEqual(self.events, [])
        counters = self.successResultOf(self.registry.send("/smtpgate/counters", {}))
        self.assertEqual((counters["logins"], counters["failures"], counters["malformed"],
                          counters["opened"]), (4, 1, 3, 0))

    def test_renewal(self):
        """
        Each further success renews the window; without one it ends by
        itself at its time.
        """
        self.publish("/mailproxy/login", login())
        self.clock.advance(600)
        self.assertEqual(self.windows(), {A: {IMAP: 300}})
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {A: {IMAP: 900}})
        self.clock.advance(899)
        self.assertEqual(self.windows(), {A: {IMAP: 1}})
        self.clock.advance(1)
        self.assertEqual(self.windows(), {})

    def test_window_configured(self):
        """
        The window's length is the gate's C{window}.
        """
        self.make(window=60)
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {A: {IMAP: 60}})

    def test_provider_table(self):
        """
        A login at a server of the provider table opens towards that
        provider's SMTP hosts (not the login server); another server's
        opens towards itself.
        """
        self.make(providers={IMAP: [SMTP1, SMTP2]})
        self.publish("/mailproxy/login", login())
        self.publish("/mailproxy/login", login(ip=B, server=OTHER))
        self.assertEqual(self.windows(), {A: {SMTP1: 900, SMTP2: 900}, B: {OTHER: 900}})
        self.assertEqual(self.events[0], ("/smtpgate/opened", {
            "ip": A, "servers": [SMTP1, SMTP2], "seconds": 900, "reason": "provider"}))

    def test_scope_any(self):
        """
        With scope "any" a login opens SMTP to any destination.
        """
        self.make(scope="any")
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {A: {None: 900}})
        self.assertEqual(self.events[0][1]["servers"], "any")

    def test_decide_chain_refused(self):
        """
        An operator's listener on /smtpgate/decide that refuses keeps SMTP
        closed for that client; the others still open.
        """
        seen = []

        def only_b(message):
            seen.append(message)
            if message["ip"] != B:
                return Stop({"open": False, "reason": "not-allowed"})
            from netsuite.registry import CONTINUE
            return CONTINUE
        self.registry.listen("/smtpgate/decide", only_b, first=True)
        self.publish("/mailproxy/login", login())
        self.publish("/mailproxy/login", login(ip=B))
        self.assertEqual(self.windows(), {B: {IMAP: 900}})
        self.assertEqual(seen[0]["user"], "alice")
        self.assertEqual(self.gate.counters["refused"], 1)

    def test_decide_chain_widens_and_bad_answer(self):
        """
        A listener may choose the servers and the seconds; an answer that
        is not sound opens nothing and is counted as an error.
        """
        answers = [Stop({"open": True, "servers": [SMTP1], "seconds": 120}),
                   Stop({"open": True, "servers": []}),
                   Stop({"open": True, "servers": ["10.89.0.1"]})]
        self.registry.listen("/smtpgate/decide", lambda m: answers.pop(0), first=True)
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {A: {SMTP1: 120}})
        self.publish("/mailproxy/login", login(ip=B))
        self.publish("/mailproxy/login", login(ip=B))  # the firewall refuses a LAN server
        self.assertEqual(list(self.windows()), [A])
        self.assertEqual(self.gate.counters["errors"], 2)
        self.flushLoggedErrors()

    def test_logout_closes(self):
        """
        A portal logout closes the client's windows at once, both kinds;
        another client's stay.
        """
        self.publish("/mailproxy/login", login())
        self.publish("/mailproxy/login", login(ip=B))
        self.successResultOf(self.firewall.open_smtp(A, 60))
        self.publish("/portal/logout", {"ip": A, "mac": MAC("02:4e:00:00:00:0b"),
                                        "reason": "logout"})
        self.assertEqual(self.windows(), {B: {IMAP: 900}})
        self.assertIn(("/smtpgate/closed", {"ip": A, "reason": "portal-logout"}), self.events)

    def test_deauthorized_closes_once(self):
        """
        The firewall's de-authorization of a client (an operator's) closes
        its windows; a portal logout and the de-authorization it causes
        close once, in either order; a client whose windows the gate does
        not know of (since a restart) is closed all the same.
        """
        def closed():
            return [m for path, m in self.events if path == "/smtpgate/closed"]
        self.publish("/mailproxy/login", login())
        self.publish("/mailproxy/login", login(ip=B))
        self.successResultOf(self.firewall.authorize(A, MAC("02:4e:00:00:00:0b")))
        self.successResultOf(self.firewall.authorize(B, MAC("02:4e:00:00:00:0c")))
        self.successResultOf(self.registry.send("/firewall/deauthorize", {"ip": A}))
        self.registry.eventual.flush_sync()
        self.assertEqual(self.windows(), {B: {IMAP: 900}})
        self.assertEqual(closed(), [{"ip": A, "reason": "deauthorized"}])
        self.publish("/portal/logout", {"ip": A, "reason": "logout"})  # after: nothing more
        self.assertEqual(len(closed()), 1)

        self.publish("/portal/logout", {"ip": B, "reason": "logout"})
        self.successResultOf(self.registry.send("/firewall/deauthorize", {"ip": B}))
        self.registry.eventual.flush_sync()
        self.assertEqual(self.windows(), {})
        self.assertEqual(closed()[1:], [{"ip": B, "reason": "portal-logout"}])

        self.publish("/mailproxy/login", login())  # open again: closed again
        self.publish("/portal/logout", {"ip": A, "reason": "logout"})
        self.assertEqual((self.windows(), len(closed())), ({}, 3))
        self.successResultOf(self.firewall.open_smtp(C, 60))  # not the gate's
        self.publish("/portal/logout", {"ip": C, "reason": "logout"})
        self.assertEqual((self.windows(), closed()[-1]), ({}, {"ip": C, "reason": "portal-logout"}))

    def test_close_mailbox(self):
        """
        /smtpgate/close (the stats service's, on an SMTP burst) closes the
        client's windows with the reason given.
        """
        self.publish("/mailproxy/login", login())
        answer = self.successResultOf(self.registry.send(
            "/smtpgate/close", {"ip": A, "reason": "smtp-burst"}))
        self.assertEqual(answer, {"closed": True, "ip": A})
        self.registry.eventual.flush_sync()
        self.assertEqual(self.windows(), {})
        self.assertEqual(self.events[-1], ("/smtpgate/closed", {"ip": A, "reason": "smtp-burst"}))

    def test_windows_mailbox(self):
        """
        /smtpgate/windows gives the firewall's list.
        """
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.successResultOf(self.registry.send("/smtpgate/windows", {})),
                         {"10.89.0.11": {"192.0.2.10": 900}})

    def test_close_during_decision(self):
        """
        A close that comes while a slow rule decides wins: the decision's
        open does not land after it.
        """
        held = Deferred()
        self.registry.listen("/smtpgate/decide", lambda m: held, first=True)
        self.publish("/mailproxy/login", login())
        self.publish("/portal/logout", {"ip": A, "reason": "logout"})
        held.callback(Stop({"open": True, "servers": [IMAP]}))
        self.assertEqual(self.windows(), {})
        self.assertEqual(self.gate._pending, {})
        self.assertEqual(self.gate._closes, {})

    def test_pending_bounded(self):
        """
        Beyond max_pending decisions under way, logins are dropped and
        counted.
        """
        self.make(max_pending=2)
        held = [Deferred() for _ in range(3)]
        self.registry.listen("/smtpgate/decide", lambda m: held.pop(0), first=True)
        for _ in range(3):
            self.publish("/mailproxy/login", login())
        self.assertEqual(self.gate.counters["dropped"], 1)

    def test_stopped_gate_opens_nothing(self):
        """
        Once stopped, the gate hears no login: nothing opens.
        """
        self.gate.stop()
        self.publish("/mailproxy/login", login())
        self.assertEqual(self.windows(), {})

    def test_no_proxy_here(self):
        """
        With no /mailproxy/login in this process (and no process named),
        the gate warns and opens nothing.
        """
        registry, clock = registry_on_clock("ap")
        gate = SmtpGate(registry)
        gate.start()
        self.assertEqual(gate._watchers, [])
