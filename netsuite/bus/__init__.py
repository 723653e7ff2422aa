# -*- test-case-name: tests.bus -*-
"""
The AMP bus: a process serves its registry to others, and reaches theirs.

A hook script needs only this::

    from netsuite.bus import connect, Stop, CONTINUE
"""

from ..registry.interfaces import CONTINUE, NO_ANSWER, Stop
from ..registry.values import MAC
from .client import AccessDenied, BusClient, NotRunning, connect, socket_endpoint
from .peers import Peers
from .server import BusServerFactory

__all__ = ["connect", "BusClient", "NotRunning", "AccessDenied", "Peers", "socket_endpoint",
           "BusServerFactory", "Stop", "CONTINUE", "NO_ANSWER", "MAC"]
