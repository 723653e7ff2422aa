# -*- test-case-name: tests.firewall.test_divert -*-
"""
The TPROXY diversion of authorized clients' mail ports, done so that a
connection nobody can take is refused at once instead of hanging.

iptables' TPROXY target drops a packet no socket takes: with the mail
proxy down, a client's SYN got no answer and the client hung until its
own connect time-out. nftables' C{tproxy} statement, with no socket,
falls through to what follows the rule instead. So:

 - netsuite's legacy mangle chain NS-TPROXY (L{netsuite.firewall.rules})
   keeps its C{-m socket --transparent} rule (established flows to the
   proxy) and, for authorized clients' C{tproxy_ports} (authorization is
   the ipset C{ns-auth}, which nftables cannot match), only sets the
   C{divert_mark} bit;
 - netsuite's nftables table C{ip <nft_table>}, chain C{divert}
   (prerouting, priority -149: just after legacy mangle's -150, before
   routing) does C{tproxy to :<tproxy_port>} on TCP carrying that bit and
   adds C{tproxy_mark} (the policy routing delivers it locally);
 - a packet the proxy did not take (nothing listens) keeps the bit
   without C{tproxy_mark}, is routed on, and NS-FORWARD resets it first.

Every piece fails closed alone: without the nft table, or without the
policy routing, marked packets are forwarded and reset; all of it is in
the kernel, so it holds with every netsuite daemon gone. The I/O goes
through L{netsuite.firewall.nftsets.KernelNft} (blocking: the firewall's
worker thread).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from .nftsets import Command, KernelNft, parse_listing
from .rules import FirewallSettings

__all__ = ["CHAIN", "PRIORITY", "KernelDivert", "divert_commands", "expected_rules"]

CHAIN = "divert"
PRIORITY = -149
"""after legacy iptables' mangle PREROUTING (-150), which sets the bit"""


def _mark() -> Dict[str, Any]:
    return {"meta": {"key": "mark"}}


def expected_rules(s: FirewallSettings) -> List[List[Dict[str, Any]]]:
    """
    The chain's rules' expressions, as C{nft -j list} gives them back.
    """
    return [[
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"match": {"op": "==", "left": {"&": [_mark(), s.divert_mark]},
                   "right": s.divert_mark}},
        # With no socket to take it, the rule stops here: no tproxy_mark.
        {"tproxy": {"port": s.tproxy_port}},
        {"mangle": {"key": _mark(), "value": {"|": [_mark(), s.tproxy_mark]}}},
        {"accept": None},
    ]]


def _table(s: FirewallSettings) -> Dict[str, Any]:
    return {"family": "ip", "name": s.nft_table}


def divert_commands(s: FirewallSettings) -> List[Command]:
    """One transaction that (re)makes the table (a sound one is replaced)."""
    commands: List[Command] = [
        {"add": {"table": _table(s)}},
        {"delete": {"table": _table(s)}},
        {"add": {"table": _table(s)}},
        {"add": {"chain": {"family": "ip", "table": s.nft_table, "name": CHAIN,
                           "type": "filter", "hook": "prerouting", "prio": PRIORITY,
                           "policy": "accept"}}},
    ]
    for expr in expected_rules(s):
        commands.append({"add": {"rule": {"family": "ip", "table": s.nft_table,
                                          "chain": CHAIN, "expr": expr}}})
    return commands


def listing_problems(s: FirewallSettings, listing: Any) -> List[str]:
    """What in C{nft -j list table ip <nft_table>} output is not as made."""
    if isinstance(listing, str):
        listing = json.loads(listing)
    chains = [item["chain"] for item in listing.get("nftables", ()) if "chain" in item]
    ours = [c for c in chains if c.get("name") == CHAIN]
    if not ours:
        return [f"nft chain ip {s.nft_table} {CHAIN} missing"]
    chain = ours[0]
    if (chain.get("hook"), chain.get("prio"), chain.get("policy")) != \
            ("prerouting", PRIORITY, "accept"):
        return [f"nft chain ip {s.nft_table} {CHAIN} changed (hook, priority or policy)"]
    if parse_listing(listing).rules.get(CHAIN) != expected_rules(s):
        return [f"nft chain ip {s.nft_table} {CHAIN} changed"]
    return []


class KernelDivert:
    """
    The table's install, check, removal (blocking).
    """

    def __init__(self, settings: FirewallSettings, nft: KernelNft) -> None:
        self.settings = settings
        self.nft = nft

    def install(self) -> None:
        self.nft.run(divert_commands(self.settings))

    def problems(self) -> List[str]:
        if not self.nft.exists("ip"):
            return [f"nft table ip {self.settings.nft_table} missing"]
        return listing_problems(self.settings,
                                self.nft.run([{"list": {"table": _table(self.settings)}}]))

    def remove(self) -> None:
        """Delete the table (harmless if it is not there)."""
        self.nft.run([{"add": {"table": _table(self.settings)}},
                      {"delete": {"table": _table(self.settings)}}])
