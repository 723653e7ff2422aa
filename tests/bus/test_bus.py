# -*- test-case-name: tests.bus.test_bus -*-
"""
Tests for L{netsuite.bus}: the AMP commands, the owner's responders and
L{netsuite.bus.client.BusClient}, connected in memory with
L{twisted.test.iosim}. No reactor runs: a L{MemoryReactorClock} records the
client's connection attempts and keeps time for both sides.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite.bus.client import BusClient, NotRunning, socket_endpoint
from netsuite.bus.commands import (CHUNK, AddListener, Describe, DuplicateId, RemoveListener,
                                   Send, Typed, UnknownId, Unwatch)
from netsuite.bus.server import (BusServerFactory, BusServerProtocol, Credentials,
                                 verdict_from_box)
from netsuite.registry import (CONTINUE, EVENT, NO_ANSWER, IListenerHandle, IRegistry,
                               ListenerError, Registry, Remember, Stop, UnknownMailbox)
from netsuite.registry.values import MAC, InvalidValue, dumps, loads

LEASE = "/dhcp/lease"
SEEN = "/dhcp/seen"
SOCKET = "/nonexistent/netsuite/owner.sock"

# A Send with a typed value that is well-formed JSON but not a valid value.
BAD_IPV4_MESSAGE = b'["map",{"ip":["ipv4","10.0.0.300"]}]'
NON_ASCII_BYTES_MESSAGE = '["map",{"raw":["bytes","\u00e9\u00e9\u00e9\u00e9"]}]'.encode("utf-8")

# A message too big for one AMP value.
BIG = bytes(range(256)) * 800  # 204,800 bytes


def no_credentials(transport: Any) -> Optional[Credentials]:
    """
    A peer whose credentials cannot be read (as over TCP).
    """
    return None


class Owner:
    """
    The process that owns the mailboxes: a L{Registry} served by
    L{BusServerFactory}, with a stock listener on L{LEASE} answering
    C{"stock"}.
    """

    def __init__(self, credentials: Callable[[Any], Optional[Credentials]] = no_credentials,
                 allowed_uids: Tuple[int, ...] = ()) -> None:
        self.reactor = MemoryReactorClock()
        self.registry = Registry("owner", self.reactor)
        self.registry.declare(LEASE, doc="Which address?")
        self.registry.declare(SEEN, kind=EVENT)
        self.stock = self.registry.listen(LEASE, lambda message: Stop("stock"),
                                          tags={"owner": "dhcp"})
        self.factory = BusServerFactory(self.registry, allowed_uids, credentials)

    def raw(self) -> Tuple[amp.AMP, BusServerProtocol, iosim.IOPump]:
        """
        Connect a bare L{amp.AMP} peer to a new server protocol.
        """
        return iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), amp.AMP, clock=self.reactor)

    def client(self) -> BusClient:
        """
        A L{BusClient} for this owner; its connection attempts are recorded
        by the reactor until L{accept} completes one.
        """
        return BusClient("owner", "unix:path=" + SOCKET, self.reactor)

    def accept(self) -> iosim.IOPump:
        """
        Complete the client's latest connection attempt with a new server
        protocol, and let both sides greet.
        """
        address, factory, timeout, check_pid = self.reactor.unixClients[-1]
        assert address == SOCKET, address
        client = factory.buildProtocol(None)
        self.server = self.factory.buildProtocol(None)
        self.pump = iosim.connect(self.server, iosim.makeFakeServer(self.server),
                                  client, iosim.makeFakeClient(client), clock=self.reactor)
        return self.pump

    def refuse(self) -> None:
        """
        Fail the client's latest connection attempt.
        """
        address, factory, timeout, check_pid = self.reactor.unixClients[-1]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def listeners(self, path: str = LEASE) -> List[Dict[str, Any]]:
        """
        The tags of the listeners on C{path}, in chain order.
        """
        return [listener["tags"] for listener in self.registry.describe(path)[0]["listeners"]]


class Bogus(amp.Command):
    """
    A command the bus does not know.
    """

    commandName = b"Bogus"
    arguments: list = []
    response: list = []


class TypedTests(SynchronousTestCase):
    """
    L{Typed} splits values over 65,535 bytes across keys and joins them again.
    """

    def test_chunks(self) -> None:
        """
        A 200 KB value is written as C{name}, C{name.2}, ... each at most
        65,535 bytes, and read back whole.
        """
        strings: Dict[bytes, bytes] = {}
        Typed().toBox(b"message", strings, {"message": BIG}, None)
        self.assertEqual(sorted(strings), [b"message", b"message.2", b"message.3",
                                           b"message.4"])
        self.assertEqual([len(strings[k]) for k in sorted(strings)],
                         [CHUNK, CHUNK, CHUNK, len(BIG) - 3 * CHUNK])
        self.assertEqual(CHUNK, 65535)
        objects: Dict[str, Any] = {}
        Typed().fromBox(b"message", strings, objects, None)
        self.assertEqual(objects, {"message": BIG})
        self.assertEqual(strings, {})

    def test_boundaries(self) -> None:
        """
        Exactly 65,535 bytes take one key, one more byte takes two, and an
        empty value takes one empty key.
        """
        for size, keys in ((0, 1), (CHUNK, 1), (CHUNK + 1, 2), (2 * CHUNK, 2)):
            strings: Dict[bytes, bytes] = {}
            data = b"x" * size
            Typed().toBox(b"v", strings, {"v": data}, None)
            self.assertEqual(len(strings), keys, size)
            objects: Dict[str, Any] = {}
            Typed().fromBox(b"v", strings, objects, None)
            self.assertEqual(objects["v"], data)

    def test_optional(self) -> None:
        """
        An optional L{Typed} that is None is left out, and read back as None.
        """
        strings: Dict[bytes, bytes] = {}
        Typed(optional=True).toBox(b"result", strings, {"result": None}, None)
        self.assertEqual(strings, {})
        objects: Dict[str, Any] = {}
        Typed(optional=True).fromBox(b"result", strings, objects, None)
        self.assertEqual(objects, {"result": None})


class VerdictWireTests(SynchronousTestCase):
    """
    A L{CallListener} answer box read as a verdict (one path for every
    answer, a long result included).
    """

    def test_remember(self) -> None:
        """
        An answer with C{remember} is a L{Remember} of its verdict.
        """
        box = amp.AmpBox(verdict=b"stop", result=dumps("x"), remember=b"30.5")
        self.assertEqual(verdict_from_box(box), Remember(Stop("x"), 30.5))
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"continue", remember=b"2")),
                         Remember(CONTINUE, 2.0))
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"continue", remember=b"2.0")),
                         Remember(CONTINUE, 2.0))

    def test_plain(self) -> None:
        """
        Without C{remember}, the verdict itself.
        """
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"stop", result=dumps(1))),
                         Stop(1))
        self.assertIs(verdict_from_box(amp.AmpBox(verdict=b"continue")), CONTINUE)

    def test_badRemember(self) -> None:
        """
        A C{remember} that is not a number is a L{ListenerError}.
        """
        self.assertRaises(ListenerError, verdict_from_box,
                          amp.AmpBox(verdict=b"continue", remember=b"soon"))


class ServerTests(SynchronousTestCase):
    """
    L{BusServerProtocol} answers a bare AMP peer.
    """

    def setUp(self) -> None:
        self.owner = Owner()
        self.peer, self.server, self.pump = self.owner.raw()

    def call(self, command: Any, **kw: Any) -> Deferred[Any]:
        """
        Call C{command} and pump until it is answered. The result is taken
        before the answer arrives: AMP drops the connection over an error
        that nothing handled by then.
        """
        results: List[Any] = []
        self.peer.callRemote(command, **kw).addBoth(results.append)
        self.pump.flush()
        self.assertEqual(len(results), 1)
        return fail(results[0]) if isinstance(results[0], Failure) else succeed(results[0])

    def test_send(self) -> None:
        """
        L{Send} answers the typed result of the chain and C{answered=True}.
        """
        result = self.successResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))
        self.assertEqual(result, {"answered": True, "result": b'["str","stock"]'})

    def test_sendNoAnswer(self) -> None:
        """
        When no listener stops the chain, L{Send} answers C{answered=False}.
        """
        result = self.successResultOf(self.call(Send, mailbox=SEEN, message=dumps({})))
        self.assertEqual(result, {"answered": False, "result": b'["none",null]'})

    def test_unknownMailbox(self) -> None:
        """
        An undeclared mailbox is answered with C{UNKNOWN_MAILBOX}, which the
        peer reads as L{UnknownMailbox}.
        """
        failure = self.failureResultOf(self.call(Send, mailbox="/nope", message=dumps({})),
                                       UnknownMailbox)
        self.assertIn("/nope", str(failure.value))

    def test_malformedValue(self) -> None:
        """
        A malformed typed value is answered with C{INVALID_VALUE} and a
        description; the connection stays up.
        """
        failure = self.failureResultOf(self.call(Send, mailbox=LEASE, message=BAD_IPV4_MESSAGE),
                                       InvalidValue)
        self.assertIn("bad ipv4 payload '10.0.0.300'", str(failure.value))
        self.successResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))

    def test_nonASCIIBase64(self) -> None:
        """
        A bytes payload with non-ASCII text is an C{INVALID_VALUE}, not an
        unknown error that would close the connection.
        """
        self.failureResultOf(self.call(Send, mailbox=LEASE, message=NON_ASCII_BYTES_MESSAGE),
                             InvalidValue)
        self.assertFalse(self.pump.serverIO.disconnecting)
        self.successResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))

    def test_notJSON(self) -> None:
        """
        A message that is not JSON, or not a map, is an C{INVALID_VALUE}.
        """
        failure = self.failureResultOf(self.call(Send, mailbox=LEASE, message=b"{"),
                                       InvalidValue)
        self.assertIn("not UTF-8 JSON", str(failure.value))
        failure = self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps([1])),
                                       InvalidValue)
        self.assertIn("a message is a map", str(failure.value))

    def test_badRequestKeepsConnection(self) -> None:
        """
        A command that fails for a reason no error code names (here a
        missing argument) is answered with a non-fatal C{BAD_REQUEST}; the
        connection, and the listeners the peer added on it, stay.
        """
        self.successResultOf(self.call(AddListener, mailbox=LEASE, listener="x", first=True,
                                       deadline=1.0, tags=dumps({})))
        answers: List[Any] = []
        self.peer.callRemoteString(b"Send", mailbox=b"/dhcp/lease").addBoth(answers.append)
        self.pump.flush()
        self.assertEqual(len(answers), 1)
        self.assertIsInstance(answers[0], Failure)
        self.assertEqual(answers[0].value.errorCode, b"BAD_REQUEST")
        self.assertIn("KeyError", answers[0].value.description)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertFalse(self.pump.serverIO.disconnecting)
        self.assertEqual(len(self.owner.listeners()), 2)

    def test_badDeadline(self) -> None:
        """
        A listener deadline that is not a finite number of seconds in
        (0, 300] is refused with C{INVALID_VALUE}: a NaN or infinite
        deadline would break or stall every later send to the mailbox.
        """
        for deadline in (float("nan"), float("inf"), -1.0, 0.0, 301.0):
            failure = self.failureResultOf(
                self.call(AddListener, mailbox=LEASE, listener=f"d{deadline}", first=True,
                          deadline=deadline, tags=dumps({})), InvalidValue)
            self.assertIn("deadline must be", str(failure.value))
        self.assertEqual(len(self.owner.listeners()), 1)
        result = self.successResultOf(self.call(Send, mailbox=LEASE, message=dumps({})))
        self.assertEqual(result["result"], b'["str","stock"]')

    def test_unknownCommand(self) -> None:
        """
        An unknown command gets an C{UNHANDLED} error, and the server still
        answers the next command.
        """
        self.failureResultOf(self.call(Bogus), amp.UnhandledCommand)
        result = self.successResultOf(self.call(Describe, prefix="/dhcp"))
        self.assertEqual(result["process"], "owner")

    def test_describe(self) -> None:
        """
        L{Describe} answers the owner's name and the typed listing of its
        mailboxes under the prefix.
        """
        result = self.successResultOf(self.call(Describe, prefix=LEASE))
        self.assertEqual(result["process"], "owner")
        self.assertEqual(loads(result["mailboxes"]), self.owner.registry.describe(LEASE))

    def test_bigMessage(self) -> None:
        """
        A 200 KB message and result cross in chunks and arrive whole.
        """
        self.owner.stock.remove()
        self.owner.registry.listen(LEASE, lambda message: Stop(message["blob"]))
        result = self.successResultOf(self.call(Send, mailbox=LEASE,
                                                message=dumps({"blob": BIG})))
        self.assertTrue(result["answered"])
        self.assertEqual(loads(result["result"]), BIG)

    def test_duplicateListenerId(self) -> None:
        """
        A listener id already in use on the connection is refused.
        """
        self.successResultOf(self.call(AddListener, mailbox=LEASE, listener="l1", first=True,
                                       deadline=1.0, tags=dumps({})))
        self.failureResultOf(self.call(AddListener, mailbox=LEASE, listener="l1", first=True,
                                       deadline=1.0, tags=dumps({})), DuplicateId)
        self.assertEqual(len(self.owner.listeners()), 2)

    def test_addListenerBadTags(self) -> None:
        """
        Tags that are not a map are an C{INVALID_VALUE}.
        """
        self.failureResultOf(self.call(AddListener, mailbox=LEASE, listener="l1", first=True,
                                       deadline=1.0, tags=dumps([1])), InvalidValue)
        self.assertEqual(len(self.owner.listeners()), 1)

    def test_addListenerUnknownMailbox(self) -> None:
        """
        Adding a listener to an undeclared mailbox is an C{UNKNOWN_MAILBOX}.
        """
        self.failureResultOf(self.call(AddListener, mailbox="/nope", listener="l1",
                                       first=True, deadline=1.0, tags=dumps({})),
                             UnknownMailbox)

    def test_unknownIds(self) -> None:
        """
        Removing a listener or watch the connection does not have is an
        C{UNKNOWN_ID}.
        """
        failure = self.failureResultOf(self.call(RemoveListener, listener="l9"), UnknownId)
        self.assertIn("no listener 'l9'", str(failure.value))
        self.failureResultOf(self.call(Unwatch, watch="w9"), UnknownId)


class CredentialsTests(SynchronousTestCase):
    """
    The server checks the uid of a Unix-socket peer.
    """

    def test_refused(self) -> None:
        """
        A peer whose uid is not root, ours or allowed is disconnected before
        it is served, and the refusal is logged with its pid and uid.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        owner = Owner(credentials=lambda transport: (99, 4242, 4242), allowed_uids=(1000,))
        peer, server, pump = owner.raw()
        self.assertTrue(pump.serverIO.disconnected)
        d = peer.callRemote(Send, mailbox=LEASE, message=dumps({}))
        pump.flush()
        self.failureResultOf(d, ConnectionDone)
        self.assertEqual(owner.registry.mailbox(LEASE).counters.messages, 0)
        refusals = [e for e in log if e["log_level"] == LogLevel.warn and e.get("uid") == 4242]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(refusals[0]["pid"], 99)

    def test_allowed(self) -> None:
        """
        A peer whose uid is in C{allowed_uids} is served.
        """
        owner = Owner(credentials=lambda transport: (99, 4242, 4242), allowed_uids=(4242,))
        peer, server, pump = owner.raw()
        d = peer.callRemote(Send, mailbox=LEASE, message=dumps({}))
        pump.flush()
        self.assertEqual(self.successResultOf(d)["answered"], True)

    def test_root(self) -> None:
        """
        Root is always allowed.
        """
        owner = Owner(credentials=lambda transport: (1, 0, 0))
        peer, server, pump = owner.raw()
        d = peer.callRemote(Describe, prefix="/")
        pump.flush()
        self.successResultOf(d)

    def test_peerNameInTags(self) -> None:
        """
        A peer's listeners are tagged with its pid and uid.
        """
        owner = Owner(credentials=lambda transport: (77, 0, 0))
        peer, server, pump = owner.raw()
        d = peer.callRemote(AddListener, mailbox=LEASE, listener="l1", first=False,
                            deadline=1.0, tags=dumps({"script": "x"}))
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(owner.listeners()[1], {"script": "x", "peer": "pid 77 uid 0"})


class ClientTests(SynchronousTestCase):
    """
    L{BusClient} uses the owner's registry over the bus.
    """

    def setUp(self) -> None:
        self.owner = Owner()
        self.client = self.owner.client()
        self.pump = self.owner.accept()

    def flush(self) -> None:
        self.pump.flush()

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
