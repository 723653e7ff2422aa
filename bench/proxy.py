"""
The proxy framework's relay on loopback (docs/mailproxy.md), beside
direct and HAProxy in tcp mode (with and without splice), in one run:

    scripts/bench.sh proxy [--quick] [--seconds 4] [--connections 2000]

For each path, iperf3's throughput (one stream, client to server), the
relay's CPU seconds per Gbit/s of it, and connections/s (connect, one
byte each way, close; 4 client threads). Paths: direct; netsuite cut
through from the first byte (module relay); netsuite relayed by Python
(--no-cut-through); netsuite inspected all the way (a filter that passes
every byte and is never done); HAProxy tcp; HAProxy tcp with splice. Needs
iperf3 and haproxy (Debian packages). It ends with one SUMMARY line.
Figures are noisy on a shared 2-core machine: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from netsuite.lab.child import PYTHON, Child  # noqa: E402

BASE = 49200
SERVER = BASE  # iperf3 -s
ECHO = BASE + 1  # the connections/s server

HAPROXY = """
global
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    {splice}
listen iperf
    bind 127.0.0.1:{iperf_port}
    server s 127.0.0.1:{server}
listen echo
    bind 127.0.0.1:{echo_port}
    server s 127.0.0.1:{echo}
"""

ECHO_SERVER = """
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(1024)
print("listening", flush=True)
def serve(c):
    with c:
        data = c.recv(1)
        if data:
            c.sendall(data)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def iperf(port: int, seconds: float) -> float:
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                          "-J"], capture_output=True, text=True, timeout=seconds + 30)
    result = json.loads(out.stdout)
    if "error" in result:
        raise RuntimeError(result["error"])
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def connections_per_second(port: int, total: int, threads: int = 4) -> float:
    errors: List[BaseException] = []

    def run(n: int) -> None:
        try:
            for _ in range(n):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"x")
                    if s.recv(1) != b"x":
                        raise RuntimeError("no echo")
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=run, args=(total // threads,)) for _ in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"connections failed: {errors[0]!r}")
    return (total // threads * threads) / (time.monotonic() - start)


class Path:
    def __init__(self, name: str, iperf_port: int, echo_port: int,
                 children: List[Child]) -> None:
        self.name, self.iperf_port, self.echo_port, self.children = (
            name, iperf_port, echo_port, children)

    def cpu(self) -> float:
        return sum(c.cpu_seconds() for c in self.children)


def netsuite(name: str, port: int, *args: str) -> Path:
    children = []
    for listen, to in ((port, SERVER), (port + 1, ECHO)):
        child = Child([PYTHON, "-u", "-m", "netsuite.proxy.run", "--listen",
                       f"127.0.0.1:{listen}", "--mode", "forward", "--to", f"127.0.0.1:{to}",
                       *args], label=f"{name}-{listen}", cwd=ROOT).start()
        child.wait_for_line("^listening", 20)
        children.append(child)
    return Path(name, port, port + 1, children)


def haproxy(name: str, port: int, splice: bool, tmp: str) -> Path:
    config = os.path.join(tmp, f"{name}.cfg")
    with open(config, "w") as f:
        f.write(HAPROXY.format(splice="option splice-auto" if splice else "",
                               iperf_port=port, server=SERVER, echo_port=port + 1, echo=ECHO))
    child = Child(["haproxy", "-db", "-f", config], label=name).start()
    for _ in range(100):  # haproxy prints nothing when it is ready
        try:
            socket.create_connection(("127.0.0.1", port + 1), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return Path(name, port, port + 1, [child])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="1 s and 400 connections a path")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.connections = 1.0, 400
    tmp = tempfile.mkdtemp(prefix="pxc-bench-")
    started: List[Child] = []
    try:
        iperf_server = Child(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(SERVER)],
                             label="iperf3-server").start()
        echo = Child([PYTHON, "-u", "-c", ECHO_SERVER, str(ECHO)], label="echo").start()
        started += [iperf_server, echo]
        echo.wait_for_line("^listening", 20)
        time.sleep(0.5)  # iperf3 -s prints nothing useful when ready
        paths = [Path("direct", SERVER, ECHO, [])]
        paths.append(netsuite("cut_through", BASE + 10, "--module", "relay"))
        paths.append(netsuite("python_relay", BASE + 12, "--module", "relay",
                              "--no-cut-through"))
        paths.append(netsuite("inspected", BASE + 14, "--module",
                              "tests.proxy.fakemodules:watching"))
        paths.append(haproxy("haproxy", BASE + 16, False, tmp))
        paths.append(haproxy("haproxy_splice", BASE + 18, True, tmp))
        for path in paths:
            started += path.children
        results: Dict[str, Dict[str, float]] = {}
        for path in paths:
            before = path.cpu()
            gbits = iperf(path.iperf_port, args.seconds)
            cpu = path.cpu() - before
            rate = connections_per_second(path.echo_port, args.connections)
            results[path.name] = {"gbit": gbits, "cpu_per_gbit": cpu / args.seconds / gbits
                                  if path.children else 0.0, "conn_s": rate}
            print(f"{path.name:15} {gbits:6.2f} Gbit/s  CPU {100 * results[path.name]['cpu_per_gbit']:5.1f} "
                  f"% of a core per Gbit/s  {rate:7.0f} connections/s", flush=True)
        r = results
        ratios = {
            "inspected_vs_haproxy": r["inspected"]["gbit"] / r["haproxy"]["gbit"],
            "cut_through_vs_haproxy_splice": r["cut_through"]["gbit"] / r["haproxy_splice"]["gbit"],
            "conn_s_vs_haproxy": r["cut_through"]["conn_s"] / r["haproxy"]["conn_s"],
        }
        for key, value in ratios.items():
            print(f"{key}: {value:.2f}", flush=True)
        summary = {f"{name}_{key}": f"{value:.3f}" if key == "cpu_per_gbit" else f"{value:.2f}"
                   for name, values in r.items() for key, value in values.items()
                   if not (name == "direct" and key == "cpu_per_gbit")}
        summary.update({k: f"{v:.2f}" for k, v in ratios.items()})
        print("SUMMARY " + " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    finally:
        for child in reversed(started):
            child.stop(2)


if __name__ == "__main__":
    main()
