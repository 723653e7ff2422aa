"""
kill -9 of each daemon in the middle of load, in the lab (issue 11): what
a daemon answered before it died is still true after its restart.

- DHCP: perfdhcp (posing as a relay) drives new clients at netsuite-dhcp,
  tcpdump in the client's namespace records every reply the server sent;
  the server is killed mid-load and started again. Every address ACKed
  before the kill is in the lease file as the killed process left it, with
  the ACKed MAC, and no address is ACKed to two MACs, before or after.
- Portal and firewall: see the classes below.

Each test logs its figures (load, ACKs, leases found, time to recover) on
a line starting with C{FIGURES} in the trial log (_trial_temp/test.log).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sqlite3
import tempfile
from typing import Any, Dict, List, Set, Tuple

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import TestCase

from netsuite.dhcp.packet import MessageType, Packet
from netsuite.lab.pcap import udp_datagrams
from netsuite.registry.values import MAC

from .procs import TWISTD, Child, socket_dir, spawn
from ..lab.labs import make_lab, need

SERVER = "10.89.0.1"
GIADDR = "10.200.0.1"  # perfdhcp's relay address, on c1's eth0
RELAY_NET = "10.200.0.0/16"
RATE = 200  # new clients per second offered
KILL_AFTER = 1000  # replies (OFFERs and ACKs) seen before the kill
AFTER_RESTART = 400  # replies seen after the restart before the load stops

DHCP_CONFIG = """
[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{lease_file}"
relays = ["{giaddr}"]

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.199"
server = "{server}"
router = "{server}"
interface = "br-lan"

[[dhcp.subnet]]
name = "relay"
network = "{relay_net}"
first = "10.200.1.0"
last = "10.200.254.255"
server = "{server}"
router = "{giaddr}"
lease_time = 3600
interface = ""
"""


def figures(what: str, **values: Any) -> None:
    log.msg("FIGURES " + what + ": " + ", ".join(f"{k}={v}" for k, v in values.items()))


def bound_leases(path: str) -> Dict[ipaddress.IPv4Address, MAC]:
    """The bound leases of a lease file (a copy: sqlite replays its WAL)."""
    db = sqlite3.connect(path)
    try:
        return {ipaddress.IPv4Address(ip): MAC(bytes(mac)) for ip, mac in db.execute(
            "SELECT ip, mac FROM leases WHERE state = 'bound'")}
    finally:
        db.close()


def copy_store(path: str, into: str) -> str:
    """Copy a SQLite file with its WAL (as a killed writer left them) into C{into}."""
    copy = os.path.join(into, os.path.basename(path))
    for suffix in ("", "-wal"):
        if os.path.exists(path + suffix):
            shutil.copyfile(path + suffix, copy + suffix)
    return copy


def acks(capture: str) -> List[Tuple[float, ipaddress.IPv4Address, MAC]]:
    """(time, address, MAC) of every DHCPACK in a tcpdump capture file."""
    with open(capture, "rb") as f:
        data = f.read()
    found = []
    for datagram in udp_datagrams(data):
        packet = Packet.from_bytes(datagram.payload)
        if packet.message_type == MessageType.ACK and packet.mac is not None:
            found.append((datagram.time, packet.yiaddr, packet.mac))
    return found


class DhcpKillTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        need("perfdhcp", "tcpdump")
        self.lab = make_lab(self, clients=1, addresses=True)
        self.state = tempfile.mkdtemp(prefix="nsfault-dhcp-")
        self.addCleanup(shutil.rmtree, self.state, True)
        os.chmod(self.state, 0o755)
        self.sockets = socket_dir(self)
        self.lease_file = os.path.join(self.state, "leases.sqlite")
        self.config = os.path.join(self.state, "dhcp.toml")
        with open(self.config, "w") as f:
            f.write(DHCP_CONFIG.format(lease_file=self.lease_file, giaddr=GIADDR,
                                       server=SERVER, relay_net=RELAY_NET))
        with self.lab.ipr("c1") as ipr:
            ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=GIADDR,
                     prefixlen=32)
        with self.lab.ipr("ap") as ipr:
            ipr.route("add", dst=RELAY_NET, gateway=self.lab.client_address(1))

    def server(self) -> Child:
        return spawn(self, "netsuite-dhcp", [
            *TWISTD, "-n", "--pidfile=", "netsuite-dhcp", "--name", "dhcp", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"))

    @inlineCallbacks
    def test_kill_under_load(self) -> Any:
        """
        perfdhcp offers RATE new clients a second; after KILL_AFTER replies
        the server is killed (SIGKILL) and started again, and the load
        goes on until AFTER_RESTART more replies. Every ACK sent before
        the kill (tcpdump's capture in c1) is a bound lease of the same MAC
        in the file the killed process left; after the restart, every ACK
        of either process is in the store, and no address went to two MACs.
        """
        capture = os.path.join(self.state, "replies.pcap")
        tcpdump = spawn(self, "tcpdump", [
            "tcpdump", "-i", "eth0", "-n", "-U", "-B", "8192", "-w", capture, "--print",
            f"udp and src host {SERVER} and dst host {GIADDR} and dst port 67"],
            netns=self.lab.netns("c1"))
        yield tcpdump.when_line("listening on eth0", timeout=20)
        server = self.server()
        yield server.when_line("dhcp ready")
        load = spawn(self, "perfdhcp", [
            "perfdhcp", "-4", "-g", "single", "-l", GIADDR, "-r", str(RATE), "-R", "60000",
            "-b", "mac=00:0c:01:00:00:00", "-p", "120", "-d", "1", SERVER],
            netns=self.lab.netns("c1"))
        replies = r"BOOTP/DHCP, Reply"
        began, start = reactor.seconds(), tcpdump.line_count
        yield tcpdump.when_line(replies, after=start + KILL_AFTER, timeout=60)
        loaded_for = reactor.seconds() - began
        server.signal("KILL")
        yield server.when_ended()
        killed_at = reactor.seconds()
        killed_store = copy_store(self.lease_file, tempfile.mkdtemp(dir=self.state))

        seen = tcpdump.line_count
        restarted = reactor.seconds()
        server = self.server()
        yield server.when_line("dhcp ready")
        ready = reactor.seconds()
        yield tcpdump.when_line(replies, after=seen, timeout=30)
        answered = reactor.seconds()
        yield tcpdump.when_line(replies, after=seen + AFTER_RESTART, timeout=60)
        load.signal("INT")
        yield load.when_ended()
        server.signal("TERM")
        yield server.when_ended()
        tcpdump.signal("INT")
        yield tcpdump.when_ended()

        sent = yield deferToThread(acks, capture)
        before = [(ip, mac) for when, ip, mac in sent if when < killed_at]
        stored = bound_leases(killed_store)
        lost = [(ip, mac) for ip, mac in before if stored.get(ip) != mac]
        self.assertFalse(lost, f"{len(lost)} of {len(before)} ACKed leases lost, e.g. {lost[:3]}")
        self.assertGreater(len(before), KILL_AFTER // 4)
        final = bound_leases(self.lease_file)
        missing = [(ip, mac) for _, ip, mac in sent if final.get(ip) != mac]
        self.assertFalse(missing, f"{len(missing)} ACKed leases not in the store, "
                                  f"e.g. {missing[:3]}")
        owners: Dict[ipaddress.IPv4Address, Set[MAC]] = {}
        for _, ip, mac in sent:
            owners.setdefault(ip, set()).add(mac)
        self.assertEqual({ip: macs for ip, macs in owners.items() if len(macs) > 1}, {})
        dropped = [line for line in tcpdump.lines() if "dropped by kernel" in line]
        figures("dhcp kill -9", rate_offered=f"{RATE}/s",
                replies_per_s_before_kill=f"{KILL_AFTER / loaded_for:.0f}",
                acks_before_kill=len(before), leases_found_after=len(before) - len(lost),
                acks_after_restart=len(sent) - len(before),
                restart_to_ready_s=f"{ready - restarted:.2f}",
                restart_to_first_answer_s=f"{answered - restarted:.2f}",
                capture=dropped[-1:] or "?")
