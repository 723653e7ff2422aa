# -*- test-case-name: tests.integration.test_faults_env -*-
"""
Faults of the environment, for real, each bounded in time:

 - the disk of the lease file (under a running netsuite-dhcp) or of the
   portal's session file fills up (a 1 MiB tmpfs of the test's own): no
   ACK (nor NAK) and no login without a durable commit, one error line,
   counted; service back by itself once there is room;
 - slapd stopped (SIGTERM) or hung (SIGSTOP) while perfdhcp brings new
   clients to netsuite-dhcp with its LDAP lookup: every client answered
   from the pool, the process's mailboxes answer during the hang, the
   lookup's reasons say why; directory answers resume after SIGCONT or a
   restart;
 - the daemon's wall clock stepped back and forward an hour (libfaketime,
   on the daemon only): leases still end after their own time.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile
from typing import Dict

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

from netsuite.lab.peers import SlapdPeer, missing

from .procs import PYTHON, TWISTD, spawn
from .test_dhcp_lab import LDAP_CONFIG, DHCPLab
from .test_portal_lab import UPSTREAM_BODY, PortalLab

TMPFS_BYTES = 1024 * 1024

DEADLINE = 1.0      # seconds the LDAP lookup may take
RATE = 20           # perfdhcp's new clients a second ...
LOAD_SECONDS = 5    # ... for this long: 100 clients, within the pool's 151
DROP_TIME = 4       # perfdhcp counts an exchange dropped after this: the
                    # deadline plus a margin for a loaded 2-core machine
RELAY = "10.89.0.9"  # perfdhcp poses as a relay on c2's eth0 (giaddr): a
                    # relay's replies come back to it, a broadcast would not
PING_BOUND = 5.0    # /system/ping answers within this during a hang


def fill(directory: str) -> str:
    """
    Blocking: write a file in C{directory} until its file system is full;
    return its path.
    """
    path = os.path.join(directory, "filler")
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        try:  # and the last few bytes
            while True:
                f.write(b"\0" * 512)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return path


def small_disk(test) -> str:
    """
    A directory on a tmpfs of L{TMPFS_BYTES}, unmounted and removed in
    C{test}'s clean-up.
    """
    disk = tempfile.mkdtemp(prefix="nsfull-")
    test.addCleanup(os.rmdir, disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700",
                    "netsuite-test", disk], check=True)
    test.addCleanup(subprocess.run, ["umount", "-l", disk], check=True)
    return disk


class FullDiskTests(DHCPLab):
    """
    netsuite-dhcp with its lease file on a 1 MiB tmpfs.
    """

    def before_server(self):
        self.disk = small_disk(self)
        return None

    def lease_file(self):
        return os.path.join(self.disk, "leases.sqlite")

    def counters(self):
        return self.bus.send("/dhcp/counters", {})

    @inlineCallbacks
    def test_full_disk(self):
        """
        c1 is leased; with the disk full, c2 gets no answer in three tries
        (no ACK, no NAK), the server counts the REQUESTs it did not ACK and
        the failed commits, and logs one "could not store" line; once the
        disk has room, c2 is leased with no restart, and c2's lease is in
        the file.
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(code, 0, lines)
        filler = yield deferToThread(fill, self.disk)
        code, lines = yield self.udhcpc("c2")
        self.assertNotEqual(code, 0, lines)
        # udhcpc's script saw no lease and no NAK (its "nak" event)
        self.assertEqual([self.fields(line)["event"] for line in lines],
                         ["deconfig", "leasefail"])
        counters = yield self.counters()
        self.assertEqual((counters["acks"], counters["naks"]), (1, 0), counters)
        self.assertGreaterEqual(counters["unstored"], 2, counters)
        self.assertGreaterEqual(counters["store_failures"], 2, counters)
        errors = [line for line in self.server.output().splitlines()
                  if "could not store" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("database or disk is full", errors[0])
        os.unlink(filler)
        code, lines = yield self.udhcpc("c2")
        self.assertEqual(code, 0, lines)
        ip = self.fields(lines[-1])["ip"]
        self.assertIn("stored lease changes", self.server.output())
        leases = yield self.bus.send("/dhcp/leases", {"mac": self.lab.client_mac(2)})
        self.assertEqual([(str(l["ip"]), l["state"]) for l in leases], [(ip, "bound")])
        on_disk = yield deferToThread(self.rows_on_disk)
        self.assertIn((ip, "bound"), on_disk)

    def rows_on_disk(self):
        from netsuite.dhcp.leases import LeaseStore
        store = LeaseStore(self.lease_file())
        try:
            return [(str(l.ip), l.state) for l in store.all()]
        finally:
            store.close()


class PortalFullDiskTests(PortalLab):
    """
    The portal (all-in-one netsuite) with its session file on a 1 MiB tmpfs.
    """

    def session_file(self):
        self.disk = small_disk(self)
        return os.path.join(self.disk, "sessions.sqlite")

    @inlineCallbacks
    def test_full_disk(self):
        """
        With the disk full, c1's login is answered 503 (not a 500), c1
        does not reach the internet, one "could not store" line is
        logged; once the disk has room, the same login works.
        """
        filler = yield deferToThread(fill, self.disk)
        for _ in range(2):
            code, out, _, _ = yield self.login("c1")
            self.assertEqual((code, out.split()[0]), (0, "503"), out)
        code, body = yield self.curl("c1", self.internet)
        self.assertNotIn(UPSTREAM_BODY, body)
        errors = [line for line in self.daemon.output().splitlines()
                  if "could not store" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("database or disk is full", errors[0])
        os.unlink(filler)
        code, out, _, _ = yield self.login("c1")
        self.assertEqual((code, out), (0, "303 http://example.com/"))
        code, body = yield self.curl("c1", self.internet)
        self.assertEqual((code, body), (0, UPSTREAM_BODY))


def perfdhcp_counts(output: str) -> Dict[str, int]:
    """
    perfdhcp's totals: C{sent packets}, C{received packets} and C{drops}
    of its first exchange (DISCOVER-OFFER) and second (REQUEST-ACK),
    named C{do_sent}, C{do_received}, C{do_drops}, C{ra_...}.
    """
    counts: Dict[str, int] = {}
    exchange = None
    for line in output.splitlines():
        if "DISCOVER-OFFER" in line:
            exchange = "do"
        elif "REQUEST-ACK" in line:
            exchange = "ra"
        match = re.match(r"\s*(sent packets|received packets|drops):\s+(\d+)", line)
        if exchange and match:
            counts.setdefault(f"{exchange}_{match.group(1).split()[0]}", int(match.group(2)))
    return counts


class LdapFaultTests(DHCPLab):
    """
    netsuite-dhcp with its LDAP lookup (in the process, deadline
    L{DEADLINE} s) and slapd in the access point, which knows c1, c2 and
    c3; perfdhcp in c2 brings clients the directory does not know.
    """

    last = "10.89.0.250"
    relays = (RELAY,)

    def before_server(self):
        if missing("slapd", "slapadd", "perfdhcp"):
            raise SkipTest("not installed: slapd, perfdhcp (Debian: slapd, kea-admin)")
        self.port = 3391
        self.slapd = SlapdPeer(self.lab.netns("ap"), "127.0.0.1", self.port, hosts=[
            ("c1host", self.lab.client_mac(1), "10.89.0.50"),
            ("c2host", self.lab.client_mac(2), "10.89.0.52"),
            ("c3host", self.lab.client_mac(3), "10.89.0.51")])
        self.addCleanup(self.slapd.stop)
        return deferToThread(self.slapd.start)

    def extra_config(self):
        return LDAP_CONFIG.replace("deadline = 1.0", f"deadline = {DEADLINE}").format(
            enabled="true", port=self.port, base=self.slapd.hosts_dn)

    def load(self, block: int):
        """
        perfdhcp in c2: RATE new clients a second for LOAD_SECONDS, MACs of
        block C{block}, each DISCOVER counted dropped after DROP_TIME s;
        fire with its totals (L{perfdhcp_counts}).
        """
        argv = ["perfdhcp", "-4", "-g", "single", "-l", RELAY, "-r", str(RATE), "-p", str(LOAD_SECONDS),
                "-R", str(RATE * LOAD_SECONDS), "-d", str(DROP_TIME), "-W", "3000000",
                "-b", f"mac=02:fa:{block:02x}:00:00:00", "10.89.0.1"]
        def run():
            self.lab.exec("c2", ["ip", "addr", "replace", f"{RELAY}/24", "dev", "eth0"],
                          check=True)
            return self.lab.exec("c2", argv, timeout=LOAD_SECONDS + 30)
        return deferToThread(run).addCallback(lambda p: perfdhcp_counts(p.stdout))

    @inlineCallbacks
    def served_while(self, block: int):
        """
        perfdhcp's load while the directory misbehaves; during it, the
        process answers /system/ping. Fires with perfdhcp's totals.
        """
        loaded = self.load(block)
        pinged = 0
        while not loaded.called:
            yield self.bus.send("/system/ping", {}).addTimeout(PING_BOUND, reactor)
            pinged += 1
            yield deferLater(reactor, 0.5, lambda: None)
        totals = yield loaded
        self.assertGreater(pinged, 0)
        return totals

    def assertAllAnswered(self, totals):
        """Every DISCOVER got an OFFER and every REQUEST an ACK."""
        self.assertGreater(totals.get("do_sent", 0), RATE * LOAD_SECONDS // 2, totals)
        self.assertEqual((totals["do_received"], totals["do_drops"]),
                         (totals["do_sent"], 0), totals)
        self.assertEqual((totals["ra_sent"], totals["ra_received"], totals["ra_drops"]),
                         (totals["do_sent"], totals["do_sent"], 0), totals)

    @inlineCallbacks
    def test_hung_then_continued(self):
        """
        With slapd hung (SIGSTOP) under load, every perfdhcp client is
        answered from the pool within the lookup deadline plus a margin
        (no drop at DROP_TIME s), the process answers its /system
        mailboxes during the hang, the lookup's timeout and busy reasons
        rise; after SIGCONT, c3 gets its directory address again.
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(self.fields(lines[-1])["ip"], "10.89.0.50", lines)
        yield deferToThread(self.slapd.pause)
        totals = yield self.served_while(1)
        self.assertAllAnswered(totals)
        line = yield self.listing()
        self.assertGreater(reason(line, "timeout") + reason(line, "busy"), 0, line)
        self.slapd.resume()
        code, lines = yield self.udhcpc("c3")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.51"), lines)

    @inlineCallbacks
    def test_stopped_then_restarted(self):
        """
        With slapd stopped (SIGTERM) under load, every perfdhcp client is
        answered from the pool, the lookup's error reason rises; once
        slapd runs again, c2 gets its directory address.
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(self.fields(lines[-1])["ip"], "10.89.0.50", lines)
        yield deferToThread(self.slapd.stop)
        totals = yield self.served_while(2)
        self.assertAllAnswered(totals)
        line = yield self.listing()
        self.assertGreater(reason(line, "error"), 0, line)
        yield deferToThread(self.slapd.start)
        code, lines = yield self.udhcpc("c2")
        self.assertEqual((code, self.fields(lines[-1])["ip"]), (0, "10.89.0.52"), lines)

    @inlineCallbacks
    def listing(self):
        """The LDAP listener's line of C{netsuite-hook list ap:/dhcp/lookup}."""
        hook_cli = os.path.join(os.path.dirname(PYTHON), "netsuite-hook")
        listing = spawn(self, "netsuite-hook", [hook_cli, "--socket-dir", self.sockets,
                                                "list", "ap:/dhcp/lookup"])
        code = yield listing.when_ended()
        self.assertEqual(code, 0, listing.output())
        [line] = [l for l in listing.output().splitlines() if "hook=ldap" in l]
        return line


def reason(line: str, name: str) -> int:
    """The count of reason C{name} in a listener's listing line (0 if absent)."""
    found = re.search(rf"\b{name}=(\d+)", line.split("reasons:", 1)[-1])
    return int(found.group(1)) if found else 0


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class ClockStepTests(DHCPLab):
    """
    netsuite-dhcp under libfaketime (Debian: faketime), the daemon only:
    the test writes the offset of its wall clock to a file that the
    library reads on every call; its monotonic clock is left alone, as a
    real step leaves it. This machine's clock is never touched.
    """

    lease_time = 10

    def before_server(self):
        if not os.path.exists(LIBFAKETIME):
            raise SkipTest(f"not installed: {LIBFAKETIME} (Debian: faketime)")
        self.offset_file = os.path.join(self.work, "faketime")
        self.set_offset("+0")

    def set_offset(self, offset: str) -> None:
        """Step the daemon's wall clock to C{offset} from the real one."""
        with open(self.offset_file + ".new", "w") as f:
            f.write(offset + "\n")
        os.replace(self.offset_file + ".new", self.offset_file)

    def start_server(self):
        self.server = spawn(self, "netsuite-dhcp", [
            *TWISTD, "-n", "--pidfile=", "netsuite-dhcp", "--name", "ap", "--socket-dir",
            self.sockets, "--config", self.config], netns=self.lab.netns("ap"), env={
                "LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": self.offset_file,
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        return self.server.when_line("dhcp ready")

    def state(self, client: int):
        leases = self.bus.send("/dhcp/leases", {"mac": self.lab.client_mac(client)})
        return leases.addCallback(lambda found: [l["state"] for l in found])

    @inlineCallbacks
    def test_steps(self):
        """
        Stepped back an hour, the daemon notices, and c1's lease of 10 s
        still ends (its sweep goes on); stepped forward an hour, c2's
        lease is not ended at once but after its own 10 s.
        """
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(code, 0, lines)
        _, c1_expired = yield self.watching(self.bus, "/dhcp/lease/expired",
                                            self.lab.client_mac(1))
        self.set_offset("-3600")
        yield self.server.when_line(r"wall clock stepped -3600", timeout=30)
        yield c1_expired.addTimeout(STEP_BOUND, reactor)
        code, lines = yield self.udhcpc("c2")
        self.assertEqual(code, 0, lines)
        _, c2_expired = yield self.watching(self.bus, "/dhcp/lease/expired",
                                            self.lab.client_mac(2))
        after = len(self.server.output().splitlines())
        self.set_offset("+0")
        yield self.server.when_line(r"wall clock stepped \+3600", timeout=30, after=after)
        state = yield self.state(2)
        self.assertEqual(state, ["bound"])
        yield c2_expired.addTimeout(STEP_BOUND, reactor)


STEP_BOUND = 60.0   # seconds to wait for a 10 s lease to end after a step
