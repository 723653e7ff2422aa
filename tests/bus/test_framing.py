# -*- test-case-name: tests.bus.test_framing -*-
"""
Tests for L{netsuite.bus.arguments}, L{netsuite.bus.framing} and the
command declarations: the wire itself.
"""

from __future__ import annotations

from typing import Any, Dict, List

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.arguments import CHUNK, MAX_MESSAGE, Typed, put_chunks, take_chunks
from netsuite.bus.errors import ERRORS, DuplicateId
from netsuite.bus.framing import (MAX_BOX, MAX_KEYS, BusProtocol, answer_box, call_listener,
                                  refusal_box, verdict_from_box)
from netsuite.bus.ownercommands import AddListener
from netsuite.bus.peercommands import CallListener, Notify
from netsuite.registry import (CONTINUE, Continue, ListenerError, Remember, Stop,
                               UnknownMailbox)
from netsuite.registry.values import InvalidValue, dumps

from .helpers import BIG, LEASE


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

    def test_maxMessage(self) -> None:
        """
        A value of L{MAX_MESSAGE} bytes is carried; one byte more is refused
        with L{InvalidValue}, whether written or read.
        """
        strings: Dict[bytes, bytes] = {}
        put_chunks(strings, b"message", b"x" * MAX_MESSAGE)
        self.assertEqual(len(take_chunks(strings, b"message")), MAX_MESSAGE)
        error = self.assertRaises(InvalidValue, put_chunks, strings, b"message",
                                  b"x" * (MAX_MESSAGE + 1))
        self.assertIn(f"the bus carries at most {MAX_MESSAGE}", str(error))
        self.assertEqual(strings, {})
        put_chunks(strings, b"message", b"x" * MAX_MESSAGE)
        strings[b"message.%d" % (len(strings) + 1)] = b"x"
        self.assertRaises(InvalidValue, take_chunks, strings, b"message")

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


    def test_pythonNames(self) -> None:
        """
        A L{Typed} argument takes and gives the Python name AMP gives any
        argument (dashes to underscores, keywords capitalised).
        """
        for wire, python in ((b"remember_by", "remember_by"), (b"a-b", "a_b"),
                             (b"from", "From")):
            strings: Dict[bytes, bytes] = {}
            Typed().toBox(wire, strings, {python: b"x"}, None)
            self.assertEqual(strings, {wire: b"x"})
            objects: Dict[str, Any] = {}
            amp.String().fromBox(wire, {wire: b"x"}, objects, None)
            Typed().fromBox(wire, strings, objects, None)
            self.assertEqual(objects, {python: b"x"})


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

    def test_reason(self) -> None:
        """
        An answer with C{reason} is a L{Continue} of it, or a L{Stop} with
        it; one that is no short identifier is a L{ListenerError}.
        """
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"continue", reason=b"miss")),
                         Continue("miss"))
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"stop", result=dumps(1),
                                                     reason=b"hit")), Stop(1, reason="hit"))
        self.assertEqual(verdict_from_box(amp.AmpBox(verdict=b"continue", reason=b"busy",
                                                     remember=b"5")),
                         Remember(Continue("busy"), 5.0))
        for bad in (b"", b"two words", b"x" * 1000, b"\xff"):
            error = self.assertRaises(ListenerError, verdict_from_box,
                                      amp.AmpBox(verdict=b"continue", reason=bad))
            self.assertIn("reason", str(error))

    def test_badRemember(self) -> None:
        """
        A C{remember} that is not a number is a L{ListenerError}.
        """
        self.assertRaises(ListenerError, verdict_from_box,
                          amp.AmpBox(verdict=b"continue", remember=b"soon"))


class Recording(BusProtocol):
    """
    A L{BusProtocol} on a L{StringTransport} that keeps the boxes it reads.
    """

    def __init__(self) -> None:
        BusProtocol.__init__(self, amp.CommandLocator())
        self.boxes: List[amp.AmpBox] = []
        self.makeConnection(StringTransport())

    def box_received(self, box: amp.AmpBox) -> None:
        self.boxes.append(box)

    def written(self) -> List[amp.AmpBox]:
        """
        The boxes written so far, as Twisted's own parser reads them.
        """
        return amp.parseString(self.transport.value())


def without(box: Dict[bytes, bytes], *keys: bytes) -> Dict[bytes, bytes]:
    return {key: value for key, value in box.items() if key not in keys}


