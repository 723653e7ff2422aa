# -*- test-case-name: tests.bus.test_reconnect -*-
"""
Tests for L{netsuite.bus.client.BusClient}'s connection: refused,
late, lost and made again.
"""

from __future__ import annotations

import errno
from typing import Any, List

from twisted.internet.error import ConnectError
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.client import (AccessDenied, BusClient, NotRunning, UntrustedServer,
                                 socket_endpoint)
from netsuite.registry import CONTINUE, Stop, UnknownMailbox

from .helpers import LEASE, SEEN, SOCKET, Owner


class ReconnectTests(SynchronousTestCase):
    """
    L{BusClient} reconnects and puts its listeners and watches back.
    """

    def test_notRunning(self) -> None:
        """
        A call made while the owner cannot be reached fails with
        L{NotRunning}, naming the process and the endpoint.
        """
        owner = Owner()
        client = owner.client()
        d = client.send(LEASE)
        owner.refuse()
        failure = self.failureResultOf(d, NotRunning)
        self.assertIn("process owner is not running", str(failure.value))
        self.assertIn(SOCKET, str(failure.value))
        self.assertNotIsInstance(failure.value, AccessDenied)
        self.assertIn("connection refused", str(failure.value))

    def test_noSocket(self) -> None:
        """
        A socket that does not exist is L{NotRunning}, saying so.
        """
        owner = Owner()
        d = owner.client().send(LEASE)
        owner.refuse(ConnectError(errno.ENOENT, "No such file or directory"))
        failure = self.failureResultOf(d, NotRunning)
        self.assertIn(f"nothing listens at unix:path={SOCKET}: no such socket",
                      str(failure.value))

    def test_accessDenied(self) -> None:
        """
        A socket we may not connect to is L{AccessDenied} (a L{NotRunning}),
        saying "permission denied" and who may connect.
        """
        owner = Owner()
        d = owner.client().send(LEASE)
        owner.refuse(ConnectError(errno.EACCES, "Permission denied"))
        failure = self.failureResultOf(d, AccessDenied)
        text = str(failure.value)
        self.assertIn(f"permission denied connecting to process owner at unix:path={SOCKET}",
                      text)
        self.assertIn("bus.allowed_uids", text)
        self.assertIn("bus.socket_mode", text)
        self.assertNotIn("not running", text)

    def served_by(self, uid: int, **kw: Any) -> Any:
        """
        An owner, and a client whose connections it reads as served by
        C{uid} (pid 4242); the client's first send, once accepted.
        """
        owner = Owner()
        client = BusClient("owner", "unix:path=" + SOCKET, owner.reactor,
                           credentials=lambda transport: (4242, uid, uid), **kw)
        self.addCleanup(client.close)
        d = client.send(LEASE)
        pump = owner.accept()
        pump.flush()
        return owner, pump, d

    def test_untrustedServer(self) -> None:
        """
        A socket served by a uid that is not root, ours or expected is
        refused before anything is sent: the call fails with
        L{UntrustedServer} (a L{NotRunning}) naming the uid and pid, and
        the connection is closed.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        owner, pump, d = self.served_by(12345)
        failure = self.failureResultOf(d, UntrustedServer)
        self.assertIsInstance(failure.value, NotRunning)
        self.assertIn(f"refusing process owner at unix:path={SOCKET}: its socket is served "
                      "by uid 12345 (pid 4242), not by 0", str(failure.value))
        self.assertTrue(pump.clientIO.disconnecting)
        # The Send never reached the owner (it would have counted it).
        self.assertEqual(owner.registry.mailbox(LEASE).counters.messages, 0)
        # The client tries again later, and refuses again.
        owner.reactor.advance(3)  # the retry: 0.1 s of back-off, up to 1 s of jitter
        self.assertEqual(len(owner.reactor.unixClients), 2)
        warnings = [formatEvent(e) for e in log if e["log_level"] == LogLevel.warn]
        self.assertIn("served by uid 12345", warnings[0])

    def test_trustedServer(self) -> None:
        """
        A socket served by root, or by a uid the client was told to expect,
        is used.
        """
        for uid, kw in ((0, {}), (12345, {"server_uids": [12345]})):
            owner, pump, d = self.served_by(uid, **kw)
            self.assertEqual(self.successResultOf(d), "stock")

    def test_whyLogged(self) -> None:
        """
        While the owner is unreachable, the client logs why, naming the
        process and the endpoint, once per new reason; and that it is
        connected once it is. Twisted's retry lines name the endpoint
        string, not an object.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        owner = Owner()
        owner.client()
        for error in [ConnectError(errno.ENOENT, "No such file or directory")] * 3 + [
                ConnectError(errno.EACCES, "Permission denied")] * 2:
            owner.refuse(error)
            owner.reactor.advance(10)
        owner.accept()
        lines = [formatEvent(e) for e in log
                 if e.get("log_namespace") == "netsuite.bus.client"]
        endpoint = f"unix:path={SOCKET}"
        self.assertEqual(lines, [
            f"cannot connect to process owner at {endpoint}: no such socket (is the "
            "process running, under that name?); retrying",
            f"cannot connect to process owner at {endpoint}: permission denied; retrying",
            f"connected to process owner at {endpoint}"])
        warned = [e for e in log if e.get("log_namespace") == "netsuite.bus.client"]
        self.assertEqual([e["log_level"] for e in warned],
                         [LogLevel.warn, LogLevel.warn, LogLevel.info])
        retries = [formatEvent(e) for e in log if "Scheduling retry" in e.get("log_format", "")]
        self.assertTrue(retries)
        self.assertIn(f"to connect {endpoint} in", retries[0])

    def test_listenBeforeConnected(self) -> None:
        """
        Listeners and watches added before the connection attach once it is
        made.
        """
        owner = Owner()
        client = owner.client()
        handle = client.listen(LEASE, lambda message: Stop("early"), first=True)
        seen: List[Any] = []
        client.watch(SEEN, seen.append)
        self.assertNoResult(handle.attached)
        pump = owner.accept()
        self.successResultOf(handle.attached)
        d = owner.registry.send(LEASE)
        owner.registry.send(SEEN, {"n": 1})
        pump.flush()
        self.assertEqual(self.successResultOf(d), "early")
        self.assertEqual(seen, [{"n": 1}])

    def test_waitForUnknownBeforeConnected(self) -> None:
        """
        L{BusClient.wait_for} on an undeclared mailbox, called before the
        connection is made, fails with L{UnknownMailbox} once it is made.
        """
        owner = Owner()
        client = owner.client()
        d = client.wait_for("/nope")
        owner.accept().flush()
        self.failureResultOf(d, UnknownMailbox)
        self.assertEqual(len(self.flushLoggedErrors(UnknownMailbox)), 1)
        self.assertEqual(client._watches, {})

    def test_waitForNotRunning(self) -> None:
        """
        L{BusClient.wait_for} fails with L{NotRunning} when the owner cannot
        be reached, and its watch is dropped.
        """
        owner = Owner()
        client = owner.client()
        d = client.wait_for(SEEN)
        owner.refuse()
        self.failureResultOf(d, NotRunning)
        self.assertEqual(client._watches, {})

    def test_reattach(self) -> None:
        """
        After the connection drops, the client reconnects and re-adds its
        listeners in the order they had, and its watches.
        """
        owner = Owner()
        client = owner.client()
        pump = owner.accept()
        client.listen(LEASE, lambda message: CONTINUE, first=True, tags={"n": 1})
        client.listen(LEASE, lambda message: CONTINUE, first=True, tags={"n": 2})
        client.listen(LEASE, lambda message: CONTINUE, tags={"n": 3})
        seen: List[Any] = []
        client.watch(SEEN, seen.append)
        pump.flush()
        before = [tags.get("n") for tags in owner.listeners()]
        self.assertEqual(before, [2, 1, None, 3])

        pump.serverIO.loseConnection()
        pump.flush()
        self.assertEqual(owner.listeners(), [{"owner": "dhcp"}])
        attempts = len(owner.reactor.unixClients)
        owner.reactor.advance(5)
        self.assertEqual(len(owner.reactor.unixClients), attempts + 1)
        pump = owner.accept()
        self.assertEqual([tags.get("n") for tags in owner.listeners()], before)
        owner.registry.send(SEEN, {"n": 1})
        pump.flush()
        self.assertEqual(seen, [{"n": 1}])

    def test_onAttachAfterEachConnection(self) -> None:
        """
        A watch's C{on_attach} is called once the owner holds the watch,
        and again after each reconnection (the owner may have restarted);
        not while the connection is down, nor for a removed watch. One that
        raises is logged and the watch still works.
        """
        owner = Owner()
        client = owner.client()
        attached: List[int] = []
        seen: List[Any] = []
        watch = client.watch(SEEN, seen.append, on_attach=lambda: attached.append(1))
        self.assertEqual(attached, [])
        pump = owner.accept()
        self.assertEqual(attached, [1])
        pump.serverIO.loseConnection()
        pump.flush()
        owner.reactor.advance(5)
        self.assertEqual(attached, [1])
        pump = owner.accept()
        self.assertEqual(attached, [1, 1])

        def broken() -> None:
            raise RuntimeError("the watcher's re-check failed")
        watch.on_attach = broken
        pump.serverIO.loseConnection()
        pump.flush()
        owner.reactor.advance(5)
        pump = owner.accept()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        owner.registry.send(SEEN, {"n": 2})
        pump.flush()
        self.assertEqual(seen, [{"n": 2}])

        watch.on_attach = lambda: attached.append(1)
        watch.remove()
        pump.flush()
        pump.serverIO.loseConnection()
        pump.flush()
        owner.reactor.advance(5)
        owner.accept()
        self.assertEqual(attached, [1, 1])

    def test_socketEndpoint(self) -> None:
        """
        L{socket_endpoint} names C{<dir>/<name>.sock}, escaping colons.
        """
        self.assertEqual(socket_endpoint("dhcp", "/run/netsuite"),
                         "unix:path=/run/netsuite/dhcp.sock")
        self.assertEqual(socket_endpoint("dhcp", "/tmp/a:b"), "unix:path=/tmp/a\\:b/dhcp.sock")
