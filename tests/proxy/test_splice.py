"""
L{netsuite.proxy.splice.CutThrough} step by step: real socket pairs, a
memory reactor, and the reactor's calls made by hand.
"""

import os
import socket
from typing import Any, List, Optional, Tuple

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.filters import CLIENT, SERVER
from netsuite.proxy.splice import CutThrough, possible, unsent


class FakeTCP:
    """What CutThrough uses of a Twisted TCP transport."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.producer: Any = None
        self.reading = True

    def getHandle(self) -> socket.socket:
        return self.sock

    def stopReading(self) -> None:
        self.reading = False

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None
        self.producer = producer
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    def flush(self) -> None:
        """What Twisted's doWrite does once its buffer is written."""
        self.sock.sendall(self.dataBuffer)
        self.dataBuffer = b""
        if self.producer is not None:
            self.producer.resumeProducing()


def pair() -> Tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def drain(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not data:
            return out + b"<EOF>"
        out += data


class CutThroughTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not hasattr(os, "splice"):
            self.skipTest("os.splice needs Python 3.10 on Linux")
        self.client, client_end = pair()  # the client, and the proxy's socket to it
        server_end, self.server = pair()
        self.sockets = [self.client, client_end, server_end, self.server]
        self.addCleanup(lambda: [s.close() for s in self.sockets])
        self.ct, self.st = FakeTCP(client_end), FakeTCP(server_end)
        self.reactor = MemoryReactorClock()
        self.moved: List[Tuple[str, int]] = []
        self.done: List[Optional[BaseException]] = []

    def cut(self, ended: Any = ()) -> CutThrough:
        cut = CutThrough(self.reactor, self.ct, self.st, set(ended),
                         on_bytes=lambda d, n: self.moved.append((d, n)),
                         on_done=self.done.append)
        cut.start()
        return cut

    def end(self, cut: CutThrough, direction: str) -> Any:
        return {e.name: e for e in cut._ends}[direction]

    def test_possible(self) -> None:
        self.assertTrue(possible(self.ct, self.st))
        self.assertFalse(possible(self.ct, object()))
        self.assertFalse(possible(self.ct, None))

    def test_waits_for_twisted_buffers(self) -> None:
        """Bytes Twisted still buffers go first; the sockets are taken only after."""
        self.st.dataBuffer = b"buffered "
        cut = self.cut()
        self.assertFalse(self.ct.reading or self.st.reading)
        self.reactor.advance(0)
        self.assertEqual(cut._pumps, [])
        self.assertEqual(unsent(self.st), 9)
        self.st.flush()
        self.assertIsNone(self.st.producer)
        self.reactor.advance(0)
        self.assertEqual(len(cut._pumps), 2)
        self.client.sendall(b"then this")
        self.end(cut, CLIENT).doRead()
        self.assertEqual(drain(self.server), b"buffered then this")
        self.assertEqual(self.moved, [(CLIENT, 9)])

    def test_both_ways_and_half_close(self) -> None:
        cut = self.cut()
        self.reactor.advance(0)
        self.assertEqual(set(self.reactor.readers), set(cut._ends))
        self.client.sendall(b"up")
        self.server.sendall(b"down")
        self.end(cut, CLIENT).doRead()
        self.end(cut, SERVER).doRead()
        self.assertEqual((drain(self.server), drain(self.client)), (b"up", b"down"))
        self.client.shutdown(socket.SHUT_WR)
        self.end(cut, CLIENT).doRead()
        self.assertEqual(drain(self.server), b"<EOF>")
        self.assertEqual(self.done, [])
        self.server.sendall(b"last")
        self.server.shutdown(socket.SHUT_WR)
        self.end(cut, SERVER).doRead()
        self.assertEqual(drain(self.client), b"last<EOF>")
        self.assertEqual(self.done, [None])
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))

    def test_already_ended_direction(self) -> None:
        """A direction that ended before the cut-through is half-closed at once."""
        self.cut(ended={CLIENT})
        self.reactor.advance(0)
        self.assertEqual(drain(self.server), b"<EOF>")

    def test_a_full_receiver_waits_for_writability(self) -> None:
        cut = self.cut()
        self.reactor.advance(0)
        client_end, server_end = self.end(cut, CLIENT), self.end(cut, SERVER)
        sent = 0
        chunk = b"x" * 65536
        for _ in range(200):  # the server does not read
            try:
                sent += self.client.send(chunk)
            except BlockingIOError:
                pass
            if server_end in self.reactor.writers:
                break
            client_end.doRead()
        self.assertIn(server_end, self.reactor.writers)
        self.assertNotIn(client_end, self.reactor.readers)  # the client is not read meanwhile
        got = 0
        for _ in range(1000):
            got += len(drain(self.server))
            if server_end in self.reactor.writers:
                server_end.doWrite()
            else:
                client_end.doRead()
            if got == sent and sum(n for _, n in self.moved) == sent:
                break
        got += len(drain(self.server))
        self.assertEqual(got, sent)

    def test_a_reset_ends_it_with_the_error(self) -> None:
        cut = self.cut()
        self.reactor.advance(0)
        self.server.close()
        self.client.sendall(b"to nobody")
        self.end(cut, CLIENT).doRead()
        self.assertEqual(len(self.done), 1)
        self.assertIsInstance(self.done[0], OSError)
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))

    def test_stop(self) -> None:
        cut = self.cut()
        self.reactor.advance(0)
        cut.stop()
        cut.stop()
        self.assertEqual((self.reactor.readers, self.reactor.writers), (set(), set()))
        self.assertEqual(self.done, [])
