"""
Soak of the all-in-one netsuite: DHCP, portal and hook load together, for
a long time, in a lab; does memory grow, does anything fail, how slow was
the slowest answer?

    bench/soak.sh [--duration SECONDS] [--warmup SECONDS] [--sample SECONDS]
                  [--lab PREFIX] [--tmp-prefix PREFIX]
    (or .venv/bin/python bench/soak.py; --quick: 60 s)

Needs root, perfdhcp (Debian package kea-admin), curl-free: the portal
clients are Python. Builds a lab of its own (C{nsbsk<pid>}: AP, upstream,
three clients) and removes it at the end, whatever happens; every packet
stays inside it.

 - C{twistd netsuite} in the AP: [firewall], [dhcp] (a LAN subnet and a
   relayed one, 120 s leases) and [portal] (sessions in SQLite, sampled
   every 5 s, ending with their leases), logging JSON to a file.
 - DHCP: perfdhcp in c1, as a relay (as bench/dhcp.py), one 4-way exchange
   after another at C{--rate} (20/s) for the whole run, in chunks of 30 s,
   over 3,000 MACs: each comes back every 150 s, after its lease expired,
   so offers, renewals of the previous address and expiries all go on.
 - Portal: c2 and c3 each loop (bench/_soak_client.py): an upstream GET
   (redirected, 307), the login page, the login (303), the upstream (200),
   the logout (303), then 0.2 s pause ([portal.auth] max_attempts raised
   for that).
 - Hooks: a separate process (bench/_soak_hook.py) over the bus is first
   on /dhcp/lookup and /firewall/authorize and answers CONTINUE: each
   DISCOVER and each login makes a bus round trip.
 - Every C{--sample} s (5) the daemon's VmRSS; growth is from the first
   sample after C{--warmup} (120 s: the leases and the caches reach their
   steady size) to the last.

Errors: DHCP exchanges without an ACK (perfdhcp drops), portal answers
with a wrong status or body or a socket error, per kind (each portal
answer that is not 2xx/3xx is printed with its time, client and page
reason, and counted by reason in the SUMMARY line's
C{portal_not_2xx_3xx}, JSON, the rest of the line; C{mac_late} counts the logins whose MAC the
portal found only on a further look at the neighbour table); error/critical
lines in netsuite's log; listener errors and time-outs of the hook's
mailboxes (/system/mailboxes). Target: RSS growth under 5 %, zero errors.
The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dhcp as dhcpbench  # noqa: E402  perfdhcp's output, the relay

from netsuite.lab import Lab  # noqa: E402
from netsuite.lab.child import PACKAGE_ROOT as ROOT  # noqa: E402
from netsuite.lab.child import TWISTD, Child  # noqa: E402
from netsuite.lab.peers import HttpPeer, missing  # noqa: E402

PORTAL_PORT = 5280
LEASE_TIME = 120
MACS = 3000
MAC_BASE = "00:0c:05:00:00:00"
CHUNK = 30
HOOKED = ("/dhcp/lookup", "/firewall/authorize")
CLIENTS = ("c2", "c3")
UPSTREAM_BODY = "the internet"
PYTHON = sys.executable

CONFIG = """\
[log]
level = "info"
json_file = "{log}"

