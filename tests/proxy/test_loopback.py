"""
The relay and its cut-through on real sockets over loopback, with the real
reactor: large transfers arrive byte-identical both ways with half-close,
and a server that never reads stops the proxy reading its client. These
are integration tests (real time, bounded by trial's timeout).
"""

import hashlib
import os
import random
import socket
from typing import Any, Dict, List, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.proxy.intercept import fixed_destination, listen, tcp_outbound, transparent_outbound
from netsuite.proxy.modules import find
from netsuite.proxy.proxy import Proxy, ProxySettings
from netsuite.proxy.splice import unsent

UP = 24 * 1024 * 1024
DOWN = 16 * 1024 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Upstream:
    """A loopback server in a thread: reads to EOF, then sends C{answer} and closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]

    def serve(self) -> Dict[str, Any]:
        try:
            conn, peer = self.sock.accept()
        finally:
            self.sock.close()
        with conn:
            conn.settimeout(20)
            h, n = hashlib.sha256(), 0
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                h.update(data)
                n += len(data)
            conn.sendall(self.answer)
        return {"sha256": h.hexdigest(), "bytes": n}


def client(port: int, payload: bytes) -> Dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        h, n = hashlib.sha256(), 0
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            h.update(data)
            n += len(data)
    return {"sha256": h.hexdigest(), "bytes": n}


class LoopbackTests(TestCase):
    timeout = 60

    def start(self, module: str, to_port: int, transparent: bool = False,
              **settings: Any) -> Tuple[Proxy, int, List[Any]]:
        relays: List[Any] = []
        real = transparent_outbound(reactor) if transparent else tcp_outbound(reactor)

        def outbound(server: Any, client: Any, factory: Any) -> Any:
            relays.append(factory.relay)
            return real(server, client, factory)

        proxy = Proxy(reactor, [(module, find(module))], fixed_destination("127.0.0.1", to_port),
                      outbound, ProxySettings(**settings))
        port = listen(reactor, "127.0.0.1", 0, proxy, transparent=False)
        self.addCleanup(port.stopListening)
        return proxy, port.getHost().port, relays

    @inlineCallbacks
    def transfer(self, module: str, transparent: bool = False,
                 **settings: Any):  # type: ignore[no-untyped-def]
        up, down = blob(UP, 1), blob(DOWN, 2)
        server = Upstream(down)
        proxy, port, relays = self.start(module, server.port, transparent, **settings)
        served = deferToThread(server.serve)
        got = yield deferToThread(client, port, up)
        seen = yield served
        self.assertEqual(seen, {"sha256": digest(up), "bytes": UP})
        self.assertEqual(got, {"sha256": digest(down), "bytes": DOWN})
        for _ in range(100):  # both sides' connectionLost, on later turns
            if not proxy.table:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(proxy.connections(), [])
        return proxy

    @inlineCallbacks
    def test_cut_through_from_the_start(self):  # type: ignore[no-untyped-def]
        proxy = yield self.transfer("relay")
        self.assertEqual(proxy.counters["cut_through"], 1)
        self.assertEqual(proxy.counters["splice_error"], 0)

    @inlineCallbacks
    def test_cut_through_midway(self):  # type: ignore[no-untyped-def]
        """Inspected first, then handed to the kernel mid-stream: no byte lost or reordered."""
        proxy = yield self.transfer("tests.proxy.fakemodules:midway")
        self.assertEqual(proxy.counters["cut_through"], 1)

    @inlineCallbacks
    def test_python_relay(self):  # type: ignore[no-untyped-def]
        proxy = yield self.transfer("tests.proxy.fakemodules:midway", cut_through=False)
        self.assertEqual(proxy.counters["cut_through"], 0)

    @inlineCallbacks
    def test_inspected_all_the_way(self):  # type: ignore[no-untyped-def]
        proxy = yield self.transfer("tests.proxy.fakemodules:watching")
        self.assertEqual(proxy.counters["cut_through"], 0)

    @inlineCallbacks
    def test_a_server_that_never_reads(self):  # type: ignore[no-untyped-def]
        """
        The server side's buffer full pauses the client side's reading: the
        client's sends stall, and the proxy buffers at most about two reads.
        """
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        accepted: List[socket.socket] = []
        proxy, port, relays = self.start("tests.proxy.fakemodules:watching",
                                         listener.getsockname()[1])

        def stall() -> int:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            listener.settimeout(10)
            accepted.append(listener.accept()[0])  # and never read
            s.settimeout(1.5)
            sent = 0
            chunk = b"z" * 65536
            try:
                while sent < 256 * 1024 * 1024:
                    sent += s.send(chunk)
            except socket.timeout:
                pass
            s.close()
            return sent

        sent = yield deferToThread(stall)
        for a in accepted:
            self.addCleanup(a.close)
        self.assertLess(sent, 64 * 1024 * 1024)  # it stalled
        [relay] = relays
        server_transport = relay.sides["server"].transport
        self.assertLessEqual(unsent(server_transport), 4 * 65536)
        self.assertLess(proxy.table.describe()[0]["from_client"], sent)
        relay.close(abort=True)

    @inlineCallbacks
    def test_transparent_outbound(self):  # type: ignore[no-untyped-def]
        """An IP_TRANSPARENT socket bound to the client's address, connected and adopted."""
        if os.getuid() != 0:
            self.skipTest("IP_TRANSPARENT needs CAP_NET_ADMIN")
        proxy = yield self.transfer("relay", transparent=True)
        self.assertEqual(proxy.counters["cut_through"], 1)

    @inlineCallbacks
    def test_connection_refused(self):  # type: ignore[no-untyped-def]
        """Nobody at the original destination: the client's connection is closed, counted."""
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        unused = closed.getsockname()[1]
        closed.close()
        for transparent in ((False, True) if os.getuid() == 0 else (False,)):
            proxy, port, relays = self.start("relay", unused, transparent)

            def attempt() -> bytes:
                try:  # the reset may come before connect() returns
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        return s.recv(10)
                except ConnectionResetError:
                    return b"reset"
            got = yield deferToThread(attempt)
            self.assertEqual(got, b"reset")
            self.assertEqual(proxy.counters["connect_failed"], 1)

    @inlineCallbacks
    def test_cut_through_after_a_half_close(self):  # type: ignore[no-untyped-def]
        """
        The last filter is done only when the client half-closes: the cut
        through starts with that direction ended (the splice, not Twisted,
        half-closes the server side).
        """
        proxy = yield self.transfer("tests.proxy.fakemodules:until_end")
        self.assertEqual(proxy.counters["cut_through"], 1)
        self.assertEqual(proxy.counters["splice_error"], 0)
