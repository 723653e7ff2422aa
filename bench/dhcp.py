"""
Benchmark of netsuite-dhcp against ISC Kea and dnsmasq, and of the LDAP
lookup hook in the DHCP process and as a separate process over the bus.

    bench/dhcp.sh [--quick] [--only NAMES]      (or .venv/bin/python bench/dhcp.py)

Needs root, perfdhcp (Debian package kea-admin), kea-dhcp4
(kea-dhcp4-server), dnsmasq and slapd. Builds a namespace lab of its own
(C{nsbdh<pid>-ap|up|c1}, netsuite.lab.Lab) and removes it at the end,
whatever happens; every packet stays inside the lab. A full run takes about
5 minutes, C{--quick} (1 s trials, no bisection, fewer variants) 1.5-2.

The servers run one after another, each alone, in the AP namespace, on the
AP's LAN address 10.89.0.1. perfdhcp runs in client namespace c1
(single-threaded, C{-g single}: it shares the 2 cores) and poses as a relay:
C{-l 10.200.0.1} (an address on c1's eth0) fills giaddr, so the servers
answer from a relayed subnet 10.200.0.0/14 (pool 10.200.1.0 -
10.203.254.255, 261,632 addresses) and send their replies to 10.200.0.1:67
(the AP routes 10.200.0.0/14 via c1). netsuite and Kea start with the same
50,000 bound leases already in their store (written into the lease file
before start: SQLite for netsuite, the memfile CSV for Kea), on MACs that
perfdhcp never uses.

Configurations:

  netsuite        twistd netsuite-dhcp, lease file in a temp dir.
  kea             kea-dhcp4 2.x, memfile (persist, no LFC), UDP socket,
                  stock threading (2.2: single-threaded), generated config.
  dnsmasq         dnsmasq --no-ping, lease file in a temp dir (it rewrites
                  and fsyncs the whole file on every change, and keeps its
                  leases in lists): restarted on an empty store before each
                  trial, since its cost grows with every lease it holds.
  dnsmasq-ro      the same with --leasefile-ro (no lease file at all:
                  nothing survives a restart).
  netsuite-chaddr (only with --only) netsuite with dhcp.check_chaddr on.
  netsuite-nowatch (only with --only) netsuite with dhcp.watch_servers off.
  dnsmasq-50k     (only with --only) dnsmasq with the 50,000 leases: it
                  spins ~55 s loading them and then serves ~2 exchanges/s.
  ldap-inproc     netsuite with [dhcp.ldap] enabled in the process, cache
                  off (cache_ttl = negative_ttl = 0), slapd in the upstream
                  namespace; perfdhcp's MACs are not in the directory except
                  HITS of them, so almost every lookup is a miss that falls
                  through to the pool.
  amp-nocache     netsuite plus the hook process
                  (python -m netsuite.dhcp.ldaphook) over the bus, cache off.
  amp-warm        the hook process with its cache on, measured on returning
                  clients after a first pass (see below); the server
                  remembers the hook's cached answers ([dhcp.ldap] remember,
                  the default), so a returning client is not asked about.
  amp-ask         the same with remember = false: the server asks the hook
                  over the bus on every DISCOVER, which answers from its
                  warm cache (the bus round trip's cost).

For each: the highest offered rate (4-way exchanges/s) at which fewer than
1 % of the exchanges fail (DISCOVERs sent that did not end with an ACK
within perfdhcp's 1 s drop time), found by a bounded search: doubling short
trials, then bisection with longer ones; the figure is a long trial's
completed exchanges per second. Every new-client trial is perfdhcp
-r RATE -p SECONDS -R 50000 with a MAC block of its own (perfdhcp walks -R's
clients in order from its base MAC), so every DISCOVER is from a new client.
perfdhcp's per-exchange timestamps (-x t) give the median and 99th
percentile of the DISCOVER->OFFER and REQUEST->ACK delays, at that rate and
at a light 100/s; then the server's VmRSS (/proc/PID/status) after the run,
its CPU time per exchange, and what it still completed at the first rate
that failed (overload behaviour).

"Returning clients" (netsuite, amp-warm and amp-ask): 400 other MACs each get a
lease first, in order at 100/s (slow enough that every LDAP search is made
and cached), then the same search with -R 400: every DISCOVER is from a
known client (and, with the hook's cache on, a cached directory miss).

The last line is a machine-readable SUMMARY.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from netsuite.dhcp.leases import Lease, LeaseStore
from netsuite.lab import Lab
from netsuite.lab.child import PYTHON, TWISTD, ChildError
from netsuite.lab.peer import Peer
from netsuite.lab.peers import SlapdPeer, missing
from netsuite.registry.values import MAC

SERVER = "10.89.0.1"                 # the AP's LAN address: every server listens there
GIADDR = "10.200.0.1"                # perfdhcp's relay address, on c1's eth0
RELAY_NET = ipaddress.IPv4Network("10.200.0.0/14")
POOL_FIRST = ipaddress.IPv4Address("10.200.1.0")
POOL_LAST = ipaddress.IPv4Address("10.203.254.255")
# Option 54 of the relayed subnet: the address the relay forwards to, as Kea does.
NETSUITE_RELAY_SERVER_ID = SERVER
LEASE_TIME = 3600
PREFILL = 50_000
CLIENTS = 50_000                     # perfdhcp -R: new clients
# perfdhcp takes -R's clients in order from the base MAC, so each new-client
# trial gets a base of its own: NEW_MAC_BASE + trial * TRIAL_MACS.
NEW_MAC_BASE = "00:0c:01:00:00:00"
TRIAL_MACS = 0x10000
RETURNING_MAC_BASE = "00:0c:0a:00:00:00"
PING_MAC_BASE = "00:0c:0f:00:00:00"
PREFILL_MAC = b"\x02\x00\x00"        # + 3 bytes of the index
HITS = 250                           # directory entries for perfdhcp MACs (hits):
HIT_TRIALS = 10                      # the first 25 clients x 20 of the first 10 trials
HIT_FIRST = ipaddress.IPv4Address("10.200.0.3")   # outside the dynamic range
MAX_DROP = 1.0                       # percent
MAX_QUEUED_MS = 50.0                 # DO p50 + RA p50: a server that keeps up
LIGHT_RATE = 100
WARM_PASS_RATE = 100                 # the amp-warm first pass (LDAP keeps up at ~128/s)

FULL = {"ramp_period": 2, "period": 3, "bisect": 3, "light_period": 2, "exit_wait_us": 1000000,
        "returning": 400, "start_rate": 250, "variants": None}
# Quick: 1 s trials, one bisection step for the targets, the start-up exchanges as
# the light load: a smoke test, not for figures.
QUICK = {"ramp_period": 1, "period": 1, "bisect": 1, "light_period": 0, "exit_wait_us": 500000,
         "returning": 300, "start_rate": 500,
         "variants": ["netsuite", "kea", "dnsmasq", "amp-nocache", "amp-warm"]}
VARIANTS = ["netsuite", "kea", "dnsmasq", "dnsmasq-ro", "ldap-inproc", "amp-nocache",
            "amp-warm", "amp-ask"]
# Not in a default run: dnsmasq loading 50,000 leases spins ~55 s at start-up
# and then serves ~2 exchanges/s (see docs/performance-dhcp.md).
# netsuite-chaddr / netsuite-nowatch: netsuite with dhcp.check_chaddr on (the
# requests read from the frames; perfdhcp's are relayed, so none is refused)
# or dhcp.watch_servers off: the frames' cost.
EXTRA_VARIANTS = ["dnsmasq-50k", "netsuite-chaddr", "netsuite-nowatch"]


def log(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- prefill

def prefill_addresses() -> List[Tuple[bytes, ipaddress.IPv4Address]]:
    """
    PREFILL (MAC, address) pairs: MACs 02:00:00:xx:xx:xx, addresses a
    seeded random sample of the pool (leases are scattered, as in life).
    """
    size = int(POOL_LAST) - int(POOL_FIRST) + 1
    rng = random.Random(2026)
    offsets = sorted(rng.sample(range(size), PREFILL))
    return [(PREFILL_MAC + i.to_bytes(3, "big"), ipaddress.IPv4Address(int(POOL_FIRST) + o))
            for i, o in enumerate(offsets)]


def hex_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def mac_plus(base: str, n: int) -> str:
    """perfdhcp's client n: the base MAC plus n."""
    value = int(base.replace(":", ""), 16) + n
    return hex_mac(value.to_bytes(6, "big"))


