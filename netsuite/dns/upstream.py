# -*- test-case-name: tests.dns.test_upstream -*-
"""
The resolver's client for its upstreams: what L{netsuite.dns.server} asks
of twisted.names' C{IResolver} (C{query(query, timeout)}), over a fixed pool
of UDP sockets instead of a fresh port per query.

Each socket is bound to a random source port and replaced by a fresh one
after C{port_queries} queries or C{port_seconds} seconds, so a forged answer
must still guess the port and a random 16-bit id, and it must come from the
server asked and carry the question asked; anything else is dropped and
counted. Twisted logs a UDP port's opening and closing unconditionally: with
the pool that is at start and at each replacement, not for every query.

A query is tried on each server in turn with each timeout of the sequence
given (twisted.names' order: all servers with the first timeout, then all
with the next). A truncated answer is asked again over TCP of the same
server; a SERVFAIL goes on to the next try while there is one.
"""

from __future__ import annotations

import os
import random
from ipaddress import IPv6Address, ip_address
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ClientCreator, DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.names import dns, error
from twisted.names.common import ResolverBase
from twisted.python.failure import Failure

__all__ = ["UpstreamClient", "Dropped", "parse_response", "check_question",
           "resolv_conf_servers"]

_log = Logger()

RESOLV_CONF_INTERVAL = 60.0
OPEN_ATTEMPTS = 16


class Dropped(ValueError):
    """A datagram that is not the answer awaited; C{args[0]} is the counter."""


def parse_response(data: bytes) -> Any:
    """The response C{data} as a C{dns.Message}, or L{Dropped}."""
    message = dns.Message()
    try:
        message.fromStr(data)
    except Exception:
        raise Dropped("malformed") from None
    if not message.answer:
        raise Dropped("malformed")
    return message


def check_question(message: Any, question: Any) -> None:
    """L{Dropped} unless C{message} carries C{question} (name in any case), alone."""
    if len(message.queries) != 1:
        raise Dropped("bad_question")
    got = message.queries[0]
    if (got.name.name.lower() != question.name.name.lower() or got.type != question.type
            or got.cls != question.cls):
        raise Dropped("bad_question")


def resolv_conf_servers(text: str) -> List[Tuple[str, int]]:
    """
    The nameservers of a resolv.conf, IPv4 and IPv6 (127.0.0.1 when none,
    as twisted.names). Link-local IPv6 ones (C{fe80::1%eth0}) are skipped:
    the pool's sockets are bound to no interface.
    """
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ip_address(fields[1])
            except ValueError:
                continue
            if not (isinstance(address, IPv6Address) and address.is_link_local):
                servers.append((str(address), 53))
    return servers or [("127.0.0.1", 53)]


def _is_ipv6(server: Tuple[str, int]) -> bool:
    return ":" in server[0]


class UpstreamSocket(DatagramProtocol):
    noisy = False

    def __init__(self, client: "UpstreamClient", born: float) -> None:
        self.client = client
        self.born = born
        self.sent = 0
        self.retiring = False
        self.pending: Dict[int, "_Query"] = {}
        self.port: Any = None

    def datagramReceived(self, data: bytes, address: Any) -> None:
        self.client._received(self, data, address)


class _Controller:
    """What C{dns.DNSProtocol} tells its controller; nothing to do here."""

    def connectionMade(self, protocol: Any) -> None:
        pass

    def connectionLost(self, protocol: Any) -> None:
        pass

    def messageReceived(self, message: Any, protocol: Any, address: Any = None) -> None:
        pass


class _Query:
    def __init__(self, question: Any, tries: List[Tuple[float, Tuple[str, int]]]) -> None:
        self.question = question
        self.tries = tries
        self.deferred: Deferred = Deferred()
        self.socket: Optional[UpstreamSocket] = None
        self.id = 0
        self.server: Optional[Tuple[str, int]] = None
        self.timer: Any = None
        self.done = False


