# -*- test-case-name: tests.bus.test_peers -*-
"""
Tests for L{netsuite.bus.peers.Peers}: the clients a process keeps to
others are few, and none is made for a process that has no socket.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.client import BusClient, NotRunning
from netsuite.bus.peers import Peers
from netsuite.registry import Registry


class PeersTests(SynchronousTestCase):
    """
    L{Peers} bounds its clients.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def peers(self, **kw: Any) -> Peers:
        peers = Peers(self.reactor, self.directory, **kw)
        self.addCleanup(peers.close)
        return peers

    def bind(self, name: str) -> None:
        """
        Make process C{name}'s socket file (nothing answers on it).
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(self.directory, f"{name}.sock"))

    def closed(self, client: BusClient) -> bool:
        self.reactor.advance(0)  # close() stops the client on a later turn
        return not client._service.running

    def test_unknownNames(self) -> None:
        """
        A send to each of 2,000 processes that have no socket fails at once
        with L{NotRunning} naming the socket, and leaves no client and no
        connection attempt behind.
        """
        peers = self.peers()
        registry = Registry("me", self.reactor, peers=peers)
        for index in range(2000):
            failure = self.failureResultOf(registry.send(f"ghost{index}:/x", {}), NotRunning)
        self.assertEqual(str(failure.value), "process ghost1999 is not running (no socket "
                         f"{os.path.join(self.directory, 'ghost1999.sock')})")
        self.failureResultOf(registry.wait_for("ghost0:/x"), NotRunning)
        self.failureResultOf(peers.registry_for("ghost0").describe(), NotRunning)
        self.assertEqual(peers._clients, {})
        self.assertEqual(self.reactor.unixClients, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_listenWaits(self) -> None:
        """
        A listener or a watch on a process with no socket gets a client, to
        attach once the process starts.
        """
        peers = self.peers()
        registry = Registry("me", self.reactor, peers=peers)
        registry.listen("later:/x", lambda message: None)
        registry.watch("later:/y", lambda message: None)
        self.assertEqual(list(peers._clients), ["later"])
        [(address, _, _, _)] = self.reactor.unixClients
        self.assertEqual(address, os.path.join(self.directory, "later.sock"))

    def test_socket(self) -> None:
        """
        A process whose socket exists gets a client, kept for the next call.
        """
        self.bind("there")
        peers = self.peers()
        client = peers.registry_for("there")
        self.assertIsInstance(client, BusClient)
        self.assertIs(peers.registry_for("there"), client)
        self.assertEqual(len(self.reactor.unixClients), 1)

    def test_cap(self) -> None:
        """
        At most C{max_clients} clients are kept: a new one takes the place
        of the least recently used one without listeners or watches.
        """
        endpoints = {f"p{i}": f"unix:path=/nonexistent/p{i}.sock" for i in range(2000)}
        peers = self.peers(endpoints=endpoints, max_clients=3)
        first = peers.registry_for("p0")
        first.listen("/x", lambda message: None)
        made: Dict[str, BusClient] = {}
        for index in range(1, 2000):
            made[f"p{index}"] = peers.registry_for(f"p{index}")
            self.assertLessEqual(len(peers._clients), 3)
        peers.registry_for("p1998")  # used again: p1997 is now the oldest spare
        peers.registry_for("p1")
        self.assertEqual(sorted(peers._clients), ["p0", "p1", "p1998"])
        self.assertTrue(self.closed(made["p1997"]))
        self.assertFalse(self.closed(first))
        self.assertFalse(self.closed(made["p1998"]))

    def test_capAllBusy(self) -> None:
        """
        When every client has listeners, a new process is refused with
        L{NotRunning} saying why; the others are left alone.
        """
        endpoints = {f"p{i}": f"unix:path=/nonexistent/p{i}.sock" for i in range(3)}
        peers = self.peers(endpoints=endpoints, max_clients=2)
        registry = Registry("me", self.reactor, peers=peers)
        registry.listen("p0:/x", lambda message: None)
        registry.watch("p1:/x", lambda message: None)
        failure = self.failureResultOf(registry.send("p2:/x", {}), NotRunning)
        self.assertIn("already connected to 2 processes", str(failure.value))
        self.assertEqual(sorted(peers._clients), ["p0", "p1"])

    def test_idle(self) -> None:
        """
        A client without listeners or watches, unused for C{idle} seconds,
        is closed and forgotten; one used meanwhile is kept until it has
        been idle that long; one with a listener is kept.
        """
        for name in ("a", "b", "c"):
            self.bind(name)
        peers = self.peers(idle=60.0)
        a, b, c = (peers.registry_for(name) for name in "abc")
        c.listen("/x", lambda message: None)
        self.reactor.advance(30)
        peers.registry_for("b")
        self.reactor.advance(30)
        self.assertEqual(sorted(peers._clients), ["b", "c"])
        self.assertTrue(self.closed(a))
        self.assertFalse(self.closed(b))
        self.reactor.advance(30)
        self.assertEqual(sorted(peers._clients), ["c"])
        self.assertTrue(self.closed(b))
        self.assertFalse(self.closed(c))
        # A new client after that is made afresh, and expires in its turn.
        again = peers.registry_for("a")
        self.assertIsNot(again, a)
        self.reactor.advance(60)
        self.assertEqual(sorted(peers._clients), ["c"])
        self.assertTrue(self.closed(again))
