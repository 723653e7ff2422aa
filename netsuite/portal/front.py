# -*- test-case-name: tests.portal.test_front -*-
"""
The portal's site and the front protocol that meets each of its
connections: the redirect an unauthorized client gets for every request,
answered straight from the bytes; anything else goes to twisted.web.

Every client can reach this, so everything it holds is bounded: the
connections (per client address and in total), a request head (in bytes,
and in time from its first byte), the answers waiting to be sent (the
front stops reading while the transport's buffer is full, as twisted.web's
C{HTTPChannel} does, and after a hand-over gives twisted.web one request
at a time, none while the answers wait) and the redirects kept (in bytes).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, TimeoutMixin
from twisted.web.http import datetimeToString
from twisted.web.server import Request, Site
from zope.interface import directlyProvides, implementer, providedBy

from ..registry.interfaces import Stop
from ..registry.registry import declare_service
from .pages import HTML, PROBES
from .redirects import request_path

if TYPE_CHECKING:
    from .resource import PortalResource

__all__ = ["PortalSite", "PortalRequest", "RedirectFront", "HEAD_LIMIT", "declare_front"]

_log = Logger()

HEAD_LIMIT = 8192
"""Bytes of a request head (request line and headers) the portal reads; more: 431."""
_PIPELINE_LIMIT = 65536
"""Bytes of requests a client may send ahead while its answers wait."""
_HANDS_OVER = (b"content-length", b"transfer-encoding", b"expect", b"upgrade")
_NOTICE_EVERY = 60.0


_FIELD_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""A control character other than HTAB, which no field value holds (RFC 9110
section 5.5)."""


class PortalRequest(Request):
    """
    twisted.web's request, reading a form's Content-Type only when it is a
    field value: twisted.web hands it to the email package, whose parser
    raises ValueError out of the channel's C{dataReceived} for one that
    holds a form feed (C{application/\x0c-www-form-urlencoded}); such a
    request is read as having no Content-Type (so no form).
    """

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        # email refuses what str.splitlines() splits: \x85 as well
        if ctype and (_FIELD_CONTROL.search(ctype[0]) or b"\x85" in ctype[0]):
            self.requestHeaders.removeHeader(b"content-type")
        Request.requestReceived(self, command, path, version)


