"""
The extrusion detectors' cost on forwarding (docs/stats.md, "Extrusion
detection"), in one run:

    python bench/_stats_extrusion.py [--quick] [--seconds 2] [--connections 3500] [--rounds 7]
                                     [--both-off]

Two labs side by side, alike but for one thing: in "on", the AP's firewall
queues the SYN of every forwarded TCP connection (firewall.extrusion_queue)
and netsuite-stats reads the queue with every detector counting (the rate
detector's threshold set out of reach, so that none is held off); in
"off", no queue. From each lab's client to its upstream: one iperf3 stream
(Gbit/s) and connections/s (connect, one byte each way, close; 4 client
threads), in seven pairs of rounds, back to back (the order reversed
every other pair): the median of each side and the median of the pairs'
ratios (what the summary's ratios are); and the stats process's CPU per
1,000 connections. C{--both-off} runs the same with no queue in
either lab: the ratios it prints are the noise of the machine. Targets: on/off
>= 0.95 for throughput (only SYNs are queued), >= 0.8 for connections/s.
Needs root, iperf3 and NetfilterQueue. Ends with one SUMMARY line (the
lead's bench/stats.py takes L{measure}'s keys). Noisy on a shared 2-core
machine: compare within one run (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _relaybench import (ROOT, Child, connections_per_second, echo_server,  # noqa: E402
                         iperf, iperf_server, load_average, run_in)

from netsuite.lab import Lab  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
HOOK = os.path.join(os.path.dirname(sys.executable), "netsuite-hook")
IPERF, ECHO = 56201, 56211
QUEUE = 3

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 0
shaping = false
lock_dir = "{locks}"
extrusion_queue = {firewall_queue}

[stats.extrusion]
enabled = true
queue = {queue}
rate = 1000000
"""


class Side:
    """One lab: its AP's firewall (and, for "on", netsuite-stats)."""

    def __init__(self, name: str, on: bool, tmp: str) -> None:
        self.name, self.on = name, on
        self.tmp = os.path.join(tmp, name)
        os.mkdir(self.tmp)
        self.lab = Lab(f"{name}{os.getpid() % 10000}", clients=1)
        self.children: List[Child] = []
        self.stats: Optional[Child] = None
        self.stats_on = on

    def up(self) -> None:
        lab = self.lab
        lab.up(True)
        up, ap = lab.netns("up"), lab.netns("ap")
        for ns in (ap, up):  # thousands of short connections: TIME_WAIT must go soon
            run_in(ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1"],
                   timeout=10)
        self.children.append(iperf_server(lab.internet, IPERF, up))
        self.children.append(echo_server(lab.internet, [ECHO], up))
        sockets = os.path.join(self.tmp, "bus")
        os.mkdir(sockets, 0o755)
        config = os.path.join(self.tmp, "netsuite.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(locks=os.path.join(self.tmp, "locks"),
                                  queue=QUEUE, firewall_queue=QUEUE if self.on else -1))
        firewall = Child([TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap",
                          "--socket-dir", sockets, "--config", config], label=f"{self.name}-ap",
                         netns=ap, cwd=ROOT, keep=200).start()
        self.children.append(firewall)
        firewall.wait_for_line("firewall ready", 60)
        run_in(ap, [HOOK, "--socket-dir", sockets, "send", "ap:/firewall/authorize",
                    f"ip={lab.client_address(1)}", f"mac={lab.client_mac(1)}"], timeout=30)
        if self.stats_on:
            self.stats = Child([TWISTD, "-n", "--pidfile=", "netsuite-stats", "--name", "stats",
                                "--socket-dir", sockets, "--config", config],
                               label=f"{self.name}-stats", netns=ap, cwd=ROOT, keep=200).start()
            self.children.append(self.stats)
            self.stats.wait_for_line("extrusion detection reading queue", 60)

    def throughput(self, seconds: float) -> float:
        return iperf(self.lab.internet, IPERF, seconds, self.lab.netns("c1"))

    def rate(self, connections: int, threads: int = 4) -> float:
        return connections_per_second(self.lab.internet, ECHO, connections, threads,
                                      netns=self.lab.netns("c1"))

    def down(self) -> None:
        for child in reversed(self.children):
            child.stop(2)
        self.lab.down()


