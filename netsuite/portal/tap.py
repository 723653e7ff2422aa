# -*- test-case-name: tests.portal.test_service -*-
"""
C{twistd netsuite-portal}, and the C{[portal]} section of the config.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import Service

from ..config.fields import (OPTIONAL_PATH, PATH, PORT, PORT_OR_ZERO, POSITIVE_INT,
                             POSITIVE_SECONDS, SECONDS, Kind, ipv4_text)
from ..config.schema import ConfigError, Field, Table
from .auth import AUTH_SECTION, OPERATOR_SECTION

__all__ = ["SECTION", "CAPABILITIES", "check", "serviceFromConfig", "portal_host", "api_url",
           "keep_sessions"]

POLICY = ("This network is offered as is. By connecting you agree to use it lawfully "
          "and considerately.")


def _keep_sessions(raw: Any) -> Optional[bool]:
    if type(raw) is bool:
        return raw
    if raw == "firewall":
        return None
    raise ValueError(raw)


KEEP_SESSIONS = Kind('true, false or "firewall"', _keep_sessions)
"""C{[portal] keep_sessions}: None for "firewall" (follow C{[firewall] keep_clients})."""


def keep_sessions(config: Any) -> bool:
    """
    Whether a clean stop keeps the portal's sessions: C{[portal]
    keep_sessions}, or by default C{[firewall] keep_clients} of the same
    config (one config file serves every process of an access point).
    """
    keep = config.portal.keep_sessions
    return bool(config.firewall.keep_clients if keep is None else keep)


def _http_url(value: Any) -> Optional[str]:
    from .pages import safe_url
    return None if not value or safe_url(value) == value else "an http:// or https:// URL"


# The portal needs no capability (netsuite.privileges): its ports are above
# 1023, /proc/net/arp is readable by anyone, and the firewall is changed
# over the bus. (It listens in startService, after twistd --uid switches:
# a port below 1024 would need CAP_NET_BIND_SERVICE here.)
CAPABILITIES: "frozenset[str]" = frozenset()


SECTION = {
    "enabled": Field(bool, False, "run the captive portal in this process"),
    "port": Field(PORT, 5280, "the portal port (firewall.portal_port sends HTTP here)"),
    "interface_address": Field(str, "10.89.0.1", "listen on this address (\"\": all)",
                               ipv4_text),
    "host": Field(str, "", "the portal's host[:port] in its URLs (\"\": "
                  "interface_address:port)"),
    "firewall_process": Field(str, "", "process running the firewall (\"\": this one)"),
    "dhcp_process": Field(str, "", "process whose /dhcp/leases gives unknown MACs "
                          "(\"\": this one)"),
    "stats_process": Field(str, "", "process running stats, whose /stats/usage gives the "
                           "status page's usage today (\"\": this one; the page goes without "
                           "it when stats does not answer within half a second)"),
    "end_with_lease": Field(bool, True, "end a client's session when dhcp_process says "
                            "its lease was released or expired"),
    "keep_sessions": Field(KEEP_SESSIONS, "firewall", "whether a clean stop keeps the "
                           "sessions (the next start authorizes them again); false ends "
                           "them (reason stopped) and deauthorizes them; \"firewall\": as "
                           "[firewall] keep_clients"),
    "idle_timeout": Field(SECONDS, 1800.0, "log out after this many idle seconds (0: never)"),
    "session_timeout": Field(SECONDS, 0.0, "log out this many seconds after login "
                             "(0: never)"),
    "sample_interval": Field(SECONDS, 30.0, "seconds between samples of the firewall's "
                             "counters"),
    "session_file": Field(PATH, "/var/lib/netsuite/portal-sessions.sqlite", "the sessions"),
    "policy_text": Field(str, POLICY, "the usage policy shown on the login page"),
    "page_template": Field(OPTIONAL_PATH, "", "an HTML file laying out every page, with $title and "
                           "$body (\"\": template_dir's page.html, else the built-in one)"),
    "template_dir": Field(OPTIONAL_PATH, "", "the operator's directory: page.html (the layout) and "
                          "files the pages use (logo, style sheet), served at /static/NAME"),
    "api_port": Field(PORT_OR_ZERO, 8443, "HTTPS port of the Captive Portal API (RFC 8908), "
                      "on when tls_certificate and tls_key are set (0: never)"),
    "api_host": Field(str, "", "the host name in the API URL, named by the certificate "
                      "(\"\": interface_address)"),
    "tls_certificate": Field(OPTIONAL_PATH, "", "PEM certificate of api_host (then any "
                             "intermediates)"),
    "tls_key": Field(OPTIONAL_PATH, "", "PEM private key of tls_certificate"),
    "venue_info_url": Field(str, "", "a page about the venue, given to clients as the "
                            "Captive Portal API's venue-info-url (\"\": none)", _http_url),
    "ipv6": Field(bool, True, "also accept IPv6 on the portal port (on [::], IPv6 only), "
                  "where the firewall redirects unauthorized clients' IPv6 HTTP"),
    "max_connections_ipv6": Field(POSITIVE_INT, 256, "open IPv6 connections to the portal "
                                  "port, all IPv6 clients together"),
    "head_timeout": Field(POSITIVE_SECONDS, 10.0, "seconds a request head may take to "
                          "arrive, from its first byte"),
    "max_connections": Field(POSITIVE_INT, 1024, "open connections to the portal port, "
                             "all clients together"),
    "max_connections_per_client": Field(POSITIVE_INT, 32, "open connections to the portal "
                                        "port from one client address"),
    "auth": Table(AUTH_SECTION, "login back ends, rate limit, session move, quota"),
    "operator": Table(OPERATOR_SECTION, "the /operator page's HTTP Basic credentials"),
}


def portal_host(section: Any, source: str = "config") -> str:
    """
    The portal's C{host[:port]} for its URLs.
    """
    if section.host:
        return str(section.host)
    if section.interface_address in ("", "0.0.0.0"):
        raise ConfigError(f"{source}: [portal] needs host when interface_address is "
                          f"{section.interface_address!r}")
    suffix = "" if section.port == 80 else f":{section.port}"
    return f"{section.interface_address}{suffix}"


def api_url(section: Any, source: str = "config") -> Optional[str]:
    """
    The Captive Portal API's HTTPS URL (what DHCP option 114 carries), or
    None when the HTTPS API is off.
    """
    from .tls import api_settings
    settings = api_settings(section, source)
    return None if settings is None else settings.url


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from twisted.web.server import Site

    from ..runner import ThreadRunner

    from .controller import Portal
    from .service import PortalService, neighbour_mac
    from .sessions import SessionStore, Sessions
    from .announce import Announcer
    from .leaseends import DeauthorizedEnds, LeaseEnds
    from .tls import ApiResource, api_endpoint, api_settings, load_tls
    from .front import PortalSite, declare_front
    from .pages import Pages
    from .resource import PortalResource

    section = config.portal
    host = portal_host(section, config.source)
    if section.session_file != ":memory:":
        directory = os.path.dirname(section.session_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
    sessions = Sessions(SessionStore(section.session_file), reactor,
                        ThreadRunner(reactor, name="netsuite-portal-sessions"),
                        idle_timeout=section.idle_timeout,
                        session_timeout=section.session_timeout)

    # Password checks (scrypt), LDAP binds and neighbour-table reads: a few
    # side by side, so that a hung directory cannot hold every login.
    checks = ThreadRunner(reactor, threads=4, name="netsuite-portal-checks", finish=False)

    def find_mac(ip: Any) -> Any:
        return checks.run(neighbour_mac, ip)
    portal = Portal(registry, sessions, host, section.firewall_process, section.dhcp_process,
                    find_mac, section.policy_text)
    from .auth import install
    layout, key = section.page_template, "page_template"
    if not layout and section.template_dir:
        if not os.path.isdir(section.template_dir):
            raise ConfigError(f"{config.source}: portal.template_dir: "
                              f"{section.template_dir} is not a directory")
        candidate = os.path.join(section.template_dir, "page.html")
        layout, key = (candidate, "template_dir") if os.path.exists(candidate) else ("", key)
    pages = Pages()
    if layout:
        try:
            with open(layout, encoding="utf-8") as f:
                pages = Pages(f.read())
        except OSError as e:
            raise ConfigError(f"{config.source}: portal.{key}: cannot read "
                              f"{layout}: {e.strerror}") from None
    resource = PortalResource(portal, reactor, template_dir=section.template_dir,
                              venue_info_url=section.venue_info_url, pages=pages,
                              stats_process=section.stats_process,
                              **install(portal, section.auth, section.operator, reactor, checks))
    site = PortalSite(resource, head_timeout=section.head_timeout,
                      max_connections=section.max_connections,
                      max_per_client=section.max_connections_per_client,
                      max_ipv6=section.max_connections_ipv6)
    declare_front(registry, site)
    site.displayTracebacks = False
    address = section.interface_address.replace(":", "\\:")
    endpoint = f"tcp:{section.port}" + (f":interface={address}" if address else "")
    lease_ends = LeaseEnds(portal, section.dhcp_process) if section.end_with_lease else None
    deauthorized = DeauthorizedEnds(portal, section.firewall_process)
    keep = keep_sessions(config)
    settings = api_settings(section, config.source)
    ipv6_port = section.port if section.ipv6 else None
    if settings is None:
        return PortalService(portal, site, reactor, endpoint, section.sample_interval,
                             followers=[f for f in (lease_ends, deauthorized) if f],
                             keep_sessions=keep,
                             firewall_keeps_clients=config.firewall.keep_clients,
                             ipv6_port=ipv6_port)
    resource.secure_base = settings.url[:-len("/api")]
    resource.graphs_url = section.operator.graphs_url
    api_site = Site(ApiResource(resource, host))
    api_site.displayTracebacks = False
    tls_options = load_tls(settings, config.source)
    return PortalService(portal, site, reactor, endpoint, section.sample_interval,
                         api_site=api_site,
                         api_endpoint=api_endpoint(reactor, settings, tls_options),
                         api_url=settings.url,
                         announcer=Announcer(registry, settings.url, section.dhcp_process),
                         followers=[f for f in (lease_ends, deauthorized) if f],
                         keep_sessions=keep, firewall_keeps_clients=config.firewall.keep_clients,
                         ipv6_port=ipv6_port)


def check(config: Any) -> None:
    """
    The portal's own address, the HTTPS API's certificate and key, and
    that HTTPS site for an operator page.
    """
    portal_host(config.portal, config.source)
    from .tls import api_settings, load_tls
    settings = api_settings(config.portal, config.source)
    if settings is not None:
        load_tls(settings, config.source)
    operator = config.portal.operator
    if settings is None and operator.username and operator.password_hash.reveal():
        raise ConfigError(f"{config.source}: [portal.operator] is served over HTTPS only: "
                          f"set [portal] tls_certificate and tls_key (and api_port)")
