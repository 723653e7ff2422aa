# -*- test-case-name: tests.portal.test_tls -*-
"""
Announce the Captive Portal API in DHCP (option 114, RFC 8910): a listener
in front of C{/dhcp/options} of the DHCP server (in process
C{dhcp_process} over the bus, or in this process).

It answers C{Stop({"captive_portal": url})} only when the client's
parameter request list (C{requested_options}, option 55) holds 114, as
RFC 8910 section 2 has a server do; otherwise it answers C{CONTINUE}, so
the other listeners (and C{[dhcp] captive_portal_url}, if set) decide.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger

from ..registry import CONTINUE, InvalidAddress, Stop, UnknownMailbox
from ..registry.interfaces import join_address

__all__ = ["CAPTIVE_PORTAL_OPTION", "Announcer"]

CAPTIVE_PORTAL_OPTION = 114
DEADLINE = 0.5
"""Seconds the DHCP server waits for this listener (it answers at once)."""

_log = Logger()


class Announcer:
    """
    @param registry: this process's registry.
    @param url: the API URL sent as option 114.
    @param dhcp_process: the process running the DHCP server (""/own name:
        this one).
    @param deadline: the listener's deadline in seconds.
    """

    def __init__(self, registry: Any, url: str, dhcp_process: str = "",
                 deadline: float = DEADLINE) -> None:
        self.registry = registry
        self.url = url
        self.dhcp_process = dhcp_process
        self.deadline = deadline
        self.handle: Any = None

    @property
    def address(self) -> str:
        return join_address(self.dhcp_process, "/dhcp/options", self.registry.name)

    def answer(self, message: Any) -> Any:
        """
        The listener: the URL for a client asking for option 114.
        """
        requested = message.get("requested_options") or ()
        if CAPTIVE_PORTAL_OPTION in requested:
            return Stop({"captive_portal": self.url})
        return CONTINUE

    def start(self) -> Any:
        """
        Add the listener; return its handle, or None (logged) when there is
        no DHCP server to announce through. A remote listener re-attaches
        by itself when the DHCP process restarts.
        """
        address = self.address
        if address.startswith("/") and not self.registry.describe(address):
            _log.info("portal: no DHCP server in this process (set [portal] dhcp_process); "
                      "the API URL {url} is not announced in DHCP", url=self.url)
            return None
        try:
            self.handle = self.registry.listen(address, self.answer, first=True,
                                               deadline=self.deadline,
                                               tags={"owner": "portal"})
        except (UnknownMailbox, InvalidAddress) as e:
            _log.warn("portal: cannot announce the API URL through {address}: {error}",
                      address=address, error=e)
            return None
        _log.info("portal: announcing {url} as DHCP option 114 through {address}",
                  url=self.url, address=address, netsuite_event="portal-announce")
        return self.handle

    def stop(self) -> None:
        handle: Optional[Any]
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.remove()
