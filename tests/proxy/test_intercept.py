"""
L{netsuite.proxy.intercept}: original destinations, listeners and
connecting out (the lab tests, tests.integration.test_proxy_lab, run them
against the kernel's TPROXY and REDIRECT).
"""

import errno
import os
import socket
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.proxy.intercept import (IP_TRANSPARENT, SO_ORIGINAL_DST, destination_for,
                                      fixed_destination, listener_socket, original_destination,
                                      redirect_destination, tcp_outbound, tproxy_destination)


class FakeSocket:
    def __init__(self, family: int, raw: bytes) -> None:
        self.family = family
        self.raw = raw
        self.asked: Any = None

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        self.asked = (level, option, size)
        if not self.raw:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return self.raw


class FakeTransport:
    def __init__(self, sock: Any, host: IPv4Address) -> None:
        self.sock, self.host = sock, host

    def getHandle(self) -> Any:
        return self.sock

    def getHost(self) -> IPv4Address:
        return self.host


def sockaddr_in(host: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + \
        socket.inet_aton(host) + b"\0" * 8


def sockaddr_in6(host: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + \
        socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0)


HOST = IPv4Address("TCP", "10.89.0.1", 10143)


class DestinationTests(SynchronousTestCase):
    def test_original_destination_ipv4(self) -> None:
        sock = FakeSocket(socket.AF_INET, sockaddr_in("198.51.100.1", 143))
        self.assertEqual(original_destination(sock), ("198.51.100.1", 143))  # type: ignore
        self.assertEqual(sock.asked, (socket.SOL_IP, SO_ORIGINAL_DST, 16))

    def test_original_destination_ipv6(self) -> None:
        sock = FakeSocket(socket.AF_INET6, sockaddr_in6("2001:db8:100::1", 993))
        self.assertEqual(original_destination(sock), ("2001:db8:100::1", 993))  # type: ignore
        self.assertEqual(sock.asked, (41, 80, 28))

    def test_redirect(self) -> None:
        sock = FakeSocket(socket.AF_INET, sockaddr_in("198.51.100.1", 110))
        self.assertEqual(redirect_destination(FakeTransport(sock, HOST)), ("198.51.100.1", 110))

    def test_redirect_none(self) -> None:
        e = self.assertRaises(OSError, redirect_destination,
                              FakeTransport(FakeSocket(socket.AF_INET, b""), HOST))
        self.assertEqual(e.errno, 92)

    def test_redirect_not_redirected(self) -> None:
        """A connection to the listener itself would make the proxy connect to itself."""
        sock = FakeSocket(socket.AF_INET, sockaddr_in("10.89.0.1", 10143))
        e = self.assertRaises(OSError, redirect_destination, FakeTransport(sock, HOST))
        self.assertEqual(e.errno, errno.ENOPROTOOPT)

    def test_tproxy(self) -> None:
        self.assertEqual(tproxy_destination(FakeTransport(None, HOST)), ("10.89.0.1", 10143))

    def test_modes(self) -> None:
        self.assertIs(destination_for("tproxy"), tproxy_destination)
        self.assertIs(destination_for("redirect"), redirect_destination)
        self.assertEqual(destination_for("forward", ("127.0.0.1", 9))(None), ("127.0.0.1", 9))
        self.assertEqual(fixed_destination("::1", 9)(None), ("::1", 9))
        self.assertRaises(ValueError, destination_for, "forward")
        self.assertRaises(ValueError, destination_for, "nfqueue")


class ListenerTests(SynchronousTestCase):
    def test_plain(self) -> None:
        sock = listener_socket("127.0.0.1", 0, transparent=False)
        self.addCleanup(sock.close)
        self.assertFalse(sock.getblocking())
        self.assertEqual(sock.getsockopt(socket.SOL_IP, IP_TRANSPARENT), 0)

    def test_transparent(self) -> None:
        if os.getuid() != 0:
            self.skipTest("IP_TRANSPARENT needs CAP_NET_ADMIN (running as uid %d)" % os.getuid())
        sock = listener_socket("127.0.0.1", 0, transparent=True)
        self.addCleanup(sock.close)
        self.assertEqual(sock.getsockopt(socket.SOL_IP, IP_TRANSPARENT), 1)
        six = listener_socket("::1", 0, transparent=True)
        self.addCleanup(six.close)
        self.assertEqual(six.getsockopt(41, 75), 1)
        self.assertEqual(six.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 1)


class OutboundTests(SynchronousTestCase):
    def test_tcp(self) -> None:
        reactor = MemoryReactorClock()
        factory = ClientFactory()
        cancel = tcp_outbound(reactor, timeout=7)(("192.0.2.9", 143), ("10.0.0.5", 1), factory)
        host, port, got, timeout, bind = reactor.tcpClients[0]
        self.assertEqual((host, port, got, timeout), ("192.0.2.9", 143, factory, 7))
        [connector] = reactor.connectors
        self.assertFalse(connector._disconnected)
        cancel()
        self.assertTrue(connector._disconnected)
