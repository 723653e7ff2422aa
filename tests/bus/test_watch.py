# -*- test-case-name: tests.bus.test_watch -*-
"""
Tests for L{netsuite.bus.client.BusClient} watches and C{wait_for}.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, List

from netsuite.registry import UnknownMailbox
from netsuite.registry.values import MAC

from .helpers import SEEN, ConnectedTestCase


class WatchTests(ConnectedTestCase):
    """
    L{BusClient} watches the owner's mailboxes.
    """

    def test_watch(self) -> None:
        """
        A watch delivers every message sent to the mailbox, types intact.
        """
        seen: List[Any] = []
        handle = self.client.watch(SEEN, seen.append)
        self.flush()
        self.assertIs(self.successResultOf(handle.attached), handle)
        message = {"mac": MAC("aabbccddeeff"), "ip": IPv4Address("10.0.0.1"), "b": b"\x00"}
        self.owner.registry.send(SEEN, message)
        self.owner.registry.send(SEEN, {"n": 2})
        self.flush()
        self.assertEqual(seen, [message, {"n": 2}])
        handle.remove()
        self.flush()
        self.owner.registry.send(SEEN, {"n": 3})
        self.flush()
        self.assertEqual(len(seen), 2)
        self.assertEqual(self.owner.registry.mailbox(SEEN).watchers, [])

    def test_watchRaises(self) -> None:
        """
        A watch function that raises is logged; the connection stays up and
        later messages still arrive.
        """
        seen: List[Any] = []

        def broken(message: Any) -> None:
            seen.append(message)
            raise ZeroDivisionError()

        self.client.watch(SEEN, broken)
        self.flush()
        self.owner.registry.send(SEEN, {"n": 1})
        self.flush()
        self.owner.registry.send(SEEN, {"n": 2})
        self.flush()
        self.assertEqual(seen, [{"n": 1}, {"n": 2}])
        self.assertFalse(self.pump.clientIO.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_waitFor(self) -> None:
        """
        L{BusClient.wait_for} fires with the next matching message.
        """
        d = self.client.wait_for(SEEN, {"up": True})
        self.flush()
        self.owner.registry.send(SEEN, {"up": False})
        self.owner.registry.send(SEEN, {"up": True, "n": 2})
        self.flush()
        self.assertEqual(self.successResultOf(d), {"up": True, "n": 2})
        self.flush()
        self.assertEqual(self.owner.registry.mailbox(SEEN).watchers, [])

    def test_waitForUnknown(self) -> None:
        """
        L{BusClient.wait_for} on an undeclared mailbox fails with
        L{UnknownMailbox}.
        """
        d = self.client.wait_for("/nope")
        self.flush()
        self.failureResultOf(d, UnknownMailbox)
        self.assertEqual(len(self.flushLoggedErrors(UnknownMailbox)), 1)

    def test_waitForTimeout(self) -> None:
        """
        L{BusClient.wait_for} fails with a timeout when nothing matches.
        """
        from twisted.internet.defer import TimeoutError
        d = self.client.wait_for(SEEN, timeout=2)
        self.flush()
        self.owner.reactor.advance(2)
        self.failureResultOf(d, TimeoutError)
        self.flush()
        self.assertEqual(self.owner.registry.mailbox(SEEN).watchers, [])