class UpstreamClient:
    """
    @param servers: the upstreams, [(IPv4 or IPv6 text, port)]; none: those
        of C{resolv_conf}, read at start and again when it changes.
    @param sockets: the UDP sockets of the pool (one pool per address
        family; the IPv6 one is opened when an IPv6 upstream is first asked).
    @param port_queries: queries a socket sends before it is replaced.
    @param port_seconds: seconds a socket is used before it is replaced.
    @param max_pending: queries in flight at once; more fail at once
        (SERVFAIL), counted C{overloaded}.
    """

    def __init__(self, reactor: Any, servers: Sequence[Tuple[str, int]] = (),
                 resolv_conf: str = "", sockets: int = 8, port_queries: int = 1000,
                 port_seconds: float = 60.0, max_pending: int = 1024,
                 rng: Any = None) -> None:
        self.reactor = reactor
        self.configured = list(servers)
        self.servers = list(servers)
        self.resolv_conf = resolv_conf
        self.size = sockets
        self.port_queries = port_queries
        self.port_seconds = port_seconds
        self.max_pending = max_pending
        self.random = rng or random.SystemRandom()
        self.slots: List[UpstreamSocket] = []
        self.slots6: List[UpstreamSocket] = []
        self.started = False
        self.retiring: Set[UpstreamSocket] = set()
        self.queries: Set[_Query] = set()
        self.tcp: Set[Any] = set()
        self._next = {False: 0, True: 0}
        self._resolv_mtime: Optional[float] = None
        self._resolv_loop: Optional[LoopingCall] = None
        self.counters: Dict[str, int] = {
            "sent": 0, "answers": 0, "timeouts": 0, "servfail_retries": 0, "tcp": 0,
            "tcp_failures": 0, "send_errors": 0, "overloaded": 0, "malformed": 0,
            "unknown_id": 0, "bad_source": 0, "bad_question": 0, "port_replaced": 0}

    # start, stop

    def start(self) -> None:
        """Open the sockets (and read resolv.conf when no servers are given)."""
        if not self.configured and self.resolv_conf:
            self._read_resolv_conf()
            self._resolv_loop = LoopingCall(self._read_resolv_conf)
            self._resolv_loop.clock = self.reactor
            self._resolv_loop.start(RESOLV_CONF_INTERVAL, now=False)
        elif not self.servers:
            self.servers = [("127.0.0.1", 53)]
        self.slots = [self._open(False) for _ in range(self.size)]
        self.started = True

    def stop(self) -> None:
        """Fail what is in flight, close the sockets and TCP connections."""
        if self._resolv_loop is not None and self._resolv_loop.running:
            self._resolv_loop.stop()
        for query in list(self.queries):
            self._finish(query, Failure(error.DNSQueryTimeoutError(query.question)))
        for sock in self.slots + self.slots6 + list(self.retiring):
            if sock.port is not None:
                sock.port.stopListening()
        self.slots, self.slots6, self.retiring = [], [], set()
        self.started = False
        for protocol in list(self.tcp):
            protocol.transport.loseConnection()

    def _read_resolv_conf(self) -> None:
        try:
            mtime = os.stat(self.resolv_conf).st_mtime
            if mtime == self._resolv_mtime:
                return
            with open(self.resolv_conf, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            if not self.servers:
                self.servers = [("127.0.0.1", 53)]
            _log.warn("dns: cannot read {path}: {error}", path=self.resolv_conf,
                      error=e.strerror)
            return
        self._resolv_mtime = mtime
        self.servers = resolv_conf_servers(text)

    def _open(self, ipv6: bool) -> UpstreamSocket:
        sock = UpstreamSocket(self, self.reactor.seconds())
        for attempt in range(OPEN_ATTEMPTS + 1):
            port = self.random.randrange(1024, 65536) if attempt < OPEN_ATTEMPTS else 0
            try:
                sock.port = self.reactor.listenUDP(port, sock, interface="::" if ipv6 else "")
                return sock
            except CannotListenError:
                continue
        raise CannotListenError("", 0, "no free UDP port")  # pragma: no cover (port 0)

    def _socket(self, ipv6: bool) -> UpstreamSocket:
        slots = self.slots6 if ipv6 else self.slots
        if not slots:
            slots += [self._open(ipv6) for _ in range(self.size)]
        slot = self._next[ipv6]
        self._next[ipv6] = (slot + 1) % len(slots)
        sock = slots[slot]
        if (sock.sent >= self.port_queries
                or self.reactor.seconds() - sock.born >= self.port_seconds):
            self.counters["port_replaced"] += 1
            slots[slot] = self._open(ipv6)
            self._retire(sock)
            sock = slots[slot]
        return sock

    def _retire(self, sock: UpstreamSocket) -> None:
        if sock.pending:
            sock.retiring = True
            self.retiring.add(sock)
        else:
            self.retiring.discard(sock)
            sock.port.stopListening()

    # a query

    def query(self, question: Any, timeout: Sequence[float] = (1.0, 3.0)) -> Deferred:
        """
        The answer to the C{dns.Query} C{question}: a Deferred of (answers,
        authority, additional), or of twisted.names' error for its rcode
        (C{DNSNameError}...), or C{DNSQueryTimeoutError}.
        """
        if len(self.queries) >= self.max_pending or not self.started:
            self.counters["overloaded"] += 1
            return fail(Failure(error.DNSServerError(
                "too many queries waiting for the upstreams")))
        query = _Query(question, [(t, server) for t in timeout for server in self.servers])
        self.queries.add(query)
        self._try(query)
        return query.deferred

    def _try(self, query: _Query, last: Any = None) -> None:
        while query.tries and not query.done:
            seconds, server = query.tries.pop(0)
            try:
                sock = self._socket(_is_ipv6(server))
            except CannotListenError as e:  # no IPv6 on this host, say
                self.counters["send_errors"] += 1
                last = Failure(error.DNSQueryTimeoutError(f"{server[0]}: {e}"))
                continue
            qid = self.random.randrange(65536)
            while qid in sock.pending:
                qid = self.random.randrange(65536)
            message = dns.Message(id=qid, recDes=1)
            message.queries = [query.question]
            try:
                sock.port.write(message.toStr(), server)
            except OSError as e:
                self.counters["send_errors"] += 1
                last = Failure(error.DNSQueryTimeoutError(f"{server[0]}: {e}"))
                continue
            self.counters["sent"] += 1
            sock.sent += 1
            sock.pending[qid] = query
            query.socket, query.id, query.server = sock, qid, server
            query.timer = self.reactor.callLater(seconds, self._timed_out, query)
            return
        if not query.done:
            self._finish(query, last or Failure(error.DNSQueryTimeoutError(query.question)))

    def _release(self, query: _Query) -> None:
        if query.timer is not None and query.timer.active():
            query.timer.cancel()
        query.timer = None
        sock = query.socket
        if sock is not None:
            sock.pending.pop(query.id, None)
            if sock.retiring and not sock.pending:
                self._retire(sock)
        query.socket = None

    def _timed_out(self, query: _Query) -> None:
        query.timer = None
        self.counters["timeouts"] += 1
        self._release(query)
        self._try(query)

    def _received(self, sock: UpstreamSocket, data: bytes, address: Any) -> None:
        if len(data) < 12:
            self.counters["malformed"] += 1
            return
        query = sock.pending.get(int.from_bytes(data[:2], "big"))
        if query is None:
            self.counters["unknown_id"] += 1  # late answers too
            return
        if tuple(address)[:2] != query.server:  # IPv6: (host, port, flow, scope)
            self.counters["bad_source"] += 1
            return
        try:
            message = parse_response(data)
            check_question(message, query.question)
        except Dropped as e:
            self.counters[e.args[0]] += 1
            return
        self.counters["answers"] += 1
        server, seconds = query.server, query.timer.getTime() - self.reactor.seconds()
        self._release(query)
        if message.trunc:
            self._tcp(query, server, max(seconds, 1.0))
        else:
            self._answered(query, message)

    def _answered(self, query: _Query, message: Any) -> None:
        if message.rCode == dns.ESERVER and query.tries:
            self.counters["servfail_retries"] += 1
            self._try(query)
        elif message.rCode == dns.OK:
            self._finish(query, (message.answers, message.authority, message.additional))
        else:
            self._finish(query, Failure(ResolverBase._errormap.get(
                message.rCode, error.DNSUnknownError)(message)))

    def _tcp(self, query: _Query, server: Tuple[str, int], seconds: float) -> None:
        self.counters["tcp"] += 1
        creator = ClientCreator(self.reactor, dns.DNSProtocol, _Controller(), self.reactor)
        d = creator.connectTCP(server[0], server[1], timeout=seconds)
        protocols = []

        def connected(protocol: Any) -> Deferred:
            protocols.append(protocol)
            self.tcp.add(protocol)
            return protocol.query([query.question], timeout=seconds)

        def answered(message: Any) -> None:
            check_question(message, query.question)
            self._answered(query, message)

        def failed(failure: Failure) -> None:
            self.counters["tcp_failures"] += 1
            self._try(query, failure)

        def close(result: Any) -> Any:
            for protocol in protocols:
                self.tcp.discard(protocol)
                protocol.transport.loseConnection()
            return result

        d.addCallback(connected).addCallback(answered).addErrback(failed).addBoth(close)

    def _finish(self, query: _Query, result: Any) -> None:
        if query.done:
            return
        query.done = True
        self._release(query)
        self.queries.discard(query)
        if isinstance(result, Failure):
            query.deferred.errback(result)
        else:
            query.deferred.callback(result)
