# -*- test-case-name: tests.bus.test_framing -*-
"""
L{Typed}, the argument type of netsuite's own, and its chunking.

A Typed value is the typed-value JSON of L{netsuite.registry.values}, as
bytes of any length: AMP holds at most 65,535 bytes in one value
(C{amp.MAX_VALUE_LENGTH}), so a longer one is split over the keys C{name},
C{name.2}, C{name.3}, ... as C{trial/_dist/stream.py} splits its data.
L{put_chunks} and L{take_chunks} are that split; the boxes that
L{netsuite.bus.framing} builds by hand use them too, so there is one
definition of it. Values are decoded by the responders, not by AMP, so that
a malformed one is answered with C{INVALID_VALUE} and a clear description.

No Typed value is longer than L{MAX_MESSAGE}: L{put_chunks} refuses to
send one, L{take_chunks} to read one (both with C{InvalidValue}), and
L{netsuite.bus.framing} drops a connection whose box could hold more.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.protocols import amp

from ..registry.values import InvalidValue

__all__ = ["CHUNK", "MAX_MESSAGE", "Typed", "bounded", "put_chunks", "take_chunks"]

CHUNK = amp.MAX_VALUE_LENGTH

MAX_MESSAGE = 1 << 20
"""The most bytes of typed-value JSON in one Typed value (a message, a
result, tags): 1 MiB."""


def _too_long(name: bytes, size: int) -> InvalidValue:
    return InvalidValue(f"{name.decode('ascii', 'replace')} is {size} bytes of typed-value "
                        f"JSON; the bus carries at most {MAX_MESSAGE}")


def bounded(name: bytes, data: bytes) -> bytes:
    """
    C{data}, for a responder to answer with: L{InvalidValue} (a declared
    error) if it is longer than L{MAX_MESSAGE}, where AMP would fail the
    answer with an undeclared one.
    """
    if len(data) > MAX_MESSAGE:
        raise _too_long(name, len(data))
    return data


def put_chunks(box: Dict[bytes, bytes], name: bytes, data: bytes) -> None:
    """
    Put C{data} in C{box} under C{name}, C{name.2}, ... (65,535 bytes each).

    @raise InvalidValue: C{data} is longer than L{MAX_MESSAGE}.
    """
    box[name] = bounded(name, data)[:CHUNK]
    for index, start in enumerate(range(CHUNK, len(data), CHUNK), start=2):
        box[b"%s.%d" % (name, index)] = data[start:start + CHUNK]


def take_chunks(box: Dict[bytes, bytes], name: bytes) -> bytes:
    """
    Take the value that L{put_chunks} spread over C{box} (KeyError if absent).

    @raise InvalidValue: it is longer than L{MAX_MESSAGE}.
    """
    parts = [box.pop(name)]
    size = len(parts[0])
    index = 2
    while b"%s.%d" % (name, index) in box:
        parts.append(box.pop(b"%s.%d" % (name, index)))
        size += len(parts[-1])
        index += 1
    if size > MAX_MESSAGE:
        raise _too_long(name, size)
    return b"".join(parts)


class Typed(amp.Argument):
    """
    Bytes of any length (typed-value JSON), split into keys C{name},
    C{name.2}, C{name.3}, ... of at most 65,535 bytes each.
    """

    def toBox(self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any],
              proto: Any) -> None:
        key = _python_name(name)
        data = objects.pop(key, None) if self.optional else objects.pop(key)
        if self.optional and data is None:
            return
        put_chunks(strings, name, data)

    def fromBox(self, name: bytes, strings: Dict[bytes, bytes], objects: Dict[str, Any],
                proto: Any) -> None:
        key = _python_name(name)
        if name not in strings and self.optional:
            objects[key] = None
            return
        objects[key] = take_chunks(strings, name)


_python_names: Dict[bytes, str] = {}


def _python_name(name: bytes) -> str:
    """
    The Python name of the argument C{name}, by AMP's own rule (its
    normaliser is private): learnt once per name from a public
    C{amp.String}, since going through one for every value made each
    L{netsuite.bus.ownercommands.Send} measurably slower.
    """
    try:
        return _python_names[name]
    except KeyError:
        found: Dict[str, Any] = {}
        amp.String().fromBox(name, {name: b""}, found, None)
        [key] = found
        _python_names[name] = key
        return key
