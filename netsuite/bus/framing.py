# -*- test-case-name: tests.bus.test_framing -*-
"""
The bus on the wire, for both sides: boxes in and out of a connection, and
the L{CallListener} boxes that are built and read by hand.

L{BusProtocol} splits the byte stream into boxes and hands each to a public
C{amp.BoxDispatcher}, which matches answers to questions and passes
commands to a C{CommandLocator}; the protocol sends boxes for it (it is
the dispatcher's C{amp.IBoxSender}). This is the division that
C{amp.AMP} itself makes (C{BinaryBoxProtocol}, C{BoxDispatcher},
C{CommandLocator}), minus what the bus never uses (protocol switching,
StartTLS inside AMP, file descriptor passing), and with a box splitter that
reads a whole buffer in one loop: Twisted's string-at-a-time state machine
was a fifth of a hook round trip.

L{call_listener}, L{verdict_from_box}, L{answer_box} and L{refusal_box}
write and read the boxes of L{CallListener} directly (AMP's generic
argument machinery was a third of a hook round trip). Their bytes are what
L{CallListener} declares; C{tests.bus.test_framing} proves it.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Optional

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from ..registry import values
from ..registry.interfaces import CONTINUE, Continue, ListenerError, Remember, Stop
from .arguments import CHUNK, MAX_MESSAGE, put_chunks, take_chunks
from .errors import BAD_REQUEST, ERRORS, error_code, known_error
from .peercommands import CallListener

__all__ = ["BadArguments", "BusDispatcher", "BusProtocol", "MalformedBox", "CALL_LISTENER", "MAX_BOX", "MAX_KEYS",
           "call_listener", "verdict_from_box", "answer_box", "refusal_box"]

_log = Logger()

_LENGTH = struct.Struct("!H")

CALL_LISTENER = CallListener.commandName

MAX_BOX = 2 * MAX_MESSAGE + CHUNK
"""The most bytes one box may take on the wire: room for two typed values
of L{MAX_MESSAGE} and the other keys. A peer that sends more in one box
loses its connection."""

MAX_KEYS = 256
"""The most keys one box may hold: a box of tiny keys costs Python far more
memory than its bytes (a 52 MB one took 677 MiB)."""


class MalformedBox(ValueError):
    """
    A whole box that is no command, answer or error the connection can
    take: the connection is closed (L{BusProtocol.malformed}).
    """


class BusDispatcher(amp.BoxDispatcher):
    """
    A box dispatcher that answers a command failing with an undeclared
    error with a non-fatal C{BAD_REQUEST} error, where AMP would close the
    connection (and so take off every listener the peer added); an argument
    too long to read (L{values.InvalidValue} from AMP's parsing, outside
    the command's declared errors) with C{INVALID_VALUE}.
    """

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        """
        Dispatch C{box}, or raise L{MalformedBox} for one AMP cannot take:
        no command, answer or error key (AMP raises C{NoEmptyBoxes}), an
        error without its code and description (AMP would take the
        question off and fail before answering it), an answer or error to
        no question asked (AMP raises C{KeyError}).
        """
        if amp.ANSWER not in box and amp.ERROR in box and (
                amp.ERROR_CODE not in box or amp.ERROR_DESCRIPTION not in box):
            raise MalformedBox("an error box without its code or description")
        try:
            amp.BoxDispatcher.ampBoxReceived(self, box)
        except amp.NoEmptyBoxes:
            raise MalformedBox("a box with no command, answer or error") from None
        except KeyError:  # the question's tag, popped before anything else
            raise MalformedBox("an answer or error to no question asked") from None

    def dispatchCommand(self, box: amp.AmpBox) -> "Deferred[Any]":
        """
        As AMP does, and with an error in the command's arguments (a missing
        or unreadable one, which AMP's responder raises while parsing,
        before it calls ours) failing as L{BadArguments}: the peer's
        mistake, answered without a traceback in our log.
        """
        d = self._dispatch(box)
        if amp.ASK not in box:  # AMP would log it as unhandled and close
            d.addErrback(_unanswered, box)
        return d

    def _dispatch(self, box: amp.AmpBox) -> "Deferred[Any]":
        name = box[amp.COMMAND]
        responder = self.locator.locateResponder(name)
        if responder is None:  # AMP's UNHANDLED answer
            return amp.BoxDispatcher.dispatchCommand(self, box).addErrback(_bad_request, box)

        def parsed_first() -> Any:
            try:
                return responder(box)  # AMP's: parses, then returns a Deferred
            except values.InvalidValue:
                raise
            except Exception as e:
                raise BadArguments(f"bad arguments to {name!r}: {type(e).__name__}: "
                                   f"{e}"[:400]) from None
        return maybeDeferred(parsed_first).addErrback(_bad_request, box)


class BadArguments(ValueError):
    """
    A command's arguments cannot be read (missing, or not of their type).
    """


def _unanswered(failure: Failure, box: amp.AmpBox) -> Optional[Failure]:
    """
    A command sent without C{_ask} failed, non-fatally: nobody waits for
    its error box; say so in a line, keep the connection.
    """
    error = failure.value
    if isinstance(error, amp.RemoteAmpError) and not error.fatal:
        _log.warn("bus command {command!r} (no answer asked) failed: {error}",
                  command=box.get(amp.COMMAND), error=str(error))
        return None
    return failure


def _bad_request(failure: Failure, box: amp.AmpBox) -> Failure:
    if failure.check(amp.RemoteAmpError):
        return failure
    if failure.check(BadArguments):  # logged without a traceback: a peer can repeat it
        _log.warn("bus command {command!r}: {error}", command=box.get(amp.COMMAND),
                  error=str(failure.value))
        return Failure(amp.RemoteAmpError(BAD_REQUEST, str(failure.value), fatal=False,
                                          local=failure))
    if failure.check(values.InvalidValue):  # an argument too long to take (take_chunks)
        return Failure(amp.RemoteAmpError(ERRORS[values.InvalidValue], str(failure.value),
                                          fatal=False, local=failure))
    _log.failure("bus command {command!r} failed", failure, command=box.get(amp.COMMAND))
    return Failure(amp.RemoteAmpError(
        BAD_REQUEST, f"{failure.type.__name__}: {failure.getErrorMessage()}",
        fatal=False, local=failure))


@implementer(amp.IBoxSender)
class BusProtocol(Protocol):
    """
    One bus connection: boxes from the byte stream to L{dispatcher}, and
    back.

    Boxes are read from L{connectionMade} on; a subclass that must check its
    peer first calls it only once the peer is accepted, so that a refused
    peer's bytes are never read as commands. A key longer than 255 bytes, a
    box of more than L{MAX_BOX} bytes or L{MAX_KEYS} keys, or a box that
    is no command, answer or error the dispatcher can take
    (L{MalformedBox}) closes the
    connection and sets L{malformed} (why); what follows is not read, so
    one box never holds more than about L{MAX_BOX} bytes of memory.

    @ivar dispatcher: the L{BusDispatcher} that answers C{locator}'s commands
        and sends ours (L{callRemote}, L{callRemoteString}).
    @ivar peer: who is at the other end, for the log.
    """

    malformed = ""
    peer = "bus peer"
    _receiving = False
    _pending = b""
    _size = 0  # bytes of the current box read so far
    _box: Optional[amp.AmpBox] = None
    _key: Optional[bytes] = None

    def __init__(self, locator: amp.IResponderLocator) -> None:
        self.dispatcher = BusDispatcher(locator)

    def callRemote(self, command: Any, **kw: Any) -> Any:
        return self.dispatcher.callRemote(command, **kw)

    def callRemoteString(self, command: bytes, requiresAnswer: bool = True, **kw: Any) -> Any:
        return self.dispatcher.callRemoteString(command, requiresAnswer, **kw)

    def makeConnection(self, transport: Any) -> None:
        # The log lines amp.AMP writes, kept for operators who grep for them.
        self._addresses = (transport.getHost(), transport.getPeer())
        _log.info("{cls} connection established (HOST:{host} PEER:{peer})",
                  cls=type(self).__name__, host=self._addresses[0], peer=self._addresses[1])
        Protocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        self.dispatcher.startReceivingBoxes(self)
        self._receiving = True

    def dataReceived(self, data: bytes) -> None:
        if not self._receiving:
            return
        buffer = self._pending + data if self._pending else data
        end = len(buffer)
        offset = 0
        box = self._box if self._box is not None else amp.AmpBox()
        key = self._key
        size = self._size
        unpack = _LENGTH.unpack_from
        received = self.box_received
        while end - offset >= 2:
            (length,) = unpack(buffer, offset)
            if end - offset - 2 < length:
                break
            start = offset + 2
            offset = start + length
            if key is not None:
                box[key] = buffer[start:offset]
                key = None
                size += length + 2
            elif length == 0:
                self._box = None
                try:
                    received(box)
                except MalformedBox as e:
                    self._refuse_frame(str(e))
                    return
                if self.transport is None or not self._receiving:
                    return
                box = amp.AmpBox()
                size = 0
            elif length > amp.MAX_KEY_LENGTH:
                self._refuse_frame(_LONG_KEY)
                return
            elif len(box) >= MAX_KEYS:
                self._refuse_frame(f"box with more than {MAX_KEYS} keys")
                return
            else:
                key = buffer[start:offset]
                size += length + 2
                if size > MAX_BOX:
                    self._refuse_frame(f"box over {MAX_BOX} bytes")
                    return
        # A key longer than 255 bytes is refused before it is all here.
        if key is None and end - offset >= 2 and unpack(buffer, offset)[0] > amp.MAX_KEY_LENGTH:
            self._refuse_frame(_LONG_KEY)
            return
        if size + end - offset > MAX_BOX:
            self._refuse_frame(f"box over {MAX_BOX} bytes")
            return
        self._pending = buffer[offset:]
        self._box = box
        self._key = key
        self._size = size

    def _refuse_frame(self, why: str) -> None:
        _log.warn("bus peer {peer} sent a malformed frame ({why}); connection closed",
                  peer=self.peer, why=why)
        self.malformed = why
        self._receiving = False
        self._pending = b""
        self._box = None
        self.transport.loseConnection()

    def box_received(self, box: amp.AmpBox) -> None:
        """
        A whole box arrived: the dispatcher's (a subclass may serve some
        boxes itself first).
        """
        self.dispatcher.ampBoxReceived(box)

    def sendBox(self, box: amp.AmpBox) -> None:
        """
        Write C{box} (L{amp.IBoxSender}).

        @raise ConnectionLost: the connection is gone.
        """
        if self.transport is None:
            raise ConnectionLost()
        self.transport.write(box.serialize())

    def send_reply(self, box: amp.AmpBox) -> None:
        """
        Write an answer or error box, unless the connection has gone
        meanwhile (nobody is left to read it).
        """
        if self.transport is not None:
            self.transport.write(box.serialize())

    def unhandledError(self, failure: Failure) -> None:
        """
        Nothing handled C{failure} (L{amp.IBoxSender}): log it and close the
        connection, as AMP does.
        """
        _log.failure("bus connection with {peer} failed; closing it", failure, peer=self.peer)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        host, peer = getattr(self, "_addresses", (None, None))
        _log.info("{cls} connection lost (HOST:{host} PEER:{peer})",
                  cls=type(self).__name__, host=host, peer=peer)
        if self.malformed:
            reason = Failure(amp.TooLong(True, False, None, None))
        self.dispatcher.stopReceivingBoxes(reason)
        self.transport = None


_LONG_KEY = "key longer than 255 bytes"


def call_listener(dispatcher: amp.BoxDispatcher, listener: bytes, mailbox: bytes,
                  message: bytes) -> "Deferred[Any]":
    """
    Ask a peer's listener for its verdict: a L{CallListener} box written
    by hand, its answer read by L{verdict_from_box}, its error code mapped
    back to its type.

    @param listener: the peer's listener id, as UTF-8.
    @param mailbox: the mailbox, as UTF-8.
    @param message: the typed-value JSON of the message.
    """
    if len(message) > CHUNK:  # message, message.2, ... as Typed has it
        chunks: Dict[bytes, bytes] = {}
        put_chunks(chunks, b"message", message)
        arguments = {key.decode(): value for key, value in chunks.items()}
    else:
        arguments = {"message": message}
    return dispatcher.callRemoteString(CALL_LISTENER, listener=listener, mailbox=mailbox,
                                       **arguments).addCallbacks(verdict_from_box, known_error)


def verdict_from_box(box: amp.AmpBox) -> Any:
    """
    The verdict in a L{CallListener} answer box.

    @raise ListenerError: the answer is not a verdict.
    """
    verdict = box.get(b"verdict")
    reason = box.get(b"reason")
    try:
        if reason is not None:
            reason = reason.decode("utf-8")
        if verdict == b"continue":
            answer: Any = CONTINUE if reason is None else Continue(reason)
        elif verdict == b"stop":
            if b"result" not in box:
                raise ListenerError("peer answered verdict 'stop' without a result")
            answer = Stop(values.loads(take_chunks(box, b"result")), reason)
        else:
            raise ListenerError(f"peer answered verdict {verdict!r}; expected 'stop' or "
                                "'continue'")
    except ValueError as e:  # a reason that is no identifier (or not UTF-8)
        raise ListenerError(f"peer answered reason {box.get(b'reason')!r}: {e}") from None
    remember = box.get(b"remember")
    if remember is not None:
        try:
            return Remember(answer, float(remember))
        except ValueError:
            raise ListenerError(f"peer answered remember={remember!r}; expected seconds "
                                "(a float)") from None
    return answer


def answer_box(verdict: Any, ask: bytes) -> amp.AmpBox:
    """
    The answer box to L{CallListener} question C{ask} for a listener's
    verdict; an error box (L{refusal_box}) if it is none.
    """
    remember = None
    if type(verdict) is Remember:
        verdict, remember = verdict.verdict, verdict.seconds
    try:
        kind = type(verdict)
        if kind is Stop:
            reply = amp.AmpBox(verdict=b"stop")
            put_chunks(reply, b"result", values.dumps(verdict.value))
            if verdict.reason is not None:
                reply[b"reason"] = verdict.reason.encode()
        elif verdict is CONTINUE:
            reply = amp.AmpBox(verdict=b"continue")
        elif kind is Continue:
            reply = amp.AmpBox(verdict=b"continue", reason=verdict.reason.encode())
        else:
            raise ListenerError(f"listener returned {verdict!r}; a listener returns "
                                "Stop(value), CONTINUE or Continue(reason) (or Remember "
                                "of one)")
        if remember is not None:
            reply[b"remember"] = repr(float(remember)).encode()
    except Exception as e:
        return refusal_box(ask, e)
    reply[amp.ANSWER] = ask
    return reply


def refusal_box(ask: bytes, error: BaseException) -> amp.AmpBox:
    """
    A non-fatal error box to question C{ask}: the code of C{error}'s type,
    else C{LISTENER_ERROR}.
    """
    return amp.AmpBox({amp.ERROR: ask, amp.ERROR_CODE: error_code(error),
                       amp.ERROR_DESCRIPTION: str(error).encode("utf-8", "replace")})
