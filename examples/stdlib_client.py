"""
A netsuite bus client written with nothing but the Python standard library.

It speaks the wire protocol described in docs/bus-protocol.md directly on a
socket -- no Twisted, no netsuite imports -- to show (and to test) that the
protocol is complete enough to implement in any language. It is blocking and
single-threaded: one L{BusConnection} per thread.

    from stdlib_client import BusConnection, Stop, CONTINUE, Continue

    bus = BusConnection.unix("/run/netsuite/netsuite.sock")
    answered, result = bus.send("/system/ping")
    print(result["process"], result["pid"])

    def hook(message):
        return Stop({"seen": message})          # or CONTINUE, or Continue("why")
    bus.add_listener("/system/ping", hook, first=True, deadline=2.0)
    bus.serve()                                 # answer CallListener boxes

A verdict may say why, as a short identifier: C{Continue("miss")},
C{Stop(value, reason="hit")}; the owner counts the listener's verdicts by
reason (the C{reasons} counter that C{describe} shows).

A listener added with C{remember_by=["mac"]} may return
C{Remember(verdict, seconds)}: the owner then answers messages with the
same C{mac} with that verdict itself, without asking, until it expires.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import math
import re
import socket
import struct
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = [
    "BusConnection", "BusError", "NotPermitted", "ConnectionClosed", "ProtocolError",
    "Stop", "CONTINUE", "Continue", "Remember", "MAC", "InvalidValue",
    "encode_value", "decode_value", "dumps", "loads",
    "encode_box", "typed_keys", "join_typed",
]

MAX_KEY_LENGTH = 255
MAX_VALUE_LENGTH = 65535

Box = Dict[bytes, bytes]


# ---------------------------------------------------------------- errors

class BusError(Exception):
    """
    The other side answered a command with an C{_error} box.
    """

    def __init__(self, code: str, description: str) -> None:
        Exception.__init__(self, f"{code}: {description}")
        self.code = code
        self.description = description


class NotPermitted(BusError):
    """
    The owner answered C{NOT_PERMITTED}: this peer may not send to, hook or
    watch that mailbox (no C{bus.grant} gives it). The connection stays.
    """


ERROR_TYPES = {"NOT_PERMITTED": NotPermitted}
"""The error codes with a class of their own (the others: L{BusError})."""


def bus_error(code: str, description: str) -> BusError:
    """
    The exception for an C{_error} box with this code.
    """
    return ERROR_TYPES.get(code, BusError)(code, description)


class ConnectionClosed(ConnectionError):
    """
    The other side closed the connection.
    """


class ProtocolError(Exception):
    """
    The bytes received do not follow the wire protocol.
    """


class InvalidValue(ValueError):
    """
    A value netsuite cannot carry, or a malformed typed encoding.
    """


# ---------------------------------------------------------------- values

class MAC:
    """
    An Ethernet address (6 bytes), printed as lower-case aa:bb:cc:dd:ee:ff.
    """

    _RE = re.compile(r"^[0-9a-fA-F]{2}([:-]?)(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not self._RE.match(text):
            raise InvalidValue(f"not a MAC address: {text!r}")
        self.packed = bytes.fromhex(text.replace(":", "").replace("-", ""))

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.packed)

    def __repr__(self) -> str:
        return f"MAC('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MAC) and other.packed == self.packed

    def __hash__(self) -> int:
        return hash(self.packed)


_REASON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")


def _reason(reason: Optional[str]) -> Optional[str]:
    if reason is not None and not (isinstance(reason, str) and _REASON.match(reason)):
        raise ValueError(f"reason must be 1-32 letters, digits, '_', '.', '-', not {reason!r}")
    return reason


class Stop:
    """
    The verdict that ends the chain; C{value} becomes the result of the send;
    C{reason}, a short identifier, says why (the C{reason} answer field).
    """

    def __init__(self, value: Any, reason: Optional[str] = None) -> None:
        self.value = value
        self.reason = _reason(reason)

    def __repr__(self) -> str:
        return f"Stop({self.value!r})"


class _Continue:
    def __repr__(self) -> str:
        return "CONTINUE"


CONTINUE = _Continue()
"""The verdict that lets the chain go on to the next listener."""


class Continue:
    """
    L{CONTINUE} saying why, as a short identifier (C{Continue("miss")}).
    """

    def __init__(self, reason: str) -> None:
        if reason is None:
            raise ValueError("Continue needs a reason; without one, answer CONTINUE")
        self.reason = _reason(reason)

    def __repr__(self) -> str:
        return f"Continue({self.reason!r})"


class Remember:
    """
    A verdict (L{Stop}, L{CONTINUE} or L{Continue}) that the owner may give again, for
    C{seconds}, to messages with the same values in the listener's
    C{remember_by} fields (the C{remember} answer field).
    """

    def __init__(self, verdict: Any, seconds: float) -> None:
        self.verdict = verdict
        self.seconds = seconds


def encode_value(value: Any) -> List[Any]:
    """
    The typed encoding of a value: a JSON-ready C{[tag, payload]} pair.
    """
    kind = type(value)
    if kind is str:
        return ["str", value]
    if kind is bool:
        return ["bool", value]
    if kind is int:
        return ["int", str(value)]
    if kind is float:
        if math.isnan(value):
            return ["float", "nan"]
        if math.isinf(value):
            return ["float", "inf" if value > 0 else "-inf"]
        return ["float", value]
    if value is None:
        return ["none", None]
    if kind is bytes:
        return ["bytes", base64.b64encode(value).decode("ascii")]
    if kind is ipaddress.IPv4Address:
        return ["ipv4", str(value)]
    if kind is ipaddress.IPv6Address:
        return ["ipv6", str(value)]
    if kind is MAC:
        return ["mac", str(value)]
    if kind is list or kind is tuple:
        return ["list", [encode_value(item) for item in value]]
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidValue(f"map keys must be str, got {key!r}")
            out[key] = encode_value(item)
        return ["map", out]
    raise InvalidValue(f"{kind.__name__} is not a netsuite value ({value!r})")


def _payload(payload: Any, kind: type, tag: str) -> Any:
    if type(payload) is not kind:
        raise InvalidValue(f"{tag} payload must be a JSON {kind.__name__}, got {payload!r}")
    return payload


def decode_value(encoded: Any) -> Any:
    """
    The value a typed encoding (already parsed from JSON) stands for.
    """
    if type(encoded) is not list or len(encoded) != 2 or type(encoded[0]) is not str:
        raise InvalidValue(f"a typed value is a [tag, payload] pair, got {encoded!r}")
    tag, payload = encoded
    if tag == "str":
        return _payload(payload, str, tag)
    if tag == "bool":
        return _payload(payload, bool, tag)
    if tag == "int":
        if type(payload) is not str or not re.fullmatch(r"-?[0-9]+", payload):
            raise InvalidValue(f"int payload must be a string of decimal digits, got {payload!r}")
        return int(payload)
    if tag == "float":
        if payload in ("nan", "inf", "-inf"):
            return float(payload)
        if type(payload) in (int, float):
            return float(payload)
        raise InvalidValue(f"float payload must be a JSON number or nan/inf/-inf, got {payload!r}")
    if tag == "none":
        if payload is not None:
            raise InvalidValue(f"none payload must be null, got {payload!r}")
        return None
    if tag == "bytes":
        try:
            return base64.b64decode(_payload(payload, str, tag), validate=True)
        except binascii.Error as e:
            raise InvalidValue(f"bad bytes payload {payload!r}: {e}") from None
    if tag in ("ipv4", "ipv6"):
        cls = ipaddress.IPv4Address if tag == "ipv4" else ipaddress.IPv6Address
        try:
            return cls(_payload(payload, str, tag))
        except ValueError as e:
            raise InvalidValue(f"bad {tag} payload {payload!r}: {e}") from None
    if tag == "mac":
        return MAC(_payload(payload, str, tag))
    if tag == "list":
        return [decode_value(item) for item in _payload(payload, list, tag)]
    if tag == "map":
        return {key: decode_value(item) for key, item in _payload(payload, dict, tag).items()}
    raise InvalidValue(f"unknown value type {tag!r}")


def dumps(value: Any) -> bytes:
    """
    Typed-value JSON: compact UTF-8, as netsuite writes it.
    """
    return json.dumps(encode_value(value), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """
    Parse typed-value JSON (UTF-8).
    """
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidValue(f"not UTF-8 JSON: {e}") from None
    return decode_value(parsed)


# ---------------------------------------------------------------- framing

def encode_box(box: Box) -> bytes:
    """
    One AMP box: (16-bit key length, key, 16-bit value length, value) for
    every pair, then two zero bytes.
    """
    out = []
    for key, value in box.items():
        if not 0 < len(key) <= MAX_KEY_LENGTH:
            raise ValueError(f"key {key!r}: keys are 1 to {MAX_KEY_LENGTH} bytes")
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(f"value of {key!r} is {len(value)} bytes; at most "
                             f"{MAX_VALUE_LENGTH} (split Typed arguments with typed_keys)")
        out.append(struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value)
    out.append(b"\x00\x00")
    return b"".join(out)


def parse_box(buffer: bytes) -> Tuple[Optional[Box], int]:
    """
    Parse one box from the start of C{buffer}: (box, bytes used), or
    (None, 0) when the box is not complete yet.
    """
    box: Box = {}
    pos = 0
    while True:
        if len(buffer) < pos + 2:
            return None, 0
        (key_length,) = struct.unpack_from("!H", buffer, pos)
        pos += 2
        if key_length == 0:
            return box, pos
        if key_length > MAX_KEY_LENGTH:
            raise ProtocolError(f"key length {key_length} > {MAX_KEY_LENGTH}")
        if len(buffer) < pos + key_length + 2:
            return None, 0
        key = buffer[pos:pos + key_length]
        pos += key_length
        (value_length,) = struct.unpack_from("!H", buffer, pos)
        pos += 2
        if len(buffer) < pos + value_length:
            return None, 0
        box[key] = buffer[pos:pos + value_length]
        pos += value_length


def typed_keys(name: bytes, data: bytes) -> Box:
    """
    A Typed argument: C{name} holds the first 65,535 bytes, C{name.2},
    C{name.3}, ... the following ones.
    """
    box = {name: data[:MAX_VALUE_LENGTH]}
    for index, start in enumerate(range(MAX_VALUE_LENGTH, len(data), MAX_VALUE_LENGTH), 2):
        box[b"%s.%d" % (name, index)] = data[start:start + MAX_VALUE_LENGTH]
    return box


def join_typed(box: Box, name: bytes) -> Optional[bytes]:
    """
    Reassemble a Typed argument from its keys; None when C{name} is absent.
    """
    if name not in box:
        return None
    parts = [box[name]]
    index = 2
    while b"%s.%d" % (name, index) in box:
        parts.append(box[b"%s.%d" % (name, index)])
        index += 1
    return b"".join(parts)


def _unicode(text: str) -> bytes:
    return text.encode("utf-8")


def _boolean(flag: bool) -> bytes:
    return b"True" if flag else b"False"


def _float(number: float) -> bytes:
    return repr(float(number)).encode("ascii")


# ---------------------------------------------------------------- connection

Listener = Callable[[Any], Any]


class BusConnection:
    """
    One blocking connection to a netsuite process's bus.

    @param sock: a connected stream socket.
    @param timeout: seconds any single wait for the other side may take
        before C{TimeoutError}.
    """

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self._buffer = b""
        self._asks = itertools.count(1)
        self._ids = itertools.count(1)
        self.listeners: Dict[str, Listener] = {}
        self.watches: Dict[str, Listener] = {}
        self.closed = False

    @classmethod
    def unix(cls, path: str, timeout: float = 10.0) -> "BusConnection":
        """
        Connect to the socket of a process: C{<socket_dir>/<name>.sock}.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls(sock, timeout)

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 10.0) -> "BusConnection":
        """
        Connect to an extra endpoint from C{bus.listen} (C{tcp:PORT...}).
        """
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    def close(self) -> None:
        """
        Close the socket: the owner drops this connection's listeners and watches.
        """
        if not self.closed:
            self.closed = True
            self.sock.close()

    def __enter__(self) -> "BusConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # boxes

    def write_box(self, box: Box) -> None:
        self.sock.sendall(encode_box(box))

    def write_raw(self, data: bytes) -> None:
        """
        Send bytes as they are (for testing how the owner treats bad frames).
        """
        self.sock.sendall(data)

    def read_box(self, timeout: Optional[float] = None) -> Box:
        """
        The next box from the other side; C{TimeoutError} after C{timeout}
        (default: this connection's) seconds, L{ConnectionClosed} on EOF.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            box, used = parse_box(self._buffer)
            if box is not None:
                self._buffer = self._buffer[used:]
                return box
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete box from the bus in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no complete box from the bus in time") from None
            if not data:
                raise ConnectionClosed("the bus closed the connection"
                                       + (" mid-box" if self._buffer else ""))
            self._buffer += data

    # commands, peer to owner

    def call(self, command: str, arguments: Box) -> Box:
        """
        Send a command box with a fresh C{_ask} and wait for its answer.

        Boxes that arrive meanwhile (CallListener, Notify) are served.
        @raise BusError: the answer was an C{_error} box.
        """
        ask = b"%x" % next(self._asks)
        box = dict(arguments)
        box[b"_command"] = command.encode("ascii")
        box[b"_ask"] = ask
        self.write_box(box)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self.read_box(max(0.0, deadline - time.monotonic()))
            if reply.get(b"_answer") == ask:
                return reply
            if reply.get(b"_error") == ask:
                raise bus_error(reply.get(b"_error_code", b"").decode("utf-8", "replace"),
                                reply.get(b"_error_description", b"").decode("utf-8", "replace"))
            self.handle_box(reply)

    def send(self, mailbox: str, message: Optional[Dict[str, Any]] = None) -> Tuple[bool, Any]:
        """
        Send C{message} (a dict) to C{mailbox}: (answered, result). When no
        listener stopped the chain, answered is False and result None.
        """
        reply = self.call("Send", {b"mailbox": _unicode(mailbox),
                                   **typed_keys(b"message", dumps({} if message is None
                                                                  else message))})
        answered = reply[b"answered"] == b"True"
        return answered, loads(join_typed(reply, b"result") or b"")

    def add_listener(self, mailbox: str, fn: Listener, *, first: bool = False,
                     deadline: float = 1.0, tags: Optional[Dict[str, Any]] = None,
                     listener_id: Optional[str] = None,
                     remember_by: Optional[List[str]] = None,
                     fail_closed: bool = False) -> str:
        """
        Put C{fn(message)} on the owner's chain; it must return L{Stop} or
        L{CONTINUE} (or L{Remember} of one, with C{remember_by}). With
        C{fail_closed}, its error or time-out makes the owner refuse the
        message. Returns the id the owner gave it (its id in Describe).
        """
        if not (math.isfinite(deadline) and deadline > 0):
            raise ValueError("deadline must be a finite number of seconds > 0")
        listener_id = listener_id or f"s{next(self._ids)}"
        arguments = {
            b"mailbox": _unicode(mailbox), b"listener": _unicode(listener_id),
            b"first": _boolean(first), b"deadline": _float(deadline),
            **typed_keys(b"tags", dumps(dict(tags or {})))}
        if remember_by is not None:
            arguments.update(typed_keys(b"remember_by", dumps(list(remember_by))))
        if fail_closed:
            arguments[b"fail_closed"] = _boolean(True)
        reply = self.call("AddListener", arguments)
        self.listeners[listener_id] = fn
        return reply[b"id"].decode("utf-8")

    def remove_listener(self, listener_id: str) -> None:
        self.call("RemoveListener", {b"listener": _unicode(listener_id)})
        self.listeners.pop(listener_id, None)

    def watch(self, mailbox: str, fn: Listener, watch_id: Optional[str] = None) -> str:
        """
        Have C{fn(message)} called (by L{serve}) for every message sent to C{mailbox}.
        """
        watch_id = watch_id or f"w{next(self._ids)}"
        self.call("Watch", {b"mailbox": _unicode(mailbox), b"watch": _unicode(watch_id)})
        self.watches[watch_id] = fn
        return watch_id

    def unwatch(self, watch_id: str) -> None:
        self.call("Unwatch", {b"watch": _unicode(watch_id)})
        self.watches.pop(watch_id, None)

    def describe(self, prefix: str = "/") -> Tuple[str, Any]:
        """
        (process name, list of mailbox descriptions under C{prefix}).
        """
        reply = self.call("Describe", {b"prefix": _unicode(prefix)})
        return reply[b"process"].decode("utf-8"), loads(join_typed(reply, b"mailboxes") or b"")

    # commands, owner to peer

    def handle_box(self, box: Box) -> Optional[str]:
        """
        Serve one box the owner sent; returns the command name, if any.
        """
        command = box.get(b"_command")
        ask = box.get(b"_ask")
        if command == b"CallListener":
            self._call_listener(box, ask)
        elif command == b"Notify":
            fn = self.watches.get(box[b"watch"].decode("utf-8"))
            if fn is not None:
                fn(loads(join_typed(box, b"message") or b""))
        elif command is not None:
            if ask is not None:
                self.write_box({b"_error": ask, b"_error_code": b"UNHANDLED",
                                b"_error_description": b"Unhandled Command: " + command})
        else:
            raise ProtocolError(f"unexpected box {box!r}")
        return command.decode("ascii", "replace") if command is not None else None

    def _call_listener(self, box: Box, ask: Optional[bytes]) -> None:
        listener_id = box[b"listener"].decode("utf-8")
        try:
            fn = self.listeners[listener_id]
            verdict = fn(loads(join_typed(box, b"message") or b""))
            remember = None
            if isinstance(verdict, Remember):
                verdict, remember = verdict.verdict, verdict.seconds
            if isinstance(verdict, Stop):
                answer = {b"verdict": b"stop", **typed_keys(b"result", dumps(verdict.value))}
            elif verdict is CONTINUE or isinstance(verdict, Continue):
                answer = {b"verdict": b"continue"}
            else:
                raise TypeError(f"listener returned {verdict!r}, not Stop(value), CONTINUE "
                                "or Continue(reason)")
            reason = getattr(verdict, "reason", None)
            if reason is not None:
                answer[b"reason"] = _unicode(reason)
            if remember is not None:
                answer[b"remember"] = _float(remember)
        except Exception as e:
            # An error answer: the owner skips this listener for this message.
            if ask is not None:
                self.write_box({b"_error": ask, b"_error_code": b"LISTENER_ERROR",
                                b"_error_description": repr(e).encode("utf-8", "replace")})
            return
        if ask is not None:
            answer[b"_answer"] = ask
            self.write_box(answer)

    def serve(self, count: Optional[int] = None,
              until: Optional[Callable[[], bool]] = None, poll: float = 0.2) -> int:
        """
        Serve CallListener and Notify boxes.

        Stops after C{count} of them, or when C{until()} is true (checked
        every C{poll} seconds), or when the owner closes the connection.
        Without C{count} and C{until}, waits at most this connection's
        timeout for each box. Returns how many were served.
        """
        served = 0
        while count is None or served < count:
            if until is not None and until():
                break
            try:
                box = self.read_box(poll if until is not None else None)
            except TimeoutError:
                if until is not None:
                    continue
                raise
            except ConnectionClosed:
                break
            if self.handle_box(box) in ("CallListener", "Notify"):
                served += 1
        return served


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description="Ping a netsuite process over its bus.")
    parser.add_argument("name", nargs="?", default="netsuite")
    parser.add_argument("--socket-dir", default="/run/netsuite")
    args = parser.parse_args()
    with BusConnection.unix(f"{args.socket_dir}/{args.name}.sock") as bus:
        answered, result = bus.send("/system/ping")  # every served peer may ping
        print(json.dumps({"answered": answered, "result": result}, default=str))


if __name__ == "__main__":
    main()
