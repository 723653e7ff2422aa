# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
The driver of the portal's fuzz targets (C{portal-front}, C{portal-forms}):
one connection per input to a L{PortalSite} (the redirect front, then
twisted.web and the portal's resources) over a StringTransport, fed the
input in the reads L{split} chooses, with a client that stops reading
now and then.

The transport behaves as a reactor's would: while its producer has
paused it (it stopped reading), no bytes are delivered; a write that
takes its unread output past L{WINDOW} pauses its producer (the client
does not read), and the driver then reads everything and resumes it.

Invariants: nothing logs a failure; the output is a sequence of
well-formed HTTP responses, none a 5xx but the portal's 503 for a device
it cannot identify; what a paused connection writes stays under
L{MAX_RESPONSE} past the pause while the front answers (after a
hand-over, twisted.web answers whatever requests it has read first); the
front never buffers more than
L{HEAD_LIMIT} + L{_PIPELINE_LIMIT} bytes of input; once closed, the
connection leaves nothing behind in the site or on the clock.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.address import IPv4Address as Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from netsuite.portal.front import _PIPELINE_LIMIT, HEAD_LIMIT, PortalSite
from netsuite.portal.testing import A, PortalFixture

from .common import Crash, LogFailures, bounded, read_responses, split

WINDOW = 65536
"""Unread output at which the transport pauses its producer."""
MAX_RESPONSE = 65536
"""The most one response may add once its connection is paused."""
ALLOWED_5XX = {503}
B = "10.89.0.12"


class ReactorLikeTransport(StringTransport):
    """
    A StringTransport that behaves as a reactor's does: a write that takes
    its unread output past L{WINDOW} pauses its producer (the client does
    not read), and pauseProducing and resumeProducing are ignored once it
    is closing (StringTransport raises).

    @ivar client_paused: whether the client's not reading paused the producer.
    @ivar paused_at: the unread output then.
    """

    client_paused = False
    paused_at = 0

    def write(self, data: bytes) -> None:
        StringTransport.write(self, data)
        if (not self.client_paused and self.producer is not None
                and len(self.value()) > WINDOW):
            self.client_paused = True
            self.paused_at = len(self.value())
            self.producer.pauseProducing()

    def check_bounded(self) -> None:
        """
        Raise L{Crash} if more than L{MAX_RESPONSE} was written since the
        pause, or the write that paused was larger.
        """
        if self.client_paused:
            bounded("the write that paused a connection", self.paused_at,
                    WINDOW + MAX_RESPONSE)
            bounded("a paused connection's output since", len(self.value()) - self.paused_at,
                    MAX_RESPONSE)

    def pauseProducing(self) -> None:
        if not self.disconnecting:
            StringTransport.pauseProducing(self)

    def resumeProducing(self) -> None:
        if not self.disconnecting:
            StringTransport.resumeProducing(self)


@implementer(ISSLTransport)
class TLSStringTransport(ReactorLikeTransport):
    """
    A StringTransport that twisted.web takes for TLS (C{request.isSecure()}).
    """

    def getPeerCertificate(self) -> None:
        return None

    def setTcpNoDelay(self, enabled: bool) -> None:
        """What a TLS transport over TCP has; the channel calls it."""


class Driver:
    """
    One portal and its site, fed a connection per input.
    """

    def __init__(self, fixture: PortalFixture) -> None:
        self.fixture = fixture
        self.site = PortalSite(fixture.resource, reactor=fixture.clock)
        self.site.startFactory()
        self.logged = LogFailures()

    def check(self, data: bytes, secure: bool = False, client: str = str(A)) -> None:
        peer = Address("TCP", client, 40000)
        protocol = self.site.buildProtocol(peer)
        if protocol is None:
            raise Crash("the site refused a connection with none open")
        transport = (TLSStringTransport if secure else ReactorLikeTransport)(peerAddress=peer)
        protocol.makeConnection(transport)
        output: List[bytes] = []
        try:
            self._feed(protocol, transport, data, output)
        finally:
            output.append(transport.value())
            protocol.connectionLost(Failure(ConnectionDone()))
            self._flush()
            self.fixture.clock.advance(1)
        self.logged.raise_any()
        for status, headers in read_responses(b"".join(output)):
            if status >= 500 and status not in ALLOWED_5XX:
                raise Crash(f"answered {status}")
        if protocol in self.site._open:
            raise Crash("the site still counts a closed connection")
        calls = self.fixture.clock.getDelayedCalls()
        if len(calls) > 16:
            raise Crash(f"{len(calls)} calls waiting on the clock: {calls[:4]}")

    def _feed(self, protocol: Any, transport: ReactorLikeTransport, data: bytes,
              output: List[bytes]) -> None:
        for chunk in split(data):
            if transport.disconnecting:
                break
            if transport.producerState == "paused" and not self._drain(transport, output):
                break  # a request waits for something: the client can only wait too
            protocol.dataReceived(chunk)
            self._flush()
            if protocol.wrappedProtocol.channel is None:
                # twisted.web answers every request it has read before it
                # stops reading (HTTPChannel.requestDone): after a hand-over
                # the output past a pause is bounded by one read, not here
                transport.check_bounded()
            front = protocol.wrappedProtocol
            bounded("the front's input buffer", len(front.buffer),
                    HEAD_LIMIT + _PIPELINE_LIMIT)
        if not transport.disconnecting:
            self._drain(transport, output)

    def _flush(self) -> None:
        self.fixture.registry.eventual.flush_sync()

    def _drain(self, transport: ReactorLikeTransport, output: List[bytes]) -> bool:
        """
        The client reads all; resume the producer if that paused it.
        Whether the transport reads again.
        """
        output.append(transport.value())
        transport.clear()
        if transport.client_paused:
            transport.client_paused = False
            if transport.producer is not None:
                transport.producer.resumeProducing()
                self._flush()
        return transport.producerState != "paused"


def with_operator(fixture: Any) -> Any:
    """
    Give C{fixture}'s resource an C{/operator} page (user C{op}, password
    C{s3cret}, a cheap scrypt) checked inline.
    """
    from netsuite.portal.auth import hash_password
    from netsuite.portal.operator import OperatorAuth
    from netsuite.portal.resource import PortalResource
    from netsuite.testing import SyncRunner
    fixture.resource = PortalResource(
        fixture.portal, fixture.clock,
        operator=OperatorAuth(("op", hash_password("s3cret", n=16, r=1, p=1)), SyncRunner(),
                              fixture.clock))
    fixture.resource.secure_base = "https://portal.example:8443"
    return fixture
