# -*- test-case-name: tests.firewall.test_kernel -*-
"""
The rest of netsuite's kernel state, through netlink (pyroute2) and the
namespace's own /proc/sys: the policy routing TPROXY needs and the bridge
netfilter switch. Blocking calls, made from the firewall's worker thread.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import List, Optional

from pyroute2 import IPRoute

__all__ = ["KernelNetwork", "BRIDGE_NF_CALL"]

BRIDGE_NF_CALL = "/proc/sys/net/bridge/bridge-nf-call-iptables"
IPV6_FORWARDING = "/proc/sys/net/ipv6/conf/all/forwarding"
ROUTE_LOCAL = 2  # RTN_LOCAL


class KernelNetwork:
    """
    @param lan_interface: the LAN interface (often a bridge).
    @param mark: the fwmark (and mask) TPROXY sets.
    @param table: the routing table that delivers marked packets locally.
    """

    def __init__(self, lan_interface: str, mark: int = 1, table: int = 100,
                 proc_sys: str = BRIDGE_NF_CALL, ipv6_forwarding: str = IPV6_FORWARDING) -> None:
        self.lan_interface = lan_interface
        self.mark = mark
        self.table = table
        self._bridge_nf_call = proc_sys
        self._ipv6_forwarding = ipv6_forwarding

    # IPv6 on the LAN

    def lan_ipv6(self) -> Optional[str]:
        """
        Why the LAN has IPv6 (an address other than link-local on the LAN
        interface, or net.ipv6.conf.all.forwarding = 1), or None.
        """
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.lan_interface)
            found = ipr.get_addr(family=socket.AF_INET6, index=index[0]) if index else []
        for entry in found:
            address = ipaddress.IPv6Address(entry.get_attr("IFA_ADDRESS"))
            if not address.is_link_local:
                return f"{address} on {self.lan_interface}"
        if os.path.exists(self._ipv6_forwarding):
            with open(self._ipv6_forwarding) as f:
                if f.read().strip() == "1":
                    return "net.ipv6.conf.all.forwarding is 1"
        return None

    def lan_prefixes6(self) -> List[ipaddress.IPv6Network]:
        """
        The LAN's IPv6 prefixes: the networks of the LAN interface's
        addresses other than link-local (sorted, without repeats).
        """
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.lan_interface)
            found = ipr.get_addr(family=socket.AF_INET6, index=index[0]) if index else []
        prefixes = set()
        for entry in found:
            address = ipaddress.IPv6Address(entry.get_attr("IFA_ADDRESS"))
            if not address.is_link_local:
                prefixes.add(ipaddress.IPv6Network(f"{address}/{entry['prefixlen']}",
                                                   strict=False))
        return sorted(prefixes)

    # bridge netfilter

    def lan_is_bridge(self) -> bool:
        with IPRoute() as ipr:
            links = ipr.get_links(ifname=self.lan_interface)
        if not links:
            raise OSError(f"no interface {self.lan_interface}")
        info = links[0].get_attr("IFLA_LINKINFO")
        return info is not None and info.get_attr("IFLA_INFO_KIND") == "bridge"

    def bridge_nf_call_iptables(self) -> Optional[int]:
        """
        The namespace's net.bridge.bridge-nf-call-iptables, or None when
        the LAN is not a bridge (or the switch does not exist).
        """
        if not self.lan_is_bridge() or not os.path.exists(self._bridge_nf_call):
            return None
        with open(self._bridge_nf_call) as f:
            return int(f.read().strip())

    def set_bridge_nf_call_iptables(self, value: int) -> None:
        with open(self._bridge_nf_call, "w") as f:
            f.write(f"{value}\n")

    # TPROXY routing

    def _rules(self, ipr: IPRoute) -> List[object]:
        return [rule for rule in ipr.get_rules(family=socket.AF_INET)
                if rule.get_attr("FRA_FWMARK") == self.mark
                and rule.get_attr("FRA_TABLE") == self.table]

    def _routes(self, ipr: IPRoute) -> List[object]:
        return [route for route in ipr.get_routes(family=socket.AF_INET, table=self.table)
                if route["type"] == ROUTE_LOCAL and route["dst_len"] == 0]

    def tproxy_routing_problems(self) -> List[str]:
        with IPRoute() as ipr:
            found = []
            if len(self._rules(ipr)) != 1:
                found.append(f"ip rule fwmark {self.mark:#x} lookup {self.table} "
                             f"present {len(self._rules(ipr))} times")
            if not self._routes(ipr):
                found.append(f"local default route in table {self.table} is missing")
            return found

    def install_tproxy_routing(self) -> None:
        """
        C{ip rule add fwmark M/M lookup T} and C{ip route add local
        0.0.0.0/0 dev lo table T}, once each.
        """
        with IPRoute() as ipr:
            rules = self._rules(ipr)
            for extra in rules[1:]:
                ipr.rule("del", **self._rule_spec())
            if not rules:
                ipr.rule("add", **self._rule_spec())
            if not self._routes(ipr):
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.route("add", dst="0.0.0.0/0", type="local", oif=lo, table=self.table,
                          scope="host")

    def remove_tproxy_routing(self) -> None:
        with IPRoute() as ipr:
            for _ in self._rules(ipr):
                ipr.rule("del", **self._rule_spec())
            if self._routes(ipr):
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.route("del", dst="0.0.0.0/0", type="local", oif=lo, table=self.table,
                          scope="host")

    def _rule_spec(self) -> dict:
        return {"family": socket.AF_INET, "fwmark": self.mark, "fwmask": self.mark,
                "table": self.table, "priority": 100}
