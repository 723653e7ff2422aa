# -*- test-case-name: tests.firewall.test_contract,tests.firewall.test_shaper_contract -*-
"""
The firewall adapter's interface: what portal, SMTP gate, mail proxy and
stats ask of the kernel; and the shaper's, what the adapter asks of tc.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Mapping, Optional, Tuple

import attr
from zope.interface import Attribute, Interface

from ..registry.values import MAC
from .slots import check_limits

__all__ = ["IFirewall", "IShaper", "Client", "Traffic", "FirewallError", "NotInLan", "client_address",
           "new_client", "window_seconds", "Rates"]


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


Rates = Mapping[MAC, Tuple[Optional[int], Optional[int]]]
"""Per-device limits (C{[firewall.rates]}): MAC -> (up, down) in kbit/s,
None for a direction it does not set."""


def new_client(network: ipaddress.IPv4Network, ip: Any, mac: Any, up_kbit: Optional[int],
               down_kbit: Optional[int], defaults: Tuple[int, int],
               rates: Optional[Rates] = None) -> Client:
    """
    The L{Client} to authorize, checked completely, limits included,
    before anything touches the kernel: a refused authorize changes
    nothing. Each direction's limit is the first of: the one given (the
    caller's, from the login's back end), the device's in C{rates}, the
    default in C{defaults}.
    """
    mac = MAC(mac)
    device = (rates or {}).get(mac, (None, None))
    up, down = (given if given is not None else own if own is not None else default
                for given, own, default in zip((up_kbit, down_kbit), device, defaults))
    check_limits(up, down)
    return Client(client_address(network, ip), mac, up, down)


def window_seconds(seconds: Optional[int], default: int) -> int:
    """
    The length of an SMTP window, checked.
    """
    seconds = default if seconds is None else int(seconds)
    if not 0 < seconds <= 2_000_000:
        raise ValueError(f"an SMTP window lasts 1 to 2000000 seconds, not {seconds}")
    return seconds


def smtp_server(server: Any, network: ipaddress.IPv4Network) -> Optional[ipaddress.IPv4Address]:
    """
    The server of an SMTP window, checked (None: any destination): a
    unicast IPv4 address outside the LAN.
    """
    if server is None:
        return None
    server = ipaddress.IPv4Address(server)
    if (server.is_unspecified or server.is_multicast or server == BROADCAST
            or server in network):
        raise ValueError(f"an SMTP window cannot open towards {server}")
    return server


BROADCAST = ipaddress.IPv4Address("255.255.255.255")


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
        Log every client out and close the LAN: remove everything netsuite
        added except the minimal rules that drop all forwarded LAN traffic
        (with C{keep_clients}, leave everything in place instead).
        """

    def remove() -> object:
        """
        Remove everything netsuite added, the closed LAN included: the
        explicit command that opens the LAN once netsuite is gone.
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

    def open_smtp(ip: ipaddress.IPv4Address, seconds: Optional[int] = None,
                  server: Optional[ipaddress.IPv4Address] = None) -> object:
        """
        Let C{ip} reach SMTP for C{seconds} (None: the configured window):
        any destination, or with C{server} (L{smtp_server}) that server
        only; the window closes by itself. Opening again re-times it.
        Fires with the seconds.
        """

    def close_smtp(ip: ipaddress.IPv4Address) -> object:
        """
        Close all of C{ip}'s SMTP windows now (any destination and towards
        servers).
        """

    def smtp_windows() -> object:
        """
        Fires with client ip -> {None (any destination) or server ip:
        seconds left}, for every open window.
        """

    def add_garden(ips: object, seconds: object) -> object:
        """
        Open the IPv4 addresses C{ips} (a list, at most
        L{netsuite.firewall.garden.MAX_PER_ADD}) to unauthorized clients for
        C{seconds}, clamped to the configured [garden_min_ttl,
        garden_max_ttl]; an address already in the garden for longer keeps
        its time (never lowered). Addresses of the LAN and loopback,
        multicast, link-local or reserved ones are skipped; new ones beyond
        garden_max_entries are refused (counted, logged once a minute).
        Fires with how many of C{ips} are in the garden for at least that
        time; fails with C{ValueError} for bad input, changing nothing.
        """

    def garden() -> object:
        """
        Fires with ip -> seconds left, for every garden entry.
        """

    def flush_garden() -> object:
        """
        Empty the garden; fires with the number of entries there were.
        """

    def check() -> object:
        """
        Compare the kernel with what netsuite installed and restore what
        another tool removed or changed, clients included. Fires with a list
        of what was repaired.
        """


class IShaper(Interface):
    """
    Per-client rate limits on the LAN, for L{IFirewall}'s implementation
    (L{netsuite.firewall.shaping.Shaper} in the kernel,
    L{netsuite.firewall.memory.MemoryShaper} in memory).

    Every method blocks (the kernel one on a few netlink requests, whatever
    the number of clients, except L{limits}) and returns its result: call
    it from a worker thread, one call at a time, as the firewall's runner
    does. Limits are ints of kbit/s (1000 bit/s); 0 is no limit in that
    direction. A client is an address of the LAN network other than its
    network and broadcast addresses; the LAN is a /16 to a /30, or the
    shaper refuses to be built (C{ValueError}).

    A shaper may be built with an uplink capacity per direction
    (L{netsuite.firewall.slots.Uplink}; the LAN is then a /17 to a /30):
    in such a direction every client given to L{limit} shares the uplink
    fairly with the others, capped by its own limit if it has one, and
    C{limit(ip, 0, 0)} is not C{unlimit(ip)}: it puts the client in its
    fair share.
    """

    def setup() -> None:
        """
        Build the layout (on the kernel: an IFB device, an HTB root on the
        LAN and on the IFB, the u32 tree, the LAN ingress redirect to the
        IFB), or complete and repair what is there.

        Idempotent: on a sound layout it changes nothing, client limits
        included, so that a restart throttles everyone as before; a part
        that is missing or not its own is rebuilt, empty (a flushed root
        has lost its clients' limits anyway), and so is one made with fair
        shares for a shaper without them or the other way round. The caller
        compares L{limits} with what it wants afterwards, unlimits the rest
        (or a recycled address inherits a stale limit) and sets its clients'
        limits again (after a change of uplink capacity, their classes
        still have the old one). C{LookupError} if the LAN
        interface is missing; C{RuntimeError} if the IFB's name is taken by
        another kind of device.
        """

    def teardown() -> None:
        """
        Remove what L{setup} made, every client's limits with it, and
        nothing else. Idempotent. Afterwards L{intact} is False, and
        L{limit}, L{unlimit} and L{limits} raise C{LookupError} (there is
        no IFB device) until the next L{setup}.
        """

    def limit(ip: ipaddress.IPv4Address, up_kbit: int, down_kbit: int) -> None:
        """
        Set (add or replace) the client's limits; C{limit(ip, 0, 0)} is
        C{unlimit(ip)}, except with an uplink capacity (see above).

        C{ValueError}, before anything changes, if C{ip} is not a client
        address of the LAN or a limit is not an int from 0 to 10,000,000.
        C{LookupError} without an IFB device (before the first L{setup},
        after L{teardown}). On a layout that another tool flushed
        (L{intact} is False) it fails until L{setup}: the kernel's way (a
        C{NetlinkError}, perhaps with one direction set) or the memory
        one's (C{LookupError}, nothing set).
        """

    def unlimit(ip: ipaddress.IPv4Address) -> None:
        """
        Remove the client's limits; harmless if it has none, twice, or on a
        flushed layout. C{ValueError} if C{ip} is not a client address of
        the LAN; C{LookupError} without an IFB device.
        """

    def limits() -> Dict[ipaddress.IPv4Address, Tuple[int, int]]:
        """
        The limits in place, read back (from the kernel's classes, not from
        memory of what was asked): client address -> (up_kbit, down_kbit),
        0 for a direction without a limit; clients without a limit (and
        those whose classes were flushed) are absent, except that with an
        uplink capacity every client given to L{limit} is there, (0, 0)
        for one without limits of its own. Costs one class dump per direction, so it grows with the
        number of limited clients. C{LookupError} without an IFB device.
        """

    def intact() -> bool:
        """
        Is the whole layout in place? False before L{setup}, after
        L{teardown}, and once another tool removed any part of it (a
        flushed qdisc, the IFB device deleted or down, the ingress redirect
        gone or pointing elsewhere); True again after L{setup}. Never
        raises for a missing part. It checks that the parts exist, not the
        LAN network their u32 keys were made for (L{setup} does). A few
        requests, whatever the number of clients: for a periodic check.
        """