# ---------------------------------------------------------------- servers

def read_status(pid: Optional[int], key: str = "VmRSS") -> Optional[float]:
    """A /proc/PID/status size in MiB."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_seconds(pid: Optional[int]) -> float:
    """User + system CPU seconds of a process and its reaped children, 0 if gone."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


class Server(Peer):
    """A DHCP server under test (a Peer: started in a namespace, output read)."""

    label = "server"
    family = ""

    def lease_count(self) -> Optional[int]:
        return None


NETSUITE_CONFIG = """\
[process]
name = "dhcp"

[log]
level = "info"

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{lease_file}"
relays = ["{giaddr}"]
{dhcp_keys}
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
first = "{first}"
last = "{last}"
server = "{server_id}"
router = "{giaddr}"
dns = ["10.89.0.1"]
lease_time = {lease_time}
interface = ""

[dhcp.ldap]
{ldap}
"""


def ldap_table(url: str, base: str, enabled: bool, cache: bool, remember: bool = True) -> str:
    ttl = "3600.0" if cache else "0.0"
    return (f'enabled = {"true" if enabled else "false"}\nurl = "{url}"\nbase = "{base}"\n'
            f"cache_ttl = {ttl}\nnegative_ttl = {ttl}\ndeadline = 1.0\nthreads = 4\n"
            f"remember = {'true' if remember else 'false'}\n")