def paired(on: Callable[[], float], off: Callable[[], float],
           rounds: int) -> Tuple[float, float, float]:
    """
    C{rounds} pairs of runs, back to back (the order reversed every other
    pair, so that neither always gets the quieter moment): the median of
    each side's results, and the median of the pairs' ratios (on/off),
    which the load of a shared machine moves less than either.
    """
    ons: List[float] = []
    offs: List[float] = []
    for i in range(rounds):
        if i % 2 == 0:
            ons.append(on())
            offs.append(off())
        else:
            offs.append(off())
            ons.append(on())
    ratios = [a / b for a, b in zip(ons, offs)]
    return statistics.median(ons), statistics.median(offs), statistics.median(ratios)


def measure(seconds: float = 2.0, connections: int = 3500, rounds: int = 7,
            both_off: bool = False) -> Dict[str, float]:
    """
    Run both labs; return the summary keys (C{extrusion_*}): each side's
    Gbit/s and connections/s, the ratios, the stats' CPU ms per 1,000
    connections. With C{both_off}, the "on" lab has no queue either (its
    stats process reads an empty one): the ratios are then the noise.
    """
    tmp = tempfile.mkdtemp(prefix="extrusion-bench-")
    sides = [Side("exon", not both_off, tmp), Side("exoff", False, tmp)]
    sides[0].stats_on = True
    try:
        for side in sides:
            side.up()
        on, off = sides
        print(f"load average {load_average()}", flush=True)
        gbit_on, gbit_off, gbit_ratio = paired(lambda: on.throughput(seconds),
                                               lambda: off.throughput(seconds), rounds)
        each = max(connections // rounds, 4)
        assert on.stats is not None
        cpu_before = on.stats.cpu_seconds()
        conn_on, conn_off, conn_ratio = paired(lambda: on.rate(each), lambda: off.rate(each),
                                               rounds)
        cpu = on.stats.cpu_seconds() - cpu_before
        result = {
            "extrusion_gbit_on": gbit_on, "extrusion_gbit_off": gbit_off,
            "extrusion_throughput_ratio": gbit_ratio,
            "extrusion_conn_s_on": conn_on, "extrusion_conn_s_off": conn_off,
            "extrusion_conn_s_ratio": conn_ratio,
            "extrusion_cpu_ms_per_1000": 1000.0 * cpu / (each * rounds / 1000.0),
        }
        print(f"on     {gbit_on:6.2f} Gbit/s  {conn_on:7.0f} connections/s", flush=True)
        print(f"off    {gbit_off:6.2f} Gbit/s  {conn_off:7.0f} connections/s", flush=True)
        print(f"stats CPU: {result['extrusion_cpu_ms_per_1000']:.1f} ms per 1,000 connections",
              flush=True)
        print(f"throughput on/off: {result['extrusion_throughput_ratio']:.2f} (target >= 0.95)",
              flush=True)
        print(f"connections/s on/off: {result['extrusion_conn_s_ratio']:.2f} (target >= 0.8)",
              flush=True)
        print(f"load average {load_average()}", flush=True)
        return result
    finally:
        for side in sides:
            side.down()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="an iperf3 round (3 rounds)")
    parser.add_argument("--connections", type=int, default=3500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1 s rounds, 600 connections")
    parser.add_argument("--both-off", action="store_true",
                        help="no queue in either lab (stats runs in both): the noise floor")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.connections = 1.0, 600
    result = measure(args.seconds, args.connections, args.rounds, args.both_off)
    print("SUMMARY " + " ".join(f"{k}={v:.2f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
