# -*- test-case-name: tests.dns.test_tap -*-
"""
C{twistd netsuite-dns}, and the C{[dns]} section of the config.
"""

from __future__ import annotations

import ipaddress
from typing import Any, List, Tuple

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from ..config.fields import (IPV4_LIST, OPTIONAL_PATH, PORT, POSITIVE_INT, POSITIVE_SECONDS,
                             STR_MAP, Kind, at_least)
from ..config.schema import ConfigError, Field
from ..services import Readiness

__all__ = ["SECTION", "CAPABILITIES", "check", "serviceFromConfig", "DNSService"]

_log = Logger()

# Port 53 is bound in privilegedStartService, before twistd --uid switches,
# so nothing is needed once started (a unit that starts unprivileged grants
# CAP_NET_BIND_SERVICE: etc/systemd/netsuite-dns.service).
CAPABILITIES: "frozenset[str]" = frozenset()

DEFAULT_REFUSE = ["NULL", "TXT", "ANY", "MX", "SRV", "CNAME", "AXFR", "IXFR", "TYPE65399"]


def _upstream(text: str) -> Tuple[str, int]:
    """"IPv4", "IPv4:port", "IPv6" or "[IPv6]:port"."""
    host, port = text, ""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(text)
        port = port[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    address = ipaddress.ip_address(host)
    number = int(port) if port else 53
    if not 0 < number < 65536:
        raise ValueError(text)
    return str(address), number


def _upstreams(raw: Any) -> List[Tuple[str, int]]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(raw)
    return [_upstream(x) for x in raw]


def _types(raw: Any) -> List[int]:
    from .policy import qtype_number
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(raw)
    return [qtype_number(x) for x in raw]


def _patterns(raw: Any) -> List[str]:
    from .garden import GardenNames
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(raw)
    GardenNames(raw)
    return list(raw)


UPSTREAMS = Kind('a list of "IPv4", "IPv4:port", "IPv6" or "[IPv6]:port" strings',
                 _upstreams)
QTYPES = Kind('a list of DNS query types ("TXT", "TYPE65399")', _types)
NAME_PATTERNS = Kind('a list of names or "*.domain" patterns', _patterns)


SECTION = {
    "enabled": Field(bool, False, "run the DNS resolver in this process"),
    "listen": Field(IPV4_LIST, ["10.89.0.1"], "addresses to answer on, UDP and TCP (the "
                    "access point's LAN address)"),
    "port": Field(PORT, 53, "the port"),
    "upstreams": Field(UPSTREAMS, [], "resolvers to forward to, \"IPv4\", \"IPv4:port\", "
                       "\"IPv6\" or \"[IPv6]:port\" "
                       "([]: the nameservers of /etc/resolv.conf)"),
    "resolv_conf": Field(OPTIONAL_PATH, "/etc/resolv.conf", "where the system's resolvers "
                         "are read when upstreams is []"),
    "upstream_timeout": Field(POSITIVE_SECONDS, 4.0, "seconds a forwarded query may take "
                              "(tried again after a quarter of it)"),
    "upstream_sockets": Field(POSITIVE_INT, 8, "UDP sockets the queries to the upstreams "
                              "go out on, each from a random port"),
    "upstream_port_queries": Field(POSITIVE_INT, 1000, "queries a socket sends before it "
                                   "is replaced by one on a fresh random port"),
    "upstream_port_seconds": Field(POSITIVE_SECONDS, 60.0, "seconds a socket is used before "
                                   "it is replaced by one on a fresh random port"),
    "upstream_max_pending": Field(POSITIVE_INT, 1024, "queries in flight to the upstreams "
                                  "at once; more are answered SERVFAIL"),
    "cache_size": Field(int, 10000, "answers kept in the cache (0: no cache)", at_least(0)),
    "negative_ttl": Field(int, 60, "the longest a name error or empty answer is cached, "
                          "seconds", at_least(0)),
    "hosts": Field(OPTIONAL_PATH, "", "an /etc/hosts-style file of names answered here "
                   "(\"\": none)"),
    "local_names": Field(STR_MAP, {}, "more names answered here: name = \"address\""),
    "portal_name": Field(str, "", "the portal's name, answered with portal_address (\"\": "
                         "portal.host when that is a name, else none)"),
    "portal_address": Field(str, "", "the address portal_name answers (\"\": "
                            "portal.interface_address)"),
    "firewall_process": Field(str, "", "process running the firewall, which says who is "
                              "logged in and has the garden set (\"\": this one)"),
    "limit_authorized": Field(bool, False, "apply the preauth_* limits to clients that "
                              "logged in too"),
    "authorized_rate": Field(float, 100.0, "queries per second a client logged in may make "
                             "(0: no limit)", at_least(0.0)),
    "authorized_burst": Field(POSITIVE_INT, 400, "queries a client logged in may make at once"),
    "preauth_rate": Field(float, 10.0, "queries per second a client not logged in may make",
                          at_least(0.001)),
    "preauth_burst": Field(POSITIVE_INT, 40, "queries it may make at once"),
    "preauth_max_name": Field(POSITIVE_INT, 120, "the longest query name before login "
                              "(bytes)"),
    "preauth_max_label": Field(POSITIVE_INT, 40, "the longest label before login (bytes)"),
    "preauth_entropy": Field(float, 3.9, "labels of preauth_entropy_min_length bytes or "
                             "more whose Shannon entropy is above this (bits per byte) are "
                             "refused before login", at_least(0.0)),
    "preauth_entropy_min_length": Field(POSITIVE_INT, 24, "the shortest label the entropy "
                                        "limit applies to"),
    "preauth_refuse_types": Field(QTYPES, DEFAULT_REFUSE, "query types refused before "
                                  "login"),
    "preauth_max_answer": Field(POSITIVE_INT, 1024, "the largest answer (bytes) given "
                                "before login; a larger one is refused"),
    "suspect_threshold": Field(int, 20, "refusals after which a client is announced on "
                               "/dns/tunnel-suspect (again at each multiple; 0: never)",
                               at_least(0)),
    "refused_event_interval": Field(float, 10.0, "seconds between two /dns/refused events "
                                    "about one client", at_least(0.0)),
    "max_clients": Field(POSITIVE_INT, 4096, "clients whose rate and refusals are tracked"),
    "garden_names": Field(NAME_PATTERNS, [], "names whose A records the firewall lets "
                          "clients reach before login, for their TTL "
                          "(/firewall/garden/add): \"login.provider.net\", \"*.example.org\""),
    "max_pending": Field(POSITIVE_INT, 1024, "queries waiting for the upstreams at once; "
                         "more are dropped"),
    "max_tcp_connections": Field(POSITIVE_INT, 128, "open TCP connections, all clients "
                                 "together (8 per client)"),
    "tcp_idle_timeout": Field(POSITIVE_SECONDS, 10.0, "seconds a TCP connection may stay "
                              "without a query"),
}


class DNSService(Service):
    """
    Binds the UDP and TCP ports (before twistd drops privileges), follows
    the firewall's authorized clients, and serves.
    """

    def __init__(self, server: Any, clients: Any, feeder: Any, addresses: List[str],
                 port: int, reactor: Any, tcp_factory: Any) -> None:
        self.server = server
        self.clients = clients
        self.feeder = feeder
        self.addresses = addresses
        self.port_number = port
        self.reactor = reactor
        self.tcp_factory = tcp_factory
        self.ports: List[Any] = []
        self.readiness = Readiness()

    def privilegedStartService(self) -> None:
        from .protocol import DNSDatagram
        Service.privilegedStartService(self)
        try:
            for address in self.addresses:
                self.ports.append(self.reactor.listenUDP(
                    self.port_number, DNSDatagram(self.server), interface=address))
                self.ports.append(self.reactor.listenTCP(
                    self.port_number, self.tcp_factory, interface=address))
        except CannotListenError as e:
            _log.critical("dns cannot start: {error}", error=str(e))
            raise SystemExit(1) from None

    def startService(self) -> None:
        Service.startService(self)
        self.clients.start()
        self.server.upstream.start()
        _log.info("dns ready on {addresses} port {port}",
                  addresses=", ".join(self.addresses), port=self.port_number,
                  netsuite_event="dns-ready")
        self.readiness.fire()

    def when_ready(self) -> Any:
        return self.readiness.when()

    def stopService(self) -> Any:
        Service.stopService(self)
        self.clients.stop()
        self.feeder.stop()
        self.server.upstream.stop()
        ports, self.ports = self.ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])


