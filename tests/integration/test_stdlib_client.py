"""
The bus protocol of docs/bus-protocol.md, spoken to a real daemon by a
client that uses only the Python standard library (examples/stdlib_client.py).

The stdlib client blocks, so every use of it runs in a thread
(deferToThread) with socket timeouts; the reactor stays free for the daemon
process and for the ordinary Twisted client the tests talk to as well.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.bus import MAC, connect

from .procs import ROOT, socket_dir, start_daemon


def _load_stdlib_client() -> Any:
    """
    Import examples/stdlib_client.py by path (examples/ is not a package).
    """
    path = os.path.join(ROOT, "examples", "stdlib_client.py")
    spec = importlib.util.spec_from_file_location("stdlib_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("stdlib_client", module)
    spec.loader.exec_module(module)
    return module


stdlib_client = _load_stdlib_client()
BusConnection = stdlib_client.BusConnection
BusError = stdlib_client.BusError
Stop = stdlib_client.Stop
CONTINUE = stdlib_client.CONTINUE
Continue = stdlib_client.Continue
Remember = stdlib_client.Remember

NAME = "stdlibd"
TIMEOUT = 5.0
"""Seconds any blocking socket operation of the stdlib client may take."""


class StdlibClientTests(TestCase):
    """
    A non-Twisted client against a real C{twistd -n netsuite} daemon.
    """

    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.sockets = socket_dir(self)
        self.daemon = yield start_daemon(self, NAME, self.sockets)
        self.path = os.path.join(self.sockets, f"{NAME}.sock")

    def open(self) -> "Deferred[Any]":
        """
        A stdlib connection (made in a thread), closed at clean-up.
        """
        def opened(bus: Any) -> Any:
            self.addCleanup(bus.close)
            return bus
        return deferToThread(BusConnection.unix, self.path, TIMEOUT).addCallback(opened)

    def twisted_client(self) -> Any:
        client = connect(NAME, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def test_ping(self) -> Any:
        """
        Send to /system/ping answers the daemon's process name, pid and uptime.
        """
        bus = yield self.open()
        answered, result = yield deferToThread(bus.send, "/system/ping", {})
        self.assertTrue(answered)
        self.assertEqual(result["process"], NAME)
        self.assertIsInstance(result["pid"], int)
        self.assertIsInstance(result["uptime"], float)
        process, mailboxes = yield deferToThread(bus.describe, "/system")
        self.assertEqual(process, NAME)
        paths = [m["path"] for m in mailboxes]
        self.assertEqual(paths, sorted(paths))
        for path in ["/system/log", "/system/mailboxes", "/system/ping"]:
            self.assertIn(path, paths)

    @inlineCallbacks
    def test_listener_served_then_dropped(self) -> Any:
        """
        While the stdlib client serves a first listener on /system/ping with
        a stop verdict, a Twisted client's send gets its result; after the
        stdlib client closes its socket the daemon drops the listener and
        the same send gets the stock answer again.
        """
        bus = yield self.open()
        seen: List[Dict[str, Any]] = []

        def hook(message: Dict[str, Any]) -> Any:
            seen.append(message)
            return Stop({"process": "stdlib-listener", "echo": message})

        listener_id = yield deferToThread(
            bus.add_listener, "/system/ping", hook, first=True, deadline=TIMEOUT,
            tags={"owner": "stdlib"})
        self.assertTrue(listener_id)

        twisted = self.twisted_client()
        message = {"n": 7, "big": 2 ** 70, "ratio": 0.25, "raw": b"\x00\xff",
                   "ip": ipaddress.IPv4Address("192.0.2.1"),
                   "ip6": ipaddress.IPv6Address("2001:db8::1"),
                   "mac": MAC("00:11:22:aa:bb:cc"), "flag": True, "nothing": None,
                   "list": [1, "two", [3.5]], "map": {"k": "v"}, "text": "h\u00e9"}
        served, result = yield gatherResults([
            deferToThread(bus.serve, count=1),
            twisted.send("/system/ping", message)])
        self.assertEqual(served, 1)
        self.assertEqual(result["process"], "stdlib-listener")
        self.assertEqual(result["echo"], message)
        self.assertEqual(len(seen), 1)
        self.assertEqual(str(seen[0]["mac"]), "00:11:22:aa:bb:cc")
        self.assertEqual(seen[0]["ip"], ipaddress.IPv4Address("192.0.2.1"))

        [ping] = yield twisted.describe("/system/ping")
        tags = [listener["tags"] for listener in ping["listeners"]]
        self.assertEqual(tags[0]["owner"], "stdlib")
        self.assertIn("peer", tags[0])
        self.assertEqual(tags[1], {"owner": "system", "stock": True})

        yield deferToThread(bus.close)
        result = yield twisted.send("/system/ping", {})
        self.assertEqual(result["process"], NAME)
        [ping] = yield twisted.describe("/system/ping")
        self.assertEqual([listener["tags"] for listener in ping["listeners"]],
                         [{"owner": "system", "stock": True}])

    @inlineCallbacks
    def test_remembered_verdict(self) -> Any:
        """
        A listener added with remember_by that answers Remember is asked
        once: the daemon answers the next send with the same field values
        itself (no CallListener reaches the stdlib client), and another
        value is asked again.
        """
        bus = yield self.open()
        calls: List[Any] = []

        def hook(message: Dict[str, Any]) -> Any:
            calls.append(message["who"])
            return Remember(Stop({"process": "remembered", "who": message["who"]}), 60.0)

        yield deferToThread(bus.add_listener, "/system/ping", hook, first=True,
                            deadline=TIMEOUT, remember_by=["who"])
        twisted = self.twisted_client()
        served, first = yield gatherResults([
            deferToThread(bus.serve, count=1), twisted.send("/system/ping", {"who": "a"})])
        again = yield twisted.send("/system/ping", {"who": "a", "n": 2})
        self.assertEqual((first, again), ({"process": "remembered", "who": "a"},) * 2)
        served, other = yield gatherResults([
            deferToThread(bus.serve, count=1), twisted.send("/system/ping", {"who": "b"})])
        self.assertEqual(other["who"], "b")
        self.assertEqual(calls, ["a", "b"])
        [ping] = yield twisted.describe("/system/ping")
        self.assertEqual(ping["listeners"][0]["remember_by"], ["who"])
        self.assertEqual(ping["listeners"][0]["counters"]["remembered"], 1)

    @inlineCallbacks
    def test_reasons(self) -> Any:
        """
        The stdlib client's verdicts carry their reasons: the daemon counts
        them under its listener (Describe's reasons counter).
        """
        bus = yield self.open()
        verdicts = iter([Continue("miss"), Stop({"p": 1}, reason="hit"), Continue("miss")])
        yield deferToThread(bus.add_listener, "/system/ping", lambda m: next(verdicts),
                            first=True, deadline=TIMEOUT)
        twisted = self.twisted_client()
        results = []
        for _ in range(3):
            served, result = yield gatherResults([
                deferToThread(bus.serve, count=1), twisted.send("/system/ping", {})])
            results.append(result.get("p", result.get("process")))
        self.assertEqual(results, [NAME, 1, NAME])
        [ping] = yield twisted.describe("/system/ping")
        self.assertEqual(ping["listeners"][0]["counters"]["reasons"], {"miss": 2, "hit": 1})

    @inlineCallbacks
    def test_continue_and_remove(self) -> Any:
        """
        A continue verdict lets the chain go on to the stock listener;
        RemoveListener takes the listener off, a second time is UNKNOWN_ID.
        """
        bus = yield self.open()
        calls: List[Any] = []

        def hook(message: Dict[str, Any]) -> Any:
            calls.append(message)
            return CONTINUE

        yield deferToThread(bus.add_listener, "/system/ping", hook, first=True,
                            deadline=TIMEOUT, listener_id="mine")
        twisted = self.twisted_client()
        served, result = yield gatherResults([
            deferToThread(bus.serve, count=1), twisted.send("/system/ping", {"x": 1})])
        self.assertEqual((served, calls), (1, [{"x": 1}]))
        self.assertEqual(result["process"], NAME)

        yield deferToThread(bus.remove_listener, "mine")
        error = yield self.assertFailure(deferToThread(bus.remove_listener, "mine"), BusError)
        self.assertEqual(error.code, "UNKNOWN_ID")

    @inlineCallbacks
    def test_own_listener_while_sending(self) -> Any:
        """
        A peer that sends to a mailbox it listens on gets the CallListener
        on the same connection before the answer, and must serve it.
        """
        bus = yield self.open()
        yield deferToThread(bus.add_listener, "/system/ping",
                            lambda message: Stop(["mine", message["n"]]), first=True,
                            deadline=TIMEOUT)
        answered, result = yield deferToThread(bus.send, "/system/ping", {"n": 3})
        self.assertEqual((answered, result), (True, ["mine", 3]))

    @inlineCallbacks
    def test_typed_arguments_are_chunked(self) -> Any:
        """
        Messages and results over 65,535 bytes travel as message, message.2,
        ... and result, result.2, ... both ways.
        """
        listening = yield self.open()
        sending = yield self.open()
        big = "x" * 150_000

        def hook(message: Dict[str, Any]) -> Any:
            return Stop({"length": len(message["big"]), "back": message["big"] + "y"})

        yield deferToThread(listening.add_listener, "/system/ping", hook, first=True,
                            deadline=TIMEOUT)
        served, (answered, result) = yield gatherResults([
            deferToThread(listening.serve, count=1),
            deferToThread(sending.send, "/system/ping", {"big": big})])
        self.assertEqual(served, 1)
        self.assertTrue(answered)
        self.assertEqual(result["length"], 150_000)
        self.assertEqual(result["back"], big + "y")

    @inlineCallbacks
    def test_watch_gets_notify_without_ask(self) -> Any:
        """
        A watch is told of every message with a Notify box that has no _ask
        and needs no answer.
        """
        bus = yield self.open()
        yield deferToThread(bus.watch, "/system/ping", lambda message: None, "w1")
        twisted = self.twisted_client()
        yield twisted.send("/system/ping", {"hello": "watchers"})
        box = yield deferToThread(bus.read_box)
        self.assertEqual(box[b"_command"], b"Notify")
        self.assertNotIn(b"_ask", box)
        self.assertEqual(box[b"watch"], b"w1")
        self.assertEqual(box[b"mailbox"], b"/system/ping")
        self.assertEqual(stdlib_client.loads(box[b"message"]), {"hello": "watchers"})
        yield deferToThread(bus.unwatch, "w1")

    @inlineCallbacks
    def test_error_codes(self) -> Any:
        """
        Errors of the netsuite commands come back as _error boxes with their
        codes, and the connection stays usable.
        """
        bus = yield self.open()
        cases = [
            (bus.send, ("/no/such",), "UNKNOWN_MAILBOX"),
            (bus.send, ("no-slash",), "INVALID_ADDRESS"),
            (bus.call, ("Send", {b"mailbox": b"/system/ping", b"message": b'["list",[]]'}),
             "INVALID_VALUE"),
            (bus.call, ("Send", {b"mailbox": b"/system/ping", b"message": b"{"}),
             "INVALID_VALUE"),
            (bus.unwatch, ("nope",), "UNKNOWN_ID"),
        ]
        for fn, args, code in cases:
            error = yield self.assertFailure(deferToThread(fn, *args), BusError)
            self.assertEqual(error.code, code)
        yield deferToThread(bus.add_listener, "/system/log", lambda m: CONTINUE,
                            listener_id="dup")
        error = yield self.assertFailure(
            deferToThread(bus.add_listener, "/system/log", lambda m: CONTINUE,
                          listener_id="dup"), BusError)
        self.assertEqual(error.code, "DUPLICATE_ID")
        answered, result = yield deferToThread(bus.send, "/system/ping")
        self.assertEqual(result["process"], NAME)

    @inlineCallbacks
    def test_unknown_command(self) -> Any:
        """
        A command the daemon does not know is answered with _error_code
        UNHANDLED; the same connection and a new one still answer pings.
        """
        bus = yield self.open()
        error = yield self.assertFailure(
            deferToThread(bus.call, "NoSuchCommand", {b"whatever": b"1"}), BusError)
        self.assertEqual(error.code, "UNHANDLED")
        self.assertIn("NoSuchCommand", error.description)

        answered, result = yield deferToThread(bus.send, "/system/ping")
        self.assertEqual((answered, result["process"]), (True, NAME))
        other = yield self.open()
        answered, result = yield deferToThread(other.send, "/system/ping")
        self.assertEqual((answered, result["process"]), (True, NAME))

    @inlineCallbacks
    def test_garbage_frame(self) -> Any:
        """
        A key length over 255 makes the daemon close that connection (and
        log it); another connection keeps working.
        """
        good = yield self.open()
        bad = yield self.open()
        logged = self.daemon.when_line(r"malformed frame", after=self.daemon.line_count)

        def send_garbage() -> Any:
            # A key length of 256, then such a key, a value and a box end.
            bad.write_raw(b"\x01\x00" + b"k" * 256 + b"\x00\x01v\x00\x00")
            try:
                return bad.read_box()
            except ConnectionError as e:  # EOF, or a reset: unread data was dropped
                return e
        outcome = yield deferToThread(send_garbage)
        self.assertIsInstance(outcome, ConnectionError)
        yield logged

        answered, result = yield deferToThread(good.send, "/system/ping")
        self.assertEqual((answered, result["process"]), (True, NAME))
        fresh = yield self.open()
        answered, result = yield deferToThread(fresh.send, "/system/ping")
        self.assertEqual((answered, result["process"]), (True, NAME))

    @inlineCallbacks
    def test_fail_closed_needs_a_refusal(self) -> Any:
        """
        The stdlib client's fail_closed reaches the daemon: on a mailbox
        that defines no refusal (/system/ping) the daemon refuses it with
        INVALID_VALUE, and the listener is not added.
        """
        bus = yield self.open()
        error = yield self.assertFailure(
            deferToThread(bus.add_listener, "/system/ping", lambda m: CONTINUE, first=True,
                          deadline=TIMEOUT, fail_closed=True), Exception)
        self.assertIn("INVALID_VALUE", str(error))
        self.assertIn("defines no refusal", str(error))
        [ping] = yield self.twisted_client().describe("/system/ping")
        self.assertEqual(len(ping["listeners"]), 1)


class StdlibOnlyTests(TestCase):
    """
    The example client really is standard library only.
    """

    def test_imports(self) -> None:
        path = os.path.join(ROOT, "examples", "stdlib_client.py")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        import ast
        modules = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module.split(".")[0])
        self.assertEqual(modules - set(sys.stdlib_module_names), set())
        self.assertNotIn("twisted", modules)
        self.assertNotIn("netsuite", modules)

    def test_box_bytes(self) -> None:
        """
        The client frames the Send box of docs/bus-protocol.md byte for byte.
        """
        box = {b"_ask": b"1", b"_command": b"Send", b"mailbox": b"/system/ping",
               b"message": stdlib_client.dumps({})}
        self.assertEqual(stdlib_client.encode_box(box).hex(" "), (
            "00 04 5f 61 73 6b 00 01 31 00 08 5f 63 6f 6d 6d 61 6e 64 00 04 53 65 6e 64 "
            "00 07 6d 61 69 6c 62 6f 78 00 0c 2f 73 79 73 74 65 6d 2f 70 69 6e 67 "
            "00 07 6d 65 73 73 61 67 65 00 0a 5b 22 6d 61 70 22 2c 7b 7d 5d 00 00"))

    def test_document_hexdump(self) -> None:
        """
        The hex dumps in docs/bus-protocol.md are what the real
        implementation produces (examples/bus_hexdump.py).
        """
        import contextlib
        import io
        import re
        spec = importlib.util.spec_from_file_location(
            "bus_hexdump", os.path.join(ROOT, "examples", "bus_hexdump.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            module.main()
        dump = re.compile(r"^[0-9a-f]{8}  .*$", re.M)
        with open(os.path.join(ROOT, "docs", "bus-protocol.md"), encoding="utf-8") as f:
            document = f.read()
        generated = dump.findall(out.getvalue())
        self.assertTrue(generated)
        self.assertEqual(dump.findall(document), generated)

    def test_typed_values_match_netsuite(self) -> None:
        """
        The stdlib encoding agrees with netsuite.registry.values both ways.
        """
        from netsuite.registry import values
        value = {"s": "\u00e9", "i": -2 ** 80, "f": 1.5, "nan": float("inf"),
                 "ninf": float("-inf"), "b": b"\x00\x01\x02", "t": True, "n": None,
                 "l": [1, [2]], "m": {"a": {}}, "ip": ipaddress.IPv4Address("10.0.0.1"),
                 "ip6": ipaddress.IPv6Address("::1"), "z": -0.0, "tiny": 5e-324,
                 "huge": 1e308, "tuple": (1, "x"), "empty": b"", "": "\U0001f600"}
        self.assertEqual(stdlib_client.dumps(value), values.dumps(value))
        self.assertEqual(values.loads(stdlib_client.dumps(value)),
                         dict(value, tuple=[1, "x"]))
        self.assertEqual(stdlib_client.loads(values.dumps(value)),
                         dict(value, tuple=[1, "x"]))
        self.assertEqual(stdlib_client.dumps(stdlib_client.MAC("AA-BB-CC-00-11-22")),
                         values.dumps(MAC("aa:bb:cc:00:11:22")))
        nan = stdlib_client.loads(values.dumps(float("nan")))
        self.assertNotEqual(nan, nan)
