# -*- test-case-name: tests.portal.test_front -*-
"""
The portal's site and the front protocol that meets each of its
connections: the redirect an unauthorized client gets for every request,
answered straight from the bytes; anything else goes to twisted.web.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Optional, Tuple
from urllib.parse import urlsplit

from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, TimeoutMixin
from twisted.web.http import datetimeToString
from twisted.web.server import Site

from .pages import HTML, PROBES

if TYPE_CHECKING:
    from .resource import PortalResource

__all__ = ["PortalSite", "RedirectFront"]


class PortalSite(Site):
    """
    The portal's site. Every connection first meets a L{RedirectFront},
    which answers the common plain redirect itself; and the site knows its
    open connections, so that a client's login can cut the others
    (connections diverted to the portal before the login, including idle
    ones a browser opened ahead and would reuse).

    @ivar redirected: requests answered by the fronts (not access-logged:
        a busy hotspot sees thousands a minute; C{/portal/request} has
        them for listeners).
    """

    def __init__(self, resource: "PortalResource", *args: Any, **kwargs: Any) -> None:
        Site.__init__(self, resource, *args, **kwargs)
        self.redirected = 0
        self._open: set = set()
        self._date: Tuple[int, bytes] = (-1, b"")

    def buildProtocol(self, addr: Any) -> Any:
        return ProtocolWrapper(self, RedirectFront(self, addr))

    def registerProtocol(self, protocol: Any) -> None:
        self._open.add(protocol)

    def unregisterProtocol(self, protocol: Any) -> None:
        self._open.discard(protocol)

    def drop_client(self, ip: Any, keep: Any = None) -> int:
        """
        Abort every connection from C{ip} but C{keep}; the number aborted.
        """
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


_HEAD_LIMIT = 8192
_HANDS_OVER = (b"content-length", b"transfer-encoding", b"expect", b"upgrade")


class RedirectFront(TimeoutMixin, Protocol):
    """
    The first reader of a portal connection. A plain GET or HEAD for
    another host that is not an OS probe (what an unauthorized client
    sends, over and over) is answered here, straight from the bytes: the
    same 307 as L{PortalResource.redirect}, without twisted.web's request
    machinery. Anything else (the portal's own pages, a probe, a request
    with a body, a head it does not read plainly, an overlong head) hands
    the connection, with the bytes read so far, to twisted.web for good.
    """

    def __init__(self, site: PortalSite, addr: Any) -> None:
        self.site = site
        self.addr = addr
        self.buffer = b""
        self.channel: Any = None
        self.callLater = site.reactor.callLater

    def connectionMade(self) -> None:
        self.setTimeout(self.site.timeOut)

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.dataReceived(data)
            return
        self.resetTimeout()
        self.buffer += data
        while self.buffer:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _HEAD_LIMIT:
                    self._hand_over()
                return
            answer = self._answer(self.buffer[:end])
            if answer is None:
                self._hand_over()
                return
            response, close = answer
            self.buffer = self.buffer[end + 4:]
            self.site.redirected += 1
            self.transport.write(response)
            if close:
                self.setTimeout(None)
                self.transport.loseConnection()
                return

    def _answer(self, head: bytes) -> Optional[Tuple[bytes, bool]]:
        """
        The response to a plain foreign GET or HEAD and whether to close
        after it; None for anything else.
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
        resource = self.site.resource
        path = (uri.partition("?")[0] if uri.startswith("/") else urlsplit(uri).path) or "/"
        if not host_text or host_text == resource.portal.host.lower() or path in PROBES:
            return None
        if resource.portal.hears_requests():
            ip = ipaddress.ip_address(self.transport.getPeer().host)
            resource.portal.request_seen(ip, host_text, path, parts[0].decode("ascii"))
        location, body = resource.foreign_redirect(host_text, uri)
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

    def _hand_over(self) -> None:
        self.setTimeout(None)
        self.channel = Site.buildProtocol(self.site, self.addr)
        self.channel.makeConnection(self.transport)
        buffered, self.buffer = self.buffer, b""
        if buffered:
            self.channel.dataReceived(buffered)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        if self.channel is not None:
            self.channel.connectionLost(reason)