def portal_entry(config: Any) -> Tuple[str, str]:
    """The portal's (name, address) answered here, or ("", "")."""
    section = config.dns
    name = section.portal_name
    if not name:
        host = config.portal.host.rsplit(":", 1)[0] if config.portal.host else ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            name = host
    address = section.portal_address or config.portal.interface_address
    if not name:
        return "", ""
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{config.source}: dns.portal_address: {address!r} is not an IPv4 "
                          f"address (portal_name {name!r} needs one)") from None
    return name, address


def local_names(config: Any) -> Any:
    from .server import LocalNames
    section = config.dns
    local = LocalNames()
    if section.hosts:
        try:
            local.read_hosts(section.hosts)
        except OSError as e:
            raise ConfigError(f"{config.source}: dns.hosts: cannot read {section.hosts}: "
                              f"{e.strerror}") from None
    for name, address in section.local_names.items():
        try:
            local.add(name, address)
        except ValueError:
            raise ConfigError(f"{config.source}: dns.local_names: {name} = {address!r} is "
                              f"not an address") from None
    name, address = portal_entry(config)
    if name:
        local.add(name, address)
    return local


def upstream_resolver(config: Any, reactor: Any) -> Any:
    from .upstream import UpstreamClient
    section = config.dns
    return UpstreamClient(reactor, list(section.upstreams), section.resolv_conf,
                          sockets=section.upstream_sockets,
                          port_queries=section.upstream_port_queries,
                          port_seconds=section.upstream_port_seconds,
                          max_pending=section.upstream_max_pending)


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from ..registry.interfaces import join_address
    from .cache import Cache
    from .clients import AuthorizedClients
    from .garden import GardenFeeder, GardenNames
    from .policy import Policy, RateLimit
    from .protocol import DNSStreamFactory
    from .server import DNSServer

    section = config.dns
    policy = Policy(reactor, rate=section.preauth_rate, burst=section.preauth_burst,
                    max_name=section.preauth_max_name, max_label=section.preauth_max_label,
                    entropy=section.preauth_entropy,
                    entropy_min_length=section.preauth_entropy_min_length,
                    refuse_types=section.preauth_refuse_types,
                    max_answer=section.preauth_max_answer,
                    suspect_threshold=section.suspect_threshold,
                    event_interval=section.refused_event_interval,
                    max_clients=section.max_clients)
    clients = AuthorizedClients(registry, section.firewall_process)
    feeder = GardenFeeder(registry, reactor, join_address(
        section.firewall_process, "/firewall/garden/add", registry.name))
    first = section.upstream_timeout / 4.0
    server = DNSServer(registry, upstream_resolver(config, reactor),
                       Cache(reactor, section.cache_size, section.negative_ttl),
                       local_names(config), policy, clients,
                       GardenNames(section.garden_names), feeder,
                       limit_authorized=section.limit_authorized,
                       max_pending=section.max_pending,
                       upstream_timeout=(first, section.upstream_timeout - first),
                       authorized_rate=RateLimit(reactor, section.authorized_rate,
                                                 section.authorized_burst, section.max_clients)
                       if section.authorized_rate else None)
    factory = DNSStreamFactory(server, max_connections=section.max_tcp_connections,
                               idle=section.tcp_idle_timeout)
    return DNSService(server, clients, feeder, [str(a) for a in section.listen],
                      section.port, reactor, factory)


def check(config: Any) -> None:
    """
    The listen addresses, and the local names (the hosts file readable).
    """
    if not config.dns.listen:
        raise ConfigError(f"{config.source}: dns.listen: give at least one address")
    local_names(config)
