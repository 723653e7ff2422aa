# -*- test-case-name: tests.bus.test_framing -*-
"""
Tests for L{netsuite.bus.arguments}, L{netsuite.bus.framing} and the
command declarations: the wire itself.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.arguments import CHUNK, Typed
from netsuite.bus.framing import verdict_from_box
from netsuite.registry import CONTINUE, ListenerError, Remember, Stop
from netsuite.registry.values import dumps

from .helpers import BIG


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
