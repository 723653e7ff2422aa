"""
The C{/metrics} scrape at 10,000 clients, over real HTTP on loopback, side
by side with prometheus_client's own server.

    .venv/bin/python bench/_stats_metrics.py [--clients N] [--scrapes N]

Two child processes, one at a time, each a server of the same 40,000
series (bytes and packets, up and down, of N clients labelled ip and mac):

 - netsuite: the stats service's L{MetricsResource} on a Twisted site (as
   C{[stats.metrics]} runs it), over a L{Traffic} model filled with N
   clients; the snapshot is taken on the reactor, the text rendered in
   the runner's thread. A 10 ms C{LoopingCall} meanwhile records how late
   the reactor runs (its stall): the figure that matters for the other
   parts of stats.
 - baseline: C{prometheus_client.start_http_server} (its stock threaded
   WSGI server) serving the default registry with two labelled
   C{Counter}s holding the same series (no C{_created} series, as ours).

This process scrapes each with urllib, one request at a time; it prints
the median and 95th percentile scrape time, the body sizes, the ratio
netsuite/baseline and the reactor's worst lag, and ends with a
C{SUMMARY key=value ...} line. L{measure} returns the same keys.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clients(n: int) -> List[Any]:
    return [(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
             f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
             i * 1000, i * 5000, i, i * 4) for i in range(n)]


def _serve_netsuite(port: int, n: int, lag_file: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from netsuite.runner import ThreadRunner
    from netsuite.stats.metrics import Snapshot
    from netsuite.stats.metricshttp import MetricsResource, metrics_site
    from netsuite.stats.model import Totals, Traffic

    traffic = Traffic()
    traffic.update(time.time(), {ip: (mac, Totals(a, b, c, d))
                                 for ip, mac, a, b, c, d in _clients(n)},
                   uplink=Totals(1, 2, 3, 4))
    resource = MetricsResource(lambda: Snapshot(traffic),
                               ThreadRunner(reactor, name="bench-metrics", finish=False), 2)
    reactor.listenTCP(port, metrics_site(resource, 16, reactor), interface="127.0.0.1")
    lags: List[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        lags.append(now - last[0] - 0.01)
        last[0] = now
    LoopingCall(tick).start(0.01)

    def dump() -> None:
        with open(lag_file, "w") as f:
            json.dump(lags, f)
    reactor.addSystemEventTrigger("before", "shutdown", dump)
    reactor.callWhenRunning(lambda: print("ready", flush=True))
    reactor.run()


def _serve_baseline(port: int, n: int) -> None:
    from prometheus_client import Counter, disable_created_metrics, start_http_server

    disable_created_metrics()  # the same lines as netsuite's (no _created series)
    by = Counter("netsuite_client_bytes", "bytes", ["ip", "mac", "direction"])
    packets = Counter("netsuite_client_packets", "packets", ["ip", "mac", "direction"])
    for ip, mac, a, b, c, d in _clients(n):
        by.labels(ip, mac, "up").inc(a)
        by.labels(ip, mac, "down").inc(b)
        packets.labels(ip, mac, "up").inc(c)
        packets.labels(ip, mac, "down").inc(d)
    start_http_server(port, addr="127.0.0.1")
    print("ready", flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, scrapes: int) -> Dict[str, float]:
    times, size, series = [], 0, 0
    for _ in range(scrapes + 1):
        start = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            body = r.read()
        times.append(time.perf_counter() - start)
        size = len(body)
        series = sum(1 for line in body.split(b"\n")
                     if line.startswith(b"netsuite_client_"))
    times = times[1:]  # the first warms up
    times.sort()
    return {"median_ms": statistics.median(times) * 1000,
            "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))] * 1000,
            "bytes": size, "series": series}


def _run(kind: str, n: int, scrapes: int) -> Dict[str, float]:
    port = _free_port()
    lag_file = tempfile.mktemp(prefix="statsexport-lag-")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind,
                              "--port", str(port), "--clients", str(n), "--lag-file",
                              lag_file], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"the {kind} server did not start")
        result = _scrape(port, scrapes)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(30)
    if os.path.exists(lag_file):
        with open(lag_file) as f:
            lags = json.load(f)
        os.unlink(lag_file)
        result["max_lag_ms"] = max(lags, default=0.0) * 1000
    return result


def measure(clients: int = 10_000, scrapes: int = 20) -> Dict[str, Any]:
    """The scrape figures of netsuite and of the baseline, and their ratio."""
    ours = _run("netsuite", clients, scrapes)
    base = _run("baseline", clients, scrapes)
    if ours["series"] != base["series"]:
        raise AssertionError(f"series differ: {ours['series']} != {base['series']}")
    return {"metrics_clients": clients, "metrics_series": ours["series"],
            "metrics_scrape_ms": round(ours["median_ms"], 1),
            "metrics_scrape_p95_ms": round(ours["p95_ms"], 1),
            "metrics_baseline_ms": round(base["median_ms"], 1),
            "metrics_ratio": round(ours["median_ms"] / base["median_ms"], 2),
            "metrics_reactor_max_lag_ms": round(ours.get("max_lag_ms", 0.0), 1),
            "metrics_bytes": ours["bytes"], "metrics_baseline_bytes": base["bytes"]}


def _print(summary: Dict[str, Any]) -> None:
    print(f"/metrics at {summary['metrics_clients']} clients "
          f"({summary['metrics_series']} series, {summary['metrics_bytes']} bytes):")
    print(f"  netsuite  median {summary['metrics_scrape_ms']} ms, p95 "
          f"{summary['metrics_scrape_p95_ms']} ms, reactor's worst lag "
          f"{summary['metrics_reactor_max_lag_ms']} ms")
    print(f"  baseline  median {summary['metrics_baseline_ms']} ms "
          "(prometheus_client.start_http_server, same series)")
    print(f"  ratio netsuite/baseline {summary['metrics_ratio']}")


async def run(context: Any) -> Dict[str, Any]:
    """
    bench/stats.py's part (C{PARTS.append(("metrics", _stats_metrics.run))}):
    L{measure} at 10,000 clients in a thread (its servers are child
    processes on loopback; the lab is not needed), printed; its keys.
    """
    from twisted.internet.threads import deferToThread

    scrapes = 20 if context.params.get("rounds", 7) >= 7 else 5  # FULL, or --quick
    summary = await deferToThread(measure, 10_000, scrapes)
    _print(summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--serve", choices=("netsuite", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lag-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "netsuite":
        return _serve_netsuite(args.port, args.clients, args.lag_file)
    if args.serve == "baseline":
        return _serve_baseline(args.port, args.clients)
    summary = measure(args.clients, args.scrapes)
    _print(summary)
    print("SUMMARY " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
