"""
netsuite-mailproxy's speed in a lab (docs/mailproxy.md, Speed), in one run:

    scripts/bench.sh mailproxy [--quick] [--seconds 2] [--connections 2000] [--logins 1000]

A client namespace behind the access point, whose all-in-one netsuite
(the firewall with its TPROXY rules and routing, and the mail proxy)
diverts the client's connections to the upstream's ports to the proxy.
For each path, one iperf3 stream client to server (Gbit/s), the relay's
CPU seconds per Gbit/s of it (the AP's netsuite or HAProxy process), and
connections/s (connect, one byte each way, close; 4 client threads), in
three rounds taking turns between the paths, the median of each:

  - direct: forwarded by the AP's kernel (a port the firewall does not divert);
  - cut_through: through TPROXY and the mail proxy, module relay (done at
    once: spliced in the kernel from the first byte);
  - inspected: through TPROXY and the mail proxy, a filter that passes every
    byte and is never done (tests.proxy.fakemodules:watching);
  - haproxy, haproxy_splice: HAProxy 2.6 on the AP in tcp mode, without and
    with option splice-auto (the client connects to the AP's address).

Then IMAP logins/s (4 threads of short sessions: greeting, LOGIN, LOGOUT;
three rounds taking turns) through the proxy's imap module beside straight
to dovecot (the anvil auth penalty off). Needs root, iperf3, haproxy and dovecot (scripts/bench.sh
installs them). Ends with one SUMMARY line. Noisy on a shared 2-core
machine: compare within one run (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _relaybench import (PYTHON, ROOT, Child, Path, echo_server, haproxy,  # noqa: E402
                         in_turns, iperf_server, load_average, measure, run_in, summary)

from netsuite.lab import Lab  # noqa: E402
from netsuite.lab.peers import DovecotPeer  # noqa: E402

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
HOOK = os.path.join(os.path.dirname(sys.executable), "netsuite-hook")

PROXY = 55100        # the mail proxy's TPROXY listener on the AP
DIRECT_IPERF = 55200  # upstream ports the firewall does not divert
DIRECT_ECHO = 55210
CUT_IPERF = 55201    # diverted: module relay
CUT_ECHO = 55211
INSPECT_IPERF = 55202  # diverted: a pass-through filter, never done
INSPECT_ECHO = 55212
IMAP_PROXIED = 55143  # dovecot behind the proxy's imap module
IMAP_DIRECT = 55144   # another dovecot, not diverted
HAPROXY_TCP = 55300   # on the AP (and + 1)
HAPROXY_SPLICE = 55302
USER, PASSWORD = "alice", "secret"

CONFIG = """
[firewall]
enabled = true
lan_network = "10.89.0.0/24"
check_interval = 0
shaping = false
lock_dir = "{locks}"
tproxy_port = {proxy}
tproxy_ports = [{diverted}]
lan_ports = [{lan_ports}]
masquerade = true

[mailproxy]
enabled = true
port = {proxy}
modules = {{ {modules} }}
"""

# THREADS threads of TOTAL/THREADS IMAP sessions: greeting, LOGIN, LOGOUT.
LOGIN_CLIENT = """
import socket, sys, threading, time
host, port, total, threads, user, password = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                              int(sys.argv[4]), sys.argv[5], sys.argv[6])
errors = []
def until(s, buf, mark):
    while mark not in buf:
        data = s.recv(4096)
        if not data:
            raise RuntimeError(f"closed before {mark!r}: {buf!r}")
        buf += data
    return buf
def run(n):
    try:
        for _ in range(n):
            with socket.create_connection((host, port), timeout=10) as s:
                buf = until(s, b"", b"\\r\\n")
                if not buf.startswith(b"* OK"):
                    raise RuntimeError(f"greeting {buf!r}")
                s.sendall(f"a LOGIN {user} {password}\\r\\n".encode())
                buf = until(s, b"", b"a ")
                buf = until(s, buf, b"\\r\\n")
                if b"a OK" not in buf:
                    raise RuntimeError(f"login {buf!r}")
                s.sendall(b"b LOGOUT\\r\\n")
                buf = until(s, b"", b"b OK")
                while s.recv(4096):
                    pass
    except BaseException as e:
        errors.append(e)
