"""
The pieces bench/proxy.py (loopback) and bench/mailproxy.py (a lab) share:
iperf3's throughput, connections/s, the echo server they are made to, and
HAProxy in tcp mode (with or without splice) as the established relay to
compare with. Each runs in a network namespace when given one (C{netns}),
so the same code measures loopback and a client namespace behind an
access point.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from netsuite.lab.child import PYTHON, Child  # noqa: E402
from netsuite.lab.nsutil import ns_argv  # noqa: E402

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
    bind {listen}:{iperf_port}
    server s {server}:{iperf_server}
listen echo
    bind {listen}:{echo_port}
    server s {server}:{echo_server}
"""

# The connections/s server: on each port given, accept, echo one byte, close.
ECHO_SERVER = """
import socket, sys, threading
def serve(c):
    with c:
        data = c.recv(1)
        if data:
            c.sendall(data)
def accept(srv):
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
for port in sys.argv[2:]:
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((sys.argv[1], int(port))); srv.listen(1024)
    threading.Thread(target=accept, args=(srv,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

# The connections/s client: THREADS threads, each TOTAL/THREADS times: connect,
# one byte each way, close. Prints "rate N".
CONNECT_CLIENT = """
import socket, sys, threading, time
host, port, total, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
errors = []
def run(n):
    try:
        for _ in range(n):
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    raise RuntimeError("no echo")
    except BaseException as e:
        errors.append(e)
workers = [threading.Thread(target=run, args=(total // threads,)) for _ in range(threads)]
start = time.monotonic()
for w in workers: w.start()
for w in workers: w.join()
if errors:
    sys.exit(f"connections failed: {errors[0]!r}")
print("rate", total // threads * threads / (time.monotonic() - start), flush=True)
"""

# Exits once HOST PORT accepts a connection (at most 10 s).
WAIT_LISTENING = """
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(f"nothing listens on {sys.argv[1]}:{sys.argv[2]}")
"""


def run_in(netns: Optional[str], argv: Sequence[str], timeout: float) -> str:
    """Run argv (in netns), return its output; raise on failure."""
    done = subprocess.run(ns_argv(netns, list(argv)), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def iperf(host: str, port: int, seconds: float, netns: Optional[str] = None) -> float:
    """One iperf3 stream, client to server: Gbit/s received."""
    out = subprocess.run(ns_argv(netns, ["iperf3", "-c", host, "-p", str(port), "-t",
                                         str(seconds), "-J"]),
                         capture_output=True, text=True, timeout=seconds + 30)
    result = json.loads(out.stdout)
    if "error" in result:
        raise RuntimeError(f"iperf3 to {host}:{port}: {result['error']}")
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def connections_per_second(host: str, port: int, total: int, threads: int = 4,
                           netns: Optional[str] = None) -> float:
    out = run_in(netns, [PYTHON, "-c", CONNECT_CLIENT, host, str(port), str(total),
                         str(threads)], timeout=total + 60)
    return float(out.split()[-1])


def wait_listening(host: str, port: int, netns: Optional[str] = None) -> None:
    run_in(netns, [PYTHON, "-c", WAIT_LISTENING, host, str(port)], timeout=20)


def echo_server(host: str, ports: Sequence[int], netns: Optional[str] = None) -> Child:
    child = Child([PYTHON, "-u", "-c", ECHO_SERVER, host, *map(str, ports)], label="echo",
                  netns=netns).start()
    child.wait_for_line("^listening", 20)
    return child


def iperf_server(host: str, port: int, netns: Optional[str] = None) -> Child:
    child = Child(["iperf3", "-s", "--forceflush", "-B", host, "-p", str(port)], label=f"iperf3-{port}",
                  netns=netns).start()
    child.wait_for_line("Server listening", 20)
    return child


class Path:
    """One way through: where the client connects for iperf3 and for
    connections/s, and the relay's processes (their CPU is measured)."""

    def __init__(self, name: str, host: str, iperf_port: int, echo_port: int,
                 children: List[Child]) -> None:
        self.name, self.host, self.iperf_port, self.echo_port, self.children = (
            name, host, iperf_port, echo_port, children)

    def cpu(self) -> float:
        return sum(c.cpu_seconds() for c in self.children)


def haproxy(name: str, listen: str, port: int, server: str, iperf_to: int, echo_to: int,
            splice: bool, tmp: str, netns: Optional[str] = None,
            wait_from: Optional[str] = None) -> Path:
    """HAProxy in tcp mode on listen:port (iperf3) and port + 1 (connections/s);
    ready once a connection from wait_from's namespace is accepted."""
    config = os.path.join(tmp, f"{name}.cfg")
    with open(config, "w") as f:
        f.write(HAPROXY.format(splice="option splice-auto" if splice else "", listen=listen,
                               iperf_port=port, server=server, iperf_server=iperf_to,
                               echo_port=port + 1, echo_server=echo_to))
    child = Child(["haproxy", "-db", "-f", config], label=name, netns=netns).start()
    wait_listening(listen, port + 1, wait_from if wait_from is not None else netns)
    return Path(name, listen, port, port + 1, [child])


def measure(paths: Sequence[Path], seconds: float, connections: int,
            netns: Optional[str] = None, rounds: int = 3) -> Dict[str, Dict[str, float]]:
    """
    For each path: iperf3 throughput (C{seconds} a round), the relay's CPU
    per Gbit/s, and connections/s (a third of C{connections} a round); in
    C{rounds} rounds taking turns between the paths, the median of each
    path's rounds: short runs swing with whatever else the machine does,
    and taking turns spreads that over every path. Printed, and returned.
    """
    cpu: Dict[str, float] = {path.name: 0.0 for path in paths}

    def throughput(path: Path) -> float:
        before = path.cpu()
        gbits = iperf(path.host, path.iperf_port, seconds, netns)
        cpu[path.name] += (path.cpu() - before) / seconds / gbits / rounds
        return gbits

    gbit = in_turns({path.name: (lambda p=path: throughput(p)) for path in paths}, rounds)
    rates = in_turns({path.name: (lambda p=path: connections_per_second(
        p.host, p.echo_port, max(connections // rounds, 4), netns=netns)) for path in paths},
        rounds)
    results: Dict[str, Dict[str, float]] = {}
    for path in paths:
        result = results[path.name] = {
            "gbit": gbit[path.name], "cpu_per_gbit": cpu[path.name] if path.children else 0.0,
            "conn_s": rates[path.name]}
        print(f"{path.name:15} {result['gbit']:6.2f} Gbit/s  CPU "
              f"{100 * result['cpu_per_gbit']:5.1f} % of a core per Gbit/s  "
              f"{result['conn_s']:7.0f} connections/s", flush=True)
    return results


def in_turns(runs: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, float]:
    """Each run C{rounds} times, taking turns; the median of each one's results."""
    got: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            got[name].append(run())
    return {name: statistics.median(values) for name, values in got.items()}


def summary(results: dict, ratios: dict) -> str:
    """The SUMMARY line: each path's figures (direct has no CPU), then the ratios."""
    fields = {f"{name}_{key}": f"{value:.3f}" if key == "cpu_per_gbit" else f"{value:.2f}"
              for name, values in results.items() for key, value in values.items()
              if not (name == "direct" and key == "cpu_per_gbit")}
    fields.update({k: f"{v:.2f}" for k, v in ratios.items()})
    return "SUMMARY " + " ".join(f"{k}={v}" for k, v in fields.items())


def load_average() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])
