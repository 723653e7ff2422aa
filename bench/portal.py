"""
Benchmark of netsuite's captive portal.

    .venv/bin/python bench/portal.py [--quick]

Needs root, wrk and nginx (apt-get install -y wrk nginx-light), and for the
lab the firewall's tools (ipset, iptables-legacy). Traffic stays inside a
lab of network namespaces (C{bpor<pid>}: an AP, an upstream, one client),
removed at the end whatever happens.

 1. Redirect throughput. C{twistd netsuite} ([firewall] + [portal],
    as in tests/integration/test_portal_lab.py) runs in the AP namespace;
    nginx runs there too, on another port, configured to answer the same
    307 (Location to the portal's /login?url=..., Refresh, Cache-Control:
    no-store, a small HTML body; one worker process, access log on, as
    twistd logs every request). wrk runs in the unauthorized client's
    namespace, same duration, connections and threads for both, directly
    against C{AP:port} with a foreign C{Host: example.com} (the same path
    for both servers). For reference, netsuite is also measured the way a
    real client reaches it: C{GET http://<upstream>/} redirected by the
    firewall (DNAT of port 80 to the portal port). Target: netsuite >= 30 %
    of nginx's requests/s.
 2. Logins per second, in process: the portal's real login path
    (C{PortalResource} POST /login with its CSRF cookie and form ->
    C{Portal.mac_for} -> C{/portal/authenticate} chain -> C{/firewall/authorize}
    through C{FirewallService} on C{MemoryFirewall} -> SQLite session row ->
    C{/portal/login} event, log lines written to /dev/null as twistd would
    format them) on a C{Registry} with a C{Clock} (eventual queue flushed
    after every request), with 10 and with 10,000 sessions already active.
    Sessions in an SQLite file on disk (as deployed; one commit per login),
    and for comparison in C{:memory:}. The MAC comes from a stub; the real
    neighbour table (/proc/net/arp read at most once a second, in a thread)
    is timed on its own on synthetic tables of 10 and 10,000 entries. Timed logins use
    fresh addresses in blocks, each block logged out (untimed) after, so the
    active count stays N. Target: >= 500 logins/s at N=10,000.
 3. Memory per active session: a fresh child process logs in 10,000
    sessions (same path); RSS difference / 10,000, and in a second child
    tracemalloc's difference, split into the firewall adapter's share
    (netsuite/firewall/) and the rest (the portal's). Target: the portal's
    share <= 2 KB per session.

The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from twisted.internet.defer import succeed

from netsuite.lab import Lab
from netsuite.lab.child import PACKAGE_ROOT as ROOT
from netsuite.lab.child import TWISTD, Child
from netsuite.portal.sessions import SessionStore
from netsuite.portal.testing import PortalFixture
from netsuite.registry.values import MAC

PORTAL_PORT = 5280
NGINX_PORT = 8080
FOREIGN_HOST = "example.com"
LAN16 = ipaddress.IPv4Network("10.88.0.0/16")
PREFILLED = int(ipaddress.IPv4Address("10.88.1.0"))
FRESH = int(ipaddress.IPv4Address("10.88.128.0"))
SESSIONS = 10_000

FULL = {"duration": 10, "warmup": 2, "connections": 50, "threads": 1,
        "logins": 2000, "block": 200, "rounds": 3, "arp_lookups": 300}
QUICK = {"duration": 3, "warmup": 1, "connections": 50, "threads": 1,
         "logins": 600, "block": 100, "rounds": 1, "arp_lookups": 60}

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
lan_ports = [{nginx_port}]
check_interval = 5.0
shaping = false

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
session_file = "{sessions}"
policy_text = "Be nice."
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server_tokens off;
    server {{
        listen {ap}:{port};
        location / {{
            default_type "text/html; charset=utf-8";
            add_header Refresh "0; url=http://{portal}/login?url=http%3A%2F%2F$host$request_uri" always;
            add_header Cache-Control "no-store" always;
            return 307 "http://{portal}/login?url=http%3A%2F%2F$host$request_uri";
        }}
    }}
}}
"""


# ---------------------------------------------------------------------------
# helpers

def fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def rss_kib(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def parse_wrk(out: str) -> Dict[str, float]:
    def seconds(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)", text)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(2)]
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"),
            "p99_ms": seconds(p99.group(1)) * 1e3 if p99 else float("nan"),
            "p50_ms": seconds(p50.group(1)) * 1e3 if p50 else float("nan"),
            "requests": int(total.group(1)) if total else 0,
            "errors": errors.group(1).strip() if errors else "none",
            "bad_status": int(non2xx.group(1)) if non2xx else 0}


