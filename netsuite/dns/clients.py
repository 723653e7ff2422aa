# -*- test-case-name: tests.dns.test_server -*-
"""
Which clients have logged in, as the firewall says: its events
C{/firewall/authorized} and C{/firewall/deauthorized}, and its list
C{/firewall/clients} each time the watch attaches (at once for a
firewall in this process; on each (re)connection to another process's).
"""

from __future__ import annotations

from typing import Any, Set

from twisted.logger import Logger

from ..registry.interfaces import InvalidAddress, UnknownMailbox, join_address

__all__ = ["AuthorizedClients"]

_log = Logger()


class AuthorizedClients:
    """
    C{ips}: the text addresses the firewall lets through. Until the
    firewall is reached, nobody is (the policy before login applies to
    everyone: fail closed).
    """

    def __init__(self, registry: Any, firewall_process: str = "") -> None:
        self.registry = registry
        self.firewall_process = firewall_process
        self.ips: Set[str] = set()
        self._watchers: list = []

    def _address(self, path: str) -> str:
        return join_address(self.firewall_process, path, self.registry.name)

    def __contains__(self, ip: str) -> bool:
        return ip in self.ips

    def start(self) -> bool:
        authorized = self._address("/firewall/authorized")
        if authorized.startswith("/") and not self.registry.describe(authorized):
            _log.warn("dns: no firewall in this process (set [dns] firewall_process): every "
                      "client is treated as not logged in")
            return False
        try:
            self._watchers.append(self.registry.watch(authorized, self._authorized,
                                                      on_attach=self.refresh))
            self._watchers.append(self.registry.watch(self._address("/firewall/deauthorized"),
                                                      self._deauthorized))
        except (UnknownMailbox, InvalidAddress) as e:
            _log.warn("dns: cannot watch {address}: {error}", address=authorized, error=e)
            return False
        return True

    def refresh(self) -> Any:
        """Learn the whole list again from C{/firewall/clients}."""
        def got(clients: Any) -> None:
            if isinstance(clients, list):
                self.ips = {str(c["ip"]) for c in clients
                            if isinstance(c, dict) and c.get("ip") is not None}
        return self.registry.send(self._address("/firewall/clients"), {}).addCallback(
            got).addErrback(lambda f: _log.failure("dns: reading /firewall/clients failed", f))

    def _authorized(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("ip") is not None:
            self.ips.add(str(message["ip"]))

    def _deauthorized(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("ip") is not None:
            self.ips.discard(str(message["ip"]))

    def stop(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.remove()