class PortalSite(Site):
    """
    The portal's site. Every connection first meets a L{RedirectFront},
    which answers the common plain redirect itself; and the site knows its
    open connections, so that a client's login can cut the others
    (connections diverted to the portal before the login, including idle
    ones a browser opened ahead and would reuse), and so that no client
    holds more than C{max_per_client} of them, nor all clients more than
    C{max_connections}.

    @ivar redirected: requests answered by the fronts (not access-logged:
        a busy hotspot sees thousands a minute; C{/portal/request} has
        them for listeners).
    IPv6 clients (whose HTTP the firewall redirects here too) are held to
    C{max_ipv6} connections together besides: a client has as many IPv6
    addresses as it cares to make up in the LAN's /64, so the per-address
    cap alone would not stop one from filling the portal.

    @ivar refused: what was refused, by kind (C{bad-request},
        C{head-too-large}, C{head-timeout}, C{pipeline-overflow},
        C{client-cap}, C{total-cap}, C{ipv6-cap}): logged once per client
        and kind a minute, counted every time.
    """

    def __init__(self, resource: "PortalResource", *args: Any, head_timeout: float = 10.0,
                 max_connections: int = 1024, max_per_client: int = 32,
                 max_ipv6: int = 256, **kwargs: Any) -> None:
        kwargs.setdefault("requestFactory", PortalRequest)
        Site.__init__(self, resource, *args, **kwargs)
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.max_ipv6 = max_ipv6
        self.redirected = 0
        self.refused: Dict[str, int] = {}
        self._open: Dict[Any, str] = {}
        self._per_client: Dict[str, int] = {}
        self._open6 = 0
        self._noticed: Dict[Tuple[str, str], float] = {}
        self._date: Tuple[int, bytes] = (-1, b"")

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", ""))
        if len(self._open) >= self.max_connections:
            self.refuse("total-cap", host)
            return None
        if self._per_client.get(host, 0) >= self.max_per_client:
            self.refuse("client-cap", host)
            return None
        if ":" in host and self._open6 >= self.max_ipv6:
            self.refuse("ipv6-cap", host)
            return None
        return ProtocolWrapper(self, RedirectFront(self, addr))

    def registerProtocol(self, protocol: Any) -> None:
        host = str(getattr(protocol.getPeer(), "host", ""))
        self._open[protocol] = host
        self._per_client[host] = self._per_client.get(host, 0) + 1
        self._open6 += ":" in host

    def unregisterProtocol(self, protocol: Any) -> None:
        host = self._open.pop(protocol, None)
        if host is not None:
            left = self._per_client.pop(host) - 1
            if left:
                self._per_client[host] = left
            self._open6 -= ":" in host

    def refuse(self, kind: str, client: str) -> None:
        """
        Count a refusal of C{kind} for C{client}'s address and say so in the
        log, at most once a minute per client and kind.
        """
        self.refused[kind] = self.refused.get(kind, 0) + 1
        now = self.reactor.seconds()
        if len(self._noticed) >= 4096:
            self._noticed = {k: t for k, t in self._noticed.items() if now - t < _NOTICE_EVERY}
            if len(self._noticed) >= 4096:
                return  # counted; the log has said enough this minute
        last = self._noticed.get((kind, client))
        if last is not None and now - last < _NOTICE_EVERY:
            return
        self._noticed[(kind, client)] = now
        _log.warn("portal refused {client}: {kind} ({count} {kind} so far; said once a "
                  "minute per client)", client=client, kind=kind, count=self.refused[kind],
                  netsuite_event="portal-refused")

    def front_counts(self) -> Dict[str, Any]:
        """
        What C{/portal/front} answers: C{{redirected, connections,
        connections_ipv6, waiting, refused}} (waiting: connections whose
        client is not reading their answers, so that the front stopped
        reading them).
        """
        return {"redirected": self.redirected, "connections": len(self._open),
                "connections_ipv6": self._open6,
                "waiting": sum(1 for wrapper in self._open if wrapper.wrappedProtocol.paused),
                "refused": dict(self.refused)}

    def drop_client(self, ip: Any, keep: Any = None) -> int:
        """
        Abort every connection from C{ip} but C{keep} (a connection's
        transport, or its channel's after a hand-over); the number aborted.
        """
        if isinstance(keep, _ChannelTransport):
            keep = keep._front.transport
        dropped = 0
        for protocol in list(self._open):
            if protocol is not keep and getattr(protocol.getPeer(), "host", None) == str(ip):
                protocol.transport.abortConnection()
                dropped += 1
        return dropped

    def http_date(self) -> bytes:
        """
        The Date header's value now, made once a second (the fronts
        answer thousands of requests a second).
        """
        second = int(self.reactor.seconds())
        if self._date[0] != second:
            self._date = (second, datetimeToString(second))
        return self._date[1]


def declare_front(registry: Any, site: PortalSite) -> None:
    """
    Declare C{/portal/front}, answering C{site}'s counts, for an operator
    (C{netsuite-hook send PROCESS:/portal/front}).
    """
    declare_service(registry, "portal", {
        "/portal/front": "The portal port's counts: answers {redirected, connections, "
                         "connections_ipv6, waiting, refused: {kind: count}} (kinds: "
                         "bad-request, head-too-large, head-timeout, pipeline-overflow, "
                         "client-cap, total-cap, ipv6-cap)."},
        {}, {"/portal/front": lambda message: Stop(site.front_counts())})


_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


def _refusal(code: int) -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s\n" % (code, _REASONS[code], len(_REASONS[code]) + 1,
                                                _REASONS[code]))