[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {port}
check_interval = 5.0
shaping = false
lock_dir = "{tmp}"

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{leases}"
relays = ["{giaddr}"]

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.199"
server = "10.89.0.1"
router = "10.89.0.1"
dns = ["10.89.0.1"]
lease_time = {lease_time}
interface = "br-lan"

[[dhcp.subnet]]
name = "relay"
network = "{relay_net}"
first = "10.200.1.0"
last = "10.200.40.255"
server = "10.89.0.1"
router = "{giaddr}"
dns = ["10.89.0.1"]
lease_time = {lease_time}
interface = ""

[portal]
enabled = true
port = {port}
interface_address = "10.89.0.1"
session_file = "{sessions}"
idle_timeout = 600
sample_interval = 5.0
policy_text = "Be nice."

[portal.auth]
# Each client logs in about twice a second, far past the stock 20 a minute.
max_attempts = 1000000
"""


def log(text: str) -> None:
    print(text, flush=True)


def rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Dhcp(threading.Thread):
    """perfdhcp in c1, chunk after chunk, until C{end} (monotonic)."""

    def __init__(self, lab: Lab, rate: int, end: float) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.rate = rate
        self.end = end
        self.trials: List[Any] = []
        self.failures: List[str] = []

    def run(self) -> None:
        while True:
            left = self.end - time.monotonic()
            if left < 2:
                return
            period = int(min(CHUNK, left))
            argv = ["perfdhcp", "-4", "-g", "single", "-l", dhcpbench.GIADDR,
                    "-r", str(self.rate), "-p", str(period), "-R", str(MACS),
                    "-b", "mac=" + MAC_BASE, "-d", "1", "-W", "1000000", "-x", "t",
                    dhcpbench.SERVER]
            began = time.monotonic()
            try:
                done = self.lab.exec("c1", argv, timeout=period + 30)
                out, code = done.stdout + done.stderr, done.returncode
            except subprocess.TimeoutExpired:
                self.failures.append("perfdhcp did not finish")
                continue
            trial = dhcpbench.Trial(self.rate, period, MACS, out, code,
                                    time.monotonic() - began, 0.0)
            if code not in (0, 3):
                self.failures.append(f"perfdhcp exit {code}: {out[-300:]}")
            self.trials.append(trial)

    def figures(self) -> Dict[str, Any]:
        sent = sum(int(t.do_sent) for t in self.trials)
        acked = sum(int(t.ra_received) for t in self.trials)
        delays: Dict[str, List[float]] = {"DISCOVER-OFFER": [], "REQUEST-ACK": []}
        for t in self.trials:
            for kind in delays:
                delays[kind] += t.delays.get(kind, [])
        return {"exchanges": sent, "acked": acked, "errors": sent - acked + len(self.failures),
                "slowest_ms": max((max(v) for v in delays.values() if v), default=0.0),
                "p99_ms": {k: _quantile(v, 0.99) for k, v in delays.items()},
                "failures": self.failures[:5]}


def _quantile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


MAC_LATE = "the MAC of {ip} found on look"
"""How netsuite's log line starts when a login's MAC took a further look."""


def log_counts(path: str) -> Tuple[Dict[str, int], List[str], List[str]]:
    """
    Lines of netsuite's JSON log by level (and C{"mac-late"}: the
    L{MAC_LATE} lines); the first error events; the first warnings' formats.
    """
    counts: Dict[str, int] = {}
    errors: List[str] = []
    warnings: List[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError:
        return counts, errors, warnings
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        level = event.get("level") or event.get("log_level")
        if isinstance(level, dict):
            level = level.get("name")
        level = str(level)
        counts[level] = counts.get(level, 0) + 1
        if str(event.get("log_format", "")).startswith(MAC_LATE):
            counts["mac-late"] = counts.get("mac-late", 0) + 1
        if level in ("error", "critical") and len(errors) < 5:
            # the whole event: its failure's traceback says where
            errors.append(json.dumps({k: v for k, v in event.items()
                                      if k in ("log_time", "log_format", "log_namespace",
                                               "log_failure",
                                               "log_text", "observer", "text")})[:3000])
        elif level == "warn" and len(warnings) < 5:
            warnings.append(str(event.get("log_format"))[:300])
    return counts, errors, warnings


def mailbox_errors(sockets: str) -> Dict[str, Dict[str, int]]:
    """Errors and time-outs of the hooked mailboxes' listeners (over the bus)."""
    code = (
        "import json, sys\n"
        "from twisted.internet import task\n"
        "from netsuite.bus import connect\n"
        "async def main(reactor):\n"
        "    c = connect('ap', socket_dir=sys.argv[1], reactor=reactor)\n"
        "    out = {}\n"
        "    for m in await c.send('/system/mailboxes', {}):\n"
        "        if m['path'] in %r:\n"
        "            out[m['path']] = {k: sum(l['counters'][k] for l in m['listeners'])\n"
        "                              for k in ('errors', 'timeouts')}\n"
        "    print(json.dumps(out))\n"
        "    await c.close()\n"
        "task.react(lambda r: __import__('twisted.internet.defer', fromlist=['x'])"
        ".ensureDeferred(main(r)))\n") % (HOOKED,)
    done = subprocess.run([PYTHON, "-c", code, sockets], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"?": {"errors": -1, "timeouts": -1, "output": done.stderr[-300:]}}


