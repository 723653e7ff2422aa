# -*- test-case-name: tests.bus.test_reconnect -*-
"""
Tests for L{netsuite.bus.client.BusClient}'s connection: refused,
late, lost and made again.
"""

from __future__ import annotations

from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.client import NotRunning, socket_endpoint
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

    def test_socketEndpoint(self) -> None:
        """
        L{socket_endpoint} names C{<dir>/<name>.sock}, escaping colons.
        """
        self.assertEqual(socket_endpoint("dhcp", "/run/netsuite"),
                         "unix:path=/run/netsuite/dhcp.sock")
        self.assertEqual(socket_endpoint("dhcp", "/tmp/a:b"), "unix:path=/tmp/a\\:b/dhcp.sock")
