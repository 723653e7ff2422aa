# -*- test-case-name: tests.bus -*-
"""
What the bus tests share: an owner served in memory and its peers,
connected with L{twisted.test.iosim}. No reactor runs: a
L{MemoryReactorClock} records the client's connection attempts and keeps
time for both sides.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from netsuite.bus.client import BusClient
from netsuite.bus.permissions import Permissions
from netsuite.bus.server import BusServerFactory, BusServerProtocol, Credentials
from netsuite.registry import EVENT, Registry, Stop


LEASE = "/dhcp/lease"
SEEN = "/dhcp/seen"
SOCKET = "/nonexistent/netsuite/owner.sock"

# A Send with a typed value that is well-formed JSON but not a valid value.
BAD_IPV4_MESSAGE = b'["map",{"ip":["ipv4","10.0.0.300"]}]'
NON_ASCII_BYTES_MESSAGE = '["map",{"raw":["bytes","\u00e9\u00e9\u00e9\u00e9"]}]'.encode("utf-8")

# A message too big for one AMP value.
BIG = bytes(range(256)) * 800  # 204,800 bytes


def no_credentials(transport: Any) -> Optional[Credentials]:
    """
    A peer whose credentials cannot be read (as over TCP).
    """
    return None


class Owner:
    """
    The process that owns the mailboxes: a L{Registry} served by
    L{BusServerFactory}, with a stock listener on L{LEASE} answering
    C{"stock"}. Its peers may do everything unless C{permissions} say
    otherwise.
    """

    def __init__(self, credentials: Callable[[Any], Optional[Credentials]] = no_credentials,
                 allowed_uids: Tuple[int, ...] = (),
                 permissions: Optional[Permissions] = None) -> None:
        self.reactor = MemoryReactorClock()
        self.registry = Registry("owner", self.reactor)
        self.registry.declare(LEASE, doc="Which address?")
        self.registry.declare(SEEN, kind=EVENT)
        self.stock = self.registry.listen(LEASE, lambda message: Stop("stock"),
                                          tags={"owner": "dhcp"})
        self.factory = BusServerFactory(
            self.registry, allowed_uids, credentials,
            Permissions.everyone() if permissions is None else permissions)

    def raw(self) -> Tuple[amp.AMP, BusServerProtocol, iosim.IOPump]:
        """
        Connect a bare L{amp.AMP} peer to a new server protocol.
        """
        return iosim.connectedServerAndClient(
            lambda: self.factory.buildProtocol(None), amp.AMP, clock=self.reactor)

    def client(self) -> BusClient:
        """
        A L{BusClient} for this owner; its connection attempts are recorded
        by the reactor until L{accept} completes one.
        """
        return BusClient("owner", "unix:path=" + SOCKET, self.reactor)

    def accept(self) -> iosim.IOPump:
        """
        Complete the client's latest connection attempt with a new server
        protocol, and let both sides greet.
        """
        address, factory, timeout, check_pid = self.reactor.unixClients[-1]
        assert address == SOCKET, address
        client = factory.buildProtocol(None)
        self.server = self.factory.buildProtocol(None)
        self.pump = iosim.connect(self.server, iosim.makeFakeServer(self.server),
                                  client, iosim.makeFakeClient(client), clock=self.reactor)
        return self.pump

    def refuse(self, error: Optional[Exception] = None) -> None:
        """
        Fail the client's latest connection attempt, with C{error} (by
        default, the connection is refused).
        """
        address, factory, timeout, check_pid = self.reactor.unixClients[-1]
        factory.clientConnectionFailed(
            None, Failure(ConnectionRefusedError() if error is None else error))

    def listeners(self, path: str = LEASE) -> List[Dict[str, Any]]:
        """
        The tags of the listeners on C{path}, in chain order.
        """
        return [listener["tags"] for listener in self.registry.describe(path)[0]["listeners"]]


class Bogus(amp.Command):
    """
    A command the bus does not know.
    """

    commandName = b"Bogus"
    arguments: list = []
    response: list = []


class ConnectedTestCase(SynchronousTestCase):
    """
    A L{BusClient} connected to an L{Owner}, in memory.
    """

    def setUp(self) -> None:
        self.owner = Owner()
        self.client = self.owner.client()
        self.pump = self.owner.accept()

    def flush(self) -> None:
        self.pump.flush()
