# -*- test-case-name: tests.dhcp.test_server -*-
"""
Building a reply's options and packet (pure): options are keyed by code
from the config to the wire; the C{/dhcp/options} mailbox names them.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Dict, List, Optional, Tuple

from twisted.logger import Logger

from ..registry.values import MAC, Message
from .options import (CAPTIVE_PORTAL, DNS_SERVERS, HOST_NAME, LEASE_TIME, REBINDING_TIME,
                      RENEWAL_TIME, ROUTERS, SERVER_ID, SUBNET_MASK, encode_option, option_code,
                      option_name)
from .packet import BOOTREPLY, Packet
from .ranges import Subnet

__all__ = ["reply_packet", "encoded", "in_order", "named", "amended", "ReplyOptions"]

_log = Logger()
ZERO = IPv4Address(0)


def reply_packet(request: Packet, kind: int, yiaddr: IPv4Address,
                 options: List[Tuple[int, bytes]], ciaddr: IPv4Address = ZERO) -> Packet:
    """
    The reply of type C{kind} to C{request} with C{options} (encoded, in
    order), the relay's agent information echoed.
    """
    return Packet.trusted(BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0,
                          request.flags, ciaddr, yiaddr, ZERO, request.giaddr,
                          request.chaddr, _NO_SNAME, _NO_FILE,
                          ((53, bytes([kind])),) + tuple(options) + _relay_echo(request))


def _relay_echo(request: Packet) -> Tuple[Tuple[int, bytes], ...]:
    """
    RFC 3046: a relay's agent information (82) goes back in the reply.
    """
    raw = request.option(82)
    return ((82, raw),) if raw is not None else ()


_NO_SNAME = bytes(64)
_NO_FILE = bytes(128)
_SERVER_MANAGED = frozenset({0, 52, 53, 82, 255})
"""Option codes the server writes itself (or that are wire details): a
configured or hooked value for one is left out."""


def encoded(options: Dict[int, Any]) -> List[Tuple[int, bytes]]:
    """
    Options by code, encoded; a value that does not encode is left out
    and logged.
    """
    pairs = []
    for code, value in options.items():
        try:
            if code in _SERVER_MANAGED:
                raise ValueError("the server sets this option itself")
            pairs.append((code, encode_option(code, value)))
        except ValueError as e:
            _log.warn("option {name}={value!r} left out of the reply: {error}",
                      name=option_name(code), value=value, error=e)
    return pairs


def in_order(options: Dict[int, bytes]) -> List[Tuple[int, bytes]]:
    """
    The options by code, the server identifier first (some clients look
    there only). Changes C{options}.
    """
    server_id = options.pop(54, None)
    pairs = sorted(options.items())  # codes are distinct: only they are compared
    if server_id is not None:
        pairs.insert(0, (54, server_id))
    return pairs


def named(options: Dict[int, Any]) -> Message:
    """
    Options by code as the C{/dhcp/options} message has them: by name,
    values as netsuite values.
    """
    return {option_name(code): _value(value) for code, value in options.items()}


def amended(options: Dict[int, Any], amend: Dict[str, Any]) -> None:
    """
    Apply a C{/dhcp/options} answer (option names to values, None removing
    one) to C{options}; an unknown name is logged and left out.
    """
    for name, value in amend.items():
        try:
            code = option_code(str(name))
        except KeyError as e:
            _log.warn("option {name}={value!r} left out of the reply: {error}",
                      name=name, value=value, error=e)
            continue
        if value is None:
            options.pop(code, None)
        else:
            options[code] = value


def _value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "packed") and not isinstance(value, (IPv4Address, MAC)):
        return str(value)
    return value




class ReplyOptions:
    """
    A reply's options before any C{/dhcp/options} listener: the subnet's
    (server, mask, lease times, router, DNS, its own options) and the
    portal's URL (option 114). Encoded ones are kept per subnet and lease
    time, as replies mostly carry the subnet's own, or a second less.
    """

    MAX_KEPT = 1024

    def __init__(self, portal_url: str = "") -> None:
        self.portal_url = portal_url
        self._ready: Dict[Tuple[str, Optional[int]], List[Tuple[int, bytes]]] = {}

    def base(self, subnet: Subnet, lease_time: Optional[float]) -> Dict[int, Any]:
        """The options by code, for a listener to amend."""
        options: Dict[int, Any] = {SERVER_ID: subnet.server,
                                   SUBNET_MASK: subnet.network.netmask}
        if lease_time is not None:
            seconds = max(int(lease_time), 1)
            options.update({LEASE_TIME: seconds, RENEWAL_TIME: seconds // 2,
                            REBINDING_TIME: seconds * 7 // 8})
        if subnet.router is not None:
            options[ROUTERS] = [subnet.router]
        if subnet.dns:
            options[DNS_SERVERS] = list(subnet.dns)
        if self.portal_url:
            options[CAPTIVE_PORTAL] = self.portal_url
        options.update(subnet.options)
        return options

    def ready(self, subnet: Subnet, lease_time: Optional[float],
              hostname: Optional[str]) -> List[Tuple[int, bytes]]:
        """L{base} encoded, in order, with the host name (option 12) if given."""
        key = (subnet.name, None if lease_time is None else max(int(lease_time), 1))
        ready = self._ready.get(key)
        if ready is None:
            if len(self._ready) > self.MAX_KEPT:
                self._ready.clear()
            ready = self._ready[key] = in_order(dict(encoded(self.base(subnet, lease_time))))
        if hostname:
            return in_order({**dict(ready), HOST_NAME: encode_option(HOST_NAME, hostname)})
        return ready
