"""
How long each netsuite process takes to stop: SIGTERM to exit.

    scripts/bench.sh stop [--quick] [--rounds N]  (or .venv/bin/python bench/stop.py)

Needs root (a lab of network namespaces, C{bstop<pid>}, removed at the end
whatever happens), udhcpc, curl and slapd. Every process runs in the lab's
access point as the systemd units run it (C{twistd -n --pidfile= PLUGIN
--name NAME --config FILE}, C{python -m netsuite.dhcp.ldaphook --config
FILE}), with slapd there too, and is awaited on its ready line; then

  work   the split deployment (firewall, dhcp, portal, ldaphook) gives the
         client a lease through the hook and logs it in (click-through),
         and each process is stopped (hook first, firewall last); the
         all-in-one netsuite likewise;
  hung   slapd is paused (SIGSTOP) and a request is sent that waits on it
         ([dhcp.ldap] and [portal.auth] deadline 3 s): a lease through the
         hook process (hung_ldaphook), through the DHCP process's own
         lookup (hung_dhcp), an LDAP login at the all-in-one's portal
         (hung_portal); the process is stopped while the request waits.

Each round prints every time; the last line has the medians, in seconds:

    SUMMARY firewall=0.07 dhcp=0.02 ... split=0.25 hung_ldaphook=0.27 ...

(C{split}: firewall + dhcp + portal + ldaphook.) Target: each under 0.5 s.
A full run (3 rounds) takes about a minute; figures in docs/deploying.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

from netsuite.lab import Lab
from netsuite.lab.child import PYTHON, TWISTD, Child
from netsuite.lab.configs import AP_WITH_SLAPD
from netsuite.lab.peers import SlapdPeer, missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLAPD_PORT = 3389  # in the lab's access point only
DEADLINE = 3.0


PLUGINS = {"firewall": "netsuite-firewall", "dhcp": "netsuite-dhcp",
           "portal": "netsuite-portal", "netsuite": "netsuite"}
READY = {"firewall": ["firewall ready"], "dhcp": ["dhcp ready"], "portal": ["portal ready"],
         "netsuite": ["firewall ready", "dhcp ready", "portal ready"], "ldaphook": ["^hooked$"]}
SPLIT = ("firewall", "dhcp", "portal", "ldaphook")


class Bench:
    def __init__(self, lab: Lab, slapd: SlapdPeer, work: str) -> None:
        self.lab = lab
        self.slapd = slapd
        self.work = work
        self.sockets = os.path.join(work, "sockets")
        os.mkdir(self.sockets, 0o755)
        self.children: List[Child] = []
        self.runs = 0

    def start(self, names: Sequence[str], split: bool = True, in_process: bool = False,
              portal_ldap: bool = False) -> Dict[str, Child]:
        """Start C{names} on fresh state (no leases, no sessions), each once ready."""
        self.runs += 1
        self.state = os.path.join(self.work, f"run{self.runs}")
        os.mkdir(self.state)
        config = os.path.join(self.state, "netsuite.toml")
        with open(config, "w") as f:
            f.write(AP_WITH_SLAPD.format(
                state=self.state, ldap=self.slapd.url, base=self.slapd.hosts_dn,
                deadline=DEADLINE, in_process=str(in_process).lower(),
                portal_ldap=self.slapd.url if portal_ldap else "",
                firewall="firewall" if split else "", dhcp="dhcp" if split else ""))
        started = {}
        for name in names:
            if name == "ldaphook":
                argv = [PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config", config,
                        "--process", "dhcp", "--socket-dir", self.sockets]
            else:
                argv = [TWISTD, "-n", "--pidfile=", PLUGINS[name], "--name", name,
                        "--config", config, "--socket-dir", self.sockets]
            child = Child(argv, label=name, netns=self.lab.netns("ap"), cwd=ROOT,
                          keep=200).start()
            self.children.append(child)
            for line in READY[name]:
                child.wait_for_line(line, timeout=60)
            started[name] = child
        return started

    def lease(self) -> None:
        self.lab.exec("c1", ["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0",
                             "-s", "/bin/true"], timeout=30, check=True)

    def lease_later(self) -> Callable[[], None]:
        proc = self.lab.popen("c1", ["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i",
                                     "eth0", "-s", "/bin/true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        return lambda: proc.wait(30)

    def login(self, form: str = "accept=1", wait: bool = True) -> Callable[[], None]:
        """Log c1 in at the portal with C{form}; C{wait=False}: send it, return a waiter."""
        self.lab.exec("c1", ["ip", "addr", "replace", "10.89.0.50/24", "dev", "eth0"],
                      check=True)
        portal = f"http://{self.lab.ap_address}:5280"
        jar = os.path.join(self.state, "jar")
        curl = ["curl", "-s", "--max-time", "10", "-c", jar, "-b", jar]
        page = self.lab.exec("c1", [*curl, f"{portal}/login?url=http%3A%2F%2Fexample.com%2F"],
                             timeout=15, check=True).stdout
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        if token is None:
            raise RuntimeError(f"no login form at {portal}/login: {page[:300]!r}")
        post = [*curl, "-o", "/dev/null", "--data",
                f"csrf={token.group(1)}&url=http%3A%2F%2Fexample.com%2F&{form}",
                f"{portal}/login"]
        if wait:
            self.lab.exec("c1", post, timeout=15, check=True)
            return lambda: None
        proc = self.lab.popen("c1", post, stdout=subprocess.DEVNULL)
        return lambda: proc.wait(30)

    def request_pending(self, timeout: float = 20.0) -> None:
        """Return once a connection to the paused slapd holds a request it has not read."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.lab.exec("ap", ["ss", "-tnH", "state", "established",
                                       f"( sport = :{SLAPD_PORT} )"], timeout=10).stdout
            if any(int(line.split()[0]) > 0 for line in out.splitlines() if line.split()):
                return
            time.sleep(0.02)
        raise RuntimeError("no request reached the paused slapd")

    def hung(self, child: Child, send: Callable[[], Callable[[], None]]) -> float:
        """Pause slapd, C{send} a request that waits on it, stop C{child} meanwhile."""
        self.slapd.pause()
        try:
            done = send()
            try:
                self.request_pending()
            except RuntimeError:
                raise RuntimeError(f"{child.label}: no request reached the paused slapd; "
                                   f"its output:\n{child.output()[-3000:]}") from None
            took = stop_time(child)
        finally:
            self.slapd.resume()
        done()
        return took

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop(2)
        self.children = []


