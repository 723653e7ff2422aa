# -*- test-case-name: tests.firewall.test_nftsets -*-
"""
Dual stack after login: netsuite's nftables table (family C{ip6}, named
L{FirewallSettings.nft_table}), driven through libnftables' JSON API
(Debian's python3-nftables, module C{nftables}).

 - set C{auth6} (C{ether_addr}, counters): the authorized clients' MACs;
   an element's counter is the client's IPv6 upload.
 - set C{bind6} (C{ipv6_addr . ether_addr}, dynamic, timeout): which MAC
   each IPv6 source address belongs to.
 - set C{owned6} (C{ipv6_addr}, dynamic, timeout, counters): the addresses
   claimed; an element's counter is that address's download.
 - set C{lan6} (an interval set): the LAN's IPv6 prefixes (from the LAN
   interface's global addresses); only an address in them can be claimed.
 - set C{claims6} (C{ether_addr}, dynamic, timeout): each claiming MAC's
   token bucket (L{CLAIM_BURST}, L{CLAIM_RATE}): claims beyond it fail.
 - chain C{prerouting6} (priority -150): a packet from the LAN whose
   (source, MAC) is bound and whose MAC is authorized refreshes the
   binding and gets C{ipv6_mark}; one from an authorized MAC with an
   unclaimed source in the prefix claims it (first come) and gets the mark.
   netsuite's ip6tables NS6-FORWARD RETURNs marked packets ahead of its
   refusals (L{netsuite.firewall.rules.chains6}); the rest is refused.
 - chain C{forward6}: counts the download of each claimed address.

The top half is pure: JSON commands built and listings parsed. L{KernelNft}
does the I/O; its calls block: make them from the firewall's worker thread.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attr

from ..registry.values import MAC
from .rules import FirewallSettings

__all__ = ["NftState", "KernelNft", "NftError", "table_commands", "add_macs", "delete_macs",
           "delete_bindings", "set_prefixes", "parse_listing", "expected_rules", "TrafficBook"]

Command = Dict[str, Any]
Counters = Tuple[int, int]
"""(bytes, packets)"""

AUTH, BIND, OWNED, PREFIXES, CLAIMS = "auth6", "bind6", "owned6", "lan6", "claims6"
PREROUTING, FORWARD = "prerouting6", "forward6"
MAX_ADDRESSES = 65535
"""the bind6 and owned6 sets' size: addresses claimed at once, all clients"""
CLAIM_BURST, CLAIM_RATE = 16, 8
"""a MAC claims at most CLAIM_BURST addresses at once, then CLAIM_RATE a
minute (so at most about CLAIM_BURST + CLAIM_RATE * ipv6_timeout / 60
addresses at a time): one client cannot fill the sets for the others"""
CLAIMS_TIMEOUT = 600
"""seconds a MAC's claim budget is remembered (longer than its refill)"""


class NftError(Exception):
    """
    libnftables refused a command (or is not installed).
    """


def _payload(protocol: str, field: str) -> Dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Any, right: Any, op: str = "==") -> Dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


_SOURCE = _payload("ip6", "saddr")
_MAC = _payload("ether", "saddr")
_BOUND = {"concat": [_SOURCE, _MAC]}


