# -*- test-case-name: tests.portal.test_leaseends -*-
"""
End a client's portal session when another service says the client has
gone. L{LeaseEnds}: the DHCP server says its lease was released
(DHCPRELEASE) or expired; until then only the firewall's IP+MAC binding
kept the next holder of the address out; now the session itself ends, so
the address's next client starts at the portal. L{DeauthorizedEnds}: the
firewall deauthorized it (an operator's C{/firewall/deauthorize}), so the
portal does not authorize it again at its next start; and, when the
firewall is another process, each time that process is reached (it
started, or restarted and dropped its clients), the portal makes the
firewall's clients its sessions again (L{Portal.restore}).

It watches C{/dhcp/lease/released} and C{/dhcp/lease/expired} of the DHCP
server (in process C{dhcp_process} over the bus, or in this process). A
lease event ends the session of that IP only when it names the session's
MAC: a lease of another device at the same address ends nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Any, List

from twisted.logger import Logger

from ..registry import InvalidAddress, UnknownMailbox
from ..registry.interfaces import join_address
from ..registry.values import MAC, InvalidValue

__all__ = ["LeaseEnds", "DeauthorizedEnds", "LEASE_RELEASED", "LEASE_EXPIRED", "DEAUTHORIZED"]

LEASE_RELEASED = "lease-released"
LEASE_EXPIRED = "lease-expired"
DEAUTHORIZED = "deauthorized"
EVENTS = {"/dhcp/lease/released": LEASE_RELEASED, "/dhcp/lease/expired": LEASE_EXPIRED}

_log = Logger()


class LeaseEnds:
    """
    @param portal: the L{netsuite.portal.controller.Portal} whose sessions end.
    @param dhcp_process: the process running the DHCP server (""/own name:
        this one).
    """

    def __init__(self, portal: Any, dhcp_process: str = "") -> None:
        self.portal = portal
        self.registry = portal.registry
        self.dhcp_process = dhcp_process
        self._watchers: List[Any] = []

    def _address(self, path: str) -> str:
        return join_address(self.dhcp_process, path, self.registry.name)

    def start(self) -> bool:
        """
        Watch the lease events; False (logged) when there is no DHCP server
        to watch. A remote watch re-attaches by itself when the DHCP
        process restarts.
        """
        for path, reason in EVENTS.items():
            address = self._address(path)
            if address.startswith("/") and not self.registry.describe(address):
                _log.info("portal: no DHCP server in this process (set [portal] dhcp_process); "
                          "sessions do not end with their leases")
                self.stop()
                return False
            try:
                self._watchers.append(self.registry.watch(
                    address, lambda message, reason=reason: self.seen(message, reason)))
            except (UnknownMailbox, InvalidAddress) as e:
                _log.warn("portal: cannot watch {address}: {error}; sessions do not end "
                          "with their leases", address=address, error=e)
                self.stop()
                return False
        return True

    def seen(self, message: Any, reason: str) -> Any:
        """
        A lease event: end the session of its IP if it has its MAC.
        """
        try:
            ip = ipaddress.IPv4Address(message["ip"])
            mac = MAC(message["mac"])
        except (KeyError, TypeError, ValueError, InvalidValue):
            return None
        session = self.portal.sessions.get(ip)
        if session is None or session.mac != mac:
            return None
        _log.info("portal: the lease of {ip} {mac} ended ({reason}); its session ends",
                  ip=ip, mac=mac, reason=reason)
        return self.portal.logout(ip, reason).addErrback(
            lambda f: _log.failure("portal: ending the session of {ip} failed", f, ip=ip))

    def stop(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.remove()


class DeauthorizedEnds:
    """
    Watches C{/firewall/deauthorized} (of C{firewall_process}, or this
    process) and ends the session of a client the firewall no longer
    lets through. The event only names the IP, and the client may have
    logged in again since: the firewall's client list is asked first.
    With the firewall in another process, each time the watch attaches
    there (that process started, or came back) L{firewall_back} restores
    the sessions in it.

    @param portal: the L{netsuite.portal.controller.Portal}.
    @param firewall_process: the process running the firewall (""/own
        name: this one).
    """

    def __init__(self, portal: Any, firewall_process: str = "") -> None:
        self.portal = portal
        self.registry = portal.registry
        self.firewall_process = firewall_process
        self._watcher: Any = None

    def _address(self, path: str) -> str:
        return join_address(self.firewall_process, path, self.registry.name)

    def start(self) -> bool:
        address = self._address("/firewall/deauthorized")
        if address.startswith("/") and not self.registry.describe(address):
            _log.info("portal: no firewall in this process (set [portal] firewall_process); "
                      "a client the firewall deauthorizes keeps its session")
            return False
        again = None if address.startswith("/") else self.firewall_back
        try:
            self._watcher = self.registry.watch(address, self.seen, on_attach=again)
        except (UnknownMailbox, InvalidAddress) as e:
            _log.warn("portal: cannot watch {address}: {error}", address=address, error=e)
            return False
        return True

    def firewall_back(self) -> Any:
        """
        The firewall's process holds our watch: it was reached for the
        first time, or again after it went away (a restart drops the
        clients a crashed run left). Make its clients the sessions again.
        """
        _log.info("portal: reached the firewall process {name}; restoring the sessions",
                  name=self.firewall_process)
        return self.portal.restore().addErrback(
            lambda f: _log.failure("portal: restoring the sessions failed", f))

    def seen(self, message: Any) -> Any:
        try:
            ip = ipaddress.IPv4Address(message["ip"])
        except (KeyError, TypeError, ValueError):
            return None
        if self.portal.sessions.get(ip) is None:
            return None  # the portal's own logout, or nobody

        def check(clients: Any) -> Any:
            if isinstance(clients, list) and any(
                    isinstance(c, dict) and str(c.get("ip")) == str(ip) for c in clients):
                return None  # let through again (logged in since)
            if self.portal.sessions.get(ip) is None:
                return None
            _log.info("portal: the firewall deauthorized {ip}; its session ends", ip=ip)
            return self.portal.logout(ip, DEAUTHORIZED)
        return self.registry.send(self._address("/firewall/clients"), {}).addCallback(
            check).addErrback(
            lambda f: _log.failure("portal: following the deauthorization of {ip} failed", f,
                                   ip=ip))

    def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.remove()
