# -*- test-case-name: tests.mailproxy.test_tap -*-
"""
C{twistd netsuite-mailproxy}, and the C{[mailproxy]} section of the config.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Tuple

from twisted.application.service import Service

from ..config.fields import (IPV4, PATH, PORT, POSITIVE_INT, POSITIVE_SECONDS, Kind, between,
                             one_of)
from ..config.schema import ConfigError, Field

__all__ = ["SECTION", "CAPABILITIES", "check", "serviceFromConfig"]

# IP_TRANSPARENT (and IPV6_TRANSPARENT) takes CAP_NET_RAW or CAP_NET_ADMIN:
# on the listeners in TPROXY mode (bound in privilegedStartService, as root
# under twistd --uid), and on each outbound socket of spoof_source, made
# while it runs. CAP_NET_RAW is the narrower: it changes no firewall.
CAPABILITIES: "frozenset[str]" = frozenset({"CAP_NET_RAW"})


def _port_modules(raw: Any) -> Dict[int, List[str]]:
    if not isinstance(raw, dict):
        raise TypeError(raw)
    found = {}
    for port, names in raw.items():
        number = int(port)
        if not 0 < number < 65536 or not str(port).isdigit():
            raise ValueError(port)
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError(names)
        found[number] = list(names)
    return found


def _ipv6_or_none(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError(raw)
    return str(ipaddress.IPv6Address(raw)) if raw else ""


PORT_MODULES = Kind('a table of destination port = module name or [names], such as '
                    '{ 143 = "imap", 110 = "pop3" }', _port_modules)
IPV6_OR_NONE = Kind('an IPv6 address such as "::", or "" for none', _ipv6_or_none)

SECTION = {
    "enabled": Field(bool, False, "run the mail proxy in this process"),
    "mode": Field(str, "tproxy", "how connections reach the proxy: tproxy (the firewall's "
                  "TPROXY rules, tproxy_port), redirect (REDIRECT, SO_ORIGINAL_DST) or "
                  "nfqueue (the SYN queued and recorded, then REDIRECTed: "
                  "firewall.nfqueue_redirect_port)",
                  one_of("tproxy", "redirect", "nfqueue")),
    "nfqueue_num": Field(int, 0, "nfqueue mode: the queue read (firewall.nfqueue_num)",
                         between(0, 65535, "a queue number")),
    "nfqueue_entries": Field(POSITIVE_INT, 4096, "nfqueue mode: SYNs recorded at most (a new "
                             "one pushes the oldest out)"),
    "nfqueue_seconds": Field(POSITIVE_SECONDS, 30.0, "nfqueue mode: seconds a SYN's record "
                             "waits for its connection"),
    "tls_heuristic": Field(bool, False, "on the TLS ports (modules tls): infer a login from a "
                           "session still open, with data both ways, tls_seconds after its "
                           "handshake (evidence \"inferred\")"),
    "tls_seconds": Field(POSITIVE_SECONDS, 60.0, "seconds after the TLS handshake before a "
                         "login is inferred"),
    "listen": Field(IPV4, "0.0.0.0", "IPv4 address of the listener"),
    "listen6": Field(IPV6_OR_NONE, "", "IPv6 address of a second listener (\"\": none)"),
    "port": Field(PORT, 10143, "the listener's port (firewall.tproxy_port in tproxy mode)"),
    "modules": Field(PORT_MODULES, {"143": "imap", "110": "pop3"},
                     "protocol modules by the original destination's port"),
    "default_modules": Field("str_list", ["relay"], "modules for connections to any other "
                             "port (relay: untouched)"),
    "spoof_source": Field(bool, False, "tproxy mode: connect to the server from the client's "
                          "own address (the server sees the client, not the access point)"),
    "connect_timeout": Field(POSITIVE_SECONDS, 10.0, "seconds to connect to the server (and "
                             "for /mailproxy/connect to answer)"),
    "inspect_idle": Field(POSITIVE_SECONDS, 120.0, "idle seconds allowed while a filter "
                          "still inspects (before the login)"),
    "idle": Field(POSITIVE_SECONDS, 1800.0, "idle seconds allowed once every filter is done"),
    "max_held": Field(POSITIVE_INT, 65536, "bytes the filters of one direction may hold (a "
                      "command line, a literal) before the connection is cut"),
    "max_connections": Field(POSITIVE_INT, 1000, "live connections at once; more are closed "
                             "at once"),
    "close_timeout": Field(POSITIVE_SECONDS, 10.0, "seconds a closing connection may take to "
                           "flush before it is aborted"),
    "cut_through": Field(bool, True, "relay in the kernel (splice) once every filter is done"),
    "neighbour_table": Field(PATH, "/proc/net/arp", "where the clients' MACs are read "
                             "(for /mailproxy/login)"),
}


def modules_of(config: Any) -> Tuple[Dict[int, List[Tuple[str, Any]]], List[Tuple[str, Any]]]:
    """The modules by port and the default ones, found (imported) by name."""
    from ..proxy.modules import UnknownModule, find
    section = config.mailproxy
    try:
        by_port = {port: [(name, find(name)) for name in names]
                   for port, names in section.modules.items()}
        default = [(name, find(name)) for name in section.default_modules]
    except UnknownModule as e:
        raise ConfigError(f"{config.source}: [mailproxy] modules: {e}") from None
    return by_port, default


def check(config: Any) -> None:
    """
    Every module is found; in tproxy mode, the port is the firewall's
    tproxy_port (when this file configures one).
    """
    section = config.mailproxy
    modules_of(config)
    if section.spoof_source and section.mode != "tproxy":
        raise ConfigError(f"{config.source}: [mailproxy] spoof_source needs mode = \"tproxy\"")
    tproxy_port = config.firewall.tproxy_port
    if section.mode == "tproxy" and tproxy_port and tproxy_port != section.port:
        raise ConfigError(f"{config.source}: [mailproxy] port ({section.port}) is not "
                          f"[firewall] tproxy_port ({tproxy_port}), where TPROXY sends the "
                          f"connections")
    firewall = config.firewall
    if section.mode == "nfqueue":
        if firewall.nfqueue_num >= 0 and firewall.nfqueue_num != section.nfqueue_num:
            raise ConfigError(f"{config.source}: [mailproxy] nfqueue_num ({section.nfqueue_num})"
                              f" is not [firewall] nfqueue_num ({firewall.nfqueue_num})")
        redirect = firewall.nfqueue_redirect_port
        if redirect and redirect != section.port:
            raise ConfigError(f"{config.source}: [mailproxy] port ({section.port}) is not "
                              f"[firewall] nfqueue_redirect_port ({redirect}), where the "
                              f"queued connections are redirected")


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from ..portal.service import NeighbourTable
    from ..proxy.intercept import destination_for, tcp_outbound, transparent_outbound
    from ..proxy.proxy import Proxy, ProxySettings
    from ..runner import ThreadRunner
    from .service import MailProxy, MailProxyService, ipv4_mac

    section = config.mailproxy
    by_port, default = modules_of(config)
    settings = ProxySettings(
        connect_timeout=section.connect_timeout, inspect_idle=section.inspect_idle,
        idle=section.idle, max_held=section.max_held, max_connections=section.max_connections,
        close_timeout=section.close_timeout, cut_through=section.cut_through)
    outbound = (transparent_outbound(reactor) if section.spoof_source
                else tcp_outbound(reactor, timeout=section.connect_timeout))
    reader = None
    if section.mode == "nfqueue":
        from ..proxy.nfqueue import QueueReader, SynTable
        syns = SynTable(reactor, section.nfqueue_entries, section.nfqueue_seconds)
        reader = QueueReader(reactor, syns, section.nfqueue_num)
        destination = destination_for("nfqueue", syn_table=syns)
    else:
        destination = destination_for(section.mode)

    def make_proxy(**hooks: Any) -> Proxy:
        select = hooks.pop("select")
        return Proxy(reactor, select, destination, outbound, settings, **hooks)

    runner = ThreadRunner(reactor, name="netsuite-mailproxy-neighbours")
    mailproxy = MailProxy(registry, make_proxy, by_port, default,
                          ipv4_mac(NeighbourTable(section.neighbour_table), runner),
                          clock=reactor,
                          tls_seconds=section.tls_seconds if section.tls_heuristic else None)
    if reader is not None:
        mailproxy.syn_counters = reader.counters
    listeners = [(str(section.listen), section.port)]
    if section.listen6:
        listeners.append((section.listen6, section.port))
    return MailProxyService(mailproxy, reactor, listeners, section.mode == "tproxy", runner,
                            reader=reader)
