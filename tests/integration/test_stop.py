# -*- test-case-name: tests.integration.test_stop -*-
"""
Stopping, for real: every daemon (the firewall, DHCP and portal processes
of a split deployment, the LDAP hook process, the all-in-one netsuite)
exits soon after SIGTERM once it has done some work, with what it must
keep (leases, sessions) written; and the LDAP hook process, the DHCP
process (its lookup in the process) and the portal (an LDAP login) do so
while a request is blocked on a hung directory.

"Soon" is STOP_BOUND seconds: each stop takes well under 0.5 s here
(bench/stop.py measures them), the bound leaves room for a loaded 2-core
machine and still catches a stop that waits for a thread, a timer or a
deadline of 2-3 s.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import shutil
from typing import Any, Dict, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from netsuite.lab.child import PYTHON
from netsuite.lab.configs import AP_WITH_SLAPD

from .procs import TWISTD, Child, socket_dir, spawn
from ..lab.labs import make_lab, need
from ..ldap.people import ALICE_PASSWORD, slapd_with_alice

STOP_BOUND = 1.5


# twistd plugin -> the lines it prints once ready
READY = {"netsuite-firewall": ["firewall ready"], "netsuite-dhcp": ["dhcp ready"],
         "netsuite-portal": ["portal ready"],
         "netsuite": ["firewall ready", "dhcp ready", "portal ready"]}


class StopTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        need("udhcpc", "curl", "ipset", "iptables-legacy-save")
        self.lab = make_lab(self, clients=1)
        self.sockets = socket_dir(self)
        self.state = tempfile.mkdtemp(prefix="nsstop-")
        self.addCleanup(shutil.rmtree, self.state, True)
        self.slapd = slapd_with_alice(self, hosts=[("c1", self.lab.client_mac(1), "10.89.0.50")],
                                      netns=self.lab.netns("ap"))

    def config(self, split: bool, deadline: float = 1.0, in_process: bool = False,
               portal_ldap: bool = False) -> str:
        """
        The configuration: the directory for the hook (or the DHCP
        process's own lookup, C{in_process}) and, with C{portal_ldap}, for
        the portal's logins; C{deadline} seconds for each request.
        """
        path = os.path.join(self.state, "split.toml" if split else "all.toml")
        with open(path, "w") as f:
            f.write(AP_WITH_SLAPD.format(state=self.state, ldap=self.slapd.url,
                                  base=self.slapd.hosts_dn, deadline=deadline,
                                  in_process=str(in_process).lower(),
                                  portal_ldap=self.slapd.url if portal_ldap else "",
                                  firewall="firewall" if split else "",
                                  dhcp="dhcp" if split else ""))
        return path

    @inlineCallbacks
    def daemon(self, plugin: str, name: str, config: str) -> Any:
        """Start C{twistd PLUGIN} in the access point; fire with it once ready."""
        child = spawn(self, name, [*TWISTD, "-n", "--pidfile=", plugin, "--name", name,
                                   "--config", config, "--socket-dir", self.sockets],
                      netns=self.lab.netns("ap"))
        for line in READY[plugin]:
            yield child.when_line(line)
        return child

    def hook(self, config: str) -> Any:
        """Start the LDAP hook process in the access point; fire once hooked."""
        child = spawn(self, "ldaphook", [PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config",
                                         config, "--process", "dhcp", "--socket-dir",
                                         self.sockets], netns=self.lab.netns("ap"))
        return child.when_line("^hooked$").addCallback(lambda _: child)

    @inlineCallbacks
    def stop(self, child: Child) -> Any:
        """SIGTERM; fire with (seconds until it ended, exit status)."""
        started = reactor.seconds()
        child.signal("TERM")
        code = yield child.when_ended().addTimeout(30, reactor)
        return reactor.seconds() - started, code

    @inlineCallbacks
    def assertStopsSoon(self, child: Child, clean: List[int]) -> Any:
        took, code = yield self.stop(child)
        self.assertIn(code, clean, child.output()[-2000:])
        self.assertLess(took, STOP_BOUND, f"{child.label} took {took:.2f} s to stop")

    def lease(self) -> Any:
        """udhcpc in c1 (its lease from the directory, through the hook when there is one)."""
        return deferToThread(self.lab.exec, "c1", [
            "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", "/bin/true"],
            timeout=30)

    @inlineCallbacks
    def login(self, form: str = "accept=1") -> Any:
        """
        Log in at the portal from c1 with C{form} (a click-through by
        default); fire with curl's process (its output: the status code).
        """
        yield deferToThread(self.lab.exec, "c1", [
            "ip", "addr", "replace", "10.89.0.50/24", "dev", "eth0"], check=True)
        portal = f"http://{self.lab.ap_address}:5280"
        jar = os.path.join(self.state, "jar")
        curl = ["curl", "-s", "--max-time", "10", "-c", jar, "-b", jar]
        page = yield deferToThread(self.lab.exec, "c1", [
            *curl, f"{portal}/login?url=http%3A%2F%2Fexample.com%2F"], check=True)
        token = re.search(r'name="csrf" value="([^"]+)"', page.stdout)
        self.assertIsNotNone(token, page.stdout)
        done = yield deferToThread(self.lab.exec, "c1", [
            *curl, "-o", "/dev/null", "-w", "%{http_code}", "--data",
            f"csrf={token.group(1)}&url=http%3A%2F%2Fexample.com%2F&{form}",
            f"{portal}/login"])
        return done

    def stored(self) -> Dict[str, Any]:
        """
        On disk: the bound leases' addresses, the sessions' addresses, and
        the logouts' (address, reason).
        """
        found = {}
        for name, file, query in (
                ("leases", "leases", "SELECT ip FROM leases WHERE state = 'bound'"),
                ("sessions", "sessions", "SELECT ip FROM sessions"),
                ("logouts", "sessions", "SELECT ip || ' ' || reason FROM logouts")):
            db = sqlite3.connect(os.path.join(self.state, f"{file}.sqlite"))
            try:
                found[name] = [row[0] for row in db.execute(query)]
            finally:
                db.close()
        return found

    @inlineCallbacks
    def test_split(self) -> Any:
        """
        The four processes of a split deployment, after a lease through the
        hook and a login through the firewall's process, each stop soon
        after SIGTERM; the lease is on disk, and so is the session's end
        (a clean stop without keep_clients ends it: C{[portal] keep_sessions}).
        """
        config = self.config(split=True)
        firewall = yield self.daemon("netsuite-firewall", "firewall", config)
        dhcp = yield self.daemon("netsuite-dhcp", "dhcp", config)
        portal = yield self.daemon("netsuite-portal", "portal", config)
        hook = yield self.hook(config)
        got = yield self.lease()
        self.assertIn("lease of 10.89.0.50 obtained", got.stdout + got.stderr)
        done = yield self.login()
        self.assertEqual(done.stdout, "303")
        yield self.assertStopsSoon(hook, [0])
        for daemon in (portal, dhcp, firewall):
            yield self.assertStopsSoon(daemon, [-15])
        stored = self.stored()
        self.assertEqual(len(stored["leases"]), 1)
        self.assertEqual(stored["sessions"], [])
        self.assertEqual(stored["logouts"], ["10.89.0.50 stopped"])

    @inlineCallbacks
    def test_allInOne(self) -> Any:
        """
        The all-in-one netsuite, after a lease and a login, stops soon
        after SIGTERM; the lease and the session's end are on disk.
        """
        netsuite = yield self.daemon("netsuite", "netsuite", self.config(split=False))
        yield self.lease()
        done = yield self.login()
        self.assertEqual(done.stdout, "303")
        yield self.assertStopsSoon(netsuite, [-15])
        stored = self.stored()
        self.assertEqual(len(stored["leases"]), 1)
        self.assertEqual(stored["sessions"], [])
        self.assertEqual(stored["logouts"], ["10.89.0.50 stopped"])

    @inlineCallbacks
    def test_hookWithHungDirectory(self) -> Any:
        """
        The LDAP hook process stops soon after SIGTERM while its search is
        blocked on a hung slapd (SIGSTOP) with a 3 s deadline: it waits
        neither for the search's thread nor for its connection.
        """
        config = self.config(split=True, deadline=3.0)
        yield self.daemon("netsuite-dhcp", "dhcp", config)
        hook = yield self.hook(config)
        self.slapd.pause()
        self.addCleanup(self.slapd.resume)
        asking = self.lease()
        yield self.request_pending()
        yield self.assertStopsSoon(hook, [0])
        got = yield asking  # the server answered from its pool
        self.assertIn("obtained", got.stdout + got.stderr)

    @inlineCallbacks
    def test_dhcpWithHungDirectory(self) -> Any:
        """
        The DHCP process with its own LDAP lookup stops soon after SIGTERM
        while the lookup is blocked on a hung slapd with a 3 s deadline.
        """
        dhcp = yield self.daemon("netsuite-dhcp", "dhcp",
                                 self.config(split=True, deadline=3.0, in_process=True))
        self.slapd.pause()
        self.addCleanup(self.slapd.resume)
        asking = self.lease()
        yield self.request_pending()
        yield self.assertStopsSoon(dhcp, [-15])
        yield asking

    @inlineCallbacks
    def test_portalWithHungDirectory(self) -> Any:
        """
        The portal (in the all-in-one) stops soon after SIGTERM while a
        login's LDAP bind is blocked on a hung slapd with a 3 s deadline.
        """
        netsuite = yield self.daemon("netsuite", "netsuite",
                                     self.config(split=False, deadline=3.0, portal_ldap=True))
        self.slapd.pause()
        self.addCleanup(self.slapd.resume)
        logging_in = self.login(f"accept=1&username=alice&password={ALICE_PASSWORD}")
        yield self.request_pending()
        yield self.assertStopsSoon(netsuite, [-15])
        yield logging_in  # curl's answer: none, the portal has gone

    @inlineCallbacks
    def request_pending(self, timeout: float = 20.0) -> Any:
        """
        Fire once a connection to the paused slapd holds bytes it has not
        read: a request is waiting for its answer.
        """
        deadline = reactor.seconds() + timeout
        port = self.slapd.port
        while reactor.seconds() < deadline:
            out = yield deferToThread(self.lab.exec, "ap", [
                "ss", "-tnH", "state", "established", f"( sport = :{port} )"], timeout=10)
            if any(int(line.split()[0]) > 0 for line in out.stdout.splitlines()
                   if line.split()):
                return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"no request reached the server on port {port} in {timeout} s")
