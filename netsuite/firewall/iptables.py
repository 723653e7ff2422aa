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
import ctypes
import os
import shutil
import tempfile
from typing import Dict, List

from iptc import easy, xtables

from .rules import (ChainKey, FirewallSettings, Jump, Rule, chains, chains6, closed_chains,
                    closed_chains6, closed_jumps, closed_jumps6, jump_rule, jumps, jumps6)

__all__ = ["StaticRules"]


_NAT_LOADED: List[bool] = []
"""Whether both families' NAT targets are loaded (once per process)."""


def load_nat() -> None:
    """
    Make python-iptables find both families' NAT targets (REDIRECT,
    MASQUERADE), before any rule uses one. iptables 1.8.9 builds every
    family's NAT targets into one C{libxt_NAT.so}, whose constructor
    registers only those of the family libxtables is set to at its first
    load, and a library loads once per process: after IPv4's REDIRECT,
    IPv6's is never found (a rule using it is an "invalid rule"), and the
    other way round. So the library is loaded for IPv4, then a private copy
    of it (another library to the loader) for IPv6: its constructor
    registers IPv6's targets. Done before any IPv6 NAT target is looked up
    (after a failed look-up REDIRECT stays unfound). Blocking; from the
    worker thread.
    """
    if _NAT_LOADED:
        return
    original = os.path.join(xtables._xtables_libdir, "libxt_NAT.so")
    if not xtables.xtables(xtables.NFPROTO_IPV4).find_target("REDIRECT"):
        raise OSError(f"python-iptables finds no IPv4 REDIRECT target ({original})")
    private = tempfile.mkdtemp(prefix="netsuite-xtables-")
    try:
        path = os.path.join(private, "libxt_NAT.so")
        shutil.copyfile(original, path)
        xtables.xtables._xtables_set_nfproto(xtables.NFPROTO_IPV6)
        ctypes.CDLL(path)  # its constructor registers the IPv6 targets
    finally:
        shutil.rmtree(private, ignore_errors=True)  # mapped: no longer needed
    if not xtables.xtables(xtables.NFPROTO_IPV6).find_target("REDIRECT"):
        raise OSError(f"python-iptables finds no IPv6 REDIRECT target (a copy of {original})")
    _NAT_LOADED.append(True)


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
        self._nat = any(table == "nat" for table, _ in self.chains)

    def problems(self) -> List[str]:
        """
        What differs from the intended rules (empty when all is in place).
        """
        return self._problems(self.chains, self.jumps)

    def _problems(self, chains: Dict[ChainKey, List[Rule]], jumps: List[Jump]) -> List[str]:
        if self._nat:
            load_nat()
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
        if self._nat:
            load_nat()
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