@implementer(IPushProducer)
class RedirectFront(TimeoutMixin, Protocol):
    """
    The first reader of a portal connection. A plain GET or HEAD for
    another host that is not an OS probe (what an unauthorized client
    sends, over and over) is answered here, straight from the bytes: the
    same 307 as L{PortalResource.redirect}, without twisted.web's request
    machinery. Anything else (the portal's own pages, a probe, a request
    with a body, a head it does not read plainly) hands the connection,
    with the bytes read so far, to twisted.web for good. A head over
    L{HEAD_LIMIT} gets 431, a target that is no URL 400, and a head not
    whole C{site.head_timeout} seconds after its first byte is cut.

    It is the transport's producer: told to pause (the transport's buffer
    is full: the client does not read), it answers nothing more and stops
    reading until told to resume; a client that sends more than
    L{_PIPELINE_LIMIT} bytes ahead meanwhile is cut.

    It stays so after a hand-over, between the transport and twisted.web's
    channel (whose transport is a L{_ChannelTransport}): twisted.web
    answers every pipelined request it has read before it looks at
    back-pressure again, so the front gives it the bytes read one request
    head at a time, and the next only when the channel is done with the
    last and the transport is not paused. Meanwhile it stops reading; the
    channel's own pause and resume (of its request's producer, of the
    reading) go through the front.
    """

    def __init__(self, site: PortalSite, addr: Any) -> None:
        self.site = site
        self.addr = addr
        self.buffer = b""
        self.channel: Any = None
        self.paused = False
        self.callLater = site.reactor.callLater
        self._reading = True
        self._http: Any = None  # the channel's producer, once it has registered
        self._http_reads = True  # what the channel asked of its network producer
        self._feeding = False
        self._feed_call: Any = None

    def connectionMade(self) -> None:
        self.setTimeout(self.site.timeOut)
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.buffer += data
            self._feed()
            if len(self.buffer) > _PIPELINE_LIMIT:
                self._refuse("pipeline-overflow", None)
            return
        if not self.buffer:
            self.setTimeout(self.site.head_timeout)  # a head starts: it has this long
        self.buffer += data
        if self.paused:
            if len(self.buffer) > _PIPELINE_LIMIT:
                self._refuse("pipeline-overflow", None)
            return
        self._answer_buffered()

    def _answer_buffered(self) -> None:
        while self.buffer and not self.paused and self.channel is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end > HEAD_LIMIT or (end < 0 and len(self.buffer) > HEAD_LIMIT):
                self._refuse("head-too-large", 431)
                return
            if end < 0:
                return
            answer = self._answer(self.buffer[:end])
            if answer is None:
                self._hand_over()
                return
            response, close = answer
            self.buffer = self.buffer[end + 4:]
            self.setTimeout(self.site.head_timeout if self.buffer else self.site.timeOut)
            if close:
                self.setTimeout(None)
                self.transport.write(response)
                self.transport.loseConnection()
                return
            self.transport.write(response)  # may pause us (the client is not reading)

    def _answer(self, head: bytes) -> Optional[Tuple[bytes, bool]]:
        """
        The response to a plain foreign GET or HEAD (or a 400 for a target
        that is no URL) and whether to close after it; None for anything
        else.
        """
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD") or parts[2] not in (
                b"HTTP/1.1", b"HTTP/1.0"):
            return None
        host = None
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip():
                return None
            name = name.lower()
            if name == b"host":
                if host is not None:
                    return None
                host = value.strip().lower()
            elif name == b"connection":
                connection = value.strip().lower()
            elif name in _HANDS_OVER:
                return None
        try:
            host_text = (host or b"").decode("ascii")
            uri = parts[1].decode("ascii")
        except UnicodeDecodeError:
            return None
        path = request_path(uri)
        if path is None:
            self.site.refuse("bad-request", self._client())
            return _refusal(400), True
        resource = self.site.resource
        if not host_text or host_text == resource.portal.host.lower() or path in PROBES:
            return None
        if resource.portal.hears_requests():
            ip = ipaddress.ip_address(self._client())
            resource.portal.request_seen(ip, host_text, path, parts[0].decode("ascii"))
        location, body = resource.foreign_redirect(host_text, uri)
        self.site.redirected += 1
        close = connection == b"close" or (parts[2] == b"HTTP/1.0" and connection != b"keep-alive")
        if close:
            connection = b"Connection: close\r\n"
        else:
            connection = b"Connection: keep-alive\r\n" if parts[2] == b"HTTP/1.0" else b""
        head_out = (b"%s 307 Temporary Redirect\r\nCache-Control: no-store\r\n"
                    b"Location: %s\r\nRefresh: 0; url=%s\r\nContent-Type: %s\r\n"
                    b"Content-Length: %d\r\nDate: %s\r\n%s\r\n" % (
                        parts[2], location, location, HTML, len(body),
                        self.site.http_date(), connection))
        return (head_out if parts[0] == b"HEAD" else head_out + body), close

    def _client(self) -> str:
        return str(self.transport.getPeer().host)

    def _refuse(self, kind: str, code: Optional[int]) -> None:
        """
        Count and log C{kind}, answer C{code} (if any) and close.
        """
        self.site.refuse(kind, self._client())
        self.setTimeout(None)
        self.buffer = b""
        if code is None:
            self.transport.abortConnection()
        else:
            self.transport.write(_refusal(code))
            self.transport.loseConnection()

    def _hand_over(self) -> None:
        self.setTimeout(None)
        self.channel = Site.buildProtocol(self.site, self.addr)
        self.channel.makeConnection(_ChannelTransport(self))
        self._feed()

    def _feed(self) -> None:
        """
        Give the channel the bytes read, a request head (and what comes
        before it: the last request's body) at a time, while it is not
        busy with a request and the transport not paused; read more only
        when all is given.
        """
        if self._feeding:
            return  # the loop below goes on once the channel returns
        self._feeding = True
        try:
            # HTTPChannel's _handlingRequest: from a request's last byte to
            # the end of its answer (what it reads meanwhile it replays at once)
            while (self.buffer and not self.paused and not self.transport.disconnecting
                   and not getattr(self._http, "_handlingRequest", False)):
                end = self.buffer.find(b"\r\n\r\n")
                cut = len(self.buffer) if end < 0 else end + 4
                piece, self.buffer = self.buffer[:cut], self.buffer[cut:]
                self.channel.dataReceived(piece)
        finally:
            self._feeding = False
        self._read(not self.paused and self._http_reads and not self.buffer)

    def _read(self, on: bool) -> None:
        if on != self._reading and not self.transport.disconnecting:
            self._reading = on
            if on:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def _channel_reads(self, on: bool) -> None:
        """
        The channel paused (C{on} false) or resumed its network producer:
        it resumes when it is done with a request, often before it says it
        is no longer busy, so the next is given a moment later.
        """
        self._http_reads = on
        if not on:
            self._read(False)
        elif not self._feeding and self._feed_call is None:
            self._feed_call = self.callLater(0, self._feed_later)

    def _feed_later(self) -> None:
        self._feed_call = None
        self._feed()

    # IPushProducer: the transport's buffer is full, or has room again

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self._read(False)
            if self._http is not None:
                self._http.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            if self.channel is None:
                self._read(True)
                self._answer_buffered()
            else:
                if self._http is not None:
                    self._http.resumeProducing()
                self._feed()

    def stopProducing(self) -> None:
        self.buffer = b""
        if self._http is not None:
            self._http.stopProducing()

    def timeoutConnection(self) -> None:
        if self.buffer:
            self.site.refuse("head-timeout", self._client())
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        self.buffer = b""
        if self._feed_call is not None:
            self._feed_call.cancel()
            self._feed_call = None
        if self.channel is not None:
            self.channel.connectionLost(reason)


@implementer(IPushProducer, IConsumer)
class _ChannelTransport:
    """
    The transport of twisted.web's channel after a hand-over: the front's
    own (the channel writes, closes and asks who the peer is through it),
    except that the channel's registration as its producer and its pause
    and resume of the reading go to the front, which stays the transport's
    producer and passes them on.
    """

    def __init__(self, front: RedirectFront) -> None:
        self._front = front
        directlyProvides(self, providedBy(front.transport))  # ISSLTransport, ITCPTransport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._front.transport, name)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._front._http = producer
        if self._front.paused:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        # the channel is closing: the transport ends once its buffer is sent
        self._front._http = None
        self._front.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self._front._channel_reads(False)

    def resumeProducing(self) -> None:
        self._front._channel_reads(True)

    def stopProducing(self) -> None:
        self._front.transport.stopProducing()