def soak(args: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    lab = Lab(f"{args.lab}{os.getpid()}", clients=3)
    children: List[Child] = []
    upstream = None
    try:
        lab.up(True)
        dhcpbench.setup_relay(lab)
        upstream = HttpPeer(lab.netns("up"), None, 80, UPSTREAM_BODY)
        upstream.start()
        sockets = os.path.join(tmp, "sockets")
        os.mkdir(sockets)
        os.chmod(sockets, 0o755)
        log_file = os.path.join(tmp, "netsuite.json")
        config = os.path.join(tmp, "netsuite.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(log=log_file, port=PORTAL_PORT, tmp=tmp,
                                  leases=os.path.join(tmp, "leases.sqlite"),
                                  sessions=os.path.join(tmp, "sessions.sqlite"),
                                  giaddr=dhcpbench.GIADDR, relay_net=dhcpbench.RELAY_NET,
                                  lease_time=LEASE_TIME))
        daemon = Child([TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap",
                        "--socket-dir", sockets, "--config", config], label="netsuite",
                       netns=lab.netns("ap"), cwd=ROOT, keep=200).start()
        children.append(daemon)
        for ready in ("firewall ready", "dhcp ready", "portal ready"):
            daemon.wait_for_line(ready, 60)
        hook = Child([PYTHON, os.path.join(ROOT, "bench", "_soak_hook.py"), "ap", sockets,
                      *HOOKED], label="hook", cwd=ROOT, stdin=True).start()
        children.append(hook)
        hook.wait_for_line("^ready", 30)

        began = time.monotonic()
        log(f"  load started at {time.time():.1f} (the log's log_time)")
        end = began + args.duration
        dhcp = Dhcp(lab, args.rate, end)
        dhcp.start()
        portal = f"http://{lab.ap_address}:{PORTAL_PORT}"
        clients = [lab.popen(c, [PYTHON, os.path.join(ROOT, "bench", "_soak_client.py"),
                                 portal, f"http://{lab.internet}/", str(args.duration)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
                   for c in CLIENTS]
        samples: List[Tuple[float, int]] = []
        while time.monotonic() < end:
            value = rss_kib(daemon.pid)
            if value is None or not daemon.running:
                raise RuntimeError(f"netsuite exited:\n{daemon.output()[-3000:]}")
            samples.append((time.monotonic() - began, value))
            minute = int(samples[-1][0]) // 60
            if len(samples) == 1 or minute != int(samples[-2][0]) // 60:
                log(f"  t={samples[-1][0]:5.0f} s  RSS {value / 1024:6.1f} MiB")
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
        samples.append((time.monotonic() - began, rss_kib(daemon.pid) or 0))
        portal_stats: Dict[str, Any] = {}
        for name, client in zip(CLIENTS, clients):
            out, err = client.communicate(timeout=60)
            try:
                stats = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                stats = {"client": {"count": 0, "errors": 1, "slowest_ms": 0.0,
                                    "first_errors": [err[-300:]]}}
            for kind, s in stats.items():
                total = portal_stats.setdefault(kind, {"count": 0, "errors": 0,
                                                       "slowest_ms": 0.0, "first_errors": [],
                                                       "reasons": {}, "answers": []})
                total["count"] += s["count"]
                total["errors"] += s["errors"]
                total["slowest_ms"] = max(total["slowest_ms"], s["slowest_ms"])
                total["first_errors"] += s["first_errors"][:5 - len(total["first_errors"])]
                for why, n in s.get("reasons", {}).items():
                    total["reasons"][why] = total["reasons"].get(why, 0) + n
                total["answers"] += [[at, name, why]
                                     for at, why in s.get("answers", [])]
        dhcp.join(timeout=CHUNK + 60)
        hooks = mailbox_errors(sockets)
        hook.stop(grace=5)
        calls = {}
        for line in hook.lines():
            if line.startswith("{"):
                calls = json.loads(line).get("calls", {})
        levels, log_errors, log_warnings = log_counts(log_file)
        return {"samples": samples, "dhcp": dhcp.figures(), "portal": portal_stats,
                "hooks": hooks, "hook_calls": calls, "levels": levels,
                "log_errors": log_errors, "log_warnings": log_warnings, "duration": time.monotonic() - began}
    finally:
        for child in reversed(children):
            child.stop(grace=10)
        if upstream is not None:
            upstream.stop()
        lab.down()


def report(args: argparse.Namespace, r: Dict[str, Any]) -> int:
    samples = r["samples"]
    steady = [s for s in samples if s[0] >= args.warmup] or samples[-1:]
    start, end = steady[0][1], steady[-1][1]
    peak = max(v for _, v in steady)
    growth = 100.0 * (end - start) / start if start else float("nan")
    log(f"RSS after the {args.warmup:.0f} s warm-up {start / 1024:.1f} MiB, at the end "
        f"{end / 1024:.1f} MiB (peak {peak / 1024:.1f}, at the start "
        f"{samples[0][1] / 1024:.1f}): growth {growth:+.2f} %")
    errors: Dict[str, int] = {}
    slowest: Dict[str, float] = {}
    d = r["dhcp"]
    errors["dhcp"] = d["errors"]
    slowest["dhcp"] = d["slowest_ms"]
    log(f"DHCP: {d['exchanges']} exchanges, {d['acked']} acked, errors {d['errors']}, "
        f"slowest {d['slowest_ms']:.1f} ms, p99 DO {d['p99_ms']['DISCOVER-OFFER']:.1f} ms "
        f"RA {d['p99_ms']['REQUEST-ACK']:.1f} ms {d['failures'] or ''}")
    reasons: Dict[str, int] = {}
    for kind, s in sorted(r["portal"].items()):
        errors[f"portal-{kind}"] = s["errors"]
        slowest[f"portal-{kind}"] = s["slowest_ms"]
        log(f"portal {kind}: {s['count']} answers, errors {s['errors']}, slowest "
            f"{s['slowest_ms']:.1f} ms {s['first_errors'] or ''}")
        for at, client, why in sorted(s.get("answers", [])):
            log(f"  {kind} at t={at:.1f} s from {client}: {why}")
        for why, n in s.get("reasons", {}).items():
            reasons[why] = reasons.get(why, 0) + n
    for path, counts in sorted(r["hooks"].items()):
        errors[f"hook{path}"] = counts.get("errors", 0) + counts.get("timeouts", 0)
        log(f"hook {path}: {r['hook_calls'].get(path, '?')} calls, listener errors "
            f"{counts.get('errors')}, time-outs {counts.get('timeouts')}")
    errors["log"] = r["levels"].get("error", 0) + r["levels"].get("critical", 0)
    log(f"netsuite log lines by level: {r['levels']}; warnings: {r['log_warnings']}")
    for text in r["log_errors"]:
        log(f"  logged error: {text}")
    total = sum(errors.values())
    worst = max(slowest.values(), default=0.0)
    ok = total == 0 and growth < 5.0
    log(f"errors per kind: {errors}")
    log("slowest answer per kind (ms): " + ", ".join(f"{k} {v:.1f}"
                                                      for k, v in sorted(slowest.items())))
    log(f"target: RSS growth < 5 %, zero errors: {'PASS' if ok else 'FAIL'}")
    log(f"SUMMARY duration_s={r['duration']:.0f} rss_start_kib={start} rss_end_kib={end} "
        f"rss_growth_pct={growth:.2f} errors={total} slowest_ms={worst:.1f} "
        f"dhcp_exchanges={d['exchanges']} portal_cycles={r['portal'].get('logout', {}).get('count', 0)} "
        f"hook_calls={sum(v for v in r['hook_calls'].values() if isinstance(v, int))} "
        f"pass={int(ok)} mac_late={r['levels'].get('mac-late', 0)} "
        f"portal_not_2xx_3xx={json.dumps(reasons, sort_keys=True)}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (600)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the growth (120; a fifth with --quick)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--rate", type=int, default=20, help="DHCP exchanges per second")
    parser.add_argument("--quick", action="store_true", help="60 s")
    parser.add_argument("--lab", default="nsbsk",
                        help="the lab's name prefix (nsbsk), its pid appended")
    parser.add_argument("--tmp-prefix", default="nsbsoak-",
                        help="the temporary directory's name prefix (nsbsoak-)")
    args = parser.parse_args()
    if args.quick:
        args.duration = 60.0
    if args.warmup is None:
        args.warmup = 120.0 if args.duration >= 600 else args.duration / 5
    if os.geteuid() != 0:
        print("bench/soak.py needs root (network namespaces, port 67)", file=sys.stderr)
        return 2
    absent = missing("perfdhcp", "ipset", "iptables-legacy-save")
    if absent:
        print(f"not installed: {', '.join(absent)} (scripts/bench.sh soak installs them)",
              file=sys.stderr)
        return 2
    log(f"Soak: all-in-one netsuite, {args.duration:.0f} s, DHCP {args.rate}/s over {MACS} "
        f"MACs ({LEASE_TIME} s leases), 2 portal clients looping, hooks on "
        f"{', '.join(HOOKED)}; RSS every {args.sample:.0f} s, growth after {args.warmup:.0f} s")
    tmp = tempfile.mkdtemp(prefix=args.tmp_prefix)
    try:
        return report(args, soak(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
