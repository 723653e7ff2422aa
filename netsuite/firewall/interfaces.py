# -*- test-case-name: tests.firewall.test_contract -*-
"""
The firewall adapter's interface: what portal, SMTP gate, mail proxy and
stats ask of the kernel.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional, Tuple

import attr
from zope.interface import Attribute, Interface

from ..registry.values import MAC

__all__ = ["IFirewall", "Client", "Traffic", "FirewallError", "NotInLan", "client_address",
           "new_client", "window_seconds"]


class FirewallError(Exception):
    """
    The kernel refused, or the adapter cannot work as configured.
    """


class NotInLan(FirewallError, ValueError):
    """
    An address outside the LAN network was given for a client.
    """


@attr.s(frozen=True, auto_attribs=True)
class Client:
    """
    An authorized client: its address bound to its MAC, and its rate limits
    in kbit/s (0: unlimited).
    """

    ip: ipaddress.IPv4Address
    mac: MAC
    up_kbit: int = 0
    down_kbit: int = 0


@attr.s(frozen=True, auto_attribs=True)
class Traffic:
    """
    A client's byte and packet counters since it was authorized.
    """

    bytes_up: int = 0
    packets_up: int = 0
    bytes_down: int = 0
    packets_down: int = 0


def client_address(network: ipaddress.IPv4Network, ip: Any) -> ipaddress.IPv4Address:
    """
    C{ip} as an address, if it can be a client of C{network}; else L{NotInLan}.
    """
    ip = ipaddress.IPv4Address(ip)
    if ip not in network or ip in (network.network_address, network.broadcast_address):
        raise NotInLan(f"{ip} is not a client address of {network}")
    return ip


def new_client(network: ipaddress.IPv4Network, ip: Any, mac: Any, up_kbit: Optional[int],
               down_kbit: Optional[int], defaults: Tuple[int, int]) -> Client:
    """
    The L{Client} to authorize (limits default to C{defaults}), checked.
    """
    return Client(client_address(network, ip), MAC(mac),
                  defaults[0] if up_kbit is None else int(up_kbit),
                  defaults[1] if down_kbit is None else int(down_kbit))


def window_seconds(seconds: Optional[int], default: int) -> int:
    """
    The length of an SMTP window, checked.
    """
    seconds = default if seconds is None else int(seconds)
    if not 0 < seconds <= 2_000_000:
        raise ValueError(f"an SMTP window lasts 1 to 2000000 seconds, not {seconds}")
    return seconds


class IFirewall(Interface):
    """
    netsuite's access control in the kernel. Every method that changes or
    reads the kernel returns a Deferred; the calls take effect in the order
    they were made.
    """

    clients = Attribute("dict of authorized clients, ip -> Client (netsuite's own state)")

    def start() -> object:
        """
        Install the static rules and sets, reconciling what a crashed or
        kept run left behind; adopt or drop the clients found in the kernel.
        """

    def stop() -> object:
        """
        Remove everything netsuite added (keep authorized clients' entries
        if so configured).
        """

    def authorize(ip: ipaddress.IPv4Address, mac: MAC, up_kbit: Optional[int] = None,
                  down_kbit: Optional[int] = None) -> object:
        """
        Let C{ip}, from C{mac} only, through; apply its rate limits (None:
        the configured default). Fires with the L{Client}.
        """

    def deauthorize(ip: ipaddress.IPv4Address) -> object:
        """
        Block C{ip} again and cut its open connections. Fires with True,
        or False if it was not authorized.
        """

    def traffic() -> object:
        """
        Fires with ip -> L{Traffic} for every authorized client.
        """

    def open_smtp(ip: ipaddress.IPv4Address, seconds: Optional[int] = None) -> object:
        """
        Let C{ip} reach SMTP for C{seconds} (None: the configured window);
        the window closes by itself.
        """

    def close_smtp(ip: ipaddress.IPv4Address) -> object:
        """
        Close C{ip}'s SMTP window now.
        """

    def smtp_windows() -> object:
        """
        Fires with ip -> seconds left, for every open window.
        """

    def check() -> object:
        """
        Compare the kernel with what netsuite installed and restore what
        another tool removed or changed, clients included. Fires with a list
        of what was repaired.
        """
