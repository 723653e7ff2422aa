# -*- test-case-name: tests.integration.test_twistd_privileges -*-
"""
The daemons under C{twistd --uid nobody --gid nogroup}, started as root in
a lab's access point: each binds as root, switches, keeps exactly the
capabilities its services declare (L{netsuite.privileges}), and does its
work with them: the firewall authorizes a client, the DHCP server answers
udhcpc (with the neighbour entry of a unicast reply), the portal logs a
client in through the firewall's process, the all-in-one does all three.
The kernel shows (C{/proc/PID/task/TID/status}, every thread) the
unprivileged uid and gid and nothing more than what is declared.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import tempfile
from typing import Any, FrozenSet

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect
from netsuite.capabilities import ProcessPrivileges
from netsuite.services import installed

from .procs import TWISTD, Child, spawn, thread_privileges
from .test_unit_privileges import CONFIG
from ..lab.labs import make_lab, need, need_root

USER, GROUP = "nobody", "nogroup"
KEEPS = {"firewall": frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW"}),
         "dhcp": frozenset({"CAP_NET_ADMIN"}),
         "portal": frozenset()}
"""What each service declares, and its process keeps (tests/test_services.py checks it)."""


class TwistdPrivilegesTests(TestCase):
    """
    Each twistd plugin under C{--uid}/C{--gid}.
    """

    timeout = 180

    def setUp(self) -> None:
        need_root()
        need("udhcpc", "curl")
        try:
            self.uid = pwd.getpwnam(USER).pw_uid
            self.gid = grp.getgrnam(GROUP).gr_gid
        except KeyError:
            raise SkipTest(f"no user {USER} or group {GROUP} on this machine") from None
        self.lab = make_lab(self, clients=1)
        self.work = tempfile.mkdtemp(prefix="nstwistd-")
        self.addCleanup(shutil.rmtree, self.work, True)
        os.chmod(self.work, 0o755)
        self.state = os.path.join(self.work, "state")
        os.mkdir(self.state, 0o750)
        os.chown(self.state, self.uid, self.gid)
        # Made by the first daemon, as root, and given to --uid.
        self.sockets = os.path.join(self.work, "sockets")

    def config(self, all_in_one: bool = False) -> str:
        path = os.path.join(self.work, "all.toml" if all_in_one else "separate.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(all_in_one=str(all_in_one).lower(), state=self.state,
                                  firewall="" if all_in_one else "firewall",
                                  dhcp="" if all_in_one else "dhcp"))
        os.chmod(path, 0o644)
        return path

    def start(self, plugin: str, config: str, name: str = "") -> Child:
        """
        C{twistd -n --uid nobody --gid nogroup PLUGIN}, as root in the
        access point.
        """
        argv = [*TWISTD, "-n", "--pidfile=", "--uid", USER, "--gid", GROUP, plugin,
                "--config", config, "--socket-dir", self.sockets]
        if name:
            argv += ["--name", name]
        return spawn(self, f"{plugin} --uid {USER}", argv, netns=self.lab.netns("ap"))

    def assert_keeps(self, child: Child, keep: FrozenSet[str]) -> None:
        """
        Every thread of C{child} is nobody/nogroup (all four ids of each;
        nogroup is nobody's only group) with exactly C{keep} effective,
        permitted and bounding, nothing inheritable or ambient, and no new
        privileges; its log said so.
        """
        expected = ProcessPrivileges(
            uids=(self.uid,) * 4, gids=(self.gid,) * 4, groups=frozenset({self.gid}),
            effective=keep, permitted=keep, bounding=keep, inheritable=frozenset(),
            ambient=frozenset(), no_new_privs=True)
        assert child.pid is not None
        threads = thread_privileges(child.pid)
        self.assertTrue(threads)
        for tid, privileges in threads.items():
            self.assertEqual(privileges, expected, f"thread {tid}")
        self.assertIn(f"privileges: uid {self.uid} gid {self.gid}, keeping "
                      f"{', '.join(sorted(keep)) or 'none'} (effective", child.output())
        self.assertNotIn("started before twistd switched uid", child.output())

    def udhcpc(self) -> Any:
        done = deferToThread(self.lab.exec, "c1", [
            "udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1", "-i", "eth0", "-s", "/bin/true"],
            timeout=30)
        return done.addCallback(lambda p: p.stdout + p.stderr)

    def curl(self, *args: str) -> Any:
        done = deferToThread(self.lab.exec, "c1", ["curl", "-s", "--max-time", "10", *args])
        return done.addCallback(lambda p: p.stdout)

    def test_declared(self) -> None:
        """
        L{KEEPS} is what the services declare.
        """
        self.assertEqual({name: installed()[name].capabilities for name in KEEPS}, KEEPS)

    @inlineCallbacks
    def test_firewall(self) -> None:
        """
        The firewall, after the switch, installs its rules and authorizes a
        client (libiptc, ipset and tc from its worker thread, made after
        the switch) with CAP_NET_ADMIN and CAP_NET_RAW only; the socket
        directory it made and its bus socket are nobody's.
        """
        firewall = self.start("netsuite-firewall", self.config(), "firewall")
        yield firewall.when_line("firewall ready")
        bus = connect("firewall", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(bus.close)
        answer = yield bus.send("firewall:/firewall/authorize", {
            "ip": self.lab.client_address(1), "mac": self.lab.client_mac(1),
            "down_kbit": 2000})
        self.assertTrue(answer["authorized"])
        members = self.lab.exec("ap", ["ipset", "list", "ns-auth"]).stdout
        self.assertIn(self.lab.client_address(1), members)
        for path in (self.sockets, os.path.join(self.sockets, "firewall.sock")):
            info = os.stat(path)
            self.assertEqual((info.st_uid, info.st_gid), (self.uid, self.gid), path)
        self.assert_keeps(firewall, KEEPS["firewall"])
        firewall.signal("TERM")
        yield firewall.when_ended()
        self.assertFalse(os.path.exists(os.path.join(self.sockets, "firewall.sock")))

    @inlineCallbacks
    def test_dhcp(self) -> None:
        """
        The DHCP server binds port 67 as root, then, with CAP_NET_ADMIN
        only, answers udhcpc by unicast, writing the neighbour entry.
        """
        dhcp = self.start("netsuite-dhcp", self.config(), "dhcp")
        yield dhcp.when_line("dhcp ready")
        output = yield self.udhcpc()
        self.assertIn("lease of 10.89.0.100 obtained", output)
        neighbours = self.lab.exec("ap", ["ip", "neigh", "show", "10.89.0.100"]).stdout
        self.assertIn(f"lladdr {self.lab.client_mac(1)}", neighbours)
        self.assertNotIn("no neighbour entry", dhcp.output())
        info = os.stat(os.path.join(self.state, "dhcp-leases.sqlite"))
        self.assertEqual(info.st_uid, self.uid)
        self.assert_keeps(dhcp, KEEPS["dhcp"])

    @inlineCallbacks
    def test_portal(self) -> None:
        """
        The portal, with no capability at all, redirects a client and logs
        it in through the firewall's process, both nobody's: the bus
        sockets, bound as root, are nobody's too.
        """
        config = self.config()
        firewall = self.start("netsuite-firewall", config, "firewall")
        yield firewall.when_line("firewall ready")
        portal = self.start("netsuite-portal", config, "portal")
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
        self.assert_keeps(portal, KEEPS["portal"])
        self.assert_keeps(firewall, KEEPS["firewall"])

    @inlineCallbacks
    def test_all_in_one(self) -> None:
        """
        C{twistd --uid nobody netsuite} runs the firewall, the DHCP server
        and the portal in one process keeping the union of what they
        declare, and serves a lease.
        """
        netsuite = self.start("netsuite", self.config(all_in_one=True))
        for ready in ("firewall ready", "dhcp ready", "portal ready"):
            yield netsuite.when_line(ready)
        output = yield self.udhcpc()
        self.assertIn("lease of 10.89.0.100 obtained", output)
        self.assert_keeps(netsuite, KEEPS["firewall"] | KEEPS["dhcp"] | KEEPS["portal"])
