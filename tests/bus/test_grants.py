# -*- test-case-name: tests.bus.test_grants -*-
"""
Tests for the bus's permissions in L{netsuite.bus.server}: every command of
a peer that is neither root nor the daemon's uid is checked against its
grants; a refusal is C{NOT_PERMITTED}, counted, logged at most once a
minute, and the connection stays. Secret fields never reach watchers.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.errors import NotPermitted
from netsuite.bus.ownercommands import AddListener, Describe, Send, Watch
from netsuite.bus.permissions import TCP, Grant, Permissions, uid_peer
from netsuite.bus.server import BusServerFactory
from netsuite.registry import Stop
from netsuite.registry.mailbox import REDACTED
from netsuite.registry.values import dumps, loads

from .helpers import LEASE, SEEN, SOCKET, Owner

ALICE = 1000
AUTH = "/portal/authenticate"


def alice(transport: Any) -> Any:
    return (4321, ALICE, ALICE)


class GrantedServerTests(SynchronousTestCase):
    """
    Uid 1000 (allowed on the socket) may send to and watch L{SEEN}, hook
    nothing, and nothing else.
    """

    def setUp(self) -> None:
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.owner = Owner(credentials=alice, allowed_uids=(ALICE,), permissions=Permissions(
            [Grant(uid_peer(ALICE), send=[SEEN], watch=[SEEN])], trusted_uids=(0,)))
        self.peer, self.server, self.pump = self.owner.raw()

    def call(self, command: Any, **kw: Any) -> Deferred[Any]:
        results: List[Any] = []
        self.peer.callRemote(command, **kw).addBoth(results.append)
        self.pump.flush()
        self.assertEqual(len(results), 1)
        return fail(results[0]) if isinstance(results[0], Failure) else succeed(results[0])

    def refusals(self) -> List[Any]:
        return [e for e in self.log if e["log_level"] == LogLevel.warn
                and "refused bus peer" in e["log_format"]]

    def test_sendRefused(self) -> None:
        """
        A send to a mailbox not granted fails with L{NotPermitted} naming
        the peer, verb and mailbox; the chain does not run, and the
        connection stays up for what is granted.
        """
        failure = self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps({})),
                                       NotPermitted)
        self.assertIn(f"pid 4321 uid {ALICE} may not send {LEASE}", str(failure.value))
        self.assertIn("bus.grant", str(failure.value))
        self.assertEqual(self.owner.registry.mailbox(LEASE).counters.messages, 0)
        self.assertFalse(self.pump.serverIO.disconnecting)
        result = self.successResultOf(self.call(Send, mailbox=SEEN, message=dumps({})))
        self.assertEqual(result["answered"], False)
        self.assertEqual(self.owner.registry.mailbox(SEEN).counters.messages, 1)

    def test_forwardedSendRefused(self) -> None:
        """
        An address naming another process is checked by its path before
        anything is forwarded.
        """
        self.failureResultOf(self.call(Send, mailbox="portal" + ":" + AUTH,
                                       message=dumps({})), NotPermitted)
        self.failureResultOf(self.call(Send, mailbox="/system/relay",
                                       message=dumps({"to": "owner:" + LEASE})), NotPermitted)
        self.assertEqual(self.owner.registry.mailbox(LEASE).counters.messages, 0)

    def test_pingAlways(self) -> None:
        """
        Every served peer may send to /system/ping.
        """
        self.owner.registry.declare("/system/ping")
        self.owner.registry.listen("/system/ping", lambda m: Stop("pong"))
        result = self.successResultOf(self.call(Send, mailbox="/system/ping",
                                                message=dumps({})))
        self.assertEqual(loads(result["result"]), "pong")

    def test_hookRefused(self) -> None:
        """
        AddListener on a mailbox not granted for hooking fails with
        L{NotPermitted}; no listener is added.
        """
        for mailbox in (LEASE, SEEN, "other:" + LEASE):
            self.failureResultOf(self.call(AddListener, mailbox=mailbox, listener="l1",
                                           first=True, deadline=1.0, tags=dumps({})),
                                 NotPermitted)
        self.assertEqual(self.owner.listeners(), [{"owner": "dhcp"}])
        self.assertEqual(self.owner.factory.refusals.by_verb["hook"], 3)

    def test_watch(self) -> None:
        """
        Watch is refused where not granted, and works where it is.
        """
        self.failureResultOf(self.call(Watch, mailbox=LEASE, watch="w1"), NotPermitted)
        self.assertEqual(self.owner.registry.mailbox(LEASE).watchers, [])
        self.successResultOf(self.call(Watch, mailbox=SEEN, watch="w1"))
        self.assertEqual(len(self.owner.registry.mailbox(SEEN).watchers), 1)

    def test_describeShowsWhatIsGranted(self) -> None:
        """
        Describe lists only the mailboxes the peer may send to, hook or
        watch.
        """
        result = self.successResultOf(self.call(Describe, prefix="/"))
        self.assertEqual([box["path"] for box in loads(result["mailboxes"])], [SEEN])

    def test_refusalsCountedAndLoggedOncePerMinute(self) -> None:
        """
        Every refusal is counted; the log has one line per peer, verb and
        mailbox per minute, the next one saying how many were not logged.
        """
        for _ in range(3):
            self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))
        self.failureResultOf(self.call(Watch, mailbox=LEASE, watch="w"))
        self.assertEqual(self.owner.factory.refusals.count, 4)
        self.assertEqual(self.owner.factory.refusals.by_verb, {"send": 3, "hook": 0,
                                                               "watch": 1})
        self.assertEqual([(e["verb"], e["address"], e["who"]) for e in self.refusals()],
                         [("send", LEASE, f"uid:{ALICE}"), ("watch", LEASE, f"uid:{ALICE}")])
        self.owner.reactor.advance(59)
        self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))
        self.assertEqual(len(self.refusals()), 2)
        self.owner.reactor.advance(1)
        self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))
        [*_, last] = self.refusals()
        self.assertEqual(last["peer"], f"pid 4321 uid {ALICE}")
        self.assertIn("3 more refusals", last["since"])

    def test_refusalLogBounded(self) -> None:
        """
        A peer trying ever new addresses cannot grow what the log
        remembers past its bound; each refusal is still answered.
        """
        refusals = self.owner.factory.refusals
        for n in range(1100):
            self.failureResultOf(self.call(Send, mailbox=f"/x/{n}", message=dumps({})),
                                 NotPermitted)
        self.assertEqual(refusals.count, 1100)
        self.assertLessEqual(len(refusals._logged), 1024)


class TcpPeerTests(SynchronousTestCase):
    """
    A peer without credentials (TCP, TLS) gets nothing unless a grant
    names C{tcp}.
    """

    def test_nothingByDefault(self) -> None:
        """
        The factory's default permissions: a TCP peer may only ping.
        """
        owner = Owner()
        owner.factory = BusServerFactory(owner.registry, credentials=lambda t: None)
        peer, server, pump = owner.raw()
        results: List[Any] = []
        peer.callRemote(Send, mailbox=LEASE, message=dumps({})).addBoth(results.append)
        peer.callRemote(Watch, mailbox=SEEN, watch="w").addBoth(results.append)
        pump.flush()
        self.assertEqual([r.type for r in results], [NotPermitted, NotPermitted])

    def test_grantedTcp(self) -> None:
        owner = Owner(permissions=Permissions([Grant(TCP, send=[LEASE])]))
        peer, server, pump = owner.raw()
        results: List[Any] = []
        peer.callRemote(Send, mailbox=LEASE, message=dumps({})).addBoth(results.append)
        peer.callRemote(Send, mailbox=SEEN, message=dumps({})).addBoth(results.append)
        pump.flush()
        self.assertEqual(results[0]["answered"], True)
        self.assertIsInstance(results[1], Failure)
        results[1].trap(NotPermitted)

    def test_ownUidByDefault(self) -> None:
        """
        The factory's default permissions: root and our own uid may do
        everything, as before there were permissions.
        """
        import os
        for uid in (0, os.getuid()):
            owner = Owner()
            owner.factory = BusServerFactory(owner.registry,
                                             credentials=lambda t, uid=uid: (1, uid, uid))
            peer, server, pump = owner.raw()
            results: List[Any] = []
            peer.callRemote(Watch, mailbox=LEASE, watch="w").addBoth(results.append)
            peer.callRemote(AddListener, mailbox=LEASE, listener="l", first=True,
                            deadline=1.0, tags=dumps({})).addBoth(results.append)
            pump.flush()
            self.assertEqual(results[0], {})
            self.assertIn("id", results[1])


class SecretTests(SynchronousTestCase):
    """
    A mailbox's secret fields reach its listeners, bus peers' included,
    and never its watchers, in-process or over the bus.
    """

    def setUp(self) -> None:
        self.owner = Owner()
        self.owner.registry.declare(AUTH, secret=("password",))
        self.client = self.owner.client()
        self.pump = self.owner.accept()

    def test_watchersGetItRedacted(self) -> None:
        over_bus: List[Any] = []
        here: List[Any] = []
        heard: List[Any] = []
        self.client.watch(AUTH, over_bus.append)
        self.owner.registry.watch(AUTH, here.append)
        waiting = self.owner.registry.wait_for(AUTH)
        self.client.listen(AUTH, lambda m: (heard.append(m), Stop({"ok": True}))[1],
                           first=True)
        self.pump.flush()
        d = self.owner.registry.send(AUTH, {"username": "alice", "password": "s3cret",
                                            "method": "password"})
        for _ in range(3):
            self.owner.registry.eventual.flush_sync()
            self.pump.flush()
        self.assertEqual(self.successResultOf(d), {"ok": True})
        self.assertEqual(heard, [{"username": "alice", "password": "s3cret",
                                  "method": "password"}])
        redacted = {"username": "alice", "password": REDACTED, "method": "password"}
        self.assertEqual(here, [redacted])
        self.assertEqual(over_bus, [redacted])
        self.assertEqual(self.successResultOf(waiting), redacted)

    def test_declareChecksSecret(self) -> None:
        self.assertRaises(ValueError, self.owner.registry.declare, "/a", secret="password")
        self.assertRaises(ValueError, self.owner.registry.declare, "/b", secret=[1])

    def test_portalPasswordIsSecret(self) -> None:
        """
        /portal/authenticate declares C{password} and C{code} (an access
        code) secret.
        """
        from netsuite.portal.controller import SECRETS
        self.assertEqual(SECRETS, {AUTH: ("password", "code")})


class ClientNotPermittedTests(SynchronousTestCase):
    """
    L{netsuite.bus.client.BusClient} reports a refusal as L{NotPermitted}.
    """

    def test_client(self) -> None:
        owner = Owner(credentials=alice, allowed_uids=(ALICE,),
                      permissions=Permissions(trusted_uids=(0,)))
        client = owner.client()
        self.addCleanup(client.close)
        sent = client.send(LEASE)
        watch = client.watch(SEEN, lambda m: None)
        pump = owner.accept()
        pump.flush()
        self.failureResultOf(sent, NotPermitted)
        # Each caller of when_attached gets the failure.
        self.failureResultOf(watch.when_attached(), NotPermitted)
        self.failureResultOf(watch.when_attached(), NotPermitted)
        # The client logs the refused watch too.
        self.assertEqual(len(self.flushLoggedErrors(NotPermitted)), 1)
        self.assertEqual(SOCKET, owner.reactor.unixClients[-1][0])
