# -*- test-case-name: tests.bus.test_client -*-
"""
Tests for L{netsuite.bus.client.BusClient}: sends, listeners and their
verdicts, remembered verdicts, over a connection to an owner in memory.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Dict, List

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from zope.interface.verify import verifyObject

from netsuite.bus.arguments import MAX_MESSAGE
from netsuite.registry import (CONTINUE, NO_ANSWER, Continue, IListenerHandle, IRegistry,
                               ListenerError, Remember, Stop, UnknownMailbox)
from netsuite.registry.values import MAC, InvalidValue

from .helpers import BIG, LEASE, SEEN, ConnectedTestCase


class ClientTests(ConnectedTestCase):
    """
    L{BusClient} uses the owner's registry over the bus.
    """

    def test_interface(self) -> None:
        """
        L{BusClient} provides L{IRegistry}.
        """
        self.assertTrue(verifyObject(IRegistry, self.client))

    def test_connected(self) -> None:
        """
        L{BusClient.connected} fires with the client once connected.
        """
        self.assertIs(self.successResultOf(self.client.connected()), self.client)

    def test_send(self) -> None:
        """
        A send runs the owner's chain and fires with its typed result.
        """
        self.owner.registry.listen(
            LEASE, lambda message: Stop({"ip": IPv4Address("10.0.0.7"), "mac": message["mac"],
                                         "v6": IPv6Address("::1"), "raw": b"\xff"}), first=True)
        d = self.client.send("owner:" + LEASE, {"mac": MAC("aabbccddeeff")})
        self.flush()
        self.assertEqual(self.successResultOf(d),
                         {"ip": IPv4Address("10.0.0.7"), "mac": MAC("aa:bb:cc:dd:ee:ff"),
                          "v6": IPv6Address("::1"), "raw": b"\xff"})

    def test_sendNoAnswer(self) -> None:
        """
        When nobody stops the chain, the send fires with L{NO_ANSWER}.
        """
        d = self.client.send(SEEN)
        self.flush()
        self.assertIs(self.successResultOf(d), NO_ANSWER)

    def test_sendNone(self) -> None:
        """
        C{Stop(None)} is an answer, distinct from L{NO_ANSWER}.
        """
        self.owner.registry.listen(LEASE, lambda message: Stop(None), first=True)
        d = self.client.send(LEASE)
        self.flush()
        self.assertIsNone(self.successResultOf(d))

    def test_unknownMailbox(self) -> None:
        """
        A send to an undeclared mailbox fails with L{UnknownMailbox}.
        """
        d = self.client.send("/nope")
        self.flush()
        self.failureResultOf(d, UnknownMailbox)

    def test_sendInvalid(self) -> None:
        """
        A message that is not a netsuite value fails at once, locally.
        """
        self.failureResultOf(self.client.send(LEASE, {"a": {1}}), InvalidValue)
        self.failureResultOf(self.client.send("other:/x"), ValueError)

    def test_stopVerdict(self) -> None:
        """
        A peer's listener added C{first} goes before the stock listener, and
        its L{Stop} becomes the result of a send made in the owner.
        """
        seen: List[Any] = []

        def lease(message: Dict[str, Any]) -> Any:
            seen.append(message)
            return Stop(IPv4Address("10.0.0.42"))

        handle = self.client.listen(LEASE, lease, first=True, tags={"script": "hook"})
        self.flush()
        self.assertIs(self.successResultOf(handle.attached), handle)
        self.assertTrue(verifyObject(IListenerHandle, handle))
        tags = self.owner.listeners()[0]
        self.assertEqual(tags["script"], "hook")
        self.assertIn("peer", tags)
        d = self.owner.registry.send(LEASE, {"mac": MAC("aabbccddeeff")})
        self.assertNoResult(d)
        self.flush()
        self.assertEqual(self.successResultOf(d), IPv4Address("10.0.0.42"))
        self.assertEqual(seen, [{"mac": MAC("aabbccddeeff")}])

    def test_continueVerdict(self) -> None:
        """
        A peer's L{CONTINUE} falls through to the stock listener.
        """
        self.client.listen(LEASE, lambda message: CONTINUE, first=True)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")

    def test_reasons(self) -> None:
        """
        A peer's L{Continue} and L{Stop} with a reason cross the bus: the
        owner's listing counts them under that listener, by reason, and a
        remembered one again each time it is given.
        """
        verdicts = iter([Continue("miss"), Continue("timeout"), Stop("ldap", reason="hit"),
                         Remember(Continue("busy"), 60)])
        self.client.listen(LEASE, lambda message: next(verdicts), first=True,
                           remember_by=["mac"])
        self.flush()
        results = []
        for mac in ["a", "b", "c", "d", "d"]:
            d = self.owner.registry.send(LEASE, {"mac": mac})
            self.flush()
            results.append(self.successResultOf(d))
        self.assertEqual(results, ["stock", "stock", "ldap", "stock", "stock"])
        counters = self.owner.registry.describe(LEASE)[0]["listeners"][0]["counters"]
        self.assertEqual(counters["reasons"], {"miss": 1, "timeout": 1, "hit": 1, "busy": 2})
        self.assertEqual((counters["errors"], counters["remembered"]), (0, 1))

    def test_deferredVerdict(self) -> None:
        """
        A peer's listener may answer with a Deferred.
        """
        answer: Deferred[Any] = Deferred()
        self.client.listen(LEASE, lambda message: answer, first=True, deadline=5)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertNoResult(d)
        answer.callback(Stop("later"))
        self.flush()
        self.assertEqual(self.successResultOf(d), "later")

    def test_deadline(self) -> None:
        """
        A peer that does not answer within its deadline is skipped and
        counted as a timeout.
        """
        self.client.listen(LEASE, lambda message: Deferred(), first=True, deadline=0.5)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.owner.reactor.advance(0.4)
        self.assertNoResult(d)
        self.owner.reactor.advance(0.1)
        self.assertEqual(self.successResultOf(d), "stock")
        standin = self.owner.registry.describe(LEASE)[0]["listeners"][0]
        self.assertEqual(standin["deadline"], 0.5)
        self.assertEqual(standin["counters"]["timeouts"], 1)

    def test_listenerRaises(self) -> None:
        """
        A peer's listener that raises is counted as an error on the owner
        and skipped; the connection stays up and the listener is called again.
        """
        calls: List[Any] = []

        def broken(message: Any) -> Any:
            calls.append(message)
            raise ZeroDivisionError("in the hook")

        self.client.listen(LEASE, broken, first=True)
        self.flush()
        for n in range(2):
            d = self.owner.registry.send(LEASE, {"n": n})
            self.flush()
            self.assertEqual(self.successResultOf(d), "stock")
        self.assertEqual(len(calls), 2)
        self.assertEqual(self.owner.registry.describe(LEASE)[0]["listeners"][0]
                         ["counters"]["errors"], 2)
        self.assertFalse(self.pump.clientIO.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        owner_side = self.flushLoggedErrors(ListenerError)
        self.assertEqual(len(owner_side), 2)
        self.assertIn("listener failed: in the hook", str(owner_side[0].value))

    def test_listenerBadVerdict(self) -> None:
        """
        A peer's listener that returns C{None} is an error on the owner; the
        chain falls through.
        """
        self.client.listen(LEASE, lambda message: None, first=True)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")
        self.assertEqual(self.owner.registry.describe(LEASE)[0]["listeners"][0]
                         ["counters"]["errors"], 1)
        self.assertFalse(self.pump.clientIO.disconnecting)
        [error] = self.flushLoggedErrors(ListenerError)
        self.assertIn("listener returned None", str(error.value))

    def test_listenerStopsWithNonValue(self) -> None:
        """
        A peer's L{Stop} whose value cannot travel is an error on the owner;
        the chain falls through and the connection stays up.
        """
        self.client.listen(LEASE, lambda message: Stop({1, 2}), first=True)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")
        self.assertFalse(self.pump.clientIO.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(InvalidValue)), 1)

    def test_connectionLost(self) -> None:
        """
        When the peer's connection is lost its stand-ins are removed, and a
        call waiting on it fails so the chain falls through at once.
        """
        self.client.listen(LEASE, lambda message: Deferred(), first=True, deadline=30)
        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertNoResult(d)
        self.pump.clientIO.loseConnection()
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")
        self.assertEqual(self.owner.listeners(), [{"owner": "dhcp"}])
        self.assertEqual(len(self.flushLoggedErrors(ConnectionDone)), 1)

    def test_remove(self) -> None:
        """
        Removing a peer's listener takes its stand-in off the owner's chain.
        """
        handle = self.client.listen(LEASE, lambda message: Stop("peer"), first=True)
        self.flush()
        self.assertEqual(len(self.owner.listeners()), 2)
        handle.remove()
        self.flush()
        self.assertEqual(self.owner.listeners(), [{"owner": "dhcp"}])
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")

    def test_decorator(self) -> None:
        """
        L{BusClient.listen} is a decorator without a function.
        """
        @self.client.listen(LEASE, first=True)
        def lease(message: Any) -> Any:
            return Stop("decorated")

        self.flush()
        d = self.owner.registry.send(LEASE)
        self.flush()
        self.assertEqual(self.successResultOf(d), "decorated")

    def test_listenUnknownMailbox(self) -> None:
        """
        Listening on an undeclared mailbox logs the error once, and leaves
        no unhandled error in a Deferred behind.
        """
        self.client.listen("/nope", lambda message: CONTINUE)
        self.flush()
        self.assertEqual(len(self.flushLoggedErrors(UnknownMailbox)), 1)

    def test_watchUnknownMailbox(self) -> None:
        """
        Watching an undeclared mailbox logs the error once, and leaves no
        unhandled error in a Deferred behind.
        """
        self.client.watch("/nope", lambda message: None)
        self.flush()
        self.assertEqual(len(self.flushLoggedErrors(UnknownMailbox)), 1)

    def test_intDeadline(self) -> None:
        """
        A deadline given as an int is accepted and sent as a float.
        """
        handle = self.client.listen(LEASE, lambda message: CONTINUE, deadline=5)
        self.flush()
        self.successResultOf(handle.attached)
        self.assertEqual(self.owner.registry.describe(LEASE)[0]["listeners"][1]["deadline"],
                         5.0)

    def test_describe(self) -> None:
        """
        L{BusClient.describe} fires with the owner's listing.
        """
        d = self.client.describe("/dhcp")
        self.flush()
        self.assertEqual(self.successResultOf(d), self.owner.registry.describe("/dhcp"))

    def test_heard(self) -> None:
        """
        L{BusClient.heard} cannot know the owner's listeners without a
        round trip: it answers True, so senders send; an address of
        another process is refused.
        """
        self.assertIs(self.client.heard(SEEN), True)
        self.assertIs(self.client.heard("owner:" + SEEN), True)
        self.assertRaises(ValueError, self.client.heard, "other:" + SEEN)

    def test_declare(self) -> None:
        """
        A peer cannot declare the owner's mailboxes.
        """
        self.assertRaises(NotImplementedError, self.client.declare, "/x")


class RememberTests(ConnectedTestCase):
    """
    Big values and remembered verdicts cross between L{BusClient} and the owner.
    """

    def test_bigMessage(self) -> None:
        """
        A 200 KB message reaches a peer's listener whole, and its 200 KB
        result comes back whole.
        """
        self.client.listen(LEASE, lambda message: Stop(message["blob"][::-1]), first=True)
        self.flush()
        d = self.client.send(LEASE, {"blob": BIG})
        self.flush()
        self.assertEqual(self.successResultOf(d), BIG[::-1])

    def test_messageTooLong(self) -> None:
        """
        A message whose encoding is longer than L{MAX_MESSAGE} fails with
        L{InvalidValue} before it is sent; the connection stays up.
        """
        d = self.client.send(LEASE, {"blob": b"x" * MAX_MESSAGE})
        self.flush()
        self.assertIn("the bus carries at most", str(self.failureResultOf(d, InvalidValue).value))
        d = self.client.send(LEASE, {})
        self.flush()
        self.assertEqual(self.successResultOf(d), "stock")

    def test_rememberedVerdict(self) -> None:
        """
        A peer's listener added with C{remember_by} that answers
        L{Remember} is asked once per key: the owner gives the remembered
        verdict to the next message of the same client without a
        round trip, and asks again for another client.
        """
        seen: List[Any] = []

        def lookup(message: Dict[str, Any]) -> Any:
            seen.append(message["mac"])
            return Remember(Stop(IPv4Address("10.0.0.42")), 300.0)

        self.client.listen(LEASE, lookup, first=True, remember_by=["mac"])
        self.flush()
        self.assertEqual(self.owner.registry.describe(LEASE)[0]["listeners"][0]["remember_by"],
                         ["mac"])
        for mac in ("aabbccddeeff", "aabbccddeeff", "001122334455"):
            d = self.owner.registry.send(LEASE, {"mac": MAC(mac), "xid": 7})
            self.flush()
            self.assertEqual(self.successResultOf(d), IPv4Address("10.0.0.42"))
        self.assertEqual(seen, [MAC("aabbccddeeff"), MAC("001122334455")])

    def test_rememberedContinue(self) -> None:
        """
        A remembered L{CONTINUE} falls through to the stock listener without
        asking the peer again.
        """
        seen: List[Any] = []

        def lookup(message: Dict[str, Any]) -> Any:
            seen.append(message)
            return Remember(CONTINUE, 60)

        self.client.listen(LEASE, lookup, first=True, remember_by=["mac"])
        self.flush()
        for _ in range(2):
            d = self.owner.registry.send(LEASE, {"mac": "a"})
            self.flush()
            self.assertEqual(self.successResultOf(d), "stock")
        self.assertEqual(len(seen), 1)

    def test_rememberedForgottenWithConnection(self) -> None:
        """
        When the peer's connection is lost, what its listener asked to be
        remembered goes with it: the next message reaches the stock
        listener at once.
        """
        self.client.listen(LEASE, lambda message: Remember(Stop("peer"), 300), first=True,
                           remember_by=["mac"])
        self.flush()
        d = self.owner.registry.send(LEASE, {"mac": "a"})
        self.flush()
        self.assertEqual(self.successResultOf(d), "peer")
        self.pump.clientIO.loseConnection()
        self.flush()
        self.assertEqual(self.successResultOf(self.owner.registry.send(LEASE, {"mac": "a"})),
                         "stock")

    def test_rememberWithoutKeyAsksEachTime(self) -> None:
        """
        L{Remember} from a listener added without C{remember_by} is an
        ordinary verdict.
        """
        seen: List[Any] = []

        def lookup(message: Dict[str, Any]) -> Any:
            seen.append(message)
            return Remember(Stop("peer"), 60)

        self.client.listen(LEASE, lookup, first=True)
        self.flush()
        for _ in range(2):
            d = self.owner.registry.send(LEASE, {"mac": "a"})
            self.flush()
            self.assertEqual(self.successResultOf(d), "peer")
        self.assertEqual(len(seen), 2)


class FailClosedTests(ConnectedTestCase):
    """
    A peer's listener added with C{fail_closed} refuses on the owner's side
    when it fails or is late, across the bus.
    """

    def setUp(self) -> None:
        ConnectedTestCase.setUp(self)
        self.owner.registry.declare("/guard", refusal={"ok": False})
        self.owner.registry.listen("/guard", lambda message: Stop({"ok": True}))

    def test_peer_error_refuses(self) -> None:
        """
        The peer's listener raising ends the owner's chain with the
        refusal; the owner's listing says the listener fails closed.
        """
        def deny(message: Dict[str, Any]) -> Any:
            raise RuntimeError("deny list down")
        self.client.listen("/guard", deny, first=True, fail_closed=True)
        self.flush()
        [box] = self.owner.registry.describe("/guard")
        self.assertTrue(box["listeners"][0]["fail_closed"])
        d = self.owner.registry.send("/guard", {})
        self.flush()
        self.assertEqual(self.successResultOf(d), {"ok": False})
        self.flushLoggedErrors()

    def test_peer_late_refuses(self) -> None:
        """
        No answer from the peer within the deadline refuses too.
        """
        self.client.listen("/guard", lambda message: Deferred(), first=True, fail_closed=True,
                           deadline=1.0)
        self.flush()
        d = self.owner.registry.send("/guard", {})
        self.flush()
        self.assertNoResult(d)
        self.owner.reactor.advance(1.0)
        self.flush()
        self.assertEqual(self.successResultOf(d), {"ok": False})

    def test_open_by_default(self) -> None:
        """
        Without fail_closed, the peer's failure is skipped as before.
        """
        self.client.listen("/guard", lambda message: 1 / 0, first=True)
        self.flush()
        [box] = self.owner.registry.describe("/guard")
        self.assertFalse(box["listeners"][0]["fail_closed"])
        d = self.owner.registry.send("/guard", {})
        self.flush()
        self.assertEqual(self.successResultOf(d), {"ok": True})
        self.flushLoggedErrors()