class HandBuiltBoxTests(SynchronousTestCase):
    """
    The L{CallListener} boxes that L{netsuite.bus.framing} writes and reads
    by hand are the ones the declaration describes: they parse with
    C{parseArguments}/C{parseResponse} into the values they were built
    from, and the declaration builds the very same keys and values.
    """

    def test_request(self) -> None:
        """
        L{call_listener} writes a L{CallListener} question: C{_command},
        C{_ask} and the declared arguments, C{message} chunked as L{Typed}.
        """
        for message in (dumps({"mac": "aa"}), dumps({"blob": BIG})):
            connection = Recording()
            call_listener(connection.dispatcher, "l\u00e9".encode(), LEASE.encode(), message)
            [box] = connection.written()
            self.assertEqual(box[amp.COMMAND], CallListener.commandName)
            self.assertIn(amp.ASK, box)
            arguments = {"listener": "l\u00e9", "mailbox": LEASE, "message": message}
            wire = without(box, amp.COMMAND, amp.ASK)
            self.assertEqual(CallListener.parseArguments(wire, None), arguments)
            self.assertEqual(dict(CallListener.makeArguments(arguments, None)), wire)
        self.assertIn(b"message.4", wire)

    def test_answers(self) -> None:
        """
        L{answer_box} writes the declared response of each verdict, and
        L{verdict_from_box} reads it back as that verdict.
        """
        def response(verdict: str, result: Any = None, reason: Any = None,
                     remember: Any = None) -> Dict[str, Any]:
            return {"verdict": verdict, "result": result, "reason": reason,
                    "remember": remember}
        cases = [
            (Stop("x"), response("stop", dumps("x"))),
            (Stop(BIG), response("stop", dumps(BIG))),
            (CONTINUE, response("continue")),
            (Remember(Stop(1), 30.5), response("stop", dumps(1), remember=30.5)),
            (Remember(CONTINUE, 2), response("continue", remember=2.0)),
            (Continue("miss"), response("continue", reason="miss")),
            (Stop(1, reason="hit"), response("stop", dumps(1), reason="hit")),
            (Remember(Continue("miss"), 9), response("continue", reason="miss", remember=9.0)),
        ]
        for verdict, response in cases:
            [box] = amp.parseString(answer_box(verdict, b"7").serialize())
            self.assertEqual(box[amp.ANSWER], b"7")
            wire = without(box, amp.ANSWER)
            self.assertEqual(CallListener.parseResponse(wire, None), response)
            declared = {name: value for name, value in response.items() if value is not None}
            self.assertEqual(dict(CallListener.makeResponse(declared, None)), wire)
            expected = verdict
            if type(verdict) is Remember:
                expected = Remember(verdict.verdict, float(verdict.seconds))
            self.assertEqual(verdict_from_box(amp.AmpBox(wire)), expected)

    def test_refusals(self) -> None:
        """
        L{refusal_box} and an L{answer_box} of no verdict are non-fatal
        error boxes whose code is one L{CallListener} declares, mapped back
        to the error's type; an error without a code of its own is a
        C{LISTENER_ERROR}.
        """
        cases = [(refusal_box(b"7", UnknownMailbox("/x")), UnknownMailbox),
                 (refusal_box(b"7", InvalidValue("bad")), InvalidValue),
                 (refusal_box(b"7", ZeroDivisionError("\u00e9")), ListenerError),
                 (answer_box(None, b"7"), ListenerError),
                 (answer_box(Stop({1}), b"7"), InvalidValue)]
        for made, kind in cases:
            [box] = amp.parseString(made.serialize())
            self.assertEqual(sorted(box), [amp.ERROR, amp.ERROR_CODE, amp.ERROR_DESCRIPTION])
            self.assertEqual(box[amp.ERROR], b"7")
            self.assertIs(CallListener.reverseErrors[box[amp.ERROR_CODE]], kind)
            box[amp.ERROR_DESCRIPTION].decode("utf-8")
        self.assertEqual(CallListener.errors, ERRORS)

    def test_errorMappedBack(self) -> None:
        """
        An error answer to L{call_listener} fails with the exception type of
        its code, as a declared command's error would; an unknown code stays
        an L{amp.RemoteAmpError}.
        """
        for code, kind in ((ERRORS[DuplicateId], DuplicateId), (b"ELSE", amp.RemoteAmpError)):
            connection = Recording()
            d = call_listener(connection.dispatcher, b"l1", LEASE.encode(), dumps({}))
            [question] = connection.written()
            # Handled before the answer comes, as the registry does: AMP
            # closes the connection over an error that nothing handled.
            outcome: List[Failure] = []
            d.addErrback(outcome.append)
            connection.dispatcher.ampBoxReceived(amp.AmpBox({
                amp.ERROR: question[amp.ASK], amp.ERROR_CODE: code,
                amp.ERROR_DESCRIPTION: b"why"}))
            [failure] = outcome
            failure.trap(kind)
            self.assertIn("why", str(failure.value))

    def test_notifyHasNoAnswer(self) -> None:
        """
        L{Notify} goes out without C{_ask}: nobody waits for an answer.
        """
        connection = Recording()
        self.assertIsNone(connection.callRemote(Notify, watch="w1", mailbox=LEASE,
                                                message=dumps({})))
        [box] = connection.written()
        self.assertNotIn(amp.ASK, box)
        self.assertEqual(Notify.parseArguments(without(box, amp.COMMAND), None),
                         {"watch": "w1", "mailbox": LEASE, "message": dumps({})})

    def test_optionalRememberBy(self) -> None:
        """
        L{AddListener} without C{remember_by} sends no such key, as
        C{BusClient} calls it; with one, it is a L{Typed} value.
        """
        arguments = {"mailbox": LEASE, "listener": "l1", "first": True, "deadline": 1.0,
                     "tags": dumps({})}
        box = AddListener.makeArguments(dict(arguments, remember_by=None), None)
        self.assertNotIn(b"remember_by", box)
        self.assertIsNone(AddListener.parseArguments(box, None)["remember_by"])
        box = AddListener.makeArguments(dict(arguments, remember_by=dumps(["mac"])), None)
        self.assertEqual(box[b"remember_by"], dumps(["mac"]))


