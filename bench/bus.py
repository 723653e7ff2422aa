"""
Benchmark of the netsuite registry and bus.

    .venv/bin/python bench/bus.py [--quick]

1. In-process: Registry.send() through a 3-listener chain (CONTINUE,
   CONTINUE, Stop) with a small message (a MAC, an IPv4 address, a str).
2. Remote hook: this process owns a Registry and serves it on a Unix socket;
   a separate process (bench/_hook_peer.py) connects with
   netsuite.bus.connect and prepends a listener answering Stop. We time
   registry.send() here: latency one at a time, and calls/s with 1, 16 and 64
   sends outstanding on the one connection.
3. Transport floor: a plain blocking Unix-socket echo (bench/_echo_peer.py)
   ping-ponged with a message the size of the AMP CallListener box.

Everything lives in a temporary directory; every child is killed at the end.
The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.protocols import amp
from twisted.python.failure import Failure

from netsuite.bus.peercommands import CallListener
from netsuite.bus.server import BusServerFactory
from netsuite.lab.child import PACKAGE_ROOT as ROOT
from netsuite.lab.child import PYTHON, Child
from netsuite.registry import CONTINUE, MAC, Registry, Stop
from netsuite.registry import values

HERE = os.path.dirname(os.path.abspath(__file__))
MAILBOX = "/bench/hook"
MESSAGE = {
    "mac": MAC("52:54:00:12:34:56"),
    "ip": ipaddress.IPv4Address("192.0.2.17"),
    "hostname": "printer-3rd-floor",
}


def percentile(sorted_values: List[float], fraction: float) -> float:
    """
    Nearest-rank percentile of an already sorted list.
    """
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values))) - 1))
    return sorted_values[index]


# 1. In-process ---------------------------------------------------------------

def bench_inprocess(reactor: Any, rounds: int, per_round: int) -> Dict[str, float]:
    registry = Registry("bench", reactor)
    registry.declare("/bench/x")
    stop = Stop("allow")
    registry.listen("/bench/x", lambda message: CONTINUE, tags={"role": "audit"})
    registry.listen("/bench/x", lambda message: CONTINUE, tags={"role": "quota"})
    registry.listen("/bench/x", lambda message: stop, tags={"role": "policy"})
    send = registry.send
    message = MESSAGE

    got: List[Any] = []
    send("/bench/x", message).addCallback(got.append)
    assert got == ["allow"], got

    for _ in range(max(1000, per_round // 10)):  # warm up
        send("/bench/x", message)

    rates = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        for _ in range(per_round):
            send("/bench/x", message)
        elapsed = time.perf_counter() - started
        rates.append(per_round / elapsed)
    d = send("/bench/x", message)
    assert d.called and d.result == "allow", d  # type: ignore[attr-defined]
    return {"msgs_per_s": statistics.median(rates), "best": max(rates),
            "worst": min(rates), "us_per_msg": 1e6 / statistics.median(rates)}


# 2. Remote hook over AMP ----------------------------------------------------

def drive(send: Callable[[], "Deferred[Any]"], expected: Any, total: int,
          concurrency: int) -> "Deferred[Tuple[List[float], float]]":
    """
    Make C{total} calls of C{send()}, keeping C{concurrency} outstanding.
    Fires with (latencies in seconds, wall time in seconds).
    """
    done: Deferred[Tuple[List[float], float]] = Deferred()
    latencies: List[float] = []
    state = {"started": 0, "finished": 0}
    clock = time.perf_counter
    began = clock()

    def launch() -> None:
        state["started"] += 1
        t0 = clock()
        send().addCallbacks(finished, failed, callbackArgs=(t0,))

    def finished(result: Any, t0: float) -> None:
        latencies.append(clock() - t0)
        if result != expected and not done.called:
            done.errback(AssertionError(f"send gave {result!r}, expected {expected!r}"))
            return
        state["finished"] += 1
        if state["started"] < total:
            launch()
        elif state["finished"] == total and not done.called:
            done.callback((latencies, clock() - began))

    def failed(failure: Failure) -> None:
        if not done.called:
            done.errback(failure)

    for _ in range(min(concurrency, total)):
        launch()
    return done


async def bench_remote(reactor: Any, tmp: str, quick: bool) -> Dict[str, Any]:
    registry = Registry("bench", reactor)
    registry.declare(MAILBOX, doc="benchmark hook")
    # The owner's own default, last in the chain: the peer's listener,
    # prepended, must answer first.
    registry.listen(MAILBOX, lambda message: Stop("default"), tags={"role": "default"})
    port = await serverFromString(reactor, "unix:" + os.path.join(tmp, "bench.sock")).listen(
        BusServerFactory(registry))
    # Its stdin is a pipe: it exits when this process goes, whatever happens.
    peer = Child([PYTHON, os.path.join(HERE, "_hook_peer.py"), "bench", tmp, MAILBOX],
                 label="hook peer", cwd=ROOT, stdin=True, reactor=reactor).start()
    try:
        await peer.when_line(r"^ready$")
        message = MESSAGE

        def send() -> "Deferred[Any]":
            return registry.send(MAILBOX, message)

        result = await send()
        if result != "allow":
            raise AssertionError(f"remote hook answered {result!r}, expected 'allow'")

        sequential = 2000 if quick else 10000
        per_level = 2000 if quick else 15000
        warm = 500 if quick else 2000
        await drive(send, "allow", warm, 1)
        gc.collect()
        latencies, elapsed = await drive(send, "allow", sequential, 1)
        latencies.sort()
        out: Dict[str, Any] = {
            "p50_us": percentile(latencies, 0.50) * 1e6,
            "p90_us": percentile(latencies, 0.90) * 1e6,
            "p99_us": percentile(latencies, 0.99) * 1e6,
            "max_us": latencies[-1] * 1e6,
            "mean_us": statistics.fmean(latencies) * 1e6,
            "n": sequential,
            "levels": {},
        }
        for concurrency in (1, 16, 64):
            await drive(send, "allow", warm, concurrency)
            gc.collect()
            latencies, elapsed = await drive(send, "allow", per_level, concurrency)
            latencies.sort()
            out["levels"][concurrency] = {
                "calls_per_s": per_level / elapsed,
                "p50_us": percentile(latencies, 0.50) * 1e6,
                "p99_us": percentile(latencies, 0.99) * 1e6,
            }
        out["calls_per_level"] = per_level
        return out
    finally:
        peer.stop()
        await port.stopListening()


def amp_box_sizes() -> Tuple[int, int]:
    """
    Bytes on the wire of one CallListener request and its answer, for
    MESSAGE and Stop("allow"), from the command's declared arguments.
    """
    def box(arguments: Any, candidates: Dict[str, Any], make: Any) -> amp.AmpBox:
        # the wire names are plain identifiers here: as Python names, the same
        names = [name.decode() for name, _ in arguments]
        return make({name: candidates[name] for name in names if name in candidates}, None)

    request = box(CallListener.arguments,
                  {"listener": "l1", "mailbox": MAILBOX, "message": values.dumps(MESSAGE)},
                  CallListener.makeArguments)
    request[b"_command"] = CallListener.commandName
    request[b"_ask"] = b"1a"
    response = box(CallListener.response,
                   {"verdict": "stop", "result": values.dumps("allow")},
                   CallListener.makeResponse)
    response[b"_answer"] = b"1a"
    return (len(amp.AmpBox(request).serialize()), len(amp.AmpBox(response).serialize()))


# 3. Raw Unix-socket echo -----------------------------------------------------

def bench_raw(tmp: str, size: int, quick: bool) -> Dict[str, float]:
    path = os.path.join(tmp, "echo.sock")
    server = Child([PYTHON, os.path.join(HERE, "_echo_peer.py"), path], label="echo server",
                   cwd=ROOT).start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.wait_for_line(r"^ready$", 30)
        client.connect(path)
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        buf = bytearray(size)
        view = memoryview(buf)
        sendall, recv_into = client.sendall, client.recv_into
        clock = time.perf_counter

        def ping_pong(count: int) -> List[float]:
            latencies = []
            for _ in range(count):
                t0 = clock()
                sendall(payload)
                got = 0
                while got < size:
                    n = recv_into(view[got:])
                    if not n:
                        raise RuntimeError("echo server closed the connection")
                    got += n
                latencies.append(clock() - t0)
            return latencies

        ping_pong(2000 if quick else 10000)
        if bytes(buf) != payload:
            raise AssertionError("echo server returned other bytes")
        gc.collect()
        count = 5000 if quick else 50000
        started = clock()
        latencies = sorted(ping_pong(count))
        elapsed = clock() - started
        return {"p50_us": percentile(latencies, 0.50) * 1e6,
                "p99_us": percentile(latencies, 0.99) * 1e6,
                "round_trips_per_s": count / elapsed}
    finally:
        client.close()
        server.stop()


# Main ------------------------------------------------------------------------

def run_in_reactor(reactor: Any, fn: Callable[[], Any]) -> Any:
    outcome: Dict[str, Any] = {}

    def go() -> None:
        d = ensureDeferred(fn())

        def done(result: Any) -> None:
            outcome["result"] = result
            reactor.stop()
        d.addBoth(done)

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=True)
    if "result" not in outcome:
        raise RuntimeError("the reactor stopped before the benchmark finished (interrupted?)")
    result = outcome["result"]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few seconds)")
    args = parser.parse_args()
    quick = args.quick

    from twisted.internet import reactor

    tmp = tempfile.mkdtemp(prefix="netsuite-bench-")
    os.chmod(tmp, 0o700)
    wall = time.perf_counter()
    try:
        print(f"netsuite bus benchmark ({'quick' if quick else 'full'} run); "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"reactor {type(reactor).__name__}")

        inproc = bench_inprocess(reactor, 3 if quick else 5, 20000 if quick else 100000)
        print(f"[1] in-process send, 3-listener chain (CONTINUE, CONTINUE, Stop): "
              f"{inproc['msgs_per_s']:,.0f} msgs/s ({inproc['us_per_msg']:.2f} us/msg; "
              f"rounds {inproc['worst']:,.0f}..{inproc['best']:,.0f})")

        remote = run_in_reactor(reactor, lambda: bench_remote(reactor, tmp, quick))
        print(f"[2] remote hook round trip over AMP, one at a time ({remote['n']} sends): "
              f"p50 {remote['p50_us']:.0f} us, p90 {remote['p90_us']:.0f} us, "
              f"p99 {remote['p99_us']:.0f} us, max {remote['max_us']:.0f} us, "
              f"mean {remote['mean_us']:.0f} us")
        for level, figures in remote["levels"].items():
            print(f"    {level:>2} outstanding ({remote['calls_per_level']} sends): "
                  f"{figures['calls_per_s']:,.0f} calls/s, p50 {figures['p50_us']:.0f} us, "
                  f"p99 {figures['p99_us']:.0f} us")

        request_size, response_size = amp_box_sizes()
        raw = bench_raw(tmp, request_size, quick)
        ratio = remote["p50_us"] / raw["p50_us"]
        print(f"[3] raw Unix-socket echo, {request_size}-byte message (AMP CallListener "
              f"box {request_size} B out, {response_size} B back): p50 {raw['p50_us']:.1f} us, "
              f"p99 {raw['p99_us']:.1f} us, {raw['round_trips_per_s']:,.0f} round trips/s")
        print(f"    AMP hook p50 / raw p50 = {ratio:.1f}")

        targets = [
            ("in-process >= 100,000 msgs/s", inproc["msgs_per_s"] >= 100_000),
            ("remote p50 <= 250 us", remote["p50_us"] <= 250),
            ("remote >= 5,000 calls/s with concurrency",
             max(f["calls_per_s"] for f in remote["levels"].values()) >= 5000),
        ]
        print("targets: " + "; ".join(f"{name}: {'met' if ok else 'MISSED'}"
                                      for name, ok in targets))
        print(f"wall time {time.perf_counter() - wall:.1f} s")
        print("SUMMARY "
              f"inproc_msgs_per_s={inproc['msgs_per_s']:.0f} "
              f"remote_p50_us={remote['p50_us']:.0f} "
              f"remote_p99_us={remote['p99_us']:.0f} "
              f"remote_calls_per_s_c1={remote['levels'][1]['calls_per_s']:.0f} "
              f"remote_calls_per_s_c64={remote['levels'][64]['calls_per_s']:.0f} "
              f"raw_p50_us={raw['p50_us']:.1f} "
              f"amp_over_raw={ratio:.2f}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
