# -*- test-case-name: tests.integration.test_unit_privileges -*-
"""
The systemd units' privileges, for real: each unit's command runs in a
lab's access point as an unprivileged uid holding exactly the capabilities
the unit grants (through setpriv, as C{User=}, C{AmbientCapabilities=},
C{CapabilityBoundingSet=} and C{NoNewPrivileges=} would), does its work,
and fails to start without any one of them. While it runs, the kernel
shows (C{/proc/PID/task/TID/status}, every thread) the unit's uid and gid
and exactly its capabilities.

systemd itself is not run (these machines have none): its directories are
stood in for by temporary ones owned by that uid, at the paths the config
names.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Set

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.capabilities import ProcessPrivileges

from .procs import Child, socket_dir, spawn, thread_privileges
from ..lab.labs import make_lab, need, need_root
from ..test_systemd import INSTALLED_BIN, UNIT_DIR, Unit

CONFIG = """
[firewall]
enabled = {all_in_one}
lan_interface = "br-lan"
wan_interface = "wan0"
portal_port = 5280

[dhcp]
enabled = {all_in_one}
interface = "br-lan"
lease_file = "{state}/dhcp-leases.sqlite"

[[dhcp.subnet]]
# The defaults fit the lab: 10.89.0.0/24, 10.89.0.100-199, served from 10.89.0.1.
interface = "br-lan"

