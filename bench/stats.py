"""
Benchmark of netsuite-stats' sampling beside the established tools doing
the same job: C{ipset save} for the counters and the C{rrdtool} command
for the round-robin files.

    bench/stats.sh [--quick]      (or .venv/bin/python bench/stats.py)

Needs root, ipset and rrdtool (the command and the Python module). Builds a
namespace lab of its own (L{netsuite.lab.Lab} C{bst<pid>}, no clients; its
AP namespace has C{br-lan} with 10.88.0.1/16 and C{wan0}) and removes it,
and its temporary directory of round-robin files, at the end whatever
happens. No traffic is sent.

For N = 10, 1,000 and 10,000 authorized clients, one kernel firewall
adapter each (prefixes SA, SB, SC: sets sa-auth/sa-down, ...), its N
clients put in its sets beforehand, each served on the bus from a
registry of its own (C{fw10}, ...) over its Unix socket; the stats side is
a registry of its own reaching them through L{netsuite.bus.peers.Peers},
in the same process and reactor (so the figures are the whole cost, both
ends). Rounds alternate between the sizes (the median round is reported)
so that background load falls on every N alike:

 (a) sample: L{netsuite.stats.sampler.Sampler.sample}: C{/firewall/counters
     {compact: true}} (the adapter's netlink dump of both sets in its
     worker thread, the rows packed, the bus both ways, unpacked), the
     uplink's netlink read (C{wan0}, in a thread in the namespace) and the
     traffic model's update. Wall time and CPU time (all threads).
 (a') the adapter's C{traffic()} alone (the kernel read in the
     firewall's worker: what of (a) is the firewall's, not the bus's or
     the sampler's).
 (b) the established read: C{ipset save sa-auth} and C{ipset save
     sa-down} (fork/exec from a thread in the namespace) parsed into the
     same ip -> (mac, counters) map.
 (c) store: L{netsuite.stats.store.Store}: one batch of N + 1 updates
     (librrd in its thread), files made beforehand (untimed; their making
     is reported).
 (d) the established write: the same N + 1 updates to the same files
     through one C{rrdtool -} process (its pipe mode: one command a line,
     as a cron script feeding rrdtool would); and, for reference, a few
     C{rrdtool update} runs of one file each (fork/exec per client, the
     plainest script), extrapolated to N.

The two writers alternate on the same files with timestamps 10 s apart
(the files' step), so each writes what the other would have. Then the
size of a file on disk (blocks, per client per year: it is fixed) at a
10 s step and at 1 s.

Other parts (the Prometheus scrape, extrusion detection) plug in through
L{PARTS}: each is C{(name, fn)}, C{fn(context)} a coroutine returning its
SUMMARY keys; the context is L{Context}.

The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402

from netsuite.bus.peers import Peers  # noqa: E402
from netsuite.bus.reach import socket_path  # noqa: E402
from netsuite.bus.server import BusServerFactory  # noqa: E402
from netsuite.firewall.interfaces import Client  # noqa: E402
from netsuite.firewall.kernel import KernelFirewall  # noqa: E402
from netsuite.firewall.rules import FirewallSettings  # noqa: E402
from netsuite.firewall.service import FirewallService  # noqa: E402
from netsuite.firewall.setwriter import IPSET_CMD_ADD  # noqa: E402
from netsuite.lab import Lab  # noqa: E402
from netsuite.registry import Registry  # noqa: E402
from netsuite.registry.values import MAC  # noqa: E402
from netsuite.runner import ThreadRunner  # noqa: E402
from netsuite.stats import layout  # noqa: E402
from netsuite.stats.model import Totals, Traffic, Usage  # noqa: E402
from netsuite.stats.sampler import Sampler, read_link  # noqa: E402
from netsuite.stats.store import Store  # noqa: E402

LAN_NETWORK = ipaddress.IPv4Network("10.88.0.0/16")
FIRST = int(ipaddress.IPv4Address("10.88.1.0"))
SIZES = (10, 1_000, 10_000)
PREFIXES = {10: "SA", 1_000: "SB", 10_000: "SC"}
STEP = 10
FULL = {"rounds": 7, "exec_files": 40}
QUICK = {"rounds": 3, "exec_files": 15}


def ip_at(index: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(FIRST + index)


def mac_at(index: int) -> MAC:
    return MAC(bytes([2, 0x5b, 0, index >> 16 & 255, index >> 8 & 255, index & 255]))


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def sleep(seconds: float) -> Deferred:
    d: Deferred = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@dataclass
class Size:
    """One N: its adapter, its bus registry, its sampler and store."""

    n: int
    firewall: KernelFirewall
    registry: Registry
    traffic: Traffic
    sampler: Sampler
    store: Store
    directory: str
    rounds: List[Dict[str, float]] = field(default_factory=list)


@dataclass
class Context:
    """What a part of the benchmark gets: the lab, the sizes, the runners."""

    lab: Lab
    netns: str
    sockets: str
    sizes: Dict[int, Size]
    worker: ThreadRunner
    params: Dict[str, Any]


class Bench:
    def __init__(self, lab: Lab, params: Dict[str, Any]) -> None:
        self.lab = lab
        self.ns = lab.netns("ap")
        self.p = params
        self.tmp = tempfile.mkdtemp(prefix="bench-stats-")
        self.sockets = os.path.join(self.tmp, "sockets")
        os.mkdir(self.sockets)
        # The firewalls' worker (their netlink dumps) and one for the
        # established tools (fork/exec in the namespace), both in the AP's.
        self.runner = ThreadRunner(reactor, name="bench-firewall", netns=self.ns)
        self.tools = ThreadRunner(reactor, name="bench-tools", netns=self.ns)
        self.netlink = ThreadRunner(reactor, name="bench-netlink", netns=self.ns, finish=False)
        self.store_runner = ThreadRunner(reactor, name="bench-store")
        self.stats_registry = Registry("stats", reactor, peers=Peers(reactor, self.sockets),
                                       default_deadline=30)
        self.ports: List[Any] = []
        self.sizes: Dict[int, Size] = {}
        self.made: Dict[int, float] = {}
        self.when = int(time.time())

    # setting up

    async def setup(self, n: int) -> None:
        prefix = PREFIXES[n]
        lock_dir = os.path.join(self.tmp, f"lock-{prefix}")
        os.mkdir(lock_dir)
        fw = KernelFirewall(FirewallSettings("br-lan", "wan0", LAN_NETWORK, prefix=prefix),
                            self.runner, reactor, shaper=None, lock_dir=lock_dir)
        await fw.start()
        ips = [ip_at(i) for i in range(n)]
        await self.runner.run(self._fill, fw, ips)
        for i, ip in enumerate(ips):
            fw.clients[ip] = Client(ip, mac_at(i), 0, 0)
        registry = Registry(f"fw{n}", reactor, default_deadline=30)
        FirewallService(fw, registry, reactor, check_interval=0)
        self.ports.append(reactor.listenUNIX(socket_path(registry.name, self.sockets),
                                             BusServerFactory(registry), mode=0o660))
        traffic = Traffic()
        sampler = Sampler(traffic, self.stats_registry, reactor, self.netlink, STEP,
                          firewall_process=registry.name, uplink_interface="wan0",
                          read_uplink=read_link, timer=time.perf_counter)
        directory = os.path.join(self.tmp, f"rrd-{n}")
        store = Store(directory, STEP, self.store_runner, timer=time.perf_counter)
        self.sizes[n] = Size(n, fw, registry, traffic, sampler, store, directory)

    @staticmethod
    def _fill(fw: KernelFirewall, ips: Sequence[ipaddress.IPv4Address]) -> None:
        # 50 clients a call: the kernel's acknowledgements fit the socket's buffer.
        sets = fw.sets
        for start in range(0, len(ips), 50):
            entries = []
            for offset, ip in enumerate(ips[start:start + 50], start):
                entries.append((IPSET_CMD_ADD, sets.auth, ip, mac_at(offset), None))
                entries.append((IPSET_CMD_ADD, sets.down, ip, None, None))
            sets.writer.apply(entries)

    def usages(self, size: Size, k: int) -> Tuple[List[Usage], Usage]:
        """The N clients (and the uplink) with counters that grew since write C{k - 1}."""
        clients = [Usage(str(ip_at(i)), str(mac_at(i)),
                         raw=Totals(k * 1000 + i, k * 20_000 + i, k * 10, k * 20))
                   for i in range(size.n)]
        return clients, Usage("uplink", "", raw=Totals(k * 10 ** 6, k * 10 ** 7, k, k))

    async def make_files(self, size: Size) -> None:
        """The store's first batch: it makes the N + 1 files (untimed)."""
        clients, uplink = self.usages(size, 0)
        t0 = time.perf_counter()
        size.store.add(self.when, clients, uplink)
        await size.store.flush()
        self.made[size.n] = time.perf_counter() - t0
        assert size.store.counters["created"] == size.n + 1, size.store.counters

    # one round

    async def sample(self, size: Size) -> Dict[str, float]:
        cpu, t0 = time.process_time(), time.perf_counter()
        await size.sampler.sample()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
        counters = size.sampler.counters
        assert counters["clients"] == size.n and counters["errors"] == 0, counters
        assert counters["uplink_errors"] == 0, counters
        return {"sample_ms": wall * 1e3, "sample_cpu_ms": cpu * 1e3}

    async def kernel_read(self, size: Size) -> Dict[str, float]:
        """The adapter's C{traffic()} alone: the sets' netlink dump, in its worker."""
        t0 = time.perf_counter()
        found = await size.firewall.traffic()
        assert len(found) == size.n
        return {"traffic_ms": (time.perf_counter() - t0) * 1e3}

    async def ipset_read(self, size: Size) -> Dict[str, float]:
        sets = size.firewall.sets
        cpu, t0 = time.process_time(), time.perf_counter()
        found = await self.tools.run(ipset_counters, sets.auth, sets.down)
        wall = time.perf_counter() - t0
        assert len(found) == size.n, len(found)
        return {"ipset_ms": wall * 1e3, "ipset_cpu_ms": (time.process_time() - cpu) * 1e3}

    async def store_write(self, size: Size, k: int) -> Dict[str, float]:
        clients, uplink = self.usages(size, k)
        errors = size.store.counters["errors"]
        t0 = time.perf_counter()
        size.store.add(self.when + STEP * k, clients, uplink)
        await size.store.flush()
        wall = time.perf_counter() - t0
        assert size.store.counters["errors"] == errors, size.store.counters
        return {"store_ms": wall * 1e3, "store_batch_ms": size.store.counters[
            "last_batch_seconds"] * 1e3}

    async def rrdtool_write(self, size: Size, k: int) -> Dict[str, float]:
        clients, uplink = self.usages(size, k)
        when = self.when + STEP * k
        lines = [f"update {layout.client_file(size.directory, u.mac)} {when}:"
                 + ":".join(map(str, u.raw.values())) for u in clients]
        lines.append(f"update {layout.uplink_file(size.directory)} {when}:"
                     + ":".join(map(str, uplink.raw.values())))
        t0 = time.perf_counter()
        await self.tools.run(rrdtool_pipe, lines)
        return {"rrdtool_ms": (time.perf_counter() - t0) * 1e3}

    async def rrdtool_exec(self, size: Size, k: int) -> float:
        """us per client of one C{rrdtool update} run per file (a few files)."""
        clients, _ = self.usages(size, k)
        count = min(self.p["exec_files"], size.n)
        when = self.when + STEP * k
        argvs = [["rrdtool", "update", layout.client_file(size.directory, u.mac),
                  f"{when}:" + ":".join(map(str, u.raw.values()))] for u in clients[:count]]
        t0 = time.perf_counter()
        await self.tools.run(run_each, argvs)
        return (time.perf_counter() - t0) * 1e6 / count

    async def round(self, number: int) -> None:
        # Writes k = 2 * number + 1 (netsuite) and + 2 (rrdtool), after the
        # files' first (k = 0); the fork/exec reference writes once, last.
        for size in self.sizes.values():
            found: Dict[str, float] = {}
            found.update(await self.sample(size))
            found.update(await self.kernel_read(size))
            found.update(await self.ipset_read(size))
            found.update(await self.store_write(size, 2 * number + 1))
            found.update(await self.rrdtool_write(size, 2 * number + 2))
            size.rounds.append(found)

    async def main(self) -> Dict[int, Dict[str, float]]:
        try:
            for n in SIZES:
                await self.setup(n)
                await self.make_files(self.sizes[n])
                print(f"N={n:,}: {n:,} clients in the sets, {n + 1:,} files made in "
                      f"{self.made[n]:.2f} s")
                sys.stdout.flush()
            # warm-up (untimed): the bus connections, threads, first calls
            for size in self.sizes.values():
                await size.sampler.sample()
            for number in range(self.p["rounds"]):
                t0 = time.perf_counter()
                await self.round(number)
                print(f"round {number + 1}/{self.p['rounds']}: " + ", ".join(
                    f"N={n:,} sample {s.rounds[-1]['sample_ms']:.1f} ms store "
                    f"{s.rounds[-1]['store_ms']:.1f} ms" for n, s in self.sizes.items())
                    + f" ({time.perf_counter() - t0:.1f} s)")
                sys.stdout.flush()
            results: Dict[int, Dict[str, float]] = {}
            k = 2 * self.p["rounds"] + 1
            for n, size in self.sizes.items():
                results[n] = {key: median([r[key] for r in size.rounds])
                              for key in size.rounds[0]}
                results[n].update((f"{key}_best", min(r[key] for r in size.rounds))
                                  for key in size.rounds[0])
                results[n]["exec_us"] = await self.rrdtool_exec(size, k)
                results[n]["made_s"] = self.made[n]
            for step in (STEP, 1):
                results.setdefault(0, {})[f"file_bytes_{step}s"] = file_size(self.tmp, step)
            context = Context(self.lab, self.ns, self.sockets, self.sizes, self.runner, self.p)
            for name, part in PARTS:
                print(f"part {name}")
                results[0].update(await part(context))
            return results
        finally:
            for port in self.ports:
                await port.stopListening()
            for size in self.sizes.values():
                await size.firewall.stop()
            for runner in (self.runner, self.tools, self.netlink, self.store_runner):
                runner.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# the established tools (blocking: in a thread in the namespace)

