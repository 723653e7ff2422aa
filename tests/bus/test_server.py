# -*- test-case-name: tests.bus.test_server -*-
"""
Tests for L{netsuite.bus.server}: the owner answers a bare AMP peer, and
checks the peer's uid.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.arguments import MAX_MESSAGE, put_chunks
from netsuite.bus.errors import DuplicateId, UnknownId
from netsuite.bus.framing import MAX_BOX
from netsuite.bus.ownercommands import AddListener, Describe, RemoveListener, Send, Unwatch
from netsuite.registry import Stop, UnknownMailbox
from netsuite.registry.values import InvalidValue, dumps, loads

from .helpers import BAD_IPV4_MESSAGE, BIG, LEASE, NON_ASCII_BYTES_MESSAGE, SEEN, Bogus, Owner


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

    def test_messageTooLong(self) -> None:
        """
        A message of more than L{MAX_MESSAGE} bytes, in a box within
        L{MAX_BOX}, is answered with C{INVALID_VALUE} saying so; the
        connection stays up. So is a result too long to send back.
        """
        box = amp.AmpBox({amp.ASK: b"7", amp.COMMAND: b"Send", b"mailbox": LEASE.encode()})
        message = b'["map",{"a":["str","' + b"x" * MAX_MESSAGE + b'"]}]'
        put_chunks(box, b"message", message[:MAX_MESSAGE])
        box[b"message.%d" % (len(box) - 2)] = message[MAX_MESSAGE:]
        answers: List[amp.AmpBox] = []
        self.peer.boxReceiver = type("", (), {"ampBoxReceived": answers.append})()
        self.server.dataReceived(box.serialize())
        self.pump.flush()
        [answer] = answers
        self.assertEqual(answer[amp.ERROR_CODE], b"INVALID_VALUE")
        self.assertIn(b"the bus carries at most 1048576", answer[amp.ERROR_DESCRIPTION])
        self.assertFalse(self.pump.serverIO.disconnecting)

    def test_resultTooLong(self) -> None:
        """
        A result longer than L{MAX_MESSAGE} is answered with
        C{INVALID_VALUE}, not sent.
        """
        self.owner.registry.listen(LEASE, lambda m: Stop("x" * MAX_MESSAGE), first=True)
        failure = self.failureResultOf(self.call(Send, mailbox=LEASE, message=dumps({})),
                                       InvalidValue)
        self.assertIn("at most", str(failure.value))
        self.assertFalse(self.pump.serverIO.disconnecting)

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
        self.assertEqual(self.flushLoggedErrors(), [])  # a warning, not a traceback
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


class MalformedFrameTests(SynchronousTestCase):
    """
    A key longer than 255 bytes ends the peer's connection.
    """

    def test_longKey(self) -> None:
        """
        The server closes the connection, logs the malformed frame with the
        peer's name, and takes off the listeners the peer added; what the
        peer sent after the bad key is never read as a command.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        owner = Owner(credentials=lambda transport: (77, 0, 0))
        peer, server, pump = owner.raw()
        d = peer.callRemote(AddListener, mailbox=LEASE, listener="l1", first=True,
                            deadline=1.0, tags=dumps({}))
        pump.flush()
        self.successResultOf(d)
        send = Send.makeArguments({"mailbox": LEASE, "message": dumps({})}, None)
        send.update({amp.COMMAND: b"Send", amp.ASK: b"9"})
        server.dataReceived(b"\x01\x00" + b"k" * 256 + b"\x00\x01v\x00\x00"
                            + send.serialize())
        self.assertTrue(pump.serverIO.disconnecting)
        pump.flush()
        self.assertEqual(owner.listeners(), [{"owner": "dhcp"}])
        self.assertEqual(owner.registry.mailbox(LEASE).counters.messages, 0)
        warnings = [e for e in log if e["log_level"] == LogLevel.warn]
        self.assertEqual([e["peer"] for e in warnings], ["pid 77 uid 0"])
        self.assertIn("malformed frame", warnings[0]["log_format"])


    def test_endlessBox(self) -> None:
        """
        A box past L{MAX_BOX} bytes ends the connection, logged with the
        peer and why, and takes off the peer's listeners.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        owner = Owner(credentials=lambda transport: (78, 0, 0))
        peer, server, pump = owner.raw()
        d = peer.callRemote(AddListener, mailbox=LEASE, listener="l1", first=True,
                            deadline=1.0, tags=dumps({}))
        pump.flush()
        self.successResultOf(d)
        index = 0
        while not pump.serverIO.disconnecting:
            key = b"k%d" % index
            index += 1
            server.dataReceived(len(key).to_bytes(2, "big") + key + b"\xff\xff" + b"v" * 65535)
            self.assertLess(index, 2 * MAX_BOX // 65535)
        pump.flush()
        self.assertEqual(owner.listeners(), [{"owner": "dhcp"}])
        [warning] = [e for e in log if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["peer"], "pid 78 uid 0")
        self.assertEqual(warning["why"], f"box over {MAX_BOX} bytes")


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
