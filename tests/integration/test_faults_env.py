# -*- test-case-name: tests.integration.test_faults_env -*-
"""
Faults of the environment, for real: the disk of the lease file (under a
running netsuite-dhcp) or of the portal's session file fills up (a small
tmpfs of the test's own).

No ACK without a durable commit: a client asking while the disk is full
gets no answer (neither ACK nor NAK), the server logs one error line (not
one per request) and counts it; once space is back the next request is
ACKed, with no restart, and the leases bound meanwhile reach the file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from .test_dhcp_lab import DHCPLab
from .test_portal_lab import UPSTREAM_BODY, PortalLab

TMPFS_BYTES = 1024 * 1024


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