def ipset_counters(auth: str, down: str) -> Dict[str, Tuple[str, Totals]]:
    """C{ipset save} of both sets, parsed: ip -> (mac, counters)."""
    up: Dict[str, Tuple[str, int, int]] = {}
    for line in subprocess.run(["ipset", "save", auth], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        # add sa-auth 10.88.1.0,02:5b:00:00:00:00 packets 0 bytes 0
        fields = line.split()
        if fields[0] == "add":
            ip, mac = fields[2].split(",")
            up[ip] = (mac, int(fields[fields.index("bytes") + 1]),
                      int(fields[fields.index("packets") + 1]))
    found = {}
    for line in subprocess.run(["ipset", "save", down], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        fields = line.split()
        if fields[0] == "add" and fields[2] in up:
            mac, bytes_up, packets_up = up[fields[2]]
            found[fields[2]] = (mac, Totals(bytes_up, int(fields[fields.index("bytes") + 1]),
                                            packets_up,
                                            int(fields[fields.index("packets") + 1])))
    return found


def rrdtool_pipe(lines: List[str]) -> None:
    """The updates through one C{rrdtool -} process; each must answer OK."""
    done = subprocess.run(["rrdtool", "-"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, check=True)
    oks = done.stdout.count("OK u:")
    if oks != len(lines) or "ERROR" in done.stdout:
        raise RuntimeError(f"rrdtool -: {oks} of {len(lines)} OK: "
                           + done.stdout[done.stdout.find("ERROR"):][:200])


def run_each(argvs: List[List[str]]) -> None:
    for argv in argvs:
        subprocess.run(argv, check=True, capture_output=True)


def file_size(directory: str, step: int) -> int:
    """Bytes on disk of one client's file at C{step}."""
    import rrdtool
    path = os.path.join(directory, f"size-{step}.rrd")
    rrdtool.create(path, "--step", str(step), *layout.create_args(step))
    return os.stat(path).st_blocks * 512


PARTS: List[Tuple[str, Callable[[Context], Awaitable[Dict[str, float]]]]] = []
"""
More parts, run after the core with the same lab and sizes: (name, fn),
C{fn(context)} a coroutine that prints its own figures and returns its
SUMMARY keys (prefixed with its name). A part lives in a module of its
own, C{bench/_stats_NAME.py} with C{async def run(context)}, added here
with one line: C{PARTS.append(("NAME", _stats_NAME.run))} after an import
of it. By then each size's traffic model holds its N clients (sampled).
"""

import _stats_metrics  # noqa: E402  (bench/ is on the path: this is a script)

PARTS.append(("metrics", _stats_metrics.run))


# the report

def report(results: Dict[int, Dict[str, float]]) -> Dict[str, float]:
    r = {n: results[n] for n in SIZES}
    print("\n=== per sample (ms, medians)")
    print(f"{'':34} " + " ".join(f"{'N=' + format(n, ','):>10}" for n in SIZES))
    rows = (
        ("netsuite sample (bus+model), wall", "sample_ms"),
        ("netsuite sample, CPU (all threads)", "sample_cpu_ms"),
        ("  of which the adapter's traffic()", "traffic_ms"),
        ("ipset save x2 + parse, wall", "ipset_ms"),
        ("netsuite store batch, wall", "store_ms"),
        ("netsuite store, in its thread", "store_batch_ms"),
        ("rrdtool - (one process), wall", "rrdtool_ms"))
    for label, key in rows:
        print(f"{label:34} " + " ".join(f"{r[n][key]:10.2f}" for n in SIZES))
    print(f"{'rrdtool update per file (exec), us':34} "
          + " ".join(f"{r[n]['exec_us']:10.0f}" for n in SIZES))
    print("\n=== per client (us; medians, and the best rounds: the least disturbed by the "
          "machine's other load)")
    hi, mid = SIZES[-1], SIZES[1]
    summary: Dict[str, float] = {}
    for label, key in (("netsuite sample", "sample_ms"), ("ipset save", "ipset_ms"),
                       ("netsuite store", "store_ms"), ("rrdtool -", "rrdtool_ms")):
        per = {n: r[n][key] * 1e3 / n for n in SIZES}
        best = {n: r[n][key + "_best"] * 1e3 / n for n in SIZES}
        flat, flat_best = per[hi] / per[mid], best[hi] / best[mid]
        print(f"{label:20} " + " ".join(f"{per[n]:10.2f}" for n in SIZES)
              + f"   cost(10k)/cost(1k) {flat:.2f}, best rounds "
              + " ".join(f"{best[n]:.2f}" for n in SIZES) + f": {flat_best:.2f}")
        summary[f"{key[:-3]}_us_per_client_{hi}"] = per[hi]
        summary[f"{key[:-3]}_flatness"] = flat
        summary[f"{key[:-3]}_flatness_best"] = flat_best
    print("\n=== ratios (the established tool's time / netsuite's)")
    for n in SIZES:
        read = r[n]["ipset_ms"] / r[n]["sample_ms"]
        write = r[n]["rrdtool_ms"] / r[n]["store_ms"]
        execs = r[n]["exec_us"] * (n + 1) / 1e3 / r[n]["store_ms"]
        whole = (r[n]["ipset_ms"] + r[n]["rrdtool_ms"]) / (r[n]["sample_ms"] + r[n]["store_ms"])
        print(f"N={n:,}: read ipset/netsuite {read:.2f}x, write rrdtool-pipe/netsuite "
              f"{write:.2f}x, write rrdtool-exec/netsuite {execs:.1f}x, whole job {whole:.2f}x")
        summary[f"sample_ms_{n}"] = r[n]["sample_ms"]
        summary[f"store_ms_{n}"] = r[n]["store_ms"]
        summary[f"ipset_ms_{n}"] = r[n]["ipset_ms"]
        summary[f"rrdtool_ms_{n}"] = r[n]["rrdtool_ms"]
        summary[f"read_ratio_{n}"] = read
        summary[f"write_ratio_{n}"] = write
        summary[f"whole_ratio_{n}"] = whole
    summary["exec_ratio_10000"] = r[hi]["exec_us"] * (hi + 1) / 1e3 / r[hi]["store_ms"]
    summary["sample_cpu_ms_10000"] = r[hi]["sample_cpu_ms"]
    summary["traffic_ms_10000"] = r[hi]["traffic_ms"]
    summary["made_s_10000"] = r[hi]["made_s"]
    share = (r[hi]["sample_ms"] + r[hi]["store_ms"]) / (STEP * 1e3)
    print(f"N={hi:,}: a sample and its batch take {100 * share:.1f} % of a {STEP} s interval")
    summary["interval_share_10000"] = share
    sizes = results[0]
    print(f"\n=== storage: {sizes['file_bytes_10s']:,} bytes a client at a 10 s interval, "
          f"{sizes['file_bytes_1s']:,} at 1 s; fixed: the same per year as per day "
          f"({sizes['file_bytes_10s'] * 10_000 / 1e9:.2f} GB for 10,000 clients)")
    summary.update((k, v) for k, v in sizes.items())
    return summary


def format_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under ~1 min)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, ipset)", file=sys.stderr)
        return 2
    missing = [tool for tool in ("ipset", "rrdtool") if shutil.which(tool) is None]
    if missing:
        print(f"not installed: {', '.join(missing)} (scripts/bench.sh stats installs them)",
              file=sys.stderr)
        return 2
    params = QUICK if args.quick else FULL
    lab = Lab(f"bst{os.getpid()}", clients=0, lan=str(LAN_NETWORK))
    started = time.perf_counter()
    print(f"bench/stats.py{' --quick' if args.quick else ''}: namespace {lab.netns('ap')}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {params['rounds']} rounds")
    sys.stdout.flush()
    outcome: Dict[str, Any] = {}
    bench = None
    try:
        lab.up()
        bench = Bench(lab, params)

        def finished(result: Any) -> None:
            outcome["result"] = result
            reactor.stop()
        reactor.callWhenRunning(lambda: ensureDeferred(bench.main()).addBoth(finished))
        reactor.run()
    finally:
        if bench is not None:
            bench.cleanup()
        lab.down()
    result = outcome.get("result")
    if result is None:
        print("interrupted", file=sys.stderr)
        return 1
    if hasattr(result, "getTraceback"):
        print(result.getTraceback(), file=sys.stderr)
        return 1
    summary = report(result)
    print(f"total {time.perf_counter() - started:.1f} s; lab and files removed")
    print("SUMMARY " + " ".join(f"{k}={format_number(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
