"""
L{netsuite.proxy.filters.Chain}: the ordered filters of one direction.
"""

from typing import List

from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.filters import Chain, Event, Step


class LineHolder:
    """Passes on whole lines only, upper-cased; done after C{lines} lines."""

    def __init__(self, lines: int = 100) -> None:
        self.done = False
        self.held = b""
        self.left = lines
        self.ended = 0

    def feed(self, data: bytes) -> Step:
        self.held += data
        out, events = b"", []
        while b"\n" in self.held and not self.done:
            line, self.held = self.held.split(b"\n", 1)
            out += line.upper() + b"\n"
            events.append(Event("line", {"text": line.decode()}))
            self.left -= 1
            self.done = self.left == 0
        if self.done:
            out, self.held = out + self.held, b""
        return Step(out, events)

    def end(self) -> Step:
        self.ended += 1
        held, self.held = self.held, b""
        return Step(held, [Event("end")])


class Cutter:
    done = False

    def feed(self, data: bytes) -> Step:
        return Step(data.replace(b"bad", b""), [Event("cut")], cut=b"bad" in data)

    def end(self) -> Step:
        return Step()


class ChainTests(SynchronousTestCase):
    def test_bytes_pass_through_the_filters_in_order(self) -> None:
        seen: List[bytes] = []

        class Recorder:
            done = False

            def feed(self, data: bytes) -> Step:
                seen.append(data)
                return Step(data)

            def end(self) -> Step:
                return Step()

        chain = Chain([LineHolder(), Recorder()])
        self.assertEqual(chain.feed(b"ab").data, b"")
        self.assertEqual(seen, [])  # nothing passed on: the next filter is not fed
        step = chain.feed(b"c\nde")
        self.assertEqual((step.data, [e.values for e in step.events]),
                         (b"ABC\n", [{"text": "abc"}]))
        self.assertEqual(seen, [b"ABC\n"])

    def test_end_flushes_what_is_held(self) -> None:
        holder = LineHolder()
        chain = Chain([holder])
        chain.feed(b"x\ny")
        step = chain.end()
        self.assertEqual((step.data, [e.name for e in step.events]), (b"y", ["end"]))
        self.assertEqual(holder.ended, 1)

    def test_a_done_filter_is_passed_over(self) -> None:
        holder = LineHolder(lines=1)
        chain = Chain([holder])
        self.assertEqual(chain.feed(b"a\nrest").data, b"A\nrest")
        self.assertTrue(chain.done)
        self.assertEqual(chain.feed(b"more\n").data, b"more\n")
        self.assertEqual(chain.end().data, b"")
        self.assertEqual(holder.ended, 0)

    def test_cut_stops_the_chain(self) -> None:
        after = LineHolder()
        step = Chain([Cutter(), after]).feed(b"a bad line\n")
        self.assertTrue(step.cut)
        self.assertEqual(step.data, b"a  line\n")
        self.assertEqual(after.held, b"")  # the filter after the cut was not fed
