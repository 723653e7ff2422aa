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
import re
import shutil
import sqlite3
import tempfile
from typing import Any, Dict, List, Set, Tuple

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python import log
from twisted.trial.unittest import TestCase

from netsuite.dhcp.packet import MessageType, Packet
from netsuite.lab.pcap import udp_datagrams
from netsuite.registry.values import MAC

from .procs import PYTHON, ROOT, TWISTD, Child, socket_dir, spawn
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


AP_CONFIG = """
[firewall]
enabled = true
lan_interface = "br-lan"
wan_interface = "wan0"
lan_network = "10.89.0.0/24"
portal_port = {port}
shaping = false
check_interval = 1.0
lock_dir = "{state}"

[portal]
enabled = true
port = {port}
interface_address = "{ap}"
session_file = "{state}/sessions.sqlite"
firewall_process = "{firewall}"
"""
PORTAL_PORT = 5280
READY = {"netsuite-firewall": ["firewall ready"], "netsuite-portal": ["portal ready"],
         "netsuite": ["firewall ready", "portal ready"]}
RESTORED = r"portal restored (\d+) sessions"
STRAYS = r"(\d+) clients without a session deauthorized"


class AccessPoint(TestCase):
    """
    The firewall and the portal in the lab's access point, as two processes
    (C{split}) or one, and what the kernel holds.
    """

    timeout = 180
    split = True
    clients = 1

    def setUp(self) -> None:
        need("curl", "ipset", "iptables-legacy-save")
        self.lab = make_lab(self, clients=self.clients, addresses=True)
        self.state = tempfile.mkdtemp(prefix="nsfault-ap-")
        self.addCleanup(shutil.rmtree, self.state, True)
        os.chmod(self.state, 0o755)
        self.sockets = socket_dir(self)
        self.config = os.path.join(self.state, "ap.toml")
        with open(self.config, "w") as f:
            f.write(AP_CONFIG.format(port=PORTAL_PORT, ap=self.lab.ap_address, state=self.state,
                                     firewall="firewall" if self.split else ""))
        self.bus_client: Any = None

    @inlineCallbacks
    def daemon(self, plugin: str, name: str) -> Any:
        """Start C{twistd PLUGIN --name NAME} in the access point; fire once ready."""
        child = spawn(self, name, [*TWISTD, "-n", "--pidfile=", plugin, "--name", name,
                                   "--config", self.config, "--socket-dir", self.sockets],
                      netns=self.lab.netns("ap"))
        for line in READY[plugin]:
            yield child.when_line(line)
        return child

    def bus(self, name: str) -> Any:
        from netsuite.bus import connect
        client = connect(name, socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(client.close)
        return client

    def kernel_clients(self) -> Dict[ipaddress.IPv4Address, MAC]:
        """The authorized clients in the kernel's set (ipset save ns-auth)."""
        saved = self.lab.exec("ap", ["ipset", "save", "ns-auth"], check=True).stdout
        found = {}
        for line in saved.splitlines():
            parts = line.split()
            if parts[:2] == ["add", "ns-auth"]:
                ip, mac = parts[2].split(",")
                found[ipaddress.IPv4Address(ip)] = MAC(mac)
        return found

    @inlineCallbacks
    def sessions(self, portal: Any) -> Any:
        answer = yield portal.send("/portal/sessions")
        return {ipaddress.IPv4Address(str(s["ip"])): MAC(str(s["mac"])) for s in answer}


def fake_client(n: int) -> Tuple[str, str]:
    """Client C{n}'s address and MAC (no namespace: only the kernel sets see it)."""
    return f"10.89.0.{20 + n}", f"02:00:00:00:01:{n:02x}"


class FirewallKillTests(AccessPoint):
    """
    kill -9 of the firewall process while the portal authorizes clients
    (C{/portal/authorize}, as an operator's tool does, several at once).
    """

    AUTHORIZATIONS = 200
    CONCURRENT = 8
    KILL_AFTER = 60  # authorizations answered before the kill

    @inlineCallbacks
    def test_kill_while_authorizing(self) -> Any:
        """
        Every authorization answered before the kill is a session, and in
        the kernel's set after the restart; the set holds exactly the
        sessions (no client lost, no stray one); the portal puts its
        sessions back once per firewall start.
        """
        firewall = yield self.daemon("netsuite-firewall", "firewall")
        portal_daemon = yield self.daemon("netsuite-portal", "portal")
        portal = self.bus("portal")
        yield portal_daemon.when_line(RESTORED)  # once the firewall's process was reached
        answers: Dict[str, bool] = {}
        killed: Dict[str, Any] = {"at": None}
        todo = list(range(self.AUTHORIZATIONS))
        restarted: List[Any] = []

        @inlineCallbacks
        def worker() -> Any:
            while todo:
                ip, mac = fake_client(todo.pop(0))
                try:
                    answer = yield portal.send("/portal/authorize", {"ip": ip, "mac": mac})
                except Exception:
                    answer = None
                answers[ip] = isinstance(answer, dict) and bool(answer.get("authorized"))
                if killed["at"] is None and sum(answers.values()) >= self.KILL_AFTER:
                    killed["at"] = len(answers)
                    killed["restores"] = portal_daemon.line_count
                    firewall.signal("KILL")

                    def again(_: Any) -> Any:
                        killed["restarted"] = reactor.seconds()
                        return self.daemon("netsuite-firewall", "firewall")
                    restarted.append(firewall.when_ended().addCallback(again))
        began = reactor.seconds()
        yield DeferredList([worker() for _ in range(self.CONCURRENT)])
        took = reactor.seconds() - began
        self.assertTrue(restarted, "the firewall was never killed")
        firewall = yield restarted[0]
        ready = reactor.seconds()
        restore = yield portal_daemon.when_line(RESTORED, after=killed["restores"], timeout=30)
        restored = reactor.seconds()
        kernel = yield deferToThread(self.kernel_clients)
        sessions = yield self.sessions(portal)
        before = [ip for ip, ok in list(answers.items())[:killed["at"]] if ok]
        self.assertEqual([ip for ip in before if ipaddress.IPv4Address(ip) not in sessions], [])
        self.assertEqual(kernel, sessions)
        self.assertEqual(len([line for line in portal_daemon.lines(after=killed["restores"])
                              if "portal restored" in line]), 1)
        figures("firewall kill -9", authorizations=len(answers),
                per_s=f"{len(answers) / took:.0f}", answered_before_kill=len(before),
                sessions=len(sessions), kernel=len(kernel),
                strays_deauthorized=re.search(STRAYS, restore).group(1),
                restart_to_ready_s=f"{ready - killed['restarted']:.2f}",
                restart_to_sessions_restored_s=f"{max(restored, ready) - killed['restarted']:.2f}")

    @inlineCallbacks
    def test_hook_reattaches(self) -> Any:
        """
        examples/deny_mac.py, hooked on the firewall's C{/firewall/authorize},
        goes on refusing its MAC after the firewall process is killed and
        started again: it re-attaches by itself, and a refused client
        stays out of the kernel's set while others get in.
        """
        banned = "02:00:00:00:02:01"
        firewall = yield self.daemon("netsuite-firewall", "firewall")
        yield self.daemon("netsuite-portal", "portal")
        portal = self.bus("portal")
        hook = spawn(self, "deny_mac", [PYTHON, os.path.join(ROOT, "examples", "deny_mac.py"),
                                        "firewall", self.sockets, banned])
        yield hook.when_line("^hooked$", timeout=30)
        answer = yield portal.send("/portal/authorize", {"ip": "10.89.0.201", "mac": banned})
        self.assertFalse(answer["authorized"])
        firewall.signal("KILL")
        yield firewall.when_ended()
        firewall = yield self.daemon("netsuite-firewall", "firewall")
        yield firewall.when_line("added listener .* on /firewall/authorize", timeout=30)
        answer = yield portal.send("/portal/authorize", {"ip": "10.89.0.202", "mac": banned})
        self.assertFalse(answer["authorized"])
        self.assertIn("banned by deny_mac.py", answer["error"])
        answer = yield portal.send("/portal/authorize",
                                   {"ip": "10.89.0.203", "mac": "02:00:00:00:02:03"})
        self.assertTrue(answer["authorized"])
        kernel = yield deferToThread(self.kernel_clients)
        self.assertEqual(list(kernel), [ipaddress.IPv4Address("10.89.0.203")])


# Log in from each address given (curl --interface), one after another, as
# examples/portal-login.sh does; one line per login: its address and the
# HTTP status (303: logged in; 000: no answer). While the portal is down
# (connection refused) curl tries again every second, for up to 60 s (into
# a file: a retry truncates its output, which /dev/null and a pipe refuse).
LOGIN_LOOP = r"""
portal=$1; shift
curl="curl -sS --max-time 10 --retry 60 --retry-connrefused --retry-delay 1 --retry-max-time 60"
for ip in "$@"; do
  jar=$(mktemp)
  $curl --interface "$ip" -c "$jar" -b "$jar" -o "$jar.page" "$portal/login"
  token=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$jar.page")
  code=$($curl --interface "$ip" -c "$jar" -b "$jar" -o "$jar.page" \
         -w '%{http_code}' --data-urlencode "csrf=$token" --data accept=1 "$portal/login")
  echo "login $ip $code"
  rm -f "$jar" "$jar.page"
done
echo "logins done"
"""


class PortalKillTests(AccessPoint):
    """
    kill -9 of the portal's process while clients log in through the
    login form (curl, several clients at once, each from many addresses),
    with the firewall in its own process (the portal alone is killed).
    """

    clients = 4
    ADDRESSES = 25  # per client namespace
    KILL_AFTER = 8  # logins c1 finished before the kill

    def addresses(self, index: int) -> List[str]:
        return [f"10.89.0.{30 + 40 * (index - 1) + k}" for k in range(self.ADDRESSES)]

    @inlineCallbacks
    def start(self) -> Any:
        """Start the firewall and the portal; fire with the process to kill."""
        yield self.daemon("netsuite-firewall", "firewall")
        portal = yield self.daemon("netsuite-portal", "portal")
        return portal

    def restart(self) -> Any:
        return self.daemon("netsuite-portal", "portal")

    def watcher(self) -> Child:
        return spawn(self, "netsuite-hook watch", [
            os.path.join(os.path.dirname(TWISTD[0]), "netsuite-hook"), "--socket-dir",
            self.sockets, "watch", "portal:/portal/login"])

    @inlineCallbacks
    def test_kill_during_logins(self) -> Any:
        """
        Every login answered 303 before the kill is a session after the
        restart, with its firewall authorization (IP and MAC in the
        kernel's set); the set holds exactly the sessions; the restarted
        portal restores once; a C{netsuite-hook watch} of C{/portal/login}
        started before the kill sees the logins after the restart.
        """
        for index in range(1, self.clients + 1):
            for address in self.addresses(index):
                self.lab.exec(f"c{index}", ["ip", "addr", "add", f"{address}/24", "dev", "eth0"],
                              check=True)
        daemon = yield self.start()
        watch = self.watcher()
        yield watch.when_line("^netsuite-hook: watching ", timeout=30)
        portal_url = f"http://{self.lab.ap_address}:{PORTAL_PORT}"
        loops = [spawn(self, f"logins c{i}", ["sh", "-c", LOGIN_LOOP, "sh", portal_url,
                                                *self.addresses(i)],
                       netns=self.lab.netns(f"c{i}")) for i in range(1, self.clients + 1)]
        began = reactor.seconds()
        yield loops[0].when_line(r"^login .* 303$", after=self.KILL_AFTER - 1, timeout=60)
        loaded_for = reactor.seconds() - began
        daemon.signal("KILL")
        yield daemon.when_ended()
        at_kill = [loop.line_count for loop in loops]
        watched = watch.line_count
        restarted = reactor.seconds()
        daemon = yield self.restart()
        ready = reactor.seconds()
        restore = yield daemon.when_line(RESTORED, timeout=30)
        yield loops[0].when_line(r"^login .* 303$", after=at_kill[0], timeout=60)
        answered = reactor.seconds()
        for loop in loops:
            yield loop.when_line("^logins done$", timeout=120)
        yield watch.when_line('"reason": "click"', after=watched, timeout=30)

        def logins(loop: Child, after: int = 0, before: int = 10 ** 9) -> List[Tuple[str, str]]:
            found = []
            for number, line in enumerate(loop.lines()):
                parts = line.split()
                if after <= number < before and len(parts) in (2, 3) and parts[0] == "login":
                    found.append((parts[1], parts[2] if len(parts) == 3 else ""))
            return found
        before = [(ip, i + 1) for i, loop in enumerate(loops)
                  for ip, code in logins(loop, before=at_kill[i]) if code == "303"]
        every = [line for loop in loops for line in logins(loop)]
        kernel = yield deferToThread(self.kernel_clients)
        portal = self.bus("portal")
        sessions = yield self.sessions(portal)
        self.assertGreater(len(before), self.KILL_AFTER - 1)
        lost = [ip for ip, _ in before if ipaddress.IPv4Address(ip) not in sessions]
        self.assertEqual(lost, [])
        for ip, index in before:
            self.assertEqual(kernel.get(ipaddress.IPv4Address(ip)), MAC(self.lab.client_mac(index)))
        self.assertEqual(kernel, sessions)
        self.assertEqual(len([line for line in daemon.lines() if "portal restored" in line]), 1)
        figures(f"portal kill -9 ({'split' if self.split else 'all-in-one'})",
                logins=len(every), ok=sum(1 for _, code in every if code == "303"),
                failed_codes=sorted(code for _, code in every if code != "303"),
                logins_per_s_before_kill=f"{sum(at_kill) / loaded_for:.1f}",
                ok_before_kill=len(before), sessions_after=len(sessions), kernel=len(kernel),
                strays_deauthorized=re.search(STRAYS, restore).group(1),
                restart_to_ready_s=f"{ready - restarted:.2f}",
                restart_to_first_login_s=f"{answered - restarted:.2f}")


class AllInOneKillTests(PortalKillTests):
    """
    The same with the firewall and the portal in one process (C{twistd
    netsuite}), killed together.
    """

    split = False

    def start(self) -> Any:
        return self.daemon("netsuite", "ap")

    def restart(self) -> Any:
        return self.daemon("netsuite", "ap")

    def watcher(self) -> Child:
        return spawn(self, "netsuite-hook watch", [
            os.path.join(os.path.dirname(TWISTD[0]), "netsuite-hook"), "--socket-dir",
            self.sockets, "watch", "ap:/portal/login"])

    def bus(self, name: str) -> Any:
        return super().bus("ap")