# ---------------------------------------------------------------------------
# 1. the redirect, in a lab

def start_daemon(lab: Any, config: str, sockets: str) -> Child:
    """twistd netsuite (firewall and portal in one process) in the AP namespace, once both
    are ready."""
    daemon = Child([TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap",
                    "--socket-dir", sockets, "--config", config], label="netsuite",
                   netns=lab.netns("ap"), cwd=ROOT, keep=200).start()
    for ready in ("firewall ready", "portal ready"):
        daemon.wait_for_line(ready, 60)
    return daemon


def wrk(lab: Any, url: str, params: Dict[str, Any], duration: Optional[int] = None,
        host: Optional[str] = FOREIGN_HOST) -> Dict[str, float]:
    argv = ["wrk", "-t", str(params["threads"]), "-c", str(params["connections"]),
            "-d", f"{duration or params['duration']}s", "--latency", "--timeout", "5s"]
    if host:
        argv += ["-H", f"Host: {host}"]
    done = lab.exec("c1", argv + [url], timeout=duration_or(params, duration) + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    result["raw"] = done.stdout
    return result


def duration_or(params: Dict[str, Any], duration: Optional[int]) -> int:
    return duration or params["duration"]


def curl_head(lab: Any, url: str, host: Optional[str] = FOREIGN_HOST) -> str:
    argv = ["curl", "-s", "-i", "--max-time", "2"]
    if host:
        argv += ["-H", f"Host: {host}"]
    return lab.exec("c1", argv + [url]).stdout


def bench_redirect(params: Dict[str, Any], tmp: str) -> Dict[str, Any]:
    lab = Lab(f"bpor{os.getpid()}", clients=1)
    out: Dict[str, Any] = {}
    children: List[Child] = []
    try:
        lab.up(True)
        ap = lab.ap_address
        portal = f"{ap}:{PORTAL_PORT}"
        sockets = tempfile.mkdtemp(prefix="nsbus-", dir=tmp)
        os.chmod(sockets, 0o755)
        config = os.path.join(tmp, "netsuite.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(port=PORTAL_PORT, ap=ap, nginx_port=NGINX_PORT,
                                  sessions=os.path.join(tmp, "lab-sessions.sqlite")))
        ngdir = os.path.join(tmp, "nginx")
        os.makedirs(ngdir)
        conf = os.path.join(ngdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=ngdir, ap=ap, port=NGINX_PORT, portal=portal))
        children.append(start_daemon(lab, config, sockets))
        daemon = children[-1]
        children.append(Child(["nginx", "-c", conf], netns=lab.netns("ap")).start())
        children[-1].wait_for_line("start worker process", 30)
        if "307" not in curl_head(lab, f"http://{ap}:{NGINX_PORT}/").split("\n", 1)[0]:
            raise RuntimeError("nginx does not answer from the client namespace")
        ns_url = f"http://{portal}/"
        ng_url = f"http://{ap}:{NGINX_PORT}/"
        fw_url = f"http://{lab.internet}/"
        out["sample_netsuite"] = curl_head(lab, ns_url)
        out["sample_nginx"] = curl_head(lab, ng_url)
        out["sample_firewall"] = curl_head(lab, fw_url, host=None)
        # warm-up, then the measured runs, alternating
        wrk(lab, ns_url, params, params["warmup"])
        wrk(lab, ng_url, params, params["warmup"])
        # "ip netns exec ... twistd": ip execs, so the child's pid is twistd's
        cpu0 = daemon.cpu_seconds()
        out["netsuite"] = wrk(lab, ns_url, params)
        out["netsuite_cpu"] = (daemon.cpu_seconds() - cpu0) / params["duration"]
        out["nginx"] = wrk(lab, ng_url, params)
        out["netsuite_fw"] = wrk(lab, fw_url, params, host=None)
        out["daemon_rss_kib"] = rss_kib(str(daemon.pid))
        out["daemon_log_lines"] = daemon.line_count
    finally:
        for child in reversed(children):
            child.stop()
        lab.down()
    return out


# ---------------------------------------------------------------------------
# 2. and 3. the login path, in process

