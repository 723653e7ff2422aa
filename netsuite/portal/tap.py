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
from ..config.schema import ConfigError, Field
from ..process import make_process_service

__all__ = ["SECTION", "Options", "makeService", "serviceFromConfig", "portal_host"]

POLICY = ("This network is offered as is. By connecting you agree to use it lawfully "
          "and considerately.")


def _port(value: Any) -> Optional[str]:
    return None if 0 < value <= 65535 else "a port number"


def _seconds(value: Any) -> Optional[str]:
    return None if value >= 0 else "seconds (0 or more)"


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


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    from twisted.internet.threads import deferToThreadPool
    from twisted.web.server import Site

    from .controller import Portal
    from .service import PortalService, neighbour_mac
    from .sessions import SessionStore, Sessions
    from .web import PortalResource

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
    site = Site(PortalResource(portal, reactor))
    site.displayTracebacks = False
    address = section.interface_address.replace(":", "\\:")
    endpoint = f"tcp:{section.port}" + (f":interface={address}" if address else "")
    return PortalService(portal, site, reactor, endpoint, section.sample_interval)


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
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    from ..services import enabled_builders
    return make_process_service(options.config, reactor, enabled_builders(options.config))
