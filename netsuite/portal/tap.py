# -*- test-case-name: tests.portal.test_service -*-
"""
C{twistd netsuite-portal}, and the C{[portal]} section of the config.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import MultiService, Service
from twisted.python import usage

from ..config.options import ProcessOptions
from ..config.schema import ConfigError, Field, Table
from ..process import make_process_service
from .auth import AUTH_SECTION, OPERATOR_SECTION

__all__ = ["SECTION", "Options", "makeService", "serviceFromConfig", "portal_host", "api_url"]

POLICY = ("This network is offered as is. By connecting you agree to use it lawfully "
          "and considerately.")


def _port(value: Any) -> Optional[str]:
    return None if 0 < value <= 65535 else "a port number"


def _api_port(value: Any) -> Optional[str]:
    return None if 0 <= value <= 65535 else "a port number (0: no HTTPS API)"


def _seconds(value: Any) -> Optional[str]:
    return None if value >= 0 else "seconds (0 or more)"


def _http_url(value: Any) -> Optional[str]:
    from .pages import safe_url
    return None if not value or safe_url(value) == value else "an http:// or https:// URL"


SECTION = {
    "enabled": Field(bool, False, "run the captive portal in this process"),
    "port": Field(int, 5280, "the portal port (firewall.portal_port sends HTTP here)", _port),
    "interface_address": Field(str, "10.89.0.1", "listen on this address (\"\": all)"),
    "host": Field(str, "", "the portal's host[:port] in its URLs (\"\": "
                  "interface_address:port)"),
    "firewall_process": Field(str, "", "process running the firewall (\"\": this one)"),
    "dhcp_process": Field(str, "", "process whose /dhcp/leases gives unknown MACs "
                          "(\"\": this one)"),
    "idle_timeout": Field(float, 1800.0, "log out after this many idle seconds (0: never)",
                          _seconds),
    "session_timeout": Field(float, 0.0, "log out this many seconds after login (0: never)",
                             _seconds),
    "sample_interval": Field(float, 30.0, "seconds between samples of the firewall's counters",
                             _seconds),
    "session_file": Field(str, "/var/lib/netsuite/portal-sessions.sqlite", "the sessions"),
    "policy_text": Field(str, POLICY, "the usage policy shown on the login page"),
    "page_template": Field(str, "", "an HTML file laying out every page, with $title and "
                           "$body (\"\": template_dir's page.html, else the built-in one)"),
    "template_dir": Field(str, "", "the operator's directory: page.html (the layout) and "
                          "files the pages use (logo, style sheet), served at /static/NAME"),
    "api_port": Field(int, 8443, "HTTPS port of the Captive Portal API (RFC 8908), on when "
                      "tls_certificate and tls_key are set (0: never)", _api_port),
    "api_host": Field(str, "", "the host name in the API URL, named by the certificate "
                      "(\"\": interface_address)"),
    "tls_certificate": Field(str, "", "PEM certificate of api_host (then any intermediates)"),
    "tls_key": Field(str, "", "PEM private key of tls_certificate"),
    "venue_info_url": Field(str, "", "a page about the venue, given to clients as the "
                            "Captive Portal API's venue-info-url (\"\": none)", _http_url),
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
    from twisted.internet.threads import deferToThreadPool
    from twisted.web.server import Site

    from .controller import Portal
    from .service import PortalService, neighbour_mac
    from .sessions import SessionStore, Sessions
    from .announce import Announcer
    from .tls import ApiResource, api_endpoint, api_settings, load_tls
    from .front import PortalSite
    from .pages import Pages
    from .resource import PortalResource

    section = config.portal
    host = portal_host(section, config.source)
    if section.session_file != ":memory:":
        directory = os.path.dirname(section.session_file)
        if directory:
            os.makedirs(directory, exist_ok=True)
    sessions = Sessions(SessionStore(section.session_file), reactor,
                        idle_timeout=section.idle_timeout,
                        session_timeout=section.session_timeout)

    def find_mac(ip: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), neighbour_mac, ip)
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
                              **install(portal, section.auth, section.operator, reactor))
    site = PortalSite(resource)
    site.displayTracebacks = False
    address = section.interface_address.replace(":", "\\:")
    endpoint = f"tcp:{section.port}" + (f":interface={address}" if address else "")
    settings = api_settings(section, config.source)
    if settings is None:
        return PortalService(portal, site, reactor, endpoint, section.sample_interval)
    resource.secure_base = settings.url[:-len("/api")]
    api_site = Site(ApiResource(resource, host))
    api_site.displayTracebacks = False
    tls_options = load_tls(settings, config.source)
    return PortalService(portal, site, reactor, endpoint, section.sample_interval,
                         api_site=api_site,
                         api_endpoint=api_endpoint(reactor, settings, tls_options),
                         api_url=settings.url,
                         announcer=Announcer(registry, settings.url, section.dhcp_process))


class Options(ProcessOptions):
    """
    Options of C{twistd netsuite-portal}: the portal, and whatever else the
    config enables (the firewall, say) in the same process.
    """

    synopsis = "[--config PATH] [--name NAME] [--socket-dir DIR]"

    def postOptions(self) -> None:
        ProcessOptions.postOptions(self)
        self.config.portal.enabled = True
        try:
            portal_host(self.config.portal, self.config.source)
            from .tls import api_settings, load_tls
            settings = api_settings(self.config.portal, self.config.source)
            if settings is not None:
                load_tls(settings, self.config.source)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    from ..services import enabled_builders
    return make_process_service(options.config, reactor, enabled_builders(options.config))