class BusProtocolTests(SynchronousTestCase):
    """
    L{BusProtocol} reads boxes however the bytes are cut, and refuses a key
    longer than 255 bytes.
    """

    BOXES = [amp.AmpBox({b"_ask": b"1", b"_command": b"Send", b"message": b"x" * CHUNK}),
             amp.AmpBox({b"_answer": b"1", b"empty": b""}),
             amp.AmpBox({b"k" * 255: b"v"})]

    def test_split(self) -> None:
        """
        Boxes arrive whole and in order, whether the stream comes at once,
        a byte at a time or in odd pieces.
        """
        data = b"".join(box.serialize() for box in self.BOXES)
        for size in (len(data), 1, 7, 65536):
            connection = Recording()
            for start in range(0, len(data), size):
                connection.dataReceived(data[start:start + size])
            self.assertEqual(connection.boxes, self.BOXES, size)

    def test_longKey(self) -> None:
        """
        A key length over 255 closes the connection as soon as its two
        length bytes are here; nothing after it is read, and questions still
        outstanding fail with L{amp.TooLong}.
        """
        for data in (b"\x01\x00", b"\x01\x00" + b"k" * 256 + b"\x00\x01v\x00\x00"):
            connection = Recording()
            d = connection.callRemoteString(b"Send")
            connection.dataReceived(b"\x00\x01k\x00\x01v")  # a box under way
            connection.dataReceived(data)
            self.assertTrue(connection.transport.disconnecting)
            self.assertTrue(connection.malformed)
            connection.dataReceived(self.BOXES[1].serialize())
            self.assertEqual(connection.boxes, [])
            connection.connectionLost(Failure(ConnectionDone()))
            self.failureResultOf(d, amp.TooLong)

    def feed_until_dropped(self, frames: Any) -> int:
        """
        Feed C{frames} (an endless iterator of bytes) to a L{Recording} until
        it closes the connection; the bytes fed.
        """
        connection = Recording()
        fed = 0
        while not connection.transport.disconnecting:
            data = next(frames)
            connection.dataReceived(data)
            fed += len(data)
            self.assertLess(fed, 4 * MAX_BOX, "never dropped")
        self.assertEqual(connection.boxes, [])
        # Nothing of the box is kept, and nothing more is read.
        self.assertEqual((connection._box, connection._pending), (None, b""))
        connection.dataReceived(self.BOXES[1].serialize())
        self.assertEqual(connection.boxes, [])
        self.connection = connection
        return fed

    def test_endlessBox(self) -> None:
        """
        A box that never ends (distinct keys with 65,535-byte values) is
        dropped once it passes L{MAX_BOX} bytes, so one box never holds much
        more than that.
        """
        def frames() -> Any:
            index = 0
            while True:
                key = b"k%d" % index
                index += 1
                yield len(key).to_bytes(2, "big") + key + b"\xff\xff" + b"v" * CHUNK
        fed = self.feed_until_dropped(frames())
        self.assertGreater(fed, MAX_BOX)
        self.assertLessEqual(fed, MAX_BOX + CHUNK + 300)
        self.assertEqual(self.connection.malformed, f"box over {MAX_BOX} bytes")

    def test_endlessBoxInPieces(self) -> None:
        """
        The bytes of an unfinished frame count too: the same endless box cut
        into 1,000-byte reads is dropped within a read of L{MAX_BOX}.
        """
        def pieces() -> Any:
            index, data = 0, b""
            while True:
                while len(data) < 1000:
                    key = b"k%d" % index
                    index += 1
                    data += len(key).to_bytes(2, "big") + key + b"\xff\xff" + b"v" * CHUNK
                yield data[:1000]
                data = data[1000:]
        fed = self.feed_until_dropped(pieces())
        self.assertGreater(fed, MAX_BOX)
        self.assertLessEqual(fed, MAX_BOX + 1000)

    def test_manyKeys(self) -> None:
        """
        A box of L{MAX_KEYS} keys is read; a box with more is dropped when
        the key past the limit arrives, long before its bytes add up.
        """
        box = amp.AmpBox({b"%d" % i: b"" for i in range(MAX_KEYS)})
        connection = Recording()
        connection.dataReceived(box.serialize())
        self.assertEqual(connection.boxes, [box])

        def frames() -> Any:
            index = 0
            while True:
                yield b"".join(b"\x00\x04" + i.to_bytes(4, "big") + b"\x00\x00"
                               for i in range(index, index + 100))
                index += 100
        fed = self.feed_until_dropped(frames())
        self.assertLessEqual(fed, 8 * (MAX_KEYS + 100))
        self.assertEqual(self.connection.malformed, f"box with more than {MAX_KEYS} keys")

    def test_largestBoxes(self) -> None:
        """
        A box with two typed values of L{MAX_MESSAGE} bytes (as an
        L{AddListener} with the largest tags and C{remember_by}) is read.
        """
        box = amp.AmpBox({b"_ask": b"1", b"_command": b"AddListener"})
        put_chunks(box, b"tags", b"t" * MAX_MESSAGE)
        put_chunks(box, b"remember_by", b"r" * MAX_MESSAGE)
        data = box.serialize()
        self.assertLess(len(data), MAX_BOX)
        for size in (len(data), 65536):
            connection = Recording()
            for start in range(0, len(data), size):
                connection.dataReceived(data[start:start + size])
            self.assertEqual(connection.boxes, [box])

    def test_replyAfterLoss(self) -> None:
        """
        An answer ready after the connection has gone is dropped; a command
        fails with the reason the connection went.
        """
        connection = Recording()
        connection.connectionLost(Failure(ConnectionDone()))
        connection.send_reply(answer_box(CONTINUE, b"1"))
        self.failureResultOf(connection.callRemoteString(b"Send"), ConnectionDone)


