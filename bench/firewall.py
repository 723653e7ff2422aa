"""
Benchmark of netsuite's kernel firewall adapter against MetaNet's
one-rule-per-client method.

    .venv/bin/python bench/firewall.py [--quick]

Needs root. Everything happens in the access point's namespace of a lab
of its own (L{netsuite.lab.Lab} C{bfw<pid>} with no clients: namespace
C{nsbfw<pid>-ap}, a bridge C{br-lan} with 10.88.0.1/16 and a veth C{wan0}
to the upstream), removed at the end whatever happens. No traffic is sent.

For N = 10, 1,000 and 10,000 clients already authorized:

 (a) netsuite: C{KernelFirewall.authorize} / C{deauthorize} driven from the
     Twisted reactor through C{ThreadRunner(reactor, netns=NS)} (one worker
     thread inside the namespace): one operation awaited at a time
     (sequential), and 100 outstanding at a time (concurrent). There is one
     adapter per N (prefixes NA, NB, NC: sets na-auth/na-down, ...), all on
     the one worker, each with its N clients put in its sets beforehand with
     the adapter's own C{SetWriter}; the timed operations use fresh
     addresses outside that range and alternate between the three adapters
     in blocks of 100 (50 with --quick), so that background load on this
     shared machine falls on every N alike. Each round does C{ops}
     authorizations then C{ops} de-authorizations per N; the median round
     is reported. De-authorization schedules the adapter's batched
     conntrack cut (C{_cut_soon}); the cuts that ran inside the timed
     window are counted in it and reported. As each adapter's operations
     are spread over three times the wall time, each gets three times the
     default cut delay (0.6 s instead of 0.2 s): the same number of table
     dumps per de-authorization as one adapter alone.
 (b) MetaNet (paper section 9): one rule per client,
     C{iptables -t mangle -I PREROUTING 1 -i br-lan -s IP -j MARK --set-mark 0x1}
     to log in and the same with C{-D} to log out, through python-iptables
     (libiptc, the legacy back end) with autocommit on, as a daemon would do
     per login, each call sent to the same worker from the reactor. The N
     rules are inserted beforehand in one commit. The number of timed
     operations is capped (each costs O(N)): 200 each way at N=10,000 (24
     with --quick). For reference, a few operations the paper's literal way:
     fork/exec of C{iptables-legacy}.
 (c) the pieces: the two-set add+remove pair on the worker thread alone,
     the adapter run inline on one thread (what the reactor would pay with
     C{SyncRunner}), the reactor->worker->reactor hop, one conntrack
     dump (C{FlowCutter.cut}, what the batched cut costs), an authorization
     queued behind such a cut, C{check()} and C{traffic()}; garden adds of
     one address each (C{add_garden}), sequential and 100 outstanding
     (batched by the adapter).

IPv6 (dual stack after login), same run, afterwards: three more adapters
(prefixes XA, XB, XC) with C{ipv6="on"}, each with its own nft table
(C{ip6 xa}, ...) whose auth6 set holds its N clients' MACs (and its ipsets
their IPv4 entries):

 (d) netsuite: C{KernelFirewall.authorize} / C{deauthorize} with IPv6
     active (the ipset pair plus one nft element through libnftables'
     JSON API), sequential, alternating between the sizes in blocks as in
     (a); the nft element add+delete alone on the worker; C{check()} and
     C{traffic()} (both read the whole table).
 (e) one ip6tables rule per client, C{ip6tables -I FORWARD 1 -i br-lan -m mac
     --mac-source M -j RETURN} (and C{-D}), through python-iptables
     (libiptc) with autocommit, N rules inserted beforehand in one commit;
     capped as (b).

Targets: netsuite's cost at N=10,000 within 1.5x of its cost at N=10
(sequential, median rounds, authorize and de-authorize), and at least 1,000
sequential authorizations/s at every N; the same for IPv6 (d).

The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock, deferLater

from netsuite.firewall.flows import FlowCutter
from netsuite.firewall.interfaces import Client
from netsuite.firewall.kernel import KernelFirewall
from netsuite.firewall.nftsets import add_macs, delete_macs
from netsuite.firewall.rules import FirewallSettings
from netsuite.runner import ThreadRunner
from netsuite.testing import SyncRunner
from netsuite.firewall.setwriter import IPSET_CMD_ADD
from netsuite.lab import Lab
from netsuite.registry.values import MAC

LAN_NETWORK = ipaddress.IPv4Network("10.88.0.0/16")
PREFILLED = int(ipaddress.IPv4Address("10.88.1.0"))  # the N clients: 10.88.1.0 ...
FRESH = int(ipaddress.IPv4Address("10.88.128.0"))    # the timed operations: 10.88.128.0 ...
FRESH_POOL = 30_000  # ... up to 10.88.245.47, reused round-robin (each phase removes its own)
SIZES = (10, 1_000, 10_000)
WINDOW = 100  # outstanding operations in the concurrent variant

FULL = {
    "ops": 1000, "rounds": 5,
    # MetaNet per-rule operations (each way) by N: O(N) each, so capped.
    "perrule_ops": {10: 2000, 1_000: 1000, 10_000: 200},
    "exec_ops": {10: 30, 1_000: 20, 10_000: 10},
    "pieces": 2000, "cuts": 20, "breakdown": 5, "warmup": 300, "pieces_rounds": 3,
    "block": 100,
}
QUICK = {
    "ops": 200, "rounds": 4,
    "perrule_ops": {10: 300, 1_000: 120, 10_000: 24},
    "exec_ops": {10: 6, 1_000: 4, 10_000: 3},
    "pieces": 500, "cuts": 10, "breakdown": 3, "warmup": 100, "pieces_rounds": 1,
    "block": 50,
}


def ip_at(base: int, index: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(base + index)


def mac_for(ip: ipaddress.IPv4Address) -> MAC:
    return MAC(b"\x02\x00" + ip.packed)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))
    return ordered[index]


# MetaNet's method (runs in the worker thread, inside the namespace) ----------

class PerRule:
    """
    One mangle PREROUTING rule per logged-in client, through python-iptables.
    Only ever called from the firewall's worker thread: libiptc opens its
    socket in the calling thread's namespace, and python-iptables caches one
    C{Table} per name for the whole process.
    """

    def __init__(self, lan: str) -> None:
        self.lan = lan
        self._chain: Any = None

    @property
    def table(self) -> Any:
        import iptc
        return iptc.Table(iptc.Table.MANGLE)

    @property
    def chain(self) -> Any:
        import iptc
        if self._chain is None:
            self._chain = iptc.Chain(self.table, "PREROUTING")
        return self._chain

    def rule(self, ip: ipaddress.IPv4Address) -> Any:
        import iptc
        rule = iptc.Rule()
        rule.in_interface = self.lan
        rule.src = str(ip)
        target = rule.create_target("MARK")
        target.set_mark = "0x1"
        return rule

    def login(self, ip: ipaddress.IPv4Address) -> None:
        """iptables -t mangle -I PREROUTING 1 -i LAN -s IP -j MARK --set-mark 0x1"""
        self.chain.insert_rule(self.rule(ip))

    def logout(self, ip: ipaddress.IPv4Address) -> None:
        """iptables -t mangle -D PREROUTING -i LAN -s IP -j MARK --set-mark 0x1"""
        self.chain.delete_rule(self.rule(ip))

    def prefill(self, ips: Sequence[ipaddress.IPv4Address]) -> float:
        """
        Insert all of C{ips} in one commit; return the seconds it took.
        python-iptables spends ~0.3 ms building each rule's buffer, so the
        buffer is built once and only its source address (the first four
        bytes of C{struct ipt_entry}) changes from rule to rule.
        """
        started = time.perf_counter()
        if not ips:
            return 0.0
        table = self.table
        buffer = self.rule(ips[0]).rule
        table.autocommit = False
        try:
            for ip in ips:
                buffer[0:4] = list(ip.packed)
                table.insert_entry("PREROUTING", buffer, 0)
            table.commit()
        finally:
            table.autocommit = True
            table.refresh()
        return time.perf_counter() - started

    def breakdown(self, ips: Sequence[ipaddress.IPv4Address]) -> Dict[str, float]:
        """
        Where one autocommitted login/logout spends its time: seconds (medians)
        building the rule, changing libiptc's copy of the table, committing it
        (the whole table back to the kernel) and re-reading it (what
        autocommit does after each operation).
        """
        table = self.table
        found: Dict[str, List[float]] = {k: [] for k in
                                         ("build", "insert", "delete", "commit", "reread")}
        table.autocommit = False
        try:
            table.refresh()
            for ip in ips:
                for change in ("insert", "delete"):
                    t0 = time.perf_counter()
                    rule = self.rule(ip)
                    t1 = time.perf_counter()
                    if change == "insert":
                        self.chain.insert_rule(rule)
                    else:
                        self.chain.delete_rule(rule)
                    t2 = time.perf_counter()
                    table.commit()
                    t3 = time.perf_counter()
                    table.refresh()
                    t4 = time.perf_counter()
                    found["build"].append(t1 - t0)
                    found[change].append(t2 - t1)
                    found["commit"].append(t3 - t2)
                    found["reread"].append(t4 - t3)
        finally:
            table.autocommit = True
            table.refresh()
        return {k: median(v) for k, v in found.items()}

    def exec_ops(self, ips: Sequence[ipaddress.IPv4Address]) -> Tuple[float, float]:
        """
        The paper's literal way: fork/exec iptables-legacy per login and per
        logout (the child inherits this thread's namespace). Returns
        (seconds per login, seconds per logout).
        """
        def rule_args(ip: ipaddress.IPv4Address) -> List[str]:
            return ["-i", self.lan, "-s", str(ip), "-j", "MARK", "--set-mark", "0x1"]
        t0 = time.perf_counter()
        for ip in ips:
            subprocess.run(["iptables-legacy", "-w", "-t", "mangle", "-I", "PREROUTING", "1",
                            *rule_args(ip)], check=True, capture_output=True)
        t1 = time.perf_counter()
        for ip in ips:
            subprocess.run(["iptables-legacy", "-w", "-t", "mangle", "-D", "PREROUTING",
                            *rule_args(ip)], check=True, capture_output=True)
        t2 = time.perf_counter()
        return (t1 - t0) / len(ips), (t2 - t1) / len(ips)


class PerRule6:
    """
    One ip6tables filter FORWARD rule per logged-in client, by MAC, through
    python-iptables (libiptc, legacy back end); from the worker thread only.
    """

    def __init__(self, lan: str) -> None:
        self.lan = lan

    @property
    def table(self) -> Any:
        import iptc
        return iptc.Table6(iptc.Table6.FILTER)

    @property
    def chain(self) -> Any:
        import iptc
        return iptc.Chain(self.table, "FORWARD")

    def rule(self, mac: MAC) -> Any:
        import iptc
        rule = iptc.Rule6()
        rule.in_interface = self.lan
        match = rule.create_match("mac")
        match.mac_source = str(mac)
        rule.create_target("RETURN")
        return rule

    def login(self, mac: MAC) -> None:
        """ip6tables -I FORWARD 1 -i LAN -m mac --mac-source MAC -j RETURN"""
        self.chain.insert_rule(self.rule(mac))

    def logout(self, mac: MAC) -> None:
        """ip6tables -D FORWARD -i LAN -m mac --mac-source MAC -j RETURN"""
        self.chain.delete_rule(self.rule(mac))

    def prefill(self, macs: Sequence[MAC]) -> float:
        """Insert all of C{macs} in one commit; return the seconds it took."""
        started = time.perf_counter()
        table = self.table
        table.autocommit = False
        try:
            chain = self.chain
            for mac in macs:
                chain.insert_rule(self.rule(mac))
            table.commit()
        finally:
            table.autocommit = True
            table.refresh()
        return time.perf_counter() - started

    def count(self) -> int:
        table = self.table
        table.refresh()
        return sum(1 for rule in self.chain.rules if rule.matches
                   and rule.matches[0].name == "mac")


# timing helpers (reactor thread) ---------------------------------------------

async def sequential(op: Callable[[Any], Deferred],
                     items: Sequence[Any]) -> Tuple[float, List[float]]:
    """
    Run C{op} on each item, awaiting each before the next: (total seconds,
    per-operation latencies).
    """
    latencies = []
    started = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        await op(item)
        latencies.append(time.perf_counter() - t0)
    return time.perf_counter() - started, latencies


def windowed(op: Callable[[Any], Deferred], items: Sequence[Any], window: int) -> Deferred:
    """
    Run C{op} on each item with up to C{window} outstanding; fires with the
    total seconds.
    """
    done: Deferred = Deferred()
    pending = iter(items)
    state = {"out": 0}
    started = time.perf_counter()
    end = object()

    def launch() -> None:
        item = next(pending, end)
        if item is end:
            if state["out"] == 0 and not done.called:
                done.callback(time.perf_counter() - started)
            return
        state["out"] += 1
        op(item).addCallbacks(finished, failed)

    def finished(_: Any) -> None:
        state["out"] -= 1
        launch()

    def failed(failure: Any) -> None:
        state["out"] -= 1
        if not done.called:
            done.errback(failure)

    for _ in range(window):
        launch()
    return done


def sleep(seconds: float) -> Deferred:
    return deferLater(reactor, seconds, lambda: None)


# the benchmark ---------------------------------------------------------------

GARDEN_BASE = int(ipaddress.IPv4Address("172.16.0.0"))  # garden addresses, off the LAN
PREFIXES = {10: "NA", 1_000: "NB", 10_000: "NC"}  # one adapter (own sets, own chains) per N
# The adapter's own default delay before a batched conntrack cut.
CUT_DELAY = inspect.signature(KernelFirewall).parameters["cut_delay"].default


class Bench:
    """
    Three adapters side by side in the one namespace and worker, one per N,
    each with its own sets (C{na-auth}, C{nb-auth}, ...) holding its N
    clients: the timed operations alternate between them in small blocks,
    so that the machine's background load falls on every N alike.
    """

    def __init__(self, lab: Lab, params: Dict[str, Any]) -> None:
        self.lab = lab
        self.ns = ns = lab.netns("ap")
        self.p = params
        self.runner = ThreadRunner(reactor, netns=ns)
        # Each adapter's de-authorizations are spread over three times the
        # wall time, so each gets three times the default cut delay: together
        # they run as many conntrack dumps per de-authorization as one
        # adapter with the default delay would. Each has a lock directory of
        # its own: the owner lock allows one firewall per namespace.
        self.lock_dirs = {n: tempfile.mkdtemp(prefix=f"bfw-{PREFIXES[n]}-") for n in SIZES}
        self.fws = {n: KernelFirewall(FirewallSettings("br-lan", "wan0", LAN_NETWORK,
                                                       prefix=PREFIXES[n]),
                                      self.runner, reactor, shaper=None,
                                      cut_delay=CUT_DELAY * len(SIZES),
                                      lock_dir=self.lock_dirs[n])
                    for n in SIZES}
        self.perrule = PerRule("br-lan")
        self.prefilled_rules = 0  # rules in mangle PREROUTING
        self.cuts: Dict[int, List[Tuple[float, int, int]]] = {n: [] for n in SIZES}
        self.fresh_offset = 0
        self.fill_seconds: Dict[int, float] = {}
        self.rule_seconds: Dict[int, float] = {}
        self.results6: Dict[int, Dict[str, Any]] = {}

    def fresh(self, count: int) -> List[ipaddress.IPv4Address]:
        """Addresses outside the prefilled range, in no set and no rule now."""
        ips = [ip_at(FRESH, (self.fresh_offset + i) % FRESH_POOL) for i in range(count)]
        self.fresh_offset = (self.fresh_offset + count) % FRESH_POOL
        return ips

    def instrument_cuts(self, n: int) -> None:
        """Record each batched conntrack cut an adapter runs (in the worker)."""
        fw, found = self.fws[n], self.cuts[n]
        original = fw.flows.cut

        def timed(ips: Any) -> int:
            t0 = time.perf_counter()
            count = original(ips)
            found.append((time.perf_counter() - t0, len(ips), count))
            return count
        fw.flows.cut = timed  # type: ignore[method-assign]

    async def drain(self) -> None:
        """Let pending batched cuts fire and finish."""
        await sleep(max(fw.cut_delay for fw in self.fws.values()) + 0.05)
        await self.runner.run(lambda: None)

    # the N clients already there

    @staticmethod
    def _write_sets(fw: KernelFirewall, command: int,
                    ips: Sequence[ipaddress.IPv4Address]) -> None:
        # At most 50 clients (100 entries) per call: the kernel's
        # acknowledgements must fit the socket's receive buffer (ENOBUFS
        # beyond ~250 entries).
        sets = fw.sets
        for start in range(0, len(ips), 50):
            entries = []
            for ip in ips[start:start + 50]:
                mac = mac_for(ip) if command == IPSET_CMD_ADD else None
                entries.append((command, sets.auth, ip, mac, None))
                entries.append((command, sets.down, ip, None, None))
            sets.writer.apply(entries)

    async def prefill(self, n: int) -> None:
        """Authorize the first C{n} prefilled addresses in adapter C{n}."""
        fw = self.fws[n]
        ips = [ip_at(PREFILLED, i) for i in range(n)]
        t0 = time.perf_counter()
        await self.runner.run(self._write_sets, fw, IPSET_CMD_ADD, ips)
        self.fill_seconds[n] = time.perf_counter() - t0
        for ip in ips:
            fw.clients[ip] = Client(ip, mac_for(ip), 0, 0)
        await self.check_sets(n, n)

    async def grow_rules(self, n: int) -> None:
        rule_ips = [ip_at(PREFILLED, i) for i in range(self.prefilled_rules, n)]
        self.rule_seconds[n] = await self.runner.run(self.perrule.prefill, rule_ips)
        self.prefilled_rules = n
        self.check_rules(n)

    async def check_sets(self, n: int, expected: int) -> None:
        fw = self.fws[n]
        sizes = await self.runner.run(lambda: (fw.sets.size(fw.sets.auth),
                                           fw.sets.size(fw.sets.down)))
        if sizes != (expected, expected) or len(fw.clients) != expected:
            raise RuntimeError(f"N={n}: expected {expected} clients, the sets hold {sizes}, "
                               f"the adapter knows {len(fw.clients)}")

    def check_rules(self, n: int) -> None:
        saved = self.lab.exec("ap", ["iptables-legacy-save", "-t", "mangle"], check=True).stdout
        rules = [line for line in saved.splitlines() if line.startswith("-A PREROUTING")]
        if len(rules) != n:
            raise RuntimeError(f"expected {n} per-client rules, found {len(rules)}")
        for line in rules[:1] + rules[-1:]:
            ip = line.split()[3].split("/")[0]
            if line != (f"-A PREROUTING -s {ip}/32 -i br-lan -j MARK "
                        "--set-xmark 0x1/0xffffffff"):
                raise RuntimeError(f"unexpected per-client rule: {line}")

    # (a) netsuite

    @staticmethod
    def authorizer(fw: KernelFirewall) -> Callable[[ipaddress.IPv4Address], Deferred]:
        return lambda ip: fw.authorize(ip, mac_for(ip))

    @staticmethod
    def deauthorizer(fw: KernelFirewall) -> Callable[[ipaddress.IPv4Address], Deferred]:
        return fw.deauthorize

    async def netsuite_round(self, number: int) -> Dict[int, Dict[str, Any]]:
        """
        One round: C{ops} sequential authorizations of fresh addresses in
        each adapter, in blocks that alternate between the adapters, then
        as many de-authorizations; then, adapter after adapter, the same
        with WINDOW outstanding.
        """
        ops, block = self.p["ops"], self.p["block"]
        ips = {n: self.fresh(ops) for n in SIZES}
        found: Dict[int, Dict[str, Any]] = {n: {"auth_lat": [], "deauth_lat": []}
                                            for n in SIZES}
        for phase in ("auth", "deauth"):
            gc.collect()
            cuts_before = {n: len(self.cuts[n]) for n in SIZES}
            sums = {n: {"time": 0.0, "cpu": 0.0, "reactor": 0.0, "worker": 0.0}
                    for n in SIZES}
            for index, start in enumerate(range(0, ops, block)):
                order = SIZES if (index + number) % 2 == 0 else SIZES[::-1]
                for n in order:
                    fw = self.fws[n]
                    op = self.authorizer(fw) if phase == "auth" else self.deauthorizer(fw)
                    # process_time(): CPU of the whole process (reactor and
                    # worker, user and kernel); thread_time(): one thread's.
                    worker = await self.runner.run(time.thread_time)
                    reactor_cpu, cpu = time.thread_time(), time.process_time()
                    total, lat = await sequential(op, ips[n][start:start + block])
                    sums[n]["cpu"] += time.process_time() - cpu
                    sums[n]["reactor"] += time.thread_time() - reactor_cpu
                    sums[n]["worker"] += await self.runner.run(time.thread_time) - worker
                    sums[n]["time"] += total
                    found[n][phase + "_lat"] += lat
            for n in SIZES:
                found[n][phase] = ops / sums[n]["time"]
                found[n][phase + "_cpu_us"] = sums[n]["cpu"] / ops * 1e6
                found[n][phase + "_reactor_cpu_us"] = sums[n]["reactor"] / ops * 1e6
                found[n][phase + "_worker_cpu_us"] = sums[n]["worker"] / ops * 1e6
                if phase == "auth":
                    await self.check_sets(n, n + ops)
                else:
                    found[n]["cuts"] = self.cuts[n][cuts_before[n]:]
            if phase == "deauth":
                await self.drain()

        for n in (SIZES if number % 2 == 0 else SIZES[::-1]):
            fw = self.fws[n]
            more = self.fresh(ops)
            gc.collect()
            found[n]["conc_auth"] = ops / await windowed(self.authorizer(fw), more, WINDOW)
            found[n]["conc_deauth"] = ops / await windowed(self.deauthorizer(fw), more, WINDOW)
        await self.drain()
        for n in SIZES:
            await self.check_sets(n, n)
        return found

    # (c) the pieces

    @staticmethod
    def _pair(fw: KernelFirewall, ips: Sequence[ipaddress.IPv4Address]) -> Tuple[float, float]:
        sets = fw.sets
        t0 = time.perf_counter()
        for ip in ips:
            sets.add_client(ip, mac_for(ip))
        t1 = time.perf_counter()
        for ip in ips:
            sets.remove_client(ip)
        t2 = time.perf_counter()
        return (t1 - t0) / len(ips), (t2 - t1) / len(ips)

    @staticmethod
    def _inline(fw: KernelFirewall, ips: Sequence[ipaddress.IPv4Address]) -> Tuple[float, float]:
        """
        An adapter on the same sets with SyncRunner, on this (the worker's)
        thread: what the reactor thread would spend per call if the calls
        ran on it. The de-authorizations' cut is scheduled on a Clock that
        never advances.
        """
        inline = KernelFirewall(fw.settings, SyncRunner(), Clock(), shaper=None)
        try:
            t0 = time.perf_counter()
            for ip in ips:
                inline.authorize(ip, mac_for(ip))
            t1 = time.perf_counter()
            for ip in ips:
                inline.deauthorize(ip)
            t2 = time.perf_counter()
        finally:
            inline.sets.close()
        return (t1 - t0) / len(ips), (t2 - t1) / len(ips)

    @staticmethod
    def _cut(ips: Sequence[ipaddress.IPv4Address], reps: int) -> Tuple[float, float]:
        """(median seconds to cut one address, seconds to cut all of C{ips} at once)"""
        cutter = FlowCutter()
        try:
            one = []
            for i in range(reps):
                t0 = time.perf_counter()
                cutter.cut({ips[i % len(ips)]})
                one.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cutter.cut(set(ips))
            batch = time.perf_counter() - t0
        finally:
            cutter.close()
        return median(one), batch

    async def pieces(self, n: int, traffic: bool) -> Dict[str, Any]:
        fw, count = self.fws[n], self.p["pieces"]
        found: Dict[str, Any] = {}
        gc.collect()
        add, remove = await self.runner.run(self._pair, fw, self.fresh(count))
        found.update(pair_add_us=add * 1e6, pair_remove_us=remove * 1e6,
                     pair_us=(add + remove) * 1e6)
        add, remove = await self.runner.run(self._inline, fw, self.fresh(count))
        found.update(inline_auth_us=add * 1e6, inline_deauth_us=remove * 1e6)
        one, batch = await self.runner.run(self._cut, self.fresh(1000), self.p["cuts"])
        found.update(cut_one_ms=one * 1e3, cut_1000_ms=batch * 1e3)
        # An authorization that arrives just after a batched cut was handed
        # to the worker waits for that table dump (one worker, in order).
        behind = []
        cutter = FlowCutter()
        for ip in self.fresh(3):
            cut = self.runner.run(cutter.cut, {ip_at(FRESH, FRESH_POOL - 1)})
            t0 = time.perf_counter()
            await fw.authorize(ip, mac_for(ip))
            behind.append(time.perf_counter() - t0)
            await cut
            await fw.deauthorize(ip)
        await self.runner.run(cutter.close)
        await self.drain()
        found.update(behind_cut_ms=median(behind) * 1e3)
        # The other adapter calls, for scale (all on the worker thread).
        t0 = time.perf_counter()
        await fw.check()
        found.update(check_ms=(time.perf_counter() - t0) * 1e3)
        if traffic:
            t0 = time.perf_counter()
            clients = await fw.traffic()
            found.update(traffic_ms=(time.perf_counter() - t0) * 1e3)
            if len(clients) != n:
                raise RuntimeError(f"traffic() gave {len(clients)} clients, not {n}")
        noop = lambda _: self.runner.run(lambda: None)  # noqa: E731
        total, lat = await sequential(noop, range(count))
        found.update(hop_us=total / count * 1e6, hop_p50_us=median(lat) * 1e6)
        total = await windowed(noop, range(count), WINDOW)
        found.update(hop_conc_us=total / count * 1e6)
        # Garden adds (one address each, as a resolver's answer would
        # bring): one awaited at a time, then WINDOW outstanding, which the
        # adapter batches into fewer netlink sends.
        garden = [ipaddress.IPv4Address(GARDEN_BASE + i) for i in range(2 * count)]
        add_one = lambda ip: fw.add_garden([ip], 600)  # noqa: E731
        total, _ = await sequential(add_one, garden[:count])
        found.update(garden_add_us=total / count * 1e6)
        total = await windowed(add_one, garden[count:], WINDOW)
        found.update(garden_add_conc_us=total / count * 1e6)
        if len(await fw.garden()) != 2 * count:
            raise RuntimeError("the garden set lacks entries")
        await fw.flush_garden()
        await self.check_sets(n, n)
        return found

    # (b) per rule

    async def per_rule(self, n: int) -> Dict[str, Any]:
        ops = self.p["perrule_ops"][n]
        rounds = self.p["rounds"]
        each = max(1, ops // rounds)
        rates: Dict[str, List[float]] = {"auth": [], "deauth": [], "auth_cpu_us": []}
        lat_in: List[float] = []
        lat_out: List[float] = []
        for round_number in range(rounds):
            ips = self.fresh(each)
            gc.collect()
            cpu = time.process_time()
            total, lat = await sequential(lambda ip: self.runner.run(self.perrule.login, ip), ips)
            rates["auth_cpu_us"].append((time.process_time() - cpu) / each * 1e6)
            rates["auth"].append(each / total)
            lat_in += lat
            if round_number == 0:
                self.check_rules(n + each)
            total, lat = await sequential(lambda ip: self.runner.run(self.perrule.logout, ip), ips)
            rates["deauth"].append(each / total)
            lat_out += lat
        breakdown = await self.runner.run(self.perrule.breakdown, self.fresh(self.p["breakdown"]))
        exec_in, exec_out = await self.runner.run(self.perrule.exec_ops,
                                              self.fresh(self.p["exec_ops"][n]))
        self.check_rules(n)
        return {"auth": median(rates["auth"]), "deauth": median(rates["deauth"]),
                "auth_best": max(rates["auth"]), "deauth_best": max(rates["deauth"]),
                "auth_cpu_us": median(rates["auth_cpu_us"]),
                "auth_rounds": rates["auth"], "deauth_rounds": rates["deauth"],
                "ops": each * rounds,
                "auth_p50_us": median(lat_in) * 1e6, "deauth_p50_us": median(lat_out) * 1e6,
                "breakdown": breakdown, "exec_auth_us": exec_in * 1e6,
                "exec_deauth_us": exec_out * 1e6, "exec_ops": self.p["exec_ops"][n]}

    # the whole run

    async def main(self) -> Dict[int, Dict[str, Any]]:
        rounds: Dict[int, List[Dict[str, Any]]] = {n: [] for n in SIZES}
        pieces: Dict[int, List[Dict[str, Any]]] = {n: [] for n in SIZES}
        results: Dict[int, Dict[str, Any]] = {}
        started = []
        try:
            for n in SIZES:
                await self.fws[n].start()
                started.append(n)
                self.instrument_cuts(n)
                await self.prefill(n)
            # Warm-up (untimed): thread start, sockets, first-call costs.
            for n in SIZES:
                ips = self.fresh(self.p["warmup"])
                await windowed(self.authorizer(self.fws[n]), ips, WINDOW)
                await sequential(self.deauthorizer(self.fws[n]), ips)
            await self.runner.run(self.perrule.login, ips[0])
            await self.runner.run(self.perrule.logout, ips[0])
            await self.drain()
            for n in SIZES:
                self.cuts[n].clear()

            # (a) and (c)
            for number in range(self.p["rounds"]):
                t0 = time.perf_counter()
                found = await self.netsuite_round(number)
                for n in SIZES:
                    rounds[n].append(found[n])
                if number < self.p["pieces_rounds"]:
                    for n in SIZES:
                        pieces[n].append(await self.pieces(n, traffic=number == 0))
                print(f"netsuite round {number + 1}/{self.p['rounds']}: "
                      + ", ".join(f"N={n:,} {fmt_rate(found[n]['auth'])} auth/s"
                                  for n in SIZES)
                      + f" ({time.perf_counter() - t0:.1f} s)")
                sys.stdout.flush()

            # (b) MetaNet per rule, N growing.
            for n in SIZES:
                t0 = time.perf_counter()
                await self.grow_rules(n)
                results[n] = {"netsuite": aggregate_rounds(rounds[n]),
                              "pieces": aggregate_pieces(pieces[n]),
                              "perrule": await self.per_rule(n),
                              "prefill": {"sets_s": self.fill_seconds[n],
                                          "rules_s": self.rule_seconds[n]}}
                print(f"per-rule N={n:,}: {fmt_rate(results[n]['perrule']['auth'])} logins/s "
                      f"({time.perf_counter() - t0:.1f} s)")
                sys.stdout.flush()

            # (d) and (e): IPv6, on the same worker.
            self.results6 = await Bench6(self).main()
        finally:
            for n in started:
                await self.fws[n].stop()
            self.runner.stop()
            for path in self.lock_dirs.values():
                shutil.rmtree(path, ignore_errors=True)
        for n in SIZES:
            report_size(n, results[n])
        return results


PREFIXES6 = {10: "XA", 1_000: "XB", 10_000: "XC"}  # the dual-stack adapters (d)


class Bench6:
    """
    (d) and (e): IPv6 authorizations, on the same worker and namespace
    after the IPv4 part, one dual-stack adapter per N.
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.runner = bench.runner
        self.p = bench.p
        self.lock_dirs = {n: tempfile.mkdtemp(prefix=f"bfw-{PREFIXES6[n]}-") for n in SIZES}
        self.fws = {n: KernelFirewall(FirewallSettings("br-lan", "wan0", LAN_NETWORK,
                                                       prefix=PREFIXES6[n]),
                                      self.runner, reactor, shaper=None,
                                      cut_delay=CUT_DELAY * len(SIZES),
                                      lock_dir=self.lock_dirs[n], ipv6="on")
                    for n in SIZES}
        self.perrule = PerRule6("br-lan")
        self.prefilled_rules = 0

    @staticmethod
    def _fill_macs(fw: KernelFirewall, macs: Sequence[MAC]) -> None:
        for start in range(0, len(macs), 1000):
            fw.v6.nft.run(add_macs(fw.settings, macs[start:start + 1000]))

    @staticmethod
    def _auth6_size(fw: KernelFirewall) -> int:
        state = fw.v6.nft.state()
        return len(state.auth) if state is not None else -1

    async def check_size(self, n: int, expected: int) -> None:
        fw = self.fws[n]
        size = await self.runner.run(self._auth6_size, fw)
        sets = await self.runner.run(lambda: fw.sets.size(fw.sets.auth))
        if (size, sets, len(fw.clients)) != (expected,) * 3:
            raise RuntimeError(f"IPv6 N={n}: expected {expected} clients; auth6 holds {size}, "
                               f"the ipset {sets}, the adapter knows {len(fw.clients)}")

    async def start(self, n: int) -> None:
        fw = self.fws[n]
        await fw.start()
        if not fw.v6.nft_active:
            raise RuntimeError(f"the dual-stack adapter {PREFIXES6[n]} has no nft table")
        ips = [ip_at(PREFILLED, i) for i in range(n)]
        await self.runner.run(Bench._write_sets, fw, IPSET_CMD_ADD, ips)
        await self.runner.run(self._fill_macs, fw, [mac_for(ip) for ip in ips])
        for ip in ips:
            fw.clients[ip] = Client(ip, mac_for(ip), 0, 0)
        await self.check_size(n, n)

    async def round(self, number: int) -> Dict[int, Dict[str, float]]:
        ops, block = self.p["ops"], self.p["block"]
        ips = {n: self.bench.fresh(ops) for n in SIZES}
        found: Dict[int, Dict[str, float]] = {n: {} for n in SIZES}
        for phase in ("auth", "deauth"):
            gc.collect()
            spent = {n: 0.0 for n in SIZES}
            cpu = {n: 0.0 for n in SIZES}
            for index, start in enumerate(range(0, ops, block)):
                for n in (SIZES if (index + number) % 2 == 0 else SIZES[::-1]):
                    fw = self.fws[n]
                    op = Bench.authorizer(fw) if phase == "auth" else Bench.deauthorizer(fw)
                    c0 = time.process_time()
                    total, _ = await sequential(op, ips[n][start:start + block])
                    cpu[n] += time.process_time() - c0
                    spent[n] += total
            for n in SIZES:
                found[n][phase] = ops / spent[n]
                found[n][phase + "_cpu_us"] = cpu[n] / ops * 1e6
                if phase == "auth":
                    await self.check_size(n, n + ops)
            if phase == "deauth":
                await self.bench.drain()
        for n in SIZES:
            await self.check_size(n, n)
        return found

    @staticmethod
    def _nft_pair(fw: KernelFirewall, macs: Sequence[MAC]) -> float:
        """Seconds per nft element add+delete of one MAC, on this thread."""
        t0 = time.perf_counter()
        for mac in macs:
            fw.v6.nft.run(add_macs(fw.settings, [mac]))
        for mac in macs:
            fw.v6.nft.run(delete_macs(fw.settings, [mac]))
        return (time.perf_counter() - t0) / len(macs)

    async def pieces(self, n: int) -> Dict[str, float]:
        fw = self.fws[n]
        macs = [mac_for(ip) for ip in self.bench.fresh(self.p["pieces"])]
        pair = await self.runner.run(self._nft_pair, fw, macs)
        t0 = time.perf_counter()
        repaired = await fw.check()
        check_ms = (time.perf_counter() - t0) * 1e3
        if repaired:
            raise RuntimeError(f"IPv6 N={n}: check() repaired {repaired}")
        t0 = time.perf_counter()
        traffic = await fw.traffic()
        traffic_ms = (time.perf_counter() - t0) * 1e3
        if len(traffic) != n:
            raise RuntimeError(f"traffic() gave {len(traffic)} clients, not {n}")
        return {"nft_pair_us": pair * 1e6, "check_ms": check_ms, "traffic_ms": traffic_ms}

    async def per_rule(self, n: int) -> Dict[str, float]:
        macs = [mac_for(ip_at(PREFILLED, i)) for i in range(self.prefilled_rules, n)]
        fill = await self.runner.run(self.perrule.prefill, macs)
        self.prefilled_rules = n
        ops = self.p["perrule_ops"][n]
        rounds = self.p["rounds"]
        each = max(1, ops // rounds)
        auth, deauth = [], []
        for _ in range(rounds):
            fresh = [mac_for(ip) for ip in self.bench.fresh(each)]
            gc.collect()
            total, _ = await sequential(lambda m: self.runner.run(self.perrule.login, m), fresh)
            auth.append(each / total)
            total, _ = await sequential(lambda m: self.runner.run(self.perrule.logout, m), fresh)
            deauth.append(each / total)
        count = await self.runner.run(self.perrule.count)
        if count != n:
            raise RuntimeError(f"expected {n} per-client ip6tables rules, found {count}")
        return {"auth": median(auth), "deauth": median(deauth), "ops": each * rounds,
                "fill_s": fill}

    async def main(self) -> Dict[int, Dict[str, Any]]:
        started = []
        results: Dict[int, Dict[str, Any]] = {}
        try:
            for n in SIZES:
                await self.start(n)
                started.append(n)
            for n in SIZES:  # warm-up, untimed
                ips = self.bench.fresh(self.p["warmup"])
                await sequential(Bench.authorizer(self.fws[n]), ips)
                await sequential(Bench.deauthorizer(self.fws[n]), ips)
            await self.bench.drain()
            rounds: Dict[int, List[Dict[str, float]]] = {n: [] for n in SIZES}
            for number in range(self.p["rounds"]):
                found = await self.round(number)
                for n in SIZES:
                    rounds[n].append(found[n])
                print(f"IPv6 round {number + 1}/{self.p['rounds']}: "
                      + ", ".join(f"N={n:,} {fmt_rate(found[n]['auth'])} auth/s"
                                  for n in SIZES))
                sys.stdout.flush()
            for n in SIZES:
                results[n] = {
                    "auth": median([r["auth"] for r in rounds[n]]),
                    "deauth": median([r["deauth"] for r in rounds[n]]),
                    "auth_rounds": [r["auth"] for r in rounds[n]],
                    "deauth_rounds": [r["deauth"] for r in rounds[n]],
                    "auth_cpu_us": median([r["auth_cpu_us"] for r in rounds[n]]),
                    "deauth_cpu_us": median([r["deauth_cpu_us"] for r in rounds[n]]),
                    "pieces": await self.pieces(n),
                    "perrule": await self.per_rule(n)}
                print(f"IPv6 per-rule N={n:,}: "
                      f"{fmt_rate(results[n]['perrule']['auth'])} logins/s")
                sys.stdout.flush()
        finally:
            for n in started:
                await self.fws[n].stop()
            for path in self.lock_dirs.values():
                shutil.rmtree(path, ignore_errors=True)
        return results


def report6(results: Dict[int, Dict[str, Any]]) -> Dict[str, float]:
    """(d) and (e) across N; the SUMMARY's IPv6 keys."""
    lo, hi = SIZES[0], SIZES[-1]
    print("\n=== IPv6 (dual stack): authorize = ipset pair + one nft auth6 element; "
          "per-rule = one ip6tables -m mac rule per client (cost = us per operation)")
    print(f"{'method':36} " + " ".join(f"{'N=' + format(n, ','):>10}" for n in SIZES)
          + f" {'cost(10k)/cost(10)':>19}")
    for label, get in (
            ("netsuite authorize, IPv6 on (seq)", lambda n: 1e6 / results[n]["auth"]),
            ("netsuite de-authorize, IPv6 on", lambda n: 1e6 / results[n]["deauth"]),
            ("netsuite authorize CPU time", lambda n: results[n]["auth_cpu_us"]),
            ("nft element add+delete (worker)", lambda n: results[n]["pieces"]["nft_pair_us"]),
            ("per-rule ip6tables login (iptc)", lambda n: 1e6 / results[n]["perrule"]["auth"]),
            ("per-rule ip6tables logout (iptc)",
             lambda n: 1e6 / results[n]["perrule"]["deauth"])):
        values = [get(n) for n in SIZES]
        print(f"{label:36} " + " ".join(f"{v:10.1f}" for v in values)
              + f" {values[-1] / values[0]:19.2f}")
    print("rounds (IPv6 auth/s): " + "; ".join(
        f"N={n:,} " + " ".join(fmt_rate(v) for v in results[n]["auth_rounds"]) for n in SIZES))
    print("IPv6 speed-up netsuite/per-rule (ops/s ratio): " + ", ".join(
        f"N={n:,}: authorize {results[n]['auth'] / results[n]['perrule']['auth']:.1f}x, "
        f"de-authorize {results[n]['deauth'] / results[n]['perrule']['deauth']:.1f}x"
        for n in SIZES))
    print("IPv6 other calls: " + ", ".join(
        f"N={n:,}: check() {results[n]['pieces']['check_ms']:.1f} ms, traffic() "
        f"{results[n]['pieces']['traffic_ms']:.1f} ms" for n in SIZES)
          + "; per-rule prefill in one commit: " + ", ".join(
              f"{results[n]['perrule']['fill_s'] * 1e3:.0f} ms" for n in SIZES))
    flat = max(results[lo]["auth"] / results[hi]["auth"],
               results[lo]["deauth"] / results[hi]["deauth"])
    lowest = min(results[n]["auth"] for n in SIZES)
    pass_flat, pass_auth = flat <= 1.5, lowest >= 1000
    print(f"TARGET IPv6 flat cost (cost(10,000)/cost(10) <= 1.5): "
          f"{'PASS' if pass_flat else 'FAIL'} ({flat:.2f})")
    print(f"TARGET IPv6 >= 1,000 authorizations/s (sequential, every N): "
          f"{'PASS' if pass_auth else 'FAIL'} (lowest {lowest:,.0f}/s)")
    summary: Dict[str, float] = {}
    for n in SIZES:
        summary[f"auth6_per_s_{n}"] = results[n]["auth"]
        summary[f"deauth6_per_s_{n}"] = results[n]["deauth"]
    for n in SIZES:
        summary[f"perrule6_auth_per_s_{n}"] = results[n]["perrule"]["auth"]
    for n in SIZES:
        summary[f"speedup6_{n}"] = results[n]["auth"] / results[n]["perrule"]["auth"]
    summary["flatness6"] = flat
    summary["nft_pair_us"] = median([results[n]["pieces"]["nft_pair_us"] for n in SIZES])
    summary["check6_ms_10000"] = results[hi]["pieces"]["check_ms"]
    summary["traffic6_ms_10000"] = results[hi]["pieces"]["traffic_ms"]
    summary["pass_flat6"] = int(pass_flat)
    summary["pass_auth6"] = int(pass_auth)
    return summary


def aggregate_rounds(rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    found: Dict[str, Any] = {}
    for key in ("auth", "deauth", "conc_auth", "conc_deauth"):
        found[key + "_rounds"] = [r[key] for r in rounds]
        found[key] = median(found[key + "_rounds"])
        found[key + "_best"] = max(found[key + "_rounds"])
    for key in ("auth", "deauth"):
        for what in ("_cpu_us", "_reactor_cpu_us", "_worker_cpu_us"):
            found[key + what] = median([r[key + what] for r in rounds])
        latencies = [x for r in rounds for x in r[key + "_lat"]]
        found[key + "_p50_us"] = median(latencies) * 1e6
        found[key + "_p99_us"] = percentile(latencies, 0.99) * 1e6
    found["cuts_in_deauth"] = [c for r in rounds for c in r["cuts"]]
    return found


def aggregate_pieces(rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    keys = {k for r in rounds for k in r}
    return {k: median([r[k] for r in rounds if k in r]) for k in keys}


# reporting -------------------------------------------------------------------

def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def report_size(n: int, r: Dict[str, Any]) -> None:
    ns, pr, pc, pf = r["netsuite"], r["perrule"], r["pieces"], r["prefill"]
    print(f"\n=== N = {n:,} clients already authorized (prefill: the set entries in "
          f"{pf['sets_s'] * 1e3:.0f} ms, the rules in one commit in "
          f"{pf['rules_s'] * 1e3:.0f} ms)")
    print(f"{'operation':44} {'ops/s':>9} {'us/op':>9}  {'vs per-rule':>11}")

    def row(label: str, rate: float, ref: Optional[float] = None, note: str = "") -> None:
        ratio = f"{rate / ref:10.1f}x" if ref else ""
        print(f"{label:44} {fmt_rate(rate):>9} {1e6 / rate:9.1f}  {ratio:>11} {note}")
    row("netsuite authorize, sequential", ns["auth"], pr["auth"],
        f"p50 {ns['auth_p50_us']:.0f} us, p99 {ns['auth_p99_us']:.0f} us, "
        f"CPU {ns['auth_cpu_us']:.0f} us/op")
    row("netsuite de-authorize, sequential", ns["deauth"], pr["deauth"],
        f"p50 {ns['deauth_p50_us']:.0f} us, p99 {ns['deauth_p99_us']:.0f} us, "
        f"CPU {ns['deauth_cpu_us']:.0f} us/op")
    row(f"netsuite authorize, {WINDOW} outstanding", ns["conc_auth"], pr["auth"])
    row(f"netsuite de-authorize, {WINDOW} outstanding", ns["conc_deauth"], pr["deauth"])
    row(f"per-rule login (iptc insert), {pr['ops']} ops", pr["auth"],
        note=f"p50 {pr['auth_p50_us']:.0f} us, CPU {pr['auth_cpu_us']:.0f} us/op")
    row(f"per-rule logout (iptc delete), {pr['ops']} ops", pr["deauth"],
        note=f"p50 {pr['deauth_p50_us']:.0f} us")
    row(f"per-rule login, fork/exec iptables, {pr['exec_ops']} ops", 1e6 / pr["exec_auth_us"])
    row("per-rule logout, fork/exec iptables", 1e6 / pr["exec_deauth_us"])
    print("rounds (ops/s): " + "; ".join(
        f"{k} " + " ".join(fmt_rate(v) for v in ns[k + "_rounds"])
        for k in ("auth", "deauth", "conc_auth", "conc_deauth"))
        + "; per-rule login " + " ".join(fmt_rate(v) for v in pr["auth_rounds"])
        + "; per-rule logout " + " ".join(fmt_rate(v) for v in pr["deauth_rounds"]))
    cuts = ns["cuts_in_deauth"]
    if cuts:
        print(f"batched conntrack cuts that ran during the sequential de-authorizations: "
              f"{len(cuts)} ({median([c[0] for c in cuts]) * 1e3:.1f} ms each, "
              f"{median([c[1] for c in cuts]):.0f} addresses each)")
    print(f"pieces (worker thread, no hop): set add+remove pair {pc['pair_us']:.0f} us "
          f"(add {pc['pair_add_us']:.0f}, remove {pc['pair_remove_us']:.0f}); "
          f"adapter inline: authorize {pc['inline_auth_us']:.0f} us, "
          f"de-authorize {pc['inline_deauth_us']:.0f} us")
    print(f"CPU of one sequential authorize: reactor thread {ns['auth_reactor_cpu_us']:.0f} us, "
          f"worker thread {ns['auth_worker_cpu_us']:.0f} us (process {ns['auth_cpu_us']:.0f} us)")
    print(f"thread hop (reactor -> worker -> reactor, no-op): sequential {pc['hop_us']:.0f} us "
          f"(p50 {pc['hop_p50_us']:.0f}), {WINDOW} outstanding {pc['hop_conc_us']:.1f} us/op")
    print(f"conntrack cut (one dump, empty table): one address {pc['cut_one_ms']:.1f} ms, "
          f"1,000 addresses at once {pc['cut_1000_ms']:.1f} ms; an authorize queued behind "
          f"a cut takes {pc['behind_cut_ms']:.1f} ms")
    print(f"other adapter calls: check() {pc['check_ms']:.1f} ms, traffic() "
          f"{pc['traffic_ms']:.1f} ms for {n:,} clients (pyroute2 decoding)")
    b = pr["breakdown"]
    print(f"per-rule op breakdown (libiptc, medians): build rule {b['build'] * 1e6:.0f} us, "
          f"insert {b['insert'] * 1e6:.0f} us / delete {b['delete'] * 1e6:.0f} us in memory, "
          f"commit {b['commit'] * 1e6:.0f} us, re-read {b['reread'] * 1e6:.0f} us; login "
          f"sum {(b['build'] + b['insert'] + b['commit'] + b['reread']) * 1e6:.0f} us "
          f"(worker, no hop)")
    sys.stdout.flush()


def summarize(results: Dict[int, Dict[str, Any]]) -> Tuple[Dict[str, float], bool, bool]:
    lo, hi = SIZES[0], SIZES[-1]
    ns = {n: results[n]["netsuite"] for n in SIZES}
    pr = {n: results[n]["perrule"] for n in SIZES}
    pc = {n: results[n]["pieces"] for n in SIZES}
    # cost(10,000) / cost(10), cost = 1 / rate, from the median rounds (the
    # sizes alternate in blocks within each round, so each round compares
    # them under the same background load).
    flat_auth = ns[lo]["auth"] / ns[hi]["auth"]
    flat_deauth = ns[lo]["deauth"] / ns[hi]["deauth"]
    flatness = max(flat_auth, flat_deauth)
    flat_best = max(ns[lo]["auth_best"] / ns[hi]["auth_best"],
                    ns[lo]["deauth_best"] / ns[hi]["deauth_best"])
    flat_conc = max(ns[lo]["conc_auth_best"] / ns[hi]["conc_auth_best"],
                    ns[lo]["conc_deauth_best"] / ns[hi]["conc_deauth_best"])
    flat_cpu = max(ns[hi]["auth_cpu_us"] / ns[lo]["auth_cpu_us"],
                   ns[hi]["deauth_cpu_us"] / ns[lo]["deauth_cpu_us"])
    perrule_flat = max(pr[lo]["auth_best"] / pr[hi]["auth_best"],
                       pr[lo]["deauth_best"] / pr[hi]["deauth_best"])
    min_auth = min(ns[n]["auth"] for n in SIZES)

    print("\n=== across N (cost = us per operation)")
    print(f"{'method':36} " + " ".join(f"{'N=' + format(n, ','):>10}" for n in SIZES)
          + f" {'cost(10k)/cost(10)':>19}")
    for label, get in (
            ("netsuite authorize (seq)", lambda n: 1e6 / ns[n]["auth"]),
            ("netsuite de-authorize (seq)", lambda n: 1e6 / ns[n]["deauth"]),
            ("netsuite authorize (seq, best round)", lambda n: 1e6 / ns[n]["auth_best"]),
            ("netsuite de-authorize (seq, best)", lambda n: 1e6 / ns[n]["deauth_best"]),
            ("netsuite authorize p50 latency", lambda n: ns[n]["auth_p50_us"]),
            ("netsuite authorize CPU time", lambda n: ns[n]["auth_cpu_us"]),
            ("netsuite de-authorize CPU time", lambda n: ns[n]["deauth_cpu_us"]),
            ("netsuite de-authorize p50 latency", lambda n: ns[n]["deauth_p50_us"]),
            (f"netsuite authorize ({WINDOW} out)", lambda n: 1e6 / ns[n]["conc_auth"]),
            (f"netsuite de-authorize ({WINDOW} out)", lambda n: 1e6 / ns[n]["conc_deauth"]),
            ("per-rule login (iptc)", lambda n: 1e6 / pr[n]["auth"]),
            ("per-rule logout (iptc)", lambda n: 1e6 / pr[n]["deauth"]),
            ("per-rule login CPU time", lambda n: pr[n]["auth_cpu_us"]),
            ("per-rule login (fork/exec)", lambda n: pr[n]["exec_auth_us"]),
            ("set add+remove pair (worker)", lambda n: pc[n]["pair_us"]),
            ("adapter inline authorize (worker)", lambda n: pc[n]["inline_auth_us"]),
            ("thread hop (seq)", lambda n: pc[n]["hop_us"])):
        values = [get(n) for n in SIZES]
        print(f"{label:36} " + " ".join(f"{v:10.1f}" for v in values)
              + f" {values[-1] / values[0]:19.2f}")
    print("speed-up netsuite/per-rule (ops/s ratio): " + ", ".join(
        f"N={n:,}: authorize {ns[n]['auth'] / pr[n]['auth']:.1f}x, "
        f"de-authorize {ns[n]['deauth'] / pr[n]['deauth']:.1f}x" for n in SIZES))
    print(f"flatness netsuite (median rounds): authorize {flat_auth:.2f}, de-authorize "
          f"{flat_deauth:.2f}; best rounds {flat_best:.2f}; CPU time {flat_cpu:.2f}; "
          f"{WINDOW} outstanding (best rounds) {flat_conc:.2f}. Per-rule (best rounds): "
          f"{perrule_flat:.1f}")

    pass_flat = flatness <= 1.5
    pass_auth = min_auth >= 1000
    print(f"TARGET flat cost (netsuite cost(10,000)/cost(10) <= 1.5): "
          f"{'PASS' if pass_flat else 'FAIL'} ({flatness:.2f})")
    print(f"TARGET >= 1,000 authorizations/s (netsuite, sequential, every N): "
          f"{'PASS' if pass_auth else 'FAIL'} (lowest {min_auth:,.0f}/s)")

    summary: Dict[str, float] = {}
    for n in SIZES:
        summary[f"auth_per_s_{n}"] = ns[n]["auth"]
        summary[f"deauth_per_s_{n}"] = ns[n]["deauth"]
    for n in SIZES:
        summary[f"conc_auth_per_s_{n}"] = ns[n]["conc_auth"]
        summary[f"conc_deauth_per_s_{n}"] = ns[n]["conc_deauth"]
    summary["flatness"] = flatness
    summary["flatness_auth"] = flat_auth
    summary["flatness_deauth"] = flat_deauth
    summary["flatness_best"] = flat_best
    summary["flatness_cpu"] = flat_cpu
    summary["auth_cpu_us_10"] = ns[lo]["auth_cpu_us"]
    summary["auth_cpu_us_10000"] = ns[hi]["auth_cpu_us"]
    summary["auth_reactor_cpu_us"] = median([ns[n]["auth_reactor_cpu_us"] for n in SIZES])
    summary["auth_worker_cpu_us"] = median([ns[n]["auth_worker_cpu_us"] for n in SIZES])
    summary["flatness_p50"] = max(ns[hi]["auth_p50_us"] / ns[lo]["auth_p50_us"],
                                  ns[hi]["deauth_p50_us"] / ns[lo]["deauth_p50_us"])
    for n in SIZES:
        summary[f"perrule_auth_per_s_{n}"] = pr[n]["auth"]
        summary[f"perrule_deauth_per_s_{n}"] = pr[n]["deauth"]
    summary["perrule_flatness"] = perrule_flat
    for n in SIZES:
        summary[f"speedup_{n}"] = ns[n]["auth"] / pr[n]["auth"]
    summary["deauth_speedup_10000"] = ns[hi]["deauth"] / pr[hi]["deauth"]
    summary["hop_us"] = median([pc[n]["hop_us"] for n in SIZES])
    summary["pair_us"] = median([pc[n]["pair_us"] for n in SIZES])
    summary["inline_auth_us"] = median([pc[n]["inline_auth_us"] for n in SIZES])
    summary["cut_ms"] = median([pc[n]["cut_one_ms"] for n in SIZES])
    summary["behind_cut_ms"] = median([pc[n]["behind_cut_ms"] for n in SIZES])
    summary["traffic_ms_10000"] = pc[hi]["traffic_ms"]
    summary["garden_add_per_s"] = 1e6 / median([pc[n]["garden_add_us"] for n in SIZES])
    summary["garden_add_conc_per_s"] = 1e6 / median([pc[n]["garden_add_conc_us"]
                                                     for n in SIZES])
    summary["pass_flat"] = int(pass_flat)
    summary["pass_auth"] = int(pass_auth)
    return summary, pass_flat, pass_auth


def cpu_jiffies() -> Tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle - steal, steal, total


def machine_load(before: Tuple[int, int, int], cpu_before: float) -> str:
    """What else the machine did during the run, to judge the noise."""
    busy, steal, total = (a - b for a, b in zip(cpu_jiffies(), before))
    ticks = os.sysconf("SC_CLK_TCK")
    ours = (time.process_time() - cpu_before) * ticks
    if total <= 0:
        return "machine load: unknown"
    return (f"machine during the run: {100 * busy / total:.0f}% of all CPUs busy, of which "
            f"this process {100 * min(ours, busy) / total:.0f}% (others "
            f"{100 * max(0, busy - ours) / total:.0f}%); steal {100 * steal / total:.1f}%")


def format_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer operations (under ~40 s)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, iptables, ipset)", file=sys.stderr)
        return 2
    params = QUICK if args.quick else FULL
    lab = Lab(f"bfw{os.getpid()}", clients=0, lan=str(LAN_NETWORK))
    ns = lab.netns("ap")
    started = time.perf_counter()
    print(f"bench/firewall.py{' --quick' if args.quick else ''}: namespace {ns}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"netsuite: {params['ops']} operations each way per round, {params['rounds']} rounds "
          f"(median round reported); per-rule: "
          + ", ".join(f"{v} ops at N={k:,}" for k, v in params["perrule_ops"].items())
          + " (capped: each costs O(N))")
    sys.stdout.flush()
    outcome: Dict[str, Any] = {}
    jiffies, cpu_before = cpu_jiffies(), time.process_time()
    try:
        lab.up()
        bench = Bench(lab, params)

        def finished(result: Any) -> None:
            outcome["result"] = result
            reactor.stop()

        def go() -> None:
            ensureDeferred(bench.main()).addBoth(finished)
        reactor.callWhenRunning(go)
        reactor.run()
    finally:
        lab.down()
    result = outcome.get("result")
    if result is None:
        print("interrupted", file=sys.stderr)
        return 1
    if hasattr(result, "getTraceback"):
        print(result.getTraceback(), file=sys.stderr)
        return 1
    load = machine_load(jiffies, cpu_before)
    summary, pass_flat, pass_auth = summarize(result)
    summary.update(report6(bench.results6))
    print(load)
    print(f"total {time.perf_counter() - started:.1f} s; namespace {ns} removed")
    print("SUMMARY " + " ".join(f"{k}={format_number(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