def stop_time(child: Child, timeout: float = 30.0) -> float:
    """SIGTERM, then seconds until the child is reaped."""
    assert child.process is not None
    started = time.monotonic()
    child.signal("TERM")
    child.process.wait(timeout)
    return time.monotonic() - started


def one_round(bench: Bench) -> Dict[str, float]:
    times = {}
    started = bench.start(SPLIT)
    bench.lease()
    bench.login()
    for name in reversed(SPLIT):
        times[name] = stop_time(started[name])
    times = {name: times[name] for name in SPLIT}
    started = bench.start(["netsuite"], split=False)
    bench.lease()
    bench.login()
    times["netsuite"] = stop_time(started["netsuite"])

    started = bench.start(["dhcp", "ldaphook"])
    times["hung_ldaphook"] = bench.hung(started["ldaphook"], bench.lease_later)
    stop_time(started["dhcp"])
    started = bench.start(["dhcp"], in_process=True)
    times["hung_dhcp"] = bench.hung(started["dhcp"], bench.lease_later)
    started = bench.start(["netsuite"], split=False, portal_ldap=True)
    times["hung_portal"] = bench.hung(started["netsuite"], lambda: bench.login(
        "accept=1&username=alice&password=wonderland", wait=False))
    bench.stop_all()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    options = parser.parse_args()
    if options.quick:
        options.rounds = 1
    if os.getuid() != 0:
        sys.exit("stop: needs root (network namespaces)")
    absent = missing("udhcpc", "curl", "slapd", "slapadd")
    if absent:
        sys.exit(f"stop: needs {', '.join(absent)} (Debian: udhcpc, curl, slapd)")
    lab = Lab(f"bstop{os.getpid()}", clients=1)
    work = tempfile.mkdtemp(prefix="nsstop-")
    slapd = None
    rounds: List[Dict[str, float]] = []
    try:
        lab.up()
        slapd = SlapdPeer(lab.netns("ap"), "127.0.0.1", SLAPD_PORT,
                          hosts=[("c1", lab.client_mac(1), "10.89.0.50")])
        slapd.start(timeout=10)
        bench = Bench(lab, slapd, work)
        try:
            for number in range(options.rounds):
                rounds.append(one_round(bench))
                print(f"round {number + 1}: " + " ".join(
                    f"{name}={value:.3f}" for name, value in rounds[-1].items()), flush=True)
        finally:
            bench.stop_all()
    finally:
        if slapd is not None:
            slapd.stop()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    medians["split"] = sum(medians[name] for name in SPLIT)
    print("SUMMARY " + " ".join(f"{name}={value:.2f}" for name, value in medians.items()))


if __name__ == "__main__":
    main()