class MalformedBoxTests(SynchronousTestCase):
    """
    Whole boxes the dispatcher cannot take (found by tests.fuzz.bus_box):
    each closes the connection, or is answered BAD_REQUEST, with no
    exception out of C{dataReceived} and no traceback in the log.
    """

    def owner_connection(self) -> Any:
        from .helpers import Owner
        protocol = Owner().factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        return protocol

    def test_closed(self) -> None:
        """
        A box with no command, answer or error, an answer or an error to
        no question asked, and an error box without its code close the
        connection and say why in L{BusProtocol.malformed}.
        """
        for box, why in [({b"c_ommand": b"AddListener", b"_as\x00": b"3"}, "no command"),
                         ({b"_answer": b"9"}, "no question"),
                         ({b"_error": b"9", b"_error_code": b"X",
                           b"_error_description": b"d"}, "no question"),
                         ({b"_error": b"9"}, "without its code")]:
            protocol = self.owner_connection()
            protocol.dataReceived(amp.AmpBox(box).serialize())
            self.assertTrue(protocol.transport.disconnecting, box)
            self.assertIn(why, protocol.malformed)
            protocol.connectionLost(Failure(ConnectionDone()))

    def test_bad_arguments(self) -> None:
        """
        A command whose arguments are missing or not of their type gets a
        non-fatal BAD_REQUEST naming them; the connection stays, and the
        log holds a warning, not a failure.
        """
        for box in [{b"_ask": b"1", b"_command": b"Send", b"mailbox": b"/x"},
                    {b"_ask": b"1", b"_command": b"AddListener", b"mailbox": LEASE.encode(),
                     b"listener": b"l", b"first": b"maybe", b"deadline": b"1",
                     b"tags": dumps({})}]:
            protocol = self.owner_connection()
            protocol.dataReceived(amp.AmpBox(box).serialize())
            self.assertFalse(protocol.transport.disconnecting)
            [answer] = amp.parseString(protocol.transport.value())
            self.assertEqual(answer[b"_error_code"], b"BAD_REQUEST")
            self.assertIn(b"bad arguments", answer[b"_error_description"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_unanswered(self) -> None:
        """
        A command without C{_ask} that fails (unknown, bad arguments) gets
        no answer and keeps the connection, where AMP logs it as an
        unhandled error and closes.
        """
        for box in [{b"_command": b"NoSuchCommand"},
                    {b"_command": b"Watch", b"watch": b"w"}]:
            protocol = self.owner_connection()
            protocol.dataReceived(amp.AmpBox(box).serialize())
            self.assertFalse(protocol.transport.disconnecting, box)
            self.assertEqual(protocol.transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])