class NetsuiteServer(Server):
    label = "netsuite-dhcp"
    family = "netsuite"
    ready = r"dhcp ready"

    def __init__(self, netns: str, ldap: str = "", extra_argv: Sequence[str] = (),
                 dhcp_keys: str = "") -> None:
        super().__init__(netns)
        self.ldap = ldap or ldap_table("ldap://127.0.0.1:389", "", False, False)
        self.extra_argv = list(extra_argv)
        self.dhcp_keys = dhcp_keys

    @property
    def lease_file(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, "leases.sqlite")

    @property
    def socket_dir(self) -> str:
        assert self.directory is not None
        return self.directory

    def prepare(self, directory: str) -> List[str]:
        config = self.write("netsuite.toml", NETSUITE_CONFIG.format(
            lease_file=self.lease_file, lease_time=LEASE_TIME, relay_net=RELAY_NET,
            first=POOL_FIRST, last=POOL_LAST, server_id=NETSUITE_RELAY_SERVER_ID,
            giaddr=GIADDR, ldap=self.ldap, dhcp_keys=self.dhcp_keys))
        store = LeaseStore(self.lease_file)
        expires = time.time() + LEASE_TIME
        store.put_many([Lease(ip=ip, client_key=b"\x01" + mac, mac=MAC(mac), state="bound",
                              expires=expires, subnet="relay")
                        for mac, ip in prefill_addresses()])
        store.close()
        return [TWISTD, "-n", "--pidfile=", *self.extra_argv, "netsuite-dhcp",
                "--name", "dhcp", "--socket-dir", self.socket_dir, "--config", config]

    def lease_count(self) -> Optional[int]:
        try:
            conn = sqlite3.connect(f"file:{self.lease_file}?mode=ro", uri=True)
            try:
                return int(conn.execute(
                    "SELECT count(*) FROM leases WHERE state = 'bound'").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return None

    def hook_leases(self) -> Optional[int]:
        """Bound leases outside the dynamic range (given by the directory)."""
        try:
            conn = sqlite3.connect(f"file:{self.lease_file}?mode=ro", uri=True)
            try:
                return int(conn.execute(
                    "SELECT count(*) FROM leases WHERE state = 'bound' AND ip >= ? AND ip < ?",
                    (int(HIT_FIRST), int(POOL_FIRST))).fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            return None


KEA_CONFIG = """\
{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": ["br-lan/{server}"], "dhcp-socket-type": "udp"}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{leases}",
                      "lfc-interval": 0}},
  "valid-lifetime": {lease_time},
  "subnet4": [
    {{"id": 1, "subnet": "10.89.0.0/24", "interface": "br-lan",
      "pools": [{{"pool": "10.89.0.100 - 10.89.0.199"}}],
      "option-data": [{{"name": "routers", "data": "10.89.0.1"}},
                      {{"name": "domain-name-servers", "data": "10.89.0.1"}}]}},
    {{"id": 2, "subnet": "{relay_net}",
      "pools": [{{"pool": "{first} - {last}"}}],
      "option-data": [{{"name": "routers", "data": "{giaddr}"}},
                      {{"name": "domain-name-servers", "data": "10.89.0.1"}}]}}
  ],
  "loggers": [{{"name": "kea-dhcp4", "output_options": [{{"output": "stdout"}}],
                "severity": "WARN"}}]
}}}}
"""


class KeaServer(Server):
    label = "kea-dhcp4"
    family = "kea"
    ready = r"DHCP4_STARTING|DHCP4_MULTI_THREADING_INFO"

    @property
    def leases(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, "leases4.csv")

    def env(self) -> Dict[str, str]:
        assert self.directory is not None
        return {"KEA_PIDFILE_DIR": self.directory, "KEA_LOCKFILE_DIR": self.directory}

    def prepare(self, directory: str) -> List[str]:
        expires = int(time.time()) + LEASE_TIME
        with open(self.leases, "w") as f:
            f.write("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,"
                    "fqdn_rev,hostname,state,user_context\n")
            for mac, ip in prefill_addresses():
                m = hex_mac(mac)
                f.write(f"{ip},{m},01:{m},{LEASE_TIME},{expires},2,0,0,,0,\n")
        config = self.write("kea-dhcp4.json", KEA_CONFIG.format(
            server=SERVER, leases=self.leases, lease_time=LEASE_TIME, relay_net=RELAY_NET,
            first=POOL_FIRST, last=POOL_LAST, giaddr=GIADDR))
        return ["kea-dhcp4", "-c", config]

    def lease_count(self) -> Optional[int]:
        latest: Dict[str, int] = {}
        try:
            with open(self.leases) as f:
                next(f)
                for line in f:
                    fields = line.split(",")
                    if len(fields) > 4:
                        latest[fields[0]] = int(fields[3])
        except (OSError, ValueError, StopIteration):
            return None
        return sum(1 for lifetime in latest.values() if lifetime > 0)


class DnsmasqServer(Server):
    label = "dnsmasq"
    family = "dnsmasq"

    ready = r"sockets bound exclusively"

    def __init__(self, netns: str, read_only: bool = False, prefill: bool = False) -> None:
        super().__init__(netns)
        self.read_only = read_only
        self.prefill = prefill and not read_only
        # Its cost grows with the leases it holds (lists, and the whole file
        # rewritten per change): without a prefill, every trial starts on a
        # new, empty store.
        self.fresh_per_trial = not self.prefill

    @property
    def leases(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, "dnsmasq.leases")

    def prepare(self, directory: str) -> List[str]:
        expires = int(time.time()) + LEASE_TIME
        if self.prefill:
            with open(self.leases, "w") as f:
                for mac, ip in prefill_addresses():
                    m = hex_mac(mac)
                    f.write(f"{expires} {m} {ip} * 01:{m}\n")
        net = RELAY_NET
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                "--no-ping", "--quiet-dhcp", "--log-facility=-", "--interface=br-lan",
                "--bind-interfaces", "--dhcp-authoritative",
                f"--dhcp-range=10.89.0.100,10.89.0.199,255.255.255.0,{LEASE_TIME}",
                f"--dhcp-range={POOL_FIRST},{POOL_LAST},{net.netmask},{LEASE_TIME}",
                "--dhcp-lease-max=200000", f"--dhcp-leasefile={self.leases}",
                f"--pid-file={os.path.join(directory, 'dnsmasq.pid')}"]
        if self.read_only:
            argv.append("--leasefile-ro")
        return argv

    def lease_count(self) -> Optional[int]:
        if self.read_only:
            return None
        try:
            with open(self.leases) as f:
                return sum(1 for _ in f)
        except OSError:
            return None


class LdapHookProcess(Peer):
    """python -m netsuite.dhcp.ldaphook, in the AP namespace."""

    label = "ldaphook"
    ready = r"^hooked$"

    def __init__(self, netns: str, table: str, socket_dir: str) -> None:
        super().__init__(netns)
        self.table = table
        self.socket_dir = socket_dir

    def prepare(self, directory: str) -> List[str]:
        config = self.write("hook.toml", "[dhcp.ldap]\n" + self.table)
        return [PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config", config,
                "--process", "dhcp", "--socket-dir", self.socket_dir, "--log-level", "warn"]


# ---------------------------------------------------------------- perfdhcp

class Trial:
    """One perfdhcp run, parsed."""

    def __init__(self, rate: float, period: float, clients: int, output: str,
                 code: int, seconds: float, cpu: float) -> None:
        self.rate = rate
        self.period = period
        self.clients = clients
        self.output = output
        self.code = code
        self.cpu = cpu  # server CPU seconds during the trial
        self.seconds = seconds
        self.stats = _sections(output)
        self.do_sent = self.stats.get("DISCOVER-OFFER", {}).get("sent packets", 0)
        self.do_received = self.stats.get("DISCOVER-OFFER", {}).get("received packets", 0)
        self.ra_sent = self.stats.get("REQUEST-ACK", {}).get("sent packets", 0)
        self.ra_received = self.stats.get("REQUEST-ACK", {}).get("received packets", 0)
        self.delays = _timestamps(output)
        self.searches: Optional[int] = None  # LDAP searches slapd logged meanwhile

    @property
    def completed(self) -> int:
        return int(self.ra_received)

    @property
    def drop_percent(self) -> float:
        """Exchanges begun (DISCOVERs sent) that did not end with an ACK."""
        if not self.do_sent:
            return 100.0
        return 100.0 * (1.0 - self.ra_received / self.do_sent)

    @property
    def achieved(self) -> float:
        """Completed 4-way exchanges per second of the test period."""
        return self.ra_received / self.period

    @property
    def offered(self) -> float:
        return self.do_sent / self.period

    @property
    def passed(self) -> bool:
        """
        Fewer than 1 % of the exchanges failed, and the median exchange
        did not wait in a queue: a server slower than the rate offered
        builds a backlog that a deep socket buffer hides for the length of
        a trial (every answer late, but within perfdhcp's 1 s).
        """
        return (self.do_sent > 0 and self.drop_percent < MAX_DROP
                and self.delay("DISCOVER-OFFER", 0.5) + self.delay("REQUEST-ACK", 0.5)
                < MAX_QUEUED_MS)

    @property
    def unqueued(self) -> bool:
        """Failed, yet the median exchange waited in no queue (a transient stall)."""
        return (self.delay("DISCOVER-OFFER", 0.5) < 2.0 and self.delay("REQUEST-ACK", 0.5) < 2.0)

    @property
    def client_limited(self) -> bool:
        """perfdhcp itself did not send at the rate asked."""
        return self.do_sent < 0.95 * self.rate * self.period - 1.5

    @property
    def coverage(self) -> Optional[float]:
        """Percent of the DISCOVERs whose lookup reached the directory."""
        if self.searches is None or not self.do_sent:
            return None
        return 100.0 * min(1.0, self.searches / self.do_sent)

    def delay(self, kind: str, q: float) -> float:
        values = self.delays.get(kind, [])
        if not values:
            return float("nan")
        if q == 0.5:
            return statistics.median(values)
        values = sorted(values)
        return values[min(len(values) - 1, int(math.ceil(q * len(values))) - 1)]

    def avg(self, kind: str) -> float:
        return self.stats.get(kind, {}).get("avg delay", float("nan"))

    @property
    def cpu_us_per_exchange(self) -> float:
        return 1e6 * self.cpu / self.completed if self.completed else float("nan")

    def brief(self) -> str:
        return (f"rate {self.rate:7.0f}/s: {self.achieved:7.1f}/s done, drops "
                f"{self.drop_percent:5.2f} %, DO p50 {self.delay('DISCOVER-OFFER', 0.5):7.2f} ms,"
                f" RA p50 {self.delay('REQUEST-ACK', 0.5):7.2f} ms"
                + (" [perfdhcp could not send at this rate]" if self.client_limited else "")
                + (f", LDAP searched {self.coverage:.0f} %" if self.coverage is not None else "")
                + (" PASS" if self.passed else " fail"))


_STAT_RE = re.compile(r"^(sent packets|received packets|drops|orphans|min delay|avg delay|"
                      r"max delay): ([0-9.]+)")


def _sections(output: str) -> Dict[str, Dict[str, float]]:
    stats: Dict[str, Dict[str, float]] = {}
    current = None
    for line in output.splitlines():
        m = re.match(r"\*\*\*Statistics for: (\S+)\*\*\*", line)
        if m:
            current = stats.setdefault(m.group(1), {})
            continue
        if line.startswith("***"):
            current = None
            continue
        if current is not None:
            m = _STAT_RE.match(line)
            if m:
                current[m.group(1)] = float(m.group(2))
    return stats


def _timestamps(output: str) -> Dict[str, List[float]]:
    """-x t: 'sent / received: S / R' per successful exchange, in ms."""
    delays: Dict[str, List[float]] = {}
    current: Optional[List[float]] = None
    for line in output.splitlines():
        m = re.match(r"\*\*\*Timestamps for packets: (\S+)\*\*\*", line)
        if m:
            current = delays.setdefault(m.group(1), [])
            continue
        if current is not None:
            m = re.match(r"sent / received: ([0-9.]+) / ([0-9.]+)", line)
            if m:
                current.append(1000.0 * (float(m.group(2)) - float(m.group(1))))
            elif line.strip():
                current = None
    return delays


class Bench:
    def __init__(self, lab: Lab, settings: Dict[str, Any]) -> None:
        self.lab = lab
        self.s = settings
        self.ping_index = 0
        self.new_trials = 0
        self.discovers = 0  # DISCOVERs perfdhcp sent, in all
        self.slapd: Optional[SlapdPeer] = None

    def perfdhcp(self, args: Sequence[str], timeout: float) -> Tuple[int, str]:
        argv = ["perfdhcp", "-4", "-g", "single", "-l", GIADDR, *args, SERVER]
        try:
            result = self.lab.exec("c1", argv, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return -1, out
        return result.returncode, result.stdout + result.stderr

    def ping(self, server: Server, timeout: float = 120.0) -> Trial:
        """
        A few slow 4-way exchanges (4/s for 1 s), repeated until one works
        (the server is serving). Its C{capacity}, 1000 / (DO p50 + RA p50)
        in ms, is what one exchange at a time would allow: slow servers'
        searches start near it.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.ping_index += 1
            began = time.monotonic()
            code, out = self.perfdhcp(
                ["-r", "4", "-p", "1", "-R", "1000", "-d", "2", "-W", "1000000", "-x", "t",
                 "-b", "mac=" + mac_plus(PING_MAC_BASE, 1000 * self.ping_index)], 20)
            t = Trial(4, 1, 1000, out, code, time.monotonic() - began, 0.0)
            self.discovers += int(t.do_sent)
            if t.delays.get("REQUEST-ACK"):
                self.settle(server)
                t.capacity = 1000.0 / (t.delay("DISCOVER-OFFER", 0.5)  # type: ignore[attr-defined]
                                       + t.delay("REQUEST-ACK", 0.5))
                return t
            if not server.running:
                raise ChildError(f"{server.label} exited:\n{server.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise ChildError(f"{server.label} does not answer perfdhcp:\n{out[-2000:]}")
            time.sleep(0.2)

    def trial(self, server: Server, rate: float, period: float, clients: int = CLIENTS,
              base: Optional[str] = None) -> Trial:
        """
        perfdhcp at C{rate} for C{period} s; C{base} None: new clients (a
        fresh block of MACs for this trial).
        """
        if base is None:
            base = mac_plus(NEW_MAC_BASE, self.new_trials * TRIAL_MACS)
            self.new_trials += 1
        if getattr(server, "fresh_per_trial", False):
            server.stop(timeout=10)
            server.start(timeout=30)
        before = cpu_seconds(server.pid)
        searches = count_searches(self.slapd)
        began = time.monotonic()
        code, out = self.perfdhcp(
            ["-r", str(int(rate)), "-p", str(int(period)), "-R", str(clients),
             "-b", "mac=" + base, "-d", "1", "-W", str(self.s["exit_wait_us"]), "-x", "t"],
            timeout=period + 30)
        seconds = time.monotonic() - began
        trial = Trial(rate, period, clients, out, code, seconds,
                      cpu_seconds(server.pid) - before)
        self.discovers += int(trial.do_sent)
        if code not in (0, 3):
            raise RuntimeError(f"perfdhcp failed ({code}):\n{out[-2000:]}")
        self.settle(server)
        if getattr(server, "uses_ldap", False):
            trial.searches = count_searches(self.slapd) - searches
        return trial

    def settle(self, server: Server, limit: float = 30.0) -> None:
        """Wait until the server is idle again (its backlog drained)."""
        pids = [server.pid] + [p.pid for p in getattr(server, "companions", [])]
        deadline = time.monotonic() + limit
        last = sum(cpu_seconds(p) for p in pids)
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            time.sleep(0.2)
            now = sum(cpu_seconds(p) for p in pids)
            quiet = quiet + 1 if now - last < 0.02 else 0
            last = now

    def search(self, server: Server, label: str, clients: int = CLIENTS,
               base: Optional[str] = None, capacity: float = math.inf,
               bisect: Optional[int] = None) -> Dict[str, Any]:
        """
        The highest rate with < 1 % failed exchanges: doubling short trials,
        then bisection with longer ones; the answer is a long trial's.
        """
        s = self.s
        trials: List[Trial] = []

        def run(rate: float, period: float, retry: bool = True) -> Trial:
            t = self.trial(server, rate, period, clients, base)
            trials.append(t)
            log(f"  {label:13s} {'ramp' if period == s['ramp_period'] else 'test'} "
                + t.brief())
            if retry and not t.passed and t.unqueued:
                log(f"  {label:13s} (drops without queueing: a stall elsewhere? once more)")
                return run(rate, period, retry=False)
            return t

        rate = float(s["start_rate"])
        if capacity < rate / 4:  # a slow server: start near what it can do
            rate = float(max(2, 2 ** math.floor(math.log2(max(capacity, 1)))))
        low: Optional[float] = None
        high: Optional[float] = None
        t = run(rate, s["ramp_period"])
        if t.passed:
            while True:
                low = rate
                rate *= 2
                if rate > 64000:
                    break
                t = run(rate, s["ramp_period"])
                if not t.passed or t.client_limited:
                    high = rate
                    break
        else:
            high = rate
            while rate > 1:
                rate = rate / 2
                t = run(rate, s["ramp_period"])
                if t.passed:
                    low = rate
                    break
                high = rate
        overload = trials[-1] if trials and not trials[-1].passed else None
        # The ramp's passes are short: confirm the bracket's low end with a
        # long trial (halving until one passes), then bisect above it.
        best: Optional[Trial] = None
        if low is not None and s["period"] == s["ramp_period"]:
            best = next(t for t in trials if t.rate == low and t.passed)
        while low is not None and best is None:
            t = run(low, s["period"])
            if t.passed and not t.client_limited:
                best = t
            else:
                high, low = low, (low / 2 if low >= 4 else None)
        if best is not None and high is not None:
            for _ in range(max(0, bisect if bisect is not None else s["bisect"])):
                mid = round((best.rate + high) / 2)
                if mid in (best.rate, high):
                    break
                t = run(mid, s["period"])
                if t.passed and not t.client_limited:
                    best = t
                else:
                    high = mid
        return {"best": best, "high": high, "trials": trials, "overload": overload}

    def light(self, server: Server, clients: int = CLIENTS,
              base: Optional[str] = None, capacity: float = math.inf) -> Trial:
        rate = LIGHT_RATE if capacity >= LIGHT_RATE else max(1, int(capacity / 4))
        t = self.trial(server, rate, self.s["light_period"], clients, base)
        log("  light load    " + t.brief())
        return t

    def first_pass(self, server: Server, clients: int, base: str, rate: int) -> Trial:
        """
        Every returning client once, in order, at C{rate}/s (slow enough for
        the hook's LDAP searches to keep up, when it must fill its cache).
        """
        searches = count_searches(self.slapd)
        began = time.monotonic()
        code, out = self.perfdhcp(["-r", str(rate), "-n", str(clients), "-R", str(clients),
                                   "-b", "mac=" + base, "-d", "2", "-W", "2000000"],
                                  timeout=clients / rate + 60)
        t = Trial(rate, clients / rate, clients, out, code, time.monotonic() - began, 0.0)
        self.discovers += int(t.do_sent)
        self.settle(server)
        if getattr(server, "uses_ldap", False):
            t.searches = count_searches(self.slapd) - searches
        log(f"  first pass: {clients} returning clients once at {rate}/s, "
            f"{t.completed} leases in {t.seconds:.1f} s"
            + (f", {t.searches} LDAP searches" if t.searches is not None else ""))
        return t


# ---------------------------------------------------------------- running

def setup_relay(lab: Lab) -> None:
    """GIADDR on c1's eth0; the AP routes the relayed network via c1."""
    with lab.ipr("c1") as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=index, address=GIADDR, prefixlen=32)
    with lab.ipr("ap") as ipr:
        ipr.route("add", dst=str(RELAY_NET), gateway=lab.client_address(1))


def hit_hosts() -> List[Tuple[str, str, str]]:
    """
    HITS directory entries with fixed addresses (outside the dynamic range):
    clients 0, 20, 40... of each of the first HIT_TRIALS new-client trials.
    """
    per = HITS // HIT_TRIALS
    return [(f"bench{t}-{j}", mac_plus(NEW_MAC_BASE, t * TRIAL_MACS + 20 * j),
             str(HIT_FIRST + t * per + j)) for t in range(HIT_TRIALS) for j in range(per)]


def run_variant(bench: Bench, lab: Lab, name: str, slapd: Optional[SlapdPeer]
                ) -> Dict[str, Any]:
    ap = lab.netns("ap")
    result: Dict[str, Any] = {"name": name}
    hook: Optional[LdapHookProcess] = None
    server: Server
    if name == "kea":
        server = KeaServer(ap)
    elif name in ("dnsmasq", "dnsmasq-ro", "dnsmasq-50k"):
        server = DnsmasqServer(ap, read_only=name == "dnsmasq-ro", prefill=name == "dnsmasq-50k")
    else:
        ldap = ""
        if name == "ldap-inproc":
            assert slapd is not None
            ldap = ldap_table(slapd.url.rstrip("/"), slapd.hosts_dn, True, False)
        keys = {"netsuite-chaddr": "check_chaddr = true",
                "netsuite-nowatch": "watch_servers = false"}.get(name, "")
        server = NetsuiteServer(ap, ldap, dhcp_keys=keys)
        server.uses_ldap = name in ("ldap-inproc", "amp-nocache", "amp-warm",  # type: ignore
                                    "amp-ask")
    # Every server starts on a store of its own: each variant walks the same
    # MAC blocks, so the directory's entries (MACs of the first trials) are
    # hits for the LDAP variants too, not only for whoever ran first.
    bench.new_trials = 0
    began = time.monotonic()
    searches_before = count_searches(slapd)
    discovers_before = bench.discovers
    try:
        server.start(timeout=60)
        server.companions = []  # type: ignore[attr-defined]
        if name.startswith("amp-"):
            assert slapd is not None and isinstance(server, NetsuiteServer)
            hook = LdapHookProcess(ap, ldap_table(slapd.url.rstrip("/"), slapd.hosts_dn, False,
                                                  name in ("amp-warm", "amp-ask"),
                                                  remember=name != "amp-ask"),
                                   server.socket_dir)
            hook.start(timeout=30)
            server.companions = [hook]  # type: ignore[attr-defined]
        # The targets' variants get the full bisection, the others one step less.
        bisect = bench.s["bisect"] - (0 if name in ("netsuite", "kea", "amp-warm", "amp-ask")
                                      else 1)
        # Memory with the store as it starts (50,000 bound leases for netsuite
        # and Kea), before any trial adds more.
        result["start_leases"] = server.lease_count()
        result["start_rss_mb"] = read_status(server.pid)
        pinged = bench.ping(server)
        cap = pinged.capacity  # type: ignore[attr-defined]
        result["started_s"] = time.monotonic() - began
        log(f"{name}: serving after {result['started_s']:.1f} s (pid {server.pid}, "
            f"{result['start_leases'] or 0} bound leases in the store, RSS "
            f"{fmt(result['start_rss_mb'], 1)} MiB, one at a time {cap:.0f}/s)")
        if name in ("amp-warm", "amp-ask"):
            result["first_pass"] = bench.first_pass(server, bench.s["returning"],
                                                    RETURNING_MAC_BASE, WARM_PASS_RATE)
            if bench.s["light_period"]:
                result["light"] = bench.light(server, bench.s["returning"], RETURNING_MAC_BASE)
            result["search"] = bench.search(server, name, bench.s["returning"],
                                            RETURNING_MAC_BASE, bisect=bisect)
        else:
            result["light"] = (bench.light(server, capacity=cap) if bench.s["light_period"]
                               else pinged)
            result["search"] = bench.search(server, name, capacity=cap, bisect=bisect)
            if name == "netsuite":
                result["first_pass"] = bench.first_pass(server, bench.s["returning"],
                                                        RETURNING_MAC_BASE, WARM_PASS_RATE)
                result["returning"] = bench.search(server, "netsuite-ret",
                                                   bench.s["returning"], RETURNING_MAC_BASE,
                                                   bisect=bisect)
        if getattr(server, "uses_ldap", False):
            searched = [t.achieved for t in result["search"]["trials"] + [result.get("light")]
                        if t is not None and t.passed and (t.coverage or 0) >= 99.0]
            result["all_searched_rate"] = max(searched) if searched else 0.0
            best = result["search"]["best"]
            result["coverage"] = best.coverage if best is not None else None
        result["rss_mb"] = read_status(server.pid)
        result["hwm_mb"] = read_status(server.pid, "VmHWM")
        result["hook_rss_mb"] = read_status(hook.pid) if hook is not None else None
        result["leases"] = server.lease_count()
        if isinstance(server, NetsuiteServer) and slapd is not None and name != "netsuite":
            result["hook_leases"] = server.hook_leases()
        result["searches"] = count_searches(slapd) - searches_before
        result["warnings"] = warnings(server.lines() + (hook.lines() if hook else []))
        result["discovers"] = bench.discovers - discovers_before
        result["elapsed_s"] = time.monotonic() - began
    finally:
        if hook is not None:
            hook.stop()
        server.stop(timeout=10)
    return result


def warnings(lines: List[str]) -> Dict[str, int]:
    """Warning and error lines, counted by message (numbers and addresses blanked)."""
    kinds: Dict[str, int] = {}
    for line in lines:
        m = re.search(r"#(warn|error|critical)\] (.*)", line)
        if m:
            text = re.sub(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}|[0-9]+(\.[0-9]+)*", "N", m.group(2))
            kinds[text[:100]] = kinds.get(text[:100], 0) + 1
    return kinds


def count_searches(slapd: Optional[SlapdPeer]) -> int:
    if slapd is None:
        return 0
    return sum(1 for line in slapd.lines() if " SRCH base=" in line)


def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def best_of(result: Optional[Dict[str, Any]], key: str = "search") -> Optional["Trial"]:
    if not result or key not in result:
        return None
    return result[key]["best"]


def rate_of(result: Optional[Dict[str, Any]], key: str = "search") -> Optional[float]:
    t = best_of(result, key)
    return t.achieved if t is not None else (0.0 if result and key in result else None)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


LABELS = {
    "netsuite": "netsuite-dhcp",
    "netsuite-ret": "netsuite-dhcp, returning clients",
    "kea": "Kea dhcp4 (memfile)",
    "dnsmasq": "dnsmasq --no-ping (store empty at start)",
    "dnsmasq-ro": "dnsmasq --no-ping --leasefile-ro (empty at start)",
    "dnsmasq-50k": "dnsmasq --no-ping, 50,000 leases",
    "ldap-inproc": "netsuite + LDAP in-process, cache off",
    "amp-nocache": "netsuite + AMP hook process, cache off",
    "amp-warm": "netsuite + AMP hook process, warm cache, returning clients",
    "amp-ask": "the same, remember = false: the hook is asked every time",
    "netsuite-chaddr": "netsuite-dhcp, check_chaddr = true (requests from the frames)",
    "netsuite-nowatch": "netsuite-dhcp, watch_servers = false",
}


def table(results: Dict[str, Dict[str, Any]]) -> List[str]:
    head = ("| server | exchanges/s (<1 % drops) | first fail | overload: offered -> done/s "
            "| drops % | DO p50 / p99 ms "
            "| RA p50 / p99 ms | perfdhcp avg DO / RA ms | light load DO+RA p50 ms "
            "| RSS MiB | CPU µs/exchange | bound leases after |")
    rows = [head, "|" + " --- |" * 12]

    def overload(search: Dict[str, Any]) -> str:
        """The ramp's first failing trial: offered -> completed per second."""
        t = search.get("overload")
        if t is None:
            return "-"
        return f"{fmt(t.rate)} -> {fmt(t.achieved)}"
    order = []
    for name in VARIANTS + EXTRA_VARIANTS:
        if name in results:
            order.append((name, "search"))
            if name == "netsuite" and "returning" in results[name]:
                order.append(("netsuite-ret", "returning"))
    for name, key in order:
        r = results["netsuite" if name == "netsuite-ret" else name]
        t = best_of(r, key)
        search = r[key]
        light = r.get("light") if key == "search" else None
        light_p50 = (light.delay("DISCOVER-OFFER", 0.5) + light.delay("REQUEST-ACK", 0.5)
                     if light is not None else None)
        rss = r.get("rss_mb")
        rss_text = fmt(rss, 1)
        if r.get("hook_rss_mb"):
            rss_text += f" (+{r['hook_rss_mb']:.1f} hook)"
        if t is None:
            rows.append(f"| {LABELS[name]} | < {fmt(search['high'])} | {fmt(search['high'])} "
                        f"| {overload(search)} "
                        f"| - | - | - | - | {fmt(light_p50, 2)} | {rss_text} | - | "
                        f"{fmt(r.get('leases'))} |")
            continue
        rows.append(
            f"| {LABELS[name]} | {fmt(t.achieved)} (offered {fmt(t.rate)}) | "
            f"{fmt(search['high'])} | {overload(search)} | {t.drop_percent:.2f} | "
            f"{fmt(t.delay('DISCOVER-OFFER', 0.5), 2)} / {fmt(t.delay('DISCOVER-OFFER', 0.99), 1)} | "
            f"{fmt(t.delay('REQUEST-ACK', 0.5), 2)} / {fmt(t.delay('REQUEST-ACK', 0.99), 1)} | "
            f"{fmt(t.avg('DISCOVER-OFFER'), 2)} / {fmt(t.avg('REQUEST-ACK'), 2)} | "
            f"{fmt(light_p50, 2)} | {rss_text} | {fmt(t.cpu_us_per_exchange)} | "
            f"{fmt(r.get('leases'))} |")
    return rows


def versions() -> Dict[str, str]:
    def first_line(argv: List[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"
    return {"perfdhcp": first_line(["perfdhcp", "-v"]),
            "kea-dhcp4": first_line(["kea-dhcp4", "-v"]),
            "dnsmasq": first_line(["dnsmasq", "--version"]).replace("Copyright", "").split("  ")[0],
            "python": sys.version.split()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter trials (~90 s)")
    parser.add_argument("--only", default="", help="comma-separated variants: "
                        + ",".join(VARIANTS + EXTRA_VARIANTS))
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    chosen = [v for v in (args.only.split(",") if args.only else
                          settings["variants"] or VARIANTS) if v]
    unknown = set(chosen) - set(VARIANTS + EXTRA_VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}")
    if os.geteuid() != 0:
        print("bench/dhcp.py needs root (network namespaces, port 67)", file=sys.stderr)
        return 2
    needs = {"perfdhcp": "kea-admin", "kea-dhcp4": "kea-dhcp4-server", "dnsmasq": "dnsmasq",
             "slapd": "slapd"}
    absent = missing(*needs)
    if "perfdhcp" in absent:
        print("perfdhcp is missing: apt-get install -y kea-admin", file=sys.stderr)
        return 2
    skip = {"kea-dhcp4": ["kea"], "dnsmasq": ["dnsmasq", "dnsmasq-ro", "dnsmasq-50k"],
            "slapd": ["ldap-inproc", "amp-nocache", "amp-warm", "amp-ask"]}
    for prog in absent:
        for v in skip.get(prog, []):
            if v in chosen:
                chosen.remove(v)
                log(f"skipping {v}: {prog} is not installed (apt-get install -y {needs[prog]})")

    began = time.monotonic()
    vers = versions()
    log(f"DHCP benchmark ({'quick' if args.quick else 'full'}): {', '.join(chosen)}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    log(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    lab = Lab(f"bdh{os.getpid() % 100000}", clients=1)
    slapd: Optional[SlapdPeer] = None
    results: Dict[str, Dict[str, Any]] = {}
    try:
        lab.up(addresses=True)
        setup_relay(lab)
        bench = Bench(lab, settings)
        if any(v in chosen for v in ("ldap-inproc", "amp-nocache", "amp-warm", "amp-ask")):
            slapd = SlapdPeer(lab.netns("up"), lab.internet, hosts=hit_hosts())
            slapd.start(timeout=20)
            bench.slapd = slapd
            log(f"slapd in the upstream namespace at {slapd.url} with {HITS} host entries")
        for name in chosen:
            results[name] = run_variant(bench, lab, name, slapd)
            r = results[name]
            log(f"  -> {name}: {fmt(rate_of(r))} exchanges/s, RSS {fmt(r.get('rss_mb'), 1)} MiB,"
                f" {r['elapsed_s']:.0f} s" + (f", {r['searches']} LDAP searches"
                                            if r.get("searches") else ""))
    finally:
        if slapd is not None:
            slapd.stop()
        lab.down()

    ns = rate_of(results.get("netsuite"))
    ns_ret = rate_of(results.get("netsuite"), "returning")
    kea = rate_of(results.get("kea"))
    dm = rate_of(results.get("dnsmasq"))
    dm_ro = rate_of(results.get("dnsmasq-ro"))
    ldap = rate_of(results.get("ldap-inproc"))
    amp = rate_of(results.get("amp-nocache"))
    warm = rate_of(results.get("amp-warm"))
    ask = rate_of(results.get("amp-ask"))

    log("")
    log(f"Relayed DORA via perfdhcp (-l {GIADDR}), pool {int(POOL_LAST) - int(POOL_FIRST) + 1:,}"
        f" addresses, {PREFILL:,} bound leases in the store at start (not for dnsmasq and"
        f" dnsmasq-ro); new clients: -R {CLIENTS};"
        f" a trial passes with < {MAX_DROP:g} % of exchanges failing and DO p50 + RA p50"
        f" < {MAX_QUEUED_MS:g} ms (no growing queue).")
    log("DO/RA = DISCOVER->OFFER / REQUEST->ACK delays from perfdhcp -x t at the rate shown.")
    for line in table(results):
        log(line)
    log("")
    ratios = {
        "netsuite/Kea": ratio(ns, kea),
        "netsuite/dnsmasq": ratio(ns, dm),
        "netsuite/dnsmasq-ro": ratio(ns, dm_ro),
        "netsuite+LDAP in-process (cache off)/netsuite": ratio(ldap, ns),
        "netsuite+AMP hook (cache off)/netsuite": ratio(amp, ns),
        "netsuite+AMP hook (warm cache)/netsuite (returning clients)": ratio(warm, ns_ret),
        "netsuite+AMP hook (warm cache, asked every time)/netsuite (returning clients)":
            ratio(ask, ns_ret),
        "netsuite RSS/Kea RSS": ratio(results.get("netsuite", {}).get("rss_mb"),
                                      results.get("kea", {}).get("rss_mb")),
    }
    for k, v in ratios.items():
        if v is not None:
            log(f"  {k}: {v:.2f}")
    for name in ("netsuite", "kea"):
        r = results.get(name) or {}
        if r.get("start_rss_mb") is not None:
            log(f"  memory of {name} at start with {r.get('start_leases') or 0:,} bound leases: "
                f"{r['start_rss_mb']:.1f} MiB RSS")
    log("")
    target_kea = None if ratios["netsuite/Kea"] is None else ratios["netsuite/Kea"] >= 0.5
    target_warm = (None if ratios["netsuite+AMP hook (warm cache)/netsuite (returning clients)"]
                   is None else
                   ratios["netsuite+AMP hook (warm cache)/netsuite (returning clients)"] >= 0.8)
    if target_kea is not None:
        log(f"target netsuite >= 50 % of Kea's rate: {'PASS' if target_kea else 'FAIL'} "
            f"({100 * ratios['netsuite/Kea']:.0f} %)")
    if target_warm is not None:
        log(f"target AMP hook, warm cache >= 80 % of netsuite's rate: "
            f"{'PASS' if target_warm else 'FAIL'} "
            f"({100 * ratios['netsuite+AMP hook (warm cache)/netsuite (returning clients)']:.0f} %)")
    if amp is not None:
        log(f"AMP hook with cache off: {fmt(amp)} exchanges/s "
            f"({100 * (ratio(amp, ns) or 0):.0f} % of netsuite)")
    for name, r in results.items():
        notes = []
        if r.get("searches"):
            notes.append(f"{r['searches']} LDAP searches for {r['discovers']} DISCOVERs sent")
        if r.get("coverage") is not None:
            notes.append(f"at the rate shown {r['coverage']:.0f} % of the lookups reached "
                         f"slapd (the rest fell through); highest rate tried with >= 99 % "
                         f"searched: {fmt(r['all_searched_rate'])}/s")
        if r.get("hook_leases") is not None:
            notes.append(f"{r['hook_leases']} leases from directory hits")
        for text, n in sorted(r.get("warnings", {}).items(), key=lambda kv: -kv[1])[:4]:
            notes.append(f"{n} x warning {text!r}")
        if notes:
            log(f"  {name}: " + ", ".join(notes))
    log(f"total {time.monotonic() - began:.0f} s; load average at the end "
        f"{os.getloadavg()[0]:.2f}")

    def p50(name: str) -> Optional[float]:
        t = best_of(results.get(name))
        return None if t is None else t.delay("DISCOVER-OFFER", 0.5) + t.delay("REQUEST-ACK", 0.5)

    def light50(name: str) -> Optional[float]:
        r = results.get(name)
        t = r.get("light") if r else None
        return None if t is None else t.delay("DISCOVER-OFFER", 0.5) + t.delay("REQUEST-ACK", 0.5)

    summary: Dict[str, Optional[float]] = {
        "netsuite_rate": ns, "kea_rate": kea, "dnsmasq_rate": dm, "dnsmasq_ro_rate": dm_ro,
        "dnsmasq_50k_rate": rate_of(results.get("dnsmasq-50k")),
        "ldap_inproc_rate": ldap, "amp_nocache_rate": amp, "netsuite_returning_rate": ns_ret,
        "amp_warm_rate": warm, "amp_ask_rate": ask,
        "ldap_inproc_all_searched_rate": results.get("ldap-inproc", {}).get("all_searched_rate"),
        "amp_nocache_all_searched_rate": results.get("amp-nocache", {}).get("all_searched_rate"),
        "netsuite_over_kea": ratios["netsuite/Kea"],
        "netsuite_over_dnsmasq": ratios["netsuite/dnsmasq"],
        "ldap_over_netsuite": ratios["netsuite+LDAP in-process (cache off)/netsuite"],
        "amp_over_netsuite": ratios["netsuite+AMP hook (cache off)/netsuite"],
        "amp_warm_over_netsuite": ratios[
            "netsuite+AMP hook (warm cache)/netsuite (returning clients)"],
        "amp_ask_over_netsuite": ratios[
            "netsuite+AMP hook (warm cache, asked every time)/netsuite (returning clients)"],
        "netsuite_p50_ms": p50("netsuite"), "kea_p50_ms": p50("kea"),
        "dnsmasq_p50_ms": p50("dnsmasq"),
        "netsuite_light_p50_ms": light50("netsuite"), "kea_light_p50_ms": light50("kea"),
        "netsuite_rss_mb": results.get("netsuite", {}).get("rss_mb"),
        "kea_rss_mb": results.get("kea", {}).get("rss_mb"),
        "netsuite_rss_50k_mb": results.get("netsuite", {}).get("start_rss_mb"),
        "kea_rss_50k_mb": results.get("kea", {}).get("start_rss_mb"),
        "dnsmasq_rss_mb": results.get("dnsmasq", {}).get("rss_mb"),
        "target_kea_pass": None if target_kea is None else float(target_kea),
        "target_amp_warm_pass": None if target_warm is None else float(target_warm),
    }

    def number(v: float) -> str:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    log("SUMMARY " + " ".join(f"{k}={number(v)}" for k, v in summary.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
