"""
The proxy framework's relay on loopback (docs/mailproxy.md), beside
direct and HAProxy in tcp mode (with and without splice), in one run:

    scripts/bench.sh proxy [--quick] [--seconds 2] [--connections 2000]

For each path, iperf3's throughput (one stream, client to server), the
relay's CPU seconds per Gbit/s of it, and connections/s (connect, one
byte each way, close; 4 client threads): three rounds taking turns between
the paths, the median of each (bench/_relaybench.py). Paths: direct; netsuite cut
through from the first byte (module relay); netsuite relayed by Python
(--no-cut-through); netsuite inspected all the way (a filter that passes
every byte and is never done); HAProxy tcp; HAProxy tcp with splice. Needs
iperf3 and haproxy (Debian packages). It ends with one SUMMARY line.
Figures are noisy on a shared 2-core machine: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _relaybench import (PYTHON, ROOT, Child, Path, echo_server, haproxy,  # noqa: E402
                         iperf_server, load_average, measure, summary)

BASE = 49200
SERVER = BASE  # iperf3 -s
ECHO = BASE + 1  # the connections/s server
HOST = "127.0.0.1"


def netsuite(name: str, port: int, *args: str) -> Path:
    children = []
    for listen, to in ((port, SERVER), (port + 1, ECHO)):
        child = Child([PYTHON, "-u", "-m", "netsuite.proxy.run", "--listen",
                       f"{HOST}:{listen}", "--mode", "forward", "--to", f"{HOST}:{to}",
                       *args], label=f"{name}-{listen}", cwd=ROOT).start()
        child.wait_for_line("^listening", 20)
        children.append(child)
    return Path(name, HOST, port, port + 1, children)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="a round (3 rounds)")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="1 s rounds and 400 connections a path")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.connections = 1.0, 400
    tmp = tempfile.mkdtemp(prefix="pxc-bench-")
    started: List[Child] = []
    try:
        started.append(iperf_server(HOST, SERVER))
        started.append(echo_server(HOST, [ECHO]))
        paths = [Path("direct", HOST, SERVER, ECHO, [])]
        paths.append(netsuite("cut_through", BASE + 10, "--module", "relay"))
        paths.append(netsuite("python_relay", BASE + 12, "--module", "relay",
                              "--no-cut-through"))
        paths.append(netsuite("inspected", BASE + 14, "--module",
                              "tests.proxy.fakemodules:watching"))
        paths.append(haproxy("haproxy", HOST, BASE + 16, HOST, SERVER, ECHO, False, tmp))
        paths.append(haproxy("haproxy_splice", HOST, BASE + 18, HOST, SERVER, ECHO, True, tmp))
        for path in paths:
            started += path.children
        print(f"load average {load_average()}", flush=True)
        results = measure(paths, args.seconds, args.connections)
        r = results
        ratios = {
            "inspected_vs_haproxy": r["inspected"]["gbit"] / r["haproxy"]["gbit"],
            "cut_through_vs_haproxy_splice": r["cut_through"]["gbit"] / r["haproxy_splice"]["gbit"],
            "conn_s_vs_haproxy": r["cut_through"]["conn_s"] / r["haproxy"]["conn_s"],
        }
        for key, value in ratios.items():
            print(f"{key}: {value:.2f}", flush=True)
        print(summary(results, ratios), flush=True)
    finally:
        for child in reversed(started):
            child.stop(2)


if __name__ == "__main__":
    main()
