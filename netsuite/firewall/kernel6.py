# -*- test-case-name: tests.firewall.test_kernel -*-
"""
The IPv6 half of the real firewall adapter (L{netsuite.firewall.kernel}):
the ip6tables chains that close the LAN's IPv6 (L{netsuite.firewall.rules.chains6})
and dual stack after login, netsuite's nftables table of authorized MACs
(L{netsuite.firewall.nftsets}). Every method is a blocking call, made on
the adapter's worker thread.
"""

from __future__ import annotations

import ipaddress
from typing import AbstractSet, Any, Dict, List, Optional, Set, Tuple

from twisted.logger import Logger

from ..registry.values import MAC
from .flows import FlowCutter
from .interfaces import FirewallError
from .iptables import StaticRules
from .netlink import KernelNetwork
from .nftsets import (KernelNft, NftState, TrafficBook, add_macs, delete_bindings, delete_macs,
                      set_prefixes)
from .rules import FirewallSettings

__all__ = ["KernelIPv6"]

_log = Logger()

Counters = Dict[MAC, Tuple[int, int]]


class KernelIPv6:
    """
    @param mode: C{"auto"} installs the chains when the LAN has IPv6, at
        start or when a check first sees it; C{"on"} always; C{"off"}
        never, and refuses to start on a LAN that has IPv6. With the
        chains, authorized clients get IPv6 too: their MACs in the nft
        table; if nftables cannot be used, IPv6 stays closed for everyone
        (logged, tried again at each check).
    @param keep_clients: at start, keep a sound table left by the last run.
    """

    def __init__(self, settings: FirewallSettings, network: KernelNetwork, flows: FlowCutter,
                 mode: str = "auto", keep_clients: bool = False) -> None:
        self.settings = settings
        self.network = network
        self.flows = flows
        self.mode = mode
        self.keep_clients = keep_clients
        self.rules = StaticRules(settings, ipv6=True)
        self.active = False  # whether this run installed the chains
        self.nft = KernelNft(settings)
        self.nft_active = False  # whether the table is in place
        self.up, self.down = TrafficBook(), TrafficBook()  # totals that only grow

    # start, stop

    def start(self) -> None:
        why = self.network.lan_ipv6()
        if self.mode == "off":
            if why is not None:
                raise FirewallError(
                    f"firewall.ipv6 is \"off\" but the LAN has IPv6 ({why}): unauthorized "
                    "clients would walk around the portal over IPv6. Set firewall.ipv6 to "
                    "\"auto\", or take IPv6 off the LAN.")
            return
        if self.mode == "on" or why is not None:
            self.install(why or "firewall.ipv6 is \"on\"")

    def install(self, why: str) -> List[str]:
        try:
            repaired = self.rules.install()
        except Exception as e:
            raise FirewallError(
                f"the LAN has IPv6 ({why}) but netsuite cannot control ip6tables "
                f"({type(e).__name__}: {e}); refusing to start, as unauthorized clients "
                "would walk around the portal over IPv6. Load ip6_tables and "
                "ip6table_filter (and ip6table_nat with a portal port; check "
                "iptables-legacy's ip6tables works), or take IPv6 off the LAN.") from e
        self.active = True
        if repaired:
            _log.info("firewall IPv6 rules installed ({why}; {what})", why=why,
                      what="; ".join(repaired))
        return repaired

    def adopt(self, macs: AbstractSet[MAC]) -> None:
        """
        Dual stack at start: with C{keep_clients}, a sound table left by the
        last run is kept (the bindings too) with its MACs brought to
        C{macs} (the clients adopted); otherwise the table is made anew,
        and the IPv6 flows of the last run's clients are cut.
        """
        if not self.active:
            return
        try:
            state = self.nft.state()
            if state is not None and self.keep_clients and not state.problems(self.settings):
                self.nft.run(self._repairs(state, macs, drop_extra=True)[0])
            else:
                self.nft.install(self._prefixes(), macs)
                if state is not None and not self.keep_clients:
                    self.flows.cut(set(state.bind))
            self.nft_active = True
        except Exception:
            _log.failure("netsuite cannot use nftables: IPv6 stays closed for every client "
                         "(tried again at each check)")

    def bound(self) -> Set[Any]:
        """The addresses bound to a MAC now (their flows are cut at a stop)."""
        if not self.nft_active:
            return set()
        try:
            return set(self.nft.bindings())
        except Exception:
            _log.failure("could not read the IPv6 bindings; their flows are not cut")
            return set()

    def close(self) -> None:
        """A clean stop: the chains closed, then the table deleted."""
        if not self.active:
            return
        self.rules.close()
        try:
            self.nft.remove()  # after the close: its mark no longer opens anything
        except Exception:
            _log.failure("could not delete the nft table ip6 {table} (IPv6 is closed "
                         "all the same: the closed NS6-FORWARD ignores its mark)",
                         table=self.settings.nft_table)
        self.nft_active = False

    def remove(self) -> None:
        try:
            self.rules.remove()
            if self.nft.available():  # without the module, netsuite made no table
                self.nft.remove()
        except Exception:
            if self.network.lan_ipv6() is not None:
                raise
            # No IPv6 here, and ip6tables unusable: nothing of ours there.

    # clients

    def authorize(self, mac: MAC, old_mac: Optional[MAC] = None) -> None:
        """C{mac} in auth6 (and C{old_mac}, which lost its address, out)."""
        if not self.nft_active:
            return
        # IPv6 after IPv4: a failure here leaves the client with IPv4 only
        # until the next check restores its MAC.
        try:
            self.nft.run(add_macs(self.settings, [mac])
                         + (delete_macs(self.settings, [old_mac]) if old_mac else []))
        except Exception:
            _log.failure("could not authorize {mac} for IPv6 (the check tries again)",
                         mac=str(mac))

    def deauthorize(self, mac: MAC) -> None:
        if not self.nft_active:
            return
        try:
            self.nft.run(delete_macs(self.settings, [mac]))
        except Exception:
            # Not there (flushed by hand): nothing to remove; else the
            # check removes it.
            _log.failure("could not remove {mac} from the IPv6 clients", mac=str(mac))

    def unbind(self, macs: AbstractSet[MAC]) -> Set[ipaddress.IPv6Address]:
        """
        Remove C{macs}' bindings (their addresses free to be claimed again)
        and forget their totals; the addresses they had, whose flows the
        caller cuts.
        """
        if not macs or not self.nft_active:
            return set()
        bound: List[Tuple[ipaddress.IPv6Address, MAC]] = []
        try:
            bound = [(a, m) for a, m in self.nft.bindings().items() if m in macs]
            self.nft.run(delete_bindings(self.settings, bound))
        except Exception:
            _log.failure("could not remove the IPv6 bindings of {n} de-authorized clients",
                         n=len(macs))
        for mac in macs:
            self.up.forget(mac)
            self.down.forget(mac)
        return {a for a, _ in bound}

    def traffic(self, macs: AbstractSet[MAC]) -> Tuple[Counters, Counters]:
        """
        MAC -> IPv6 (bytes, packets) up, and down: the auth6 counter, and
        the sum over the MAC's owned6 addresses; totals that only grow
        (L{TrafficBook}), the last ones if the table cannot be read.
        """
        if not self.active:
            return {}, {}
        state: Optional[NftState] = None
        try:
            state = self.nft.state() if self.nft_active else None
        except Exception:
            _log.failure("could not read the IPv6 counters (the last ones are used)")
            return ({mac: self.up.read(mac, None) for mac in macs},
                    {mac: self.down.read(mac, None) for mac in macs})
        state = state or NftState()
        owned: Dict[MAC, Dict[Any, Tuple[int, int]]] = {}
        for address, counters in state.owned.items():
            mac = state.bind.get(address)
            if mac in macs:
                owned.setdefault(mac, {})[address] = counters
        up = {mac: self.up.read(mac, {"auth6": state.auth[mac]} if mac in state.auth else {})
              for mac in macs}
        down = {mac: self.down.read(mac, owned.get(mac, {})) for mac in macs}
        self.up.keep(macs)
        self.down.keep(macs)
        return up, down

    # the periodic check

    def check(self, macs: AbstractSet[MAC], adding: bool) -> List[str]:
        """
        The chains, then the table; what was repaired. Failures are logged
        (every check until they work) and leave the IPv4 repairs standing.
        """
        repaired: List[str] = []
        try:
            repaired += self._check_rules()
        except Exception:
            _log.failure("the LAN's IPv6 is not closed: netsuite cannot control ip6tables")
        try:
            repaired += self._check_nft(macs, adding)
        except Exception:
            _log.failure("netsuite cannot use nftables: IPv6 is closed for every client")
        return repaired

    def _check_rules(self) -> List[str]:
        if self.active:
            return [f"IPv6: {what}" for what in self.rules.install()]
        if self.mode == "auto":
            why = self.network.lan_ipv6()
            if why is not None:  # added since the start (by odhcpd, say)
                self.install(why)
                return [f"IPv6 rules installed: the LAN has IPv6 now ({why})"]
        return []

    def _check_nft(self, macs: AbstractSet[MAC], adding: bool) -> List[str]:
        """
        The table as made, C{macs} in auth6 (others removed, unless an
        authorize is under way: C{adding}), the prefixes the LAN's. A
        table deleted or changed by hand is made anew (clients claim their
        addresses again with their next packet).
        """
        if not self.active:
            return []
        state = self.nft.state()
        problems = ["table missing"] if state is None else state.problems(self.settings)
        if problems:
            self.nft.install(self._prefixes(), macs)
            if not self.nft_active:  # the first time in this run: not a repair
                self.nft_active = True
                _log.info("IPv6 for authorized clients ready (nftables table ip6 {table})",
                          table=self.settings.nft_table)
                return []
            return [f"IPv6: nft table restored ({'; '.join(problems)})"]
        self.nft_active = True
        commands, repaired = self._repairs(state, macs, drop_extra=not adding)
        self.nft.run(commands)
        return [f"IPv6: {what}" for what in repaired]

    def _prefixes(self) -> List[ipaddress.IPv6Network]:
        prefixes = self.network.lan_prefixes6()
        self.flows.local6 = prefixes
        return prefixes

    def _repairs(self, state: NftState, macs: AbstractSet[MAC],
                 drop_extra: bool) -> Tuple[List[Any], List[str]]:
        """
        The commands that bring the table's MACs to C{macs} (removing the
        others only with C{drop_extra}) and its prefixes to the LAN's; and
        what they repair.
        """
        commands: List[Any] = []
        repaired = []
        missing = macs - state.auth.keys()
        extra = state.auth.keys() - macs if drop_extra else set()
        if missing or extra:
            commands += add_macs(self.settings, sorted(missing))
            commands += delete_macs(self.settings, sorted(extra))
            repaired.append(f"IPv6 authorized MACs restored ({len(missing)} were missing, "
                            f"{len(extra)} extra)")
        prefixes = self._prefixes()
        if sorted(state.prefixes) != prefixes:
            commands += set_prefixes(self.settings, prefixes)
            repaired.append("IPv6 LAN prefixes updated")
        return commands, repaired