[portal]
enabled = {all_in_one}
session_file = "{state}/portal-sessions.sqlite"
firewall_process = "{firewall}"
dhcp_process = "{dhcp}"
"""

# What a daemon prints when the kernel refuses it for want of a capability.
FIREWALL_REFUSED = {
    # libiptc's raw socket
    "CAP_NET_RAW": r"can't initialize filter: .*Permission denied \(you must be root\)",
    # its first need at start-up
    "CAP_NET_ADMIN": r"PermissionError: .*'/proc/sys/net/bridge/bridge-nf-call-iptables'",
}
PORT_REFUSED = r"(?ms)in dhcp_socket$.*^.*PermissionError: \[Errno 13\] Permission denied$"


def unused_uid() -> int:
    """
    A uid no account has: the processes own nothing else on the machine.
    """
    for uid in range(61000, 62000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise SkipTest("no unused uid in 61000-61999")


def setpriv(uid: int, capabilities: Set[str]) -> List[str]:
    """
    setpriv's arguments for C{uid} with exactly C{capabilities}
    (C{CAP_NET_ADMIN} names).
    """
    caps = ",".join(f"+{c[4:].lower()}" for c in sorted(capabilities))
    keep = [f"--inh-caps={caps}", f"--ambient-caps={caps}"] if caps else ["--inh-caps=-all"]
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            *keep, "--bounding-set=-all" + ("," + caps if caps else "")]


class UnitPrivilegesTests(TestCase):
    """
    Every unit in etc/systemd/, started with its own capabilities and with
    one fewer.
    """

    timeout = 240

    def setUp(self) -> None:
        need_root()
        need("setpriv", "udhcpc", "curl")
        self.uid = unused_uid()
        self.units = {unit.name: unit for unit in (
            Unit(os.path.join(UNIT_DIR, name)) for name in sorted(os.listdir(UNIT_DIR))
            if name.endswith(".service"))}
        self.lab = make_lab(self, clients=1)
        self.work = tempfile.mkdtemp(prefix="nsunit-")
        self.addCleanup(shutil.rmtree, self.work, True)
        os.chmod(self.work, 0o755)
        self.state = os.path.join(self.work, "state")
        os.mkdir(self.state, 0o750)
        self.sockets = socket_dir(self)
        for path in (self.state, self.sockets):
            os.chown(path, self.uid, self.uid)

    def config(self, all_in_one: bool = False) -> str:
        path = os.path.join(self.work, "all.toml" if all_in_one else "separate.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(all_in_one=str(all_in_one).lower(), state=self.state,
                                  firewall="" if all_in_one else "firewall",
                                  dhcp="" if all_in_one else "dhcp"))
        os.chmod(path, 0o644)
        return path

    def start(self, name: str, without: str = "", config: str = "") -> Child:
        """
        Start unit C{name}'s command in the access point as the test's uid
        with the unit's capabilities, less C{without}.
        """
        unit = self.units[name]
        argv = list(unit.argv)
        self.assertTrue(argv[0].startswith(INSTALLED_BIN), argv[0])
        argv[0] = os.path.join(os.path.dirname(sys.executable), os.path.basename(argv[0]))
        argv[argv.index("--config") + 1] = config or self.config()
        capabilities = unit.capabilities("AmbientCapabilities") - {without}
        self.assertEqual(unit.capabilities("CapabilityBoundingSet"),
                         unit.capabilities("AmbientCapabilities"))
        return spawn(self, f"{name} without {without or 'nothing'}", [
            "ip", "netns", "exec", self.lab.netns("ap"), *setpriv(self.uid, capabilities),
            *argv, "--socket-dir", self.sockets])

    def assert_granted(self, name: str, child: Child) -> None:
        """
        Every thread of unit C{name}'s running process has exactly what the
        unit grants: its uid and gid (all four of each), no other group,
        C{AmbientCapabilities=} as effective, permitted, inheritable and
        ambient, C{CapabilityBoundingSet=} as bounding, C{NoNewPrivileges=}.
        """
        unit = self.units[name]
        granted = frozenset(unit.capabilities("AmbientCapabilities"))
        expected = ProcessPrivileges(
            uids=(self.uid,) * 4, gids=(self.uid,) * 4, groups=frozenset(),
            effective=granted, permitted=granted, inheritable=granted, ambient=granted,
            bounding=frozenset(unit.capabilities("CapabilityBoundingSet")),
            no_new_privs=unit.value("NoNewPrivileges") == "yes")
        assert child.pid is not None
        threads = thread_privileges(child.pid)
        self.assertTrue(threads)
        for tid, privileges in threads.items():
            self.assertEqual(privileges, expected, f"{name}: thread {tid}")

    @inlineCallbacks
    def fails_without_each(self, name: str, expected: Dict[str, str], config: str = "",
                           optional: Set[str] = frozenset()) -> Any:
        """
        Without each of the unit's capabilities but the C{optional} ones
        (which it works without, doing less), unit C{name} stops with
        C{expected[capability]} in its output.
        """
        granted = self.units[name].capabilities("AmbientCapabilities")
        self.assertEqual(set(expected) | set(optional), granted)
        for capability in sorted(expected):
            child = self.start(name, without=capability, config=config)
            yield child.when_ended().addTimeout(60, reactor)
            self.assertRegex(child.output(), expected[capability])

    def udhcpc(self) -> Any:
        done = deferToThread(self.lab.exec, "c1", [
            "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0", "-s", "/bin/true"],
            timeout=30)
        return done.addCallback(lambda p: p.stdout + p.stderr)

    def curl(self, *args: str) -> Any:
        done = deferToThread(self.lab.exec, "c1", ["curl", "-s", "--max-time", "10", *args])
        return done.addCallback(lambda p: p.stdout)

    @inlineCallbacks
    def test_firewall(self) -> None:
        """
        The firewall unit sets bridge-nf-call-iptables, installs its rules,
        sets and IFB device, and authorizes a client; without CAP_NET_RAW
        libiptc is refused, without CAP_NET_ADMIN the sysctl is.
        """
        self.assertTrue(self.lab.bridge_nf_call_iptables())
        firewall = self.start("netsuite-firewall.service")
        yield firewall.when_line("firewall ready")
        bus = connect("firewall", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(bus.close)
        answer = yield bus.send("firewall:/firewall/authorize", {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1),
            "down_kbit": 2000})
        self.assertTrue(answer["authorized"])
        self.assertFalse(self.lab.bridge_nf_call_iptables())
        links = self.lab.exec("ap", ["ip", "-br", "link", "show", "type", "ifb"]).stdout
        self.assertIn("ifb-ns0", links)
        self.assert_granted("netsuite-firewall.service", firewall)
        firewall.signal("TERM")
        yield firewall.when_ended()
        self.lab.bridge_nf_call_iptables(True)
        yield self.fails_without_each("netsuite-firewall.service", FIREWALL_REFUSED)

    @inlineCallbacks
    def test_dhcp_and_ldaphook(self) -> None:
        """
        The DHCP unit serves a lease on port 67, by unicast (udhcpc clears
        the broadcast flag), and the LDAP hook unit, with no capabilities,
        attaches to it over the bus (one uid); without CAP_NET_BIND_SERVICE
        the port is refused; without CAP_NET_ADMIN it still serves, by
        broadcast, and says why.
        """
        self.assertEqual(self.units["netsuite-ldaphook.service"].hooks, "dhcp")
        dhcp = self.start("netsuite-dhcp.service")
        yield dhcp.when_line("dhcp ready")
        hook = self.start("netsuite-ldaphook.service")
        yield hook.when_line("^hooked$")
        output = yield self.udhcpc()
        self.assertIn("lease of 10.89.0.100 obtained", output)
        self.assertTrue(os.path.exists(os.path.join(self.state, "dhcp-leases.sqlite")))
        neighbours = self.lab.exec("ap", ["ip", "neigh", "show", "10.89.0.100"]).stdout
        self.assertIn(f"lladdr {self.lab.client_mac(1)}", neighbours)
        self.assertNotIn("no neighbour entry", dhcp.output())
        self.assertNotIn("not watching", dhcp.output())  # CAP_NET_RAW: the packet socket
        self.assert_granted("netsuite-dhcp.service", dhcp)
        self.assert_granted("netsuite-ldaphook.service", hook)
        dhcp.signal("TERM")
        yield dhcp.when_ended()
        dhcp = self.start("netsuite-dhcp.service", without="CAP_NET_ADMIN")
        yield dhcp.when_line("dhcp ready")
        output = yield self.udhcpc()
        self.assertIn("obtained", output)
        yield dhcp.when_line("broadcast: no neighbour entry for a unicast: no CAP_NET_ADMIN")
        dhcp.signal("TERM")
        yield dhcp.when_ended()
        yield self.fails_without_each("netsuite-dhcp.service",
                                      {"CAP_NET_BIND_SERVICE": PORT_REFUSED},
                                      optional={"CAP_NET_ADMIN", "CAP_NET_RAW"})

    @inlineCallbacks
    def test_portal(self) -> None:
        """
        The portal unit, with no capabilities, redirects a client and logs
        it in through the firewall unit's process.
        """
        firewall = self.start("netsuite-firewall.service")
        portal = self.start("netsuite-portal.service")
        yield firewall.when_line("firewall ready")
        yield portal.when_line("portal ready")
        self.lab.exec("c1", ["ip", "addr", "add", f"{self.lab.client_address(1)}/24",
                             "dev", "eth0"], check=True)
        self.lab.exec("c1", ["ip", "route", "add", "default", "via", "10.89.0.1"], check=True)
        found = yield self.curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                f"http://{self.lab.internet}/")
        self.assertTrue(found.startswith("307 http://10.89.0.1:5280/login?url="), found)
        jar = os.path.join(self.work, "jar")
        page = yield self.curl("-c", jar, "-b", jar, "http://10.89.0.1:5280/login?url=x")
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        done = yield self.curl("-c", jar, "-b", jar, "-o", "/dev/null", "-w", "%{http_code}",
                               "--data", f"csrf={token}&url=http%3A%2F%2Fexample.com%2F&accept=1",
                               "http://10.89.0.1:5280/login")
        self.assertEqual(done, "303")
        members = self.lab.exec("ap", ["ipset", "list", "ns-auth"]).stdout
        self.assertIn(self.lab.client_address(1), members)
        self.assert_granted("netsuite-portal.service", portal)
        self.assert_granted("netsuite-firewall.service", firewall)

    @inlineCallbacks
    def test_all_in_one(self) -> None:
        """
        The all-in-one unit runs the firewall, the DHCP server and the
        portal in one process with the union of their capabilities, and
        fails without any one of them.
        """
        config = self.config(all_in_one=True)
        netsuite = self.start("netsuite.service", config=config)
        for ready in ("firewall ready", "dhcp ready", "portal ready"):
            yield netsuite.when_line(ready)
        output = yield self.udhcpc()
        self.assertIn("lease of 10.89.0.100 obtained", output)
        self.assert_granted("netsuite.service", netsuite)
        netsuite.signal("TERM")
        yield netsuite.when_ended()
        self.lab.bridge_nf_call_iptables(True)
        yield self.fails_without_each("netsuite.service", dict(
            FIREWALL_REFUSED, CAP_NET_BIND_SERVICE=PORT_REFUSED), config)
