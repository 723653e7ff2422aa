# -*- test-case-name: tests.dns.test_server -*-
"""
The resolver's transports: a UDP port and TCP connections (RFC 1035
4.2.2: two-byte length, then the message), bounded in connections, in
idle time, in queries a connection has waiting and in answers queued for
a client that does not read (a TCP connection is its transport's
producer: paused, it reads and answers nothing more).
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin

__all__ = ["DNSDatagram", "DNSStream", "DNSStreamFactory"]

_log = Logger()


class DNSDatagram(DatagramProtocol):
    def __init__(self, server: Any) -> None:
        self.server = server

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        reply = self.server.handle(data, addr[0])
        if isinstance(reply, Deferred):
            reply.addCallback(self._send, addr).addErrback(
                lambda f: _log.failure("dns: answering a query failed", f))
        elif reply is not None:
            self.transport.write(reply, addr)

    def _send(self, reply: Any, addr: Any) -> None:
        if reply is not None and self.transport is not None:
            try:
                self.transport.write(reply, addr)
            except OSError as e:  # the client went away (ECONNREFUSED), say
                _log.debug("dns: reply to {addr} not sent: {error}", addr=addr, error=e)


class DNSStream(Int16StringReceiver, TimeoutMixin):
    MAX_WAITING = 8

    def __init__(self, server: Any, idle: float) -> None:
        self.server = server
        self.idle = idle
        self.waiting = 0

    def connectionMade(self) -> None:
        self.setTimeout(self.idle)
        # the transport pauses us (no more queries read or answered) while
        # its answers wait for a client that does not read them
        self.transport.registerProducer(self, True)

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self.waiting >= self.MAX_WAITING:
            self.server.counters["overloaded"] += 1
            return
        reply = self.server.handle(data, self.ip, tcp=True)
        if isinstance(reply, Deferred):
            self.waiting += 1

            def done(reply: Any) -> None:
                self.waiting -= 1
                self._send(reply)
            reply.addCallback(done).addErrback(
                lambda f: _log.failure("dns: answering a query failed", f))
        else:
            self._send(reply)

    def _send(self, reply: Any) -> None:
        if reply is not None and self.transport is not None and self.connected:
            self.sendString(reply)

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        self.factory.lost(self)


class DNSStreamFactory(Factory):
    """
    At most C{max_connections} open, C{per_client} from one address; each
    closed after C{idle} seconds without a query.
    """

    def __init__(self, server: Any, max_connections: int = 128, per_client: int = 8,
                 idle: float = 10.0) -> None:
        self.server = server
        self.max_connections = max_connections
        self.per_client = per_client
        self.idle = idle
        self.open = 0
        self.by_client: Dict[str, int] = {}

    def buildProtocol(self, addr: Any) -> Any:
        if (self.open >= self.max_connections
                or self.by_client.get(addr.host, 0) >= self.per_client):
            self.server.counters["overloaded"] += 1
            return None
        self.open += 1
        self.by_client[addr.host] = self.by_client.get(addr.host, 0) + 1
        protocol = DNSStream(self.server, self.idle)
        protocol.ip = addr.host
        protocol.factory = self
        return protocol

    def lost(self, protocol: DNSStream) -> None:
        self.open -= 1
        host = protocol.ip
        n = self.by_client.get(host, 0) - 1
        if n > 0:
            self.by_client[host] = n
        else:
            self.by_client.pop(host, None)
