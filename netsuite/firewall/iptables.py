# -*- test-case-name: tests.firewall.test_kernel -*-
"""
netsuite's static rules in the kernel, through python-iptables (libiptc,
the legacy iptables back end): install, verify, remove. Blocking calls,
made from the firewall's worker thread.

netsuite touches only its own chains and the one jump into each of them: it
never flushes a chain it does not own.
"""

from __future__ import annotations

import copy
from typing import Dict, List

from iptc import easy

from .rules import (ChainKey, FirewallSettings, Jump, Rule, chains, chains6, closed_chains,
                    closed_chains6, closed_jumps, closed_jumps6, jump_rule, jumps, jumps6)

__all__ = ["StaticRules"]


def _without_counters(rules: List[Rule]) -> List[Rule]:
    return [{k: v for k, v in rule.items() if k != "counters"} for rule in rules]


class StaticRules:
    """
    The chains and jumps that L{netsuite.firewall.rules} describes: the
    IPv4 ones (iptables), or with C{ipv6} the IPv6 ones (ip6tables).
    """

    def __init__(self, settings: FirewallSettings, ipv6: bool = False) -> None:
        self.ipv6 = ipv6
        if ipv6:
            self.chains: Dict[ChainKey, List[Rule]] = chains6(settings)
            self.jumps: List[Jump] = jumps6(settings)
            self.closed_chains = closed_chains6(settings)
            self.closed_jumps = closed_jumps6(settings)
        else:
            self.chains = chains(settings)
            self.jumps = jumps(settings)
            self.closed_chains = closed_chains(settings)
            self.closed_jumps = closed_jumps(settings)

    def problems(self) -> List[str]:
        """
        What differs from the intended rules (empty when all is in place).
        """
        return self._problems(self.chains, self.jumps)

    def _problems(self, chains: Dict[ChainKey, List[Rule]], jumps: List[Jump]) -> List[str]:
        found = []
        for (table, chain), rules in chains.items():
            if not easy.has_chain(table, chain, ipv6=self.ipv6):
                found.append(f"chain {table}/{chain} is missing")
            elif _without_counters(easy.dump_chain(table, chain, ipv6=self.ipv6)) != rules:
                found.append(f"chain {table}/{chain} has other rules")
        for jump in jumps:
            count = self._count_jumps(jump)
            if count != 1:
                found.append(f"{jump.table}/{jump.builtin} has {count} jumps to {jump.chain}")
        return found

    def install(self) -> List[str]:
        """
        Make the kernel's rules what they should be, touching only what
        differs; return what was repaired. Run at start-up (a crashed run
        may have left rules behind) and by the periodic check.
        """
        return self._install(self.chains, self.jumps)

    def _install(self, chains: Dict[ChainKey, List[Rule]], jumps: List[Jump]) -> List[str]:
        repaired = self._problems(chains, jumps)
        if not repaired:
            return []
        for table, chain in chains:
            if not easy.has_chain(table, chain, ipv6=self.ipv6):
                easy.add_chain(table, chain, ipv6=self.ipv6)
        for (table, chain), rules in chains.items():
            if _without_counters(easy.dump_chain(table, chain, ipv6=self.ipv6)) != rules:
                easy.flush_chain(table, chain, ipv6=self.ipv6)
                for rule in rules:
                    # add_rule changes the dict it is given.
                    easy.add_rule(table, chain, copy.deepcopy(rule), ipv6=self.ipv6)
        for jump in jumps:
            count = self._count_jumps(jump)
            if count != 1:
                for _ in range(count):
                    easy.delete_rule(jump.table, jump.builtin, jump_rule(jump), ipv6=self.ipv6)
                easy.insert_rule(jump.table, jump.builtin, jump_rule(jump), ipv6=self.ipv6)
        return repaired

    def close(self) -> None:
        """
        Leave only the closed LAN (L{closed_chains}): what a clean stop does.
        """
        self._install(self.closed_chains, self.closed_jumps)
        self._remove([j for j in self.jumps if j not in self.closed_jumps],
                     [key for key in self.chains if key not in self.closed_chains])

    def remove(self) -> None:
        """
        Take out the jumps, then netsuite's chains, the closed LAN's too.
        """
        self._remove(self.jumps, list(self.chains))

    def _remove(self, jumps: List[Jump], chains: List[ChainKey]) -> None:
        for jump in jumps:
            for _ in range(self._count_jumps(jump)):
                easy.delete_rule(jump.table, jump.builtin, jump_rule(jump), ipv6=self.ipv6)
        for table, chain in chains:
            if easy.has_chain(table, chain, ipv6=self.ipv6):
                easy.flush_chain(table, chain, ipv6=self.ipv6)
        for table, chain in chains:
            if easy.has_chain(table, chain, ipv6=self.ipv6):
                easy.delete_chain(table, chain, ipv6=self.ipv6)

    def _count_jumps(self, jump: Jump) -> int:
        wanted = jump_rule(jump)
        dumped = easy.dump_chain(jump.table, jump.builtin, ipv6=self.ipv6)
        return sum(1 for rule in _without_counters(dumped)
                   if rule == wanted)
