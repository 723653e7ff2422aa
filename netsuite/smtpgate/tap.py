# -*- test-case-name: tests.smtpgate.test_tap -*-
"""
C{twistd netsuite-smtpgate}, and the C{[smtpgate]} section of the config.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, List

from twisted.application.service import Service
from twisted.logger import Logger

from ..config.fields import POSITIVE_INT, Kind, between, one_of
from ..config.schema import Field
from ..services import Readiness
from .gate import MAX_SERVERS, SmtpGate

__all__ = ["SECTION", "CAPABILITIES", "serviceFromConfig", "SmtpGateService"]

_log = Logger()

# It binds nothing and changes the firewall over the bus.
CAPABILITIES: "frozenset[str]" = frozenset()


def _providers(raw: Any) -> Dict[ipaddress.IPv4Address, List[ipaddress.IPv4Address]]:
    if not isinstance(raw, dict):
        raise ValueError(raw)
    table = {}
    for server, hosts in raw.items():
        if (not isinstance(hosts, list) or not 0 < len(hosts) <= MAX_SERVERS
                or not all(isinstance(h, str) for h in hosts)):
            raise ValueError(hosts)
        table[ipaddress.IPv4Address(server)] = [ipaddress.IPv4Address(h) for h in hosts]
    return table


PROVIDERS = Kind(f'a table of "IPv4" = ["IPv4", ...] (1 to {MAX_SERVERS} hosts each)',
                 _providers)

SECTION = {
    "enabled": Field(bool, False, "run the SMTP gate in this process"),
    "window": Field(int, 900, "seconds a window stays open after a login (renewed by each "
                    "further one)", between(1, 2_000_000, "seconds")),
    "scope": Field(str, "server", "where a window opens: \"server\" (towards the server "
                   "that authenticated the user, or its provider's hosts) or \"any\"",
                   one_of("server", "any")),
    "providers": Field(PROVIDERS, {}, "mail server address -> the provider's SMTP hosts "
                       "a login there opens towards"),
    "firewall_process": Field(str, "", "process running the firewall (\"\": this one)"),
    "mailproxy_process": Field(str, "", "process running the mail proxy, whose "
                               "/mailproxy/login events are watched (\"\": this one)"),
    "portal_process": Field(str, "", "process running the portal, whose /portal/logout "
                            "events close windows (\"\": this one)"),
    "max_pending": Field(POSITIVE_INT, 1024, "decisions under way at once; more logins "
                         "are dropped and counted"),
}


class SmtpGateService(Service):
    """
    Watches the proxy and the portal while running. Stopping closes
    nothing: open windows expire in the kernel.
    """

    def __init__(self, gate: SmtpGate) -> None:
        self.gate = gate
        self.readiness = Readiness()

    def startService(self) -> None:
        Service.startService(self)
        self.gate.start()
        _log.info("smtpgate ready (scope {scope}, window {window} s)", scope=self.gate.scope,
                  window=self.gate.window, netsuite_event="smtpgate-ready")
        self.readiness.fire()

    def when_ready(self) -> Any:
        return self.readiness.when()

    def stopService(self) -> None:
        Service.stopService(self)
        self.gate.stop()


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> Service:
    section = config.smtpgate
    return SmtpGateService(SmtpGate(
        registry, window=section.window, scope=section.scope, providers=section.providers,
        firewall_process=section.firewall_process,
        mailproxy_process=section.mailproxy_process, portal_process=section.portal_process,
        max_pending=section.max_pending))