class Fixture(PortalFixture):
    """
    The portal's test harness (registry, memory firewall, portal and its
    web resource, on a Clock) with the benchmark's LAN, a MAC made from each
    address, sessions in C{session_file} and a 30-minute idle time-out.
    """

    def __init__(self, session_file: str) -> None:
        PortalFixture.__init__(
            self, idle_timeout=1800, store=SessionStore(session_file), lan=LAN16,
            host=f"10.88.0.1:{PORTAL_PORT}", policy_text="Be nice.", now=1_000_000,
            find_mac=lambda ip: succeed(MAC(b"\x02\x00" + ip.packed)))

    def login(self, ip: ipaddress.IPv4Address) -> None:
        request = self.accept(ip)
        if request.responseCode != 303 or not request.finished:
            raise RuntimeError(f"login of {ip} failed: {request.responseCode} "
                               f"{request.body()[:300]!r}")

    def logout(self, ip: ipaddress.IPv4Address) -> None:
        self.portal.logout(ip, "logout")
        self.registry.eventual.flush_sync()


def start_logging() -> None:
    """Log as twistd does (formatted text), to /dev/null."""
    from twisted.logger import globalLogBeginner, textFileLogObserver
    sink = open(os.devnull, "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sink)], redirectStandardIO=False)


def ip_at(base: int, i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(base + i)


def logins_per_second(fx: Fixture, params: Dict[str, Any]) -> float:
    """Median over rounds of (logins / time), fresh addresses in blocks."""
    rates = []
    block, total = params["block"], params["logins"]
    for r in range(params["rounds"]):
        elapsed, done = 0.0, 0
        while done < total:
            ips = [ip_at(FRESH, (r * total + done + i) % 30000) for i in range(block)]
            gc.collect()
            t0 = time.perf_counter()
            for ip in ips:
                fx.login(ip)
            elapsed += time.perf_counter() - t0
            for ip in ips:
                fx.logout(ip)
            done += block
        rates.append(done / elapsed)
    return statistics.median(rates)


def prefill(fx: Fixture, n: int, current: int) -> None:
    for i in range(current, n):
        fx.login(ip_at(PREFILLED, i))


def bench_logins(params: Dict[str, Any], tmp: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for kind in ("file", "memory"):
        path = os.path.join(tmp, f"sessions-{kind}.sqlite") if kind == "file" else ":memory:"
        fx = Fixture(path)
        for _ in range(50):  # warm-up
            fx.login(ip_at(FRESH, 29_999))
            fx.logout(ip_at(FRESH, 29_999))
        prefill(fx, 10, 0)
        out[f"{kind}_10"] = logins_per_second(fx, params)
        t0 = time.perf_counter()
        prefill(fx, SESSIONS, 10)
        out[f"{kind}_prefill_rate"] = (SESSIONS - 10) / (time.perf_counter() - t0)
        assert len(fx.sessions.sessions) == SESSIONS
        out[f"{kind}_10000"] = logins_per_second(fx, params)
        if kind == "file":
            out["profile"] = profile_login(fx)
        fx.sessions.store.close()
    out["arp"] = bench_arp(params, tmp)
    return out


def profile_login(fx: Fixture) -> str:
    """cProfile of 300 logins at N=10,000 (file store): top functions by own time."""
    import cProfile
    import io
    import pstats
    ips = [ip_at(FRESH, 20_000 + i) for i in range(300)]
    prof = cProfile.Profile()
    prof.enable()
    for ip in ips:
        fx.login(ip)
    prof.disable()
    for ip in ips:
        fx.logout(ip)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(12)
    return buf.getvalue()


def bench_arp(params: Dict[str, Any], tmp: str) -> Dict[int, Dict[str, float]]:
    """
    Seconds per MAC lookup of the last entry on tables of n entries: a
    fresh read of the table (what a lookup costs at most once a second, or
    for an address not seen yet) and a lookup in NeighbourTable's cache.
    """
    from netsuite.portal.service import NeighbourTable, read_neighbours
    out = {}
    for n in (10, SESSIONS):
        path = os.path.join(tmp, f"arp-{n}")
        with open(path, "w") as f:
            f.write("IP address       HW type     Flags       HW address            Mask     Device\n")
            for i in range(n):
                ip = ip_at(PREFILLED, i)
                mac = ":".join(f"{b:02x}" for b in b"\x02\x00" + ip.packed)
                f.write(f"{str(ip):<17}0x1         0x2         {mac}     *        br-lan\n")
        target = ip_at(PREFILLED, n - 1)
        t0 = time.perf_counter()
        for _ in range(params["arp_lookups"]):
            assert read_neighbours(path).get(str(target)) is not None
        fresh = (time.perf_counter() - t0) / params["arp_lookups"]
        table = NeighbourTable(path, ttl=3600)
        table(target)
        t0 = time.perf_counter()
        for _ in range(params["arp_lookups"]):
            assert table(target) is not None
        out[n] = {"fresh": fresh, "cached": (time.perf_counter() - t0) / params["arp_lookups"]}
    return out


def memory_child(mode: str, tmp: str) -> None:
    """In a fresh process: log in SESSIONS sessions; print JSON."""
    start_logging()
    fx = Fixture(os.path.join(tmp, f"mem-{mode}.sqlite"))
    for i in range(50):  # warm every code path and cache
        fx.login(ip_at(FRESH, i))
        fx.logout(ip_at(FRESH, i))
    fx.clock.advance(1)
    gc.collect()
    result: Dict[str, Any] = {"mode": mode}
    if mode == "rss":
        before = rss_kib()
        prefill(fx, SESSIONS, 0)
        gc.collect()
        result["rss_delta_kib"] = rss_kib() - before
    else:
        import tracemalloc
        tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot()
        prefill(fx, SESSIONS, 0)
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        stats = snap1.compare_to(snap0, "filename")
        total = sum(s.size_diff for s in stats)
        firewall = sum(s.size_diff for s in stats
                       if os.sep + os.path.join("netsuite", "firewall") + os.sep
                       in s.traceback[0].filename)
        result["total_bytes"] = total
        result["firewall_bytes"] = firewall
        result["top"] = [(os.path.relpath(s.traceback[0].filename, ROOT)
                          if s.traceback[0].filename.startswith(ROOT)
                          else s.traceback[0].filename, s.size_diff, s.count_diff)
                         for s in stats[:10]]
        lines = snap1.compare_to(snap0, "lineno")
        result["top_lines"] = [(f"{os.path.relpath(s.traceback[0].filename, ROOT) if s.traceback[0].filename.startswith(ROOT) else s.traceback[0].filename}:{s.traceback[0].lineno}",
                                s.size_diff, s.count_diff) for s in lines[:12]]
    assert len(fx.sessions.sessions) == SESSIONS
    print(json.dumps(result))


def bench_memory(tmp: str) -> Dict[str, Any]:
    out = {}
    for mode in ("rss", "trace"):
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child",
                               mode, "--tmp", tmp], capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"memory child {mode} failed:\n{done.stderr}")
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.tmp)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, iptables, ipset)", file=sys.stderr)
        return 2
    for tool in ("wrk", "nginx", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} missing (apt-get install -y wrk nginx-light curl)", file=sys.stderr)
            return 2
    params = QUICK if args.quick else FULL
    started = time.perf_counter()
    versions = (subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
                + ", " + subprocess.run(["wrk", "-v"], capture_output=True,
                                        text=True).stdout.split("[")[0].strip())
    print(f"bench/portal.py{' --quick' if args.quick else ''}: lab bpor{os.getpid()}, "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}, Python "
          f"{sys.version.split()[0]}, {versions}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sys.stdout.flush()
    tmp = tempfile.mkdtemp(prefix="nsbportal-", dir="/var/tmp")
    summary: Dict[str, Any] = {}
    try:
        # 1 ---------------------------------------------------------------
        r = bench_redirect(params, tmp)
        ns, ng, fw = r["netsuite"], r["nginx"], r["netsuite_fw"]
        ratio = ns["rps"] / ng["rps"]
        print(f"\n1. redirect: wrk -t{params['threads']} -c{params['connections']} "
              f"-d{params['duration']}s from the client namespace, Host: {FOREIGN_HOST}")
        print("   netsuite answer:\n     " + "\n     ".join(
            r["sample_netsuite"].replace("\r", "").split("\n")[:8]))
        print("   nginx answer:\n     " + "\n     ".join(
            r["sample_nginx"].replace("\r", "").split("\n")[:8]))
        print(f"   {'':34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}  errors")
        for label, w in ((f"netsuite  AP:{PORTAL_PORT} direct", ns),
                         (f"nginx     AP:{NGINX_PORT} (1 worker)", ng),
                         ("netsuite  via firewall DNAT :80", fw)):
            print(f"   {label:34}{w['rps']:>10.0f}{w['p50_ms']:>9.2f}{w['p99_ms']:>9.2f}  "
                  f"{w['errors']}")
        print(f"   netsuite CPU during its run: {r['netsuite_cpu']:.2f} core; "
              f"twistd RSS after: {r['daemon_rss_kib'] / 1024:.1f} MiB; "
              f"log lines: {r['daemon_log_lines']}")
        ok1 = ratio >= 0.30
        print(f"   ratio netsuite/nginx: {ratio:.3f} (target >= 0.30): {verdict(ok1)}")
        sys.stdout.flush()
        summary.update(redirect_rps=ns["rps"], redirect_p99_ms=ns["p99_ms"],
                       nginx_rps=ng["rps"], nginx_p99_ms=ng["p99_ms"],
                       redirect_ratio=ratio, redirect_fw_rps=fw["rps"],
                       redirect_fw_p99_ms=fw["p99_ms"])

        # 2 ---------------------------------------------------------------
        start_logging()
        lg = bench_logins(params, tmp)
        print(f"\n2. logins/s in process (POST /login -> firewall -> SQLite -> events), "
              f"{params['logins']} per round, blocks of {params['block']}, "
              f"{params['rounds']} round(s), median")
        for kind in ("file", "memory"):
            print(f"   sessions in {kind:7}: N=10 {lg[kind + '_10']:8.0f}/s   "
                  f"N=10,000 {lg[kind + '_10000']:8.0f}/s   ratio "
                  f"{lg[kind + '_10000'] / lg[kind + '_10']:.2f}   (prefill "
                  f"{lg[kind + '_prefill_rate']:.0f}/s)")
        arp = lg["arp"]
        print(f"   neighbour table (real MAC lookup, thread): a fresh read {arp[10]['fresh'] * 1e6:.0f}"
              f" us at 10 entries, {arp[SESSIONS]['fresh'] * 1e3:.2f} ms at {SESSIONS:,} entries"
              f" (at most once a second, or for an address not seen yet); cached"
              f" {arp[SESSIONS]['cached'] * 1e6:.1f} us")
        ok2 = lg["file_10000"] >= 500
        print(f"   target >= 500 logins/s at N=10,000 (file store): {verdict(ok2)}")
        print("   profile, 300 logins at N=10,000 (file store), by own time:")
        print("     " + "\n     ".join(lg["profile"].strip().splitlines()[:24]))
        sys.stdout.flush()
        summary.update(logins_10=lg["file_10"], logins_10000=lg["file_10000"],
                       logins_ratio=lg["file_10000"] / lg["file_10"],
                       logins_mem_10=lg["memory_10"], logins_mem_10000=lg["memory_10000"],
                       arp_lookup_10000_ms=arp[SESSIONS]["fresh"] * 1e3)

        # 3 ---------------------------------------------------------------
        mem = bench_memory(tmp)
        rss = mem["rss"]["rss_delta_kib"] * 1024 / SESSIONS
        tr = mem["trace"]
        total = tr["total_bytes"] / SESSIONS
        fwb = tr["firewall_bytes"] / SESSIONS
        portal = total - fwb
        print(f"\n3. memory per active session ({SESSIONS:,} logins in a fresh process)")
        print(f"   RSS: {rss:.0f} B/session (portal + memory firewall + SQLite cache)")
        print(f"   tracemalloc: {total:.0f} B/session, of which firewall adapter "
              f"{fwb:.0f}, portal (the rest) {portal:.0f}")
        print("   by file:  " + "\n             ".join(
            f"{s / SESSIONS:8.0f} B  {n / SESSIONS:6.2f} blocks  {f}" for f, s, n in tr["top"][:6]))
        print("   by line:  " + "\n             ".join(
            f"{s / SESSIONS:8.0f} B  {n / SESSIONS:6.2f} blocks  {f}"
            for f, s, n in tr["top_lines"][:10]))
        ok3 = portal <= 2048
        print(f"   target portal <= 2048 B/session: {verdict(ok3)}")
        summary.update(mem_rss_b=rss, mem_py_b=total, mem_portal_b=portal,
                       mem_firewall_b=fwb)
        summary.update(pass_redirect=int(ok1), pass_logins=int(ok2), pass_memory=int(ok3))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; lab bpor{os.getpid()} removed")
    print("SUMMARY " + " ".join(f"{k}={fmt(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