def expected_rules(s: FirewallSettings) -> Dict[str, List[List[Dict[str, Any]]]]:
    """
    chain -> its rules' expressions, in the canonical form C{nft -j list}
    gives back (so that checking the kernel's is a comparison).
    """
    lan = _match({"meta": {"key": "iifname"}}, s.lan_interface)
    mark = {"mangle": {"key": {"meta": {"key": "mark"}},
                       "value": {"|": [{"meta": {"key": "mark"}}, s.ipv6_mark]}}}
    bound = [lan, _match(_BOUND, f"@{BIND}"), _match(_MAC, f"@{AUTH}"),
             {"set": {"op": "update", "elem": _BOUND, "set": f"@{BIND}"}},
             {"set": {"op": "update", "elem": _SOURCE, "set": f"@{OWNED}"}},
             mark, {"accept": None}]
    # First come claims: a negated lookup matches no element, so it counts
    # nothing; the auth6 lookup counts the packet (once: the rule above
    # accepted those already bound).
    claim = [lan, _match(_SOURCE, f"@{PREFIXES}"), _match(_SOURCE, f"@{OWNED}", "!="),
             _match(_MAC, f"@{AUTH}"),
             # The MAC's claim budget: over it, the rule stops here.
             {"set": {"op": "add", "elem": _MAC, "set": f"@{CLAIMS}", "stmt": [
                 {"limit": {"rate": CLAIM_RATE, "burst": CLAIM_BURST, "per": "minute"}}]}},
             {"set": {"op": "add", "elem": _SOURCE, "set": f"@{OWNED}"}},
             {"set": {"op": "add", "elem": _BOUND, "set": f"@{BIND}"}},
             mark]
    download = [_match({"meta": {"key": "oifname"}}, s.lan_interface),
                _match(_payload("ip6", "daddr"), f"@{OWNED}")]
    return {PREROUTING: [bound, claim], FORWARD: [download]}


def _table(s: FirewallSettings) -> Dict[str, Any]:
    return {"family": "ip6", "name": s.nft_table}


def _in(s: FirewallSettings, **fields: Any) -> Dict[str, Any]:
    return {"family": "ip6", "table": s.nft_table, **fields}


def table_commands(s: FirewallSettings, prefixes: Sequence[ipaddress.IPv6Network],
                   macs: Iterable[MAC] = ()) -> List[Command]:
    """
    One transaction that (re)makes the whole table: whatever was there
    goes (bindings and counters included), then the sets, chains and
    rules, the LAN's prefixes and the authorized C{macs}.
    """
    timeout = s.ipv6_timeout
    commands: List[Command] = [
        {"add": {"table": _table(s)}},
        {"delete": {"table": _table(s)}},
        {"add": {"table": _table(s)}},
        {"add": {"set": _in(s, name=AUTH, type="ether_addr", stmt=[{"counter": None}])}},
        {"add": {"set": _in(s, name=BIND, type=["ipv6_addr", "ether_addr"],
                            flags=["timeout"], timeout=timeout,
                            size=MAX_ADDRESSES)}},
        {"add": {"set": _in(s, name=OWNED, type="ipv6_addr", flags=["timeout"],
                            timeout=timeout, size=MAX_ADDRESSES, stmt=[{"counter": None}])}},
        {"add": {"set": _in(s, name=PREFIXES, type="ipv6_addr", flags=["interval"])}},
        {"add": {"set": _in(s, name=CLAIMS, type="ether_addr", flags=["timeout"],
                            timeout=CLAIMS_TIMEOUT, size=MAX_ADDRESSES)}},
        {"add": {"chain": _in(s, name=PREROUTING, type="filter", hook="prerouting",
                              prio=-150, policy="accept")}},
        {"add": {"chain": _in(s, name=FORWARD, type="filter", hook="forward",
                              prio=-150, policy="accept")}},
    ]
    for chain, rules in expected_rules(s).items():
        for expr in rules:
            commands.append({"add": {"rule": _in(s, chain=chain, expr=expr)}})
    commands += set_prefixes(s, prefixes, flush=False)
    commands += add_macs(s, macs)
    return commands


def _prefix(network: ipaddress.IPv6Network) -> Dict[str, Any]:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def set_prefixes(s: FirewallSettings, prefixes: Sequence[ipaddress.IPv6Network],
                 flush: bool = True) -> List[Command]:
    commands: List[Command] = []
    if flush:
        commands.append({"flush": {"set": _in(s, name=PREFIXES)}})
    if prefixes:
        commands.append({"add": {"element": _in(s, name=PREFIXES,
                                                elem=[_prefix(p) for p in sorted(prefixes)])}})
    return commands


def _elements(s: FirewallSettings, verb: str, name: str, elements: List[Any]) -> List[Command]:
    return [{verb: {"element": _in(s, name=name, elem=elements)}}] if elements else []


def add_macs(s: FirewallSettings, macs: Iterable[MAC]) -> List[Command]:
    return _elements(s, "add", AUTH, [str(mac) for mac in macs])