workers = [threading.Thread(target=run, args=(total // threads,)) for _ in range(threads)]
start = time.monotonic()
for w in workers: w.start()
for w in workers: w.join()
if errors:
    sys.exit(f"logins failed: {errors[0]!r}")
print("rate", total // threads * threads / (time.monotonic() - start), flush=True)
"""


def logins_per_second(lab: Lab, host: str, port: int, total: int, threads: int = 4) -> float:
    out = run_in(lab.netns("c1"), [PYTHON, "-c", LOGIN_CLIENT, host, str(port), str(total),
                                   str(threads), USER, PASSWORD], timeout=total + 60)
    return float(out.split()[-1])


def start_ap(lab: Lab, tmp: str) -> Child:
    """The all-in-one netsuite (firewall, mail proxy) in the AP; the client authorized."""
    locks = os.path.join(tmp, "locks")
    sockets = os.path.join(tmp, "bus")
    os.mkdir(sockets, 0o755)
    modules = {CUT_IPERF: "relay", CUT_ECHO: "relay",
               INSPECT_IPERF: "tests.proxy.fakemodules:watching",
               INSPECT_ECHO: "tests.proxy.fakemodules:watching", IMAP_PROXIED: "imap"}
    config = os.path.join(tmp, "netsuite.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(
            locks=locks, proxy=PROXY, diverted=", ".join(map(str, modules)),
            lan_ports=", ".join(str(p) for p in (HAPROXY_TCP, HAPROXY_TCP + 1, HAPROXY_SPLICE,
                                                 HAPROXY_SPLICE + 1)),
            modules=", ".join(f'{port} = "{name}"' for port, name in modules.items())))
    daemon = Child([TWISTD, "-n", "--pidfile=", "netsuite", "--name", "ap", "--socket-dir",
                    sockets, "--config", config], label="netsuite", netns=lab.netns("ap"),
                   cwd=ROOT, keep=200).start()
    daemon.wait_for_line("mailproxy ready", 60)
    run_in(lab.netns("ap"), [HOOK, "--socket-dir", sockets, "send", "ap:/firewall/authorize",
                             f"ip={lab.client_address(1)}", f"mac={lab.client_mac(1)}"],
           timeout=30)
    return daemon


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0, help="a round (3 rounds)")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--logins", type=int, default=1000)
    parser.add_argument("--quick", action="store_true",
                        help="1 s rounds, 400 connections and 200 logins a path")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.connections, args.logins = 1.0, 400, 200
    tmp = tempfile.mkdtemp(prefix="mls-bench-")
    lab = Lab(f"mls{os.getpid() % 100000}", clients=1)
    started: List[Child] = []
    peers: List[DovecotPeer] = []
    try:
        lab.up(True)
        up, ap, client = lab.netns("up"), lab.netns("ap"), lab.netns("c1")
        # Thousands of short connections: conntrack's TIME_WAIT entries must go soon
        # (docs/mailproxy.md, Conntrack tuning).
        for ns in (ap, up):
            run_in(ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1"],
                   timeout=10)
        server = lab.internet
        for port in (DIRECT_IPERF, CUT_IPERF, INSPECT_IPERF):
            started.append(iperf_server(server, port, up))
        started.append(echo_server(server, [DIRECT_ECHO, CUT_ECHO, INSPECT_ECHO], up))
        for port in (IMAP_PROXIED, IMAP_DIRECT):
            peers.append(DovecotPeer(up, server, users={USER: PASSWORD}, imap_port=port,
                                     pop3_port=port + 1000).start(30))
        daemon = start_ap(lab, tmp)
        started.append(daemon)
        paths = [Path("direct", server, DIRECT_IPERF, DIRECT_ECHO, []),
                 Path("cut_through", server, CUT_IPERF, CUT_ECHO, [daemon]),
                 Path("inspected", server, INSPECT_IPERF, INSPECT_ECHO, [daemon])]
        for name, port, splice in (("haproxy", HAPROXY_TCP, False),
                                   ("haproxy_splice", HAPROXY_SPLICE, True)):
            path = haproxy(name, lab.ap_address, port, server, DIRECT_IPERF, DIRECT_ECHO,
                           splice, tmp, netns=ap, wait_from=client)
            started += path.children
            paths.append(path)
        print(f"load average {load_average()}", flush=True)
        results = measure(paths, args.seconds, args.connections, client)
        each = max(args.logins // 3, 4)
        logins = in_turns({
            "direct": lambda: logins_per_second(lab, server, IMAP_DIRECT, each),
            "proxied": lambda: logins_per_second(lab, server, IMAP_PROXIED, each)}, 3)
        for name, rate in logins.items():
            print(f"imap logins {name:8} {rate:7.0f} logins/s", flush=True)
        r = results
        ratios = {
            "inspected_vs_haproxy": r["inspected"]["gbit"] / r["haproxy"]["gbit"],
            "cut_through_vs_haproxy_splice": r["cut_through"]["gbit"] / r["haproxy_splice"]["gbit"],
            "cut_through_cpu_vs_haproxy_splice": (r["cut_through"]["cpu_per_gbit"]
                                                  / r["haproxy_splice"]["cpu_per_gbit"]),
            "conn_s_vs_haproxy": r["cut_through"]["conn_s"] / r["haproxy"]["conn_s"],
            "logins_vs_direct": logins["proxied"] / logins["direct"],
        }
        for key, value in ratios.items():
            print(f"{key}: {value:.2f}", flush=True)
        r["logins"] = {f"{name}_s": rate for name, rate in logins.items()}
        print(f"load average {load_average()}", flush=True)
        print(summary(results, ratios), flush=True)
    finally:
        for child in reversed(started):
            child.stop(2)
        for peer in peers:
            peer.stop()
        lab.down()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
