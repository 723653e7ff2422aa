# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{bus-values}: any bytes as the typed-value JSON of a bus
message or answer (L{netsuite.registry.values.loads}).

Invariants: C{loads} raises nothing but L{InvalidValue} (deep nesting,
lone surrogates, bad payloads included); what it returns is a value
(C{check}), renders plainly (C{to_plain}) and round-trips: C{dumps} of it
loads back to a value with the same encoding.
"""

from __future__ import annotations

from netsuite.registry.values import InvalidValue, check as check_value, dumps, loads, to_plain

from .common import Crash, corpus_dir

NAME = "bus-values"
CORPUS = corpus_dir(NAME)


def check(data: bytes) -> None:
    try:
        value = loads(data)
    except InvalidValue:
        return
    check_value(value)
    to_plain(value)
    try:
        encoded = dumps(value)
    except Exception as e:
        raise Crash(f"{data!r:.200} loaded into a value dumps cannot encode: {e!r}") from e
    again = loads(encoded)
    if dumps(again) != encoded:
        raise Crash(f"{encoded!r:.200} did not round-trip")