def delete_macs(s: FirewallSettings, macs: Iterable[MAC]) -> List[Command]:
    return _elements(s, "delete", AUTH, [str(mac) for mac in macs])


def delete_bindings(s: FirewallSettings,
                    bindings: Iterable[Tuple[ipaddress.IPv6Address, MAC]]) -> List[Command]:
    bindings = list(bindings)
    return (_elements(s, "delete", BIND, [{"concat": [str(ip), str(mac)]}
                                          for ip, mac in bindings])
            + _elements(s, "delete", OWNED, [str(ip) for ip, _ in bindings]))


@attr.s(auto_attribs=True)
class NftState:
    """
    What a listing of the table holds.

    @ivar auth: MAC -> upload counters.
    @ivar bind: address -> MAC.
    @ivar owned: address -> download counters.
    @ivar prefixes: the LAN prefixes in C{lan6}.
    @ivar rules: chain -> its rules' expressions.
    @ivar sets: the names of the sets there.
    """

    auth: Dict[MAC, Counters] = attr.Factory(dict)
    bind: Dict[ipaddress.IPv6Address, MAC] = attr.Factory(dict)
    owned: Dict[ipaddress.IPv6Address, Counters] = attr.Factory(dict)
    prefixes: List[ipaddress.IPv6Network] = attr.Factory(list)
    rules: Dict[str, List[Any]] = attr.Factory(dict)
    sets: List[str] = attr.Factory(list)

    def problems(self, s: FirewallSettings) -> List[str]:
        """
        What is not as L{table_commands} makes it (sets, chains, rules).
        """
        found = []
        missing = {AUTH, BIND, OWNED, PREFIXES, CLAIMS} - set(self.sets)
        if missing:
            found.append(f"sets {', '.join(sorted(missing))} missing")
        for chain, rules in expected_rules(s).items():
            if chain not in self.rules:
                found.append(f"chain {chain} missing")
            elif self.rules[chain] != rules:
                found.append(f"chain {chain} changed")
        return found


def _counters(element: Dict[str, Any]) -> Counters:
    counter = element.get("counter") or {}
    return int(counter.get("bytes", 0)), int(counter.get("packets", 0))


def parse_listing(listing: Dict[str, Any]) -> NftState:
    """
    The L{NftState} in C{nft -j list table} output (libnftables' JSON).
    Elements in a shape netsuite does not write are skipped.
    """
    state = NftState()
    for item in listing.get("nftables", ()):
        if "set" in item:
            name = item["set"].get("name")
            state.sets.append(name)
            for element in item["set"].get("elem", ()):
                try:
                    _parse_element(state, name, element)
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue
        elif "chain" in item:
            state.rules.setdefault(item["chain"].get("name"), [])
        elif "rule" in item:
            rule = item["rule"]
            state.rules.setdefault(rule.get("chain"), []).append(rule.get("expr"))
    return state


def _parse_element(state: NftState, name: str, element: Any) -> None:
    # An element with a counter (or a timeout) is {"elem": {"val": ..., ...}}.
    inner = element.get("elem", {"val": element}) if isinstance(element, dict) else \
        {"val": element}
    value = inner["val"]
    if name == AUTH:
        state.auth[MAC(value)] = _counters(inner)
    elif name == BIND:
        ip, mac = value["concat"]
        state.bind[ipaddress.IPv6Address(ip)] = MAC(mac)
    elif name == OWNED:
        state.owned[ipaddress.IPv6Address(value)] = _counters(inner)
    elif name == PREFIXES:
        if isinstance(value, dict) and "prefix" in value:
            prefix = value["prefix"]
            state.prefixes.append(ipaddress.IPv6Network(f"{prefix['addr']}/{prefix['len']}"))
        elif isinstance(value, dict) and "range" in value:
            first, last = (ipaddress.IPv6Address(a) for a in value["range"])
            state.prefixes += ipaddress.summarize_address_range(first, last)
        else:
            state.prefixes.append(ipaddress.IPv6Network(value))


class TrafficBook:
    """
    A client's IPv6 totals that only grow, although the kernel's counters
    behind them go away (an C{owned6} address expires, the table is
    rebuilt by a repair) or start again (an address claimed anew).

    Per key (a MAC's upload, an address's download) it remembers the last
    reading; a reading lower than it, or none, folds the last one into the
    MAC's base.
    """

    def __init__(self) -> None:
        self._base: Dict[MAC, List[int]] = {}
        self._last: Dict[MAC, Dict[Any, Counters]] = {}

    def read(self, mac: MAC, readings: Optional[Dict[Any, Counters]]) -> Counters:
        """
        The MAC's total (bytes, packets) given its current C{readings}
        (key -> counters; None: no new reading, the last total).
        """
        base = self._base.setdefault(mac, [0, 0])
        last = self._last.get(mac, {})
        if readings is None:
            readings = last
        for key, (nbytes, packets) in last.items():
            now = readings.get(key)
            if now is None or now[0] < nbytes or now[1] < packets:
                base[0] += nbytes
                base[1] += packets
        self._last[mac] = dict(readings)
        return (base[0] + sum(b for b, _ in readings.values()),
                base[1] + sum(p for _, p in readings.values()))

    def forget(self, mac: MAC) -> None:
        self._base.pop(mac, None)
        self._last.pop(mac, None)

    def keep(self, macs: Iterable[MAC]) -> None:
        """Forget every MAC but C{macs}."""
        for mac in set(self._base) - set(macs):
            self.forget(mac)


class KernelNft:
    """
    The table's I/O through libnftables (one context, made lazily in the
    thread that uses it). Blocking.
    """

    def __init__(self, settings: FirewallSettings) -> None:
        self.settings = settings
        self._nft: Any = None

    @property
    def nft(self) -> Any:
        if self._nft is None:
            try:
                import nftables  # Debian's python3-nftables (scripts/setup.sh)
            except ImportError as e:
                raise NftError("the nftables module (Debian package python3-nftables) is "
                               f"not installed: {e}") from e
            nft = nftables.Nftables()
            nft.set_json_output(True)
            nft.set_stateless_output(False)
            nft.set_handle_output(False)
            self._nft = nft
        return self._nft

    def available(self) -> bool:
        """Is libnftables' Python module installed?"""
        try:
            self.nft
            return True
        except NftError:
            return False

    def run(self, commands: List[Command]) -> Any:
        """
        Run C{commands} in one transaction; C{NftError} if refused.
        """
        if not commands:
            return {}
        rc, output, error = self.nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nftables refused the commands: {str(error).strip()[:500]}")
        return output

    def install(self, prefixes: Sequence[ipaddress.IPv6Network], macs: Iterable[MAC]) -> None:
        self.run(table_commands(self.settings, prefixes, macs))

    def exists(self, family: str = "ip6") -> bool:
        """Is there netsuite's table of C{family} (ip6; ip: L{netsuite.firewall.divert})?"""
        rc, output, _ = self.nft.json_cmd({"nftables": [{"list": {"tables": {"family": family}}}]})
        if rc != 0:
            raise NftError(f"nftables cannot list the {family} tables")
        return any(item.get("table", {}).get("name") == self.settings.nft_table
                   for item in (output or {}).get("nftables", ()))

    def state(self) -> Optional[NftState]:
        """
        The table's contents, or None if there is no table.
        """
        if not self.exists():
            return None
        output = self.run([{"list": {"table": _table(self.settings)}}])
        if isinstance(output, str):
            output = json.loads(output)
        return parse_listing(output)

    def bindings(self) -> Dict[ipaddress.IPv6Address, MAC]:
        """
        bind6 alone (address -> MAC; empty without a table): what a logout
        needs, without reading every authorized MAC.
        """
        if not self.exists():
            return {}
        output = self.run([{"list": {"set": _in(self.settings, name=BIND)}}])
        if isinstance(output, str):
            output = json.loads(output)
        return parse_listing(output).bind

    def remove(self) -> None:
        """
        Delete the table (harmless if it is not there).
        """
        self.run([{"add": {"table": _table(self.settings)}},
                  {"delete": {"table": _table(self.settings)}}])
