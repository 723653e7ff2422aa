"""
Tests for L{netsuite.dhcp.leases}: the lease store's lookups, its expiry
index, and its durability across close, reopen and kill -9.
"""

import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Address
from typing import List

from twisted.trial.unittest import SynchronousTestCase

import netsuite
from netsuite.dhcp.leases import Lease, LeaseStore
from netsuite.registry.values import MAC

NL = b"\n"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(netsuite.__file__)))


def lease(n, state="bound", expires=1000.0, client=None, subnet="lan"):
    """
    A lease of 10.0.0.C{n} for client C{client} (default: C{n}).
    """
    client = n if client is None else client
    return Lease(ip=IPv4Address(f"10.0.0.{n}"), client_key=b"\x01" + bytes([client]) * 6,
                 mac=MAC(bytes([2, 0, 0, 0, 0, client])), state=state, expires=expires,
                 hostname=f"host{n}", subnet=subnet)


class LeaseTests(SynchronousTestCase):
    def test_unknown_state(self):
        """
        A lease's state is one of the five known ones.
        """
        self.assertRaises(ValueError, lease, 1, state="stolen")


class StoreTestsMixin:
    """
    Behaviour shared by the in-memory and the file store.
    """

    def make_store(self) -> LeaseStore:
        raise NotImplementedError()

    def setUp(self):
        self.store = self.make_store()
        self.addCleanup(self.store.close)

    def test_put_get(self):
        """
        A lease put is found by address and by client, with every field.
        """
        self.store.put(lease(5))
        self.assertEqual(self.store.get_by_ip(IPv4Address("10.0.0.5")), lease(5))
        self.assertEqual(self.store.get_by_client(lease(5).client_key, "lan"), lease(5))
        self.assertIsNone(self.store.get_by_client(lease(5).client_key, "other"))
        self.assertIsNone(self.store.get_by_ip(IPv4Address("10.0.0.6")))

    def test_put_replaces(self):
        """
        An address has one lease: putting another replaces it.
        """
        self.store.put(lease(5))
        self.store.put(lease(5, client=9))
        self.assertEqual(self.store.get_by_ip(IPv4Address("10.0.0.5")), lease(5, client=9))
        self.assertIsNone(self.store.get_by_client(lease(5).client_key, "lan"))
        self.assertEqual(self.store.count(), 1)

    def test_client_prefers_bound(self):
        """
        A client with several rows gets its bound lease, else its latest
        one; a declined address is not the client's.
        """
        self.store.put_many([lease(1, "expired", 50.0, client=7),
                             lease(2, "released", 60.0, client=7),
                             lease(3, "declined", 90.0, client=7)])
        key = lease(1, client=7).client_key
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.2"))
        self.store.put(lease(4, "bound", 10.0, client=7))
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.4"))

    def test_client_addresses_follow_the_rows(self):
        """
        A client's addresses are known as they come and go: from one to
        several and back, through replacement and removal.
        """
        key = lease(1, client=7).client_key
        self.store.put(lease(1, "released", 50.0, client=7))
        self.store.put(lease(2, "bound", 60.0, client=7))
        self.store.put(lease(3, "expired", 40.0, client=7))
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.2"))
        self.store.put(lease(2, client=9))  # another client takes .2
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.1"))
        self.store.put(lease(1, client=9))
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.3"))
        self.store.put(lease(3, client=9))
        self.assertIsNone(self.store.get_by_client(key, "lan"))
        self.store.put(lease(3, "bound", 70.0, client=7))
        self.assertEqual(self.store.get_by_client(key, "lan").ip, IPv4Address("10.0.0.3"))
        self.store.put(lease(3, "bound", 80.0, client=7))  # the same address again
        self.assertEqual(self.store.get_by_client(key, "lan").expires, 80.0)

    def test_offers_in_memory(self):
        """
        Offers shadow the row of their address and are found by client,
        but are never written to the database.
        """
        self.store.put(lease(5, "expired", client=1))
        offer = lease(5, "offered", client=2)
        self.store.put(offer, durable=True)
        self.assertEqual(self.store.get_by_ip(offer.ip), offer)
        self.assertEqual(self.store.get_by_client(offer.client_key, "lan"), offer)
        self.assertEqual(self.store.offers(), [offer])
        self.assertEqual(self.store.all(), [offer])
        self.assertEqual(self.store.count(), 1)
        rows = self.store._db().execute("SELECT state FROM leases").fetchall()
        self.assertEqual(rows, [("expired",)])
        self.assertEqual(self.store.discard_offer(offer.ip), offer)
        self.assertEqual(self.store.get_by_ip(offer.ip), lease(5, "expired", client=1))

    def test_new_offer_replaces_clients_offer(self):
        """
        A client holds one offer per subnet; binding its address drops it.
        """
        self.store.put(lease(5, "offered", client=2))
        self.store.put(lease(6, "offered", client=2))
        self.assertEqual([o.ip for o in self.store.offers()], [IPv4Address("10.0.0.6")])
        self.store.put(lease(6, "bound", client=2))
        self.assertEqual(self.store.offers(), [])
        self.assertEqual(self.store.get_by_client(lease(6, client=2).client_key, "lan").state,
                         "bound")

    def test_release(self):
        """
        Releasing marks a bound lease released; other states stay.
        """
        self.store.put(lease(5))
        released = self.store.release(IPv4Address("10.0.0.5"))
        self.assertEqual(released, lease(5, "released"))
        self.assertEqual(self.store.get_by_ip(IPv4Address("10.0.0.5")), released)
        self.assertIsNone(self.store.release(IPv4Address("10.0.0.6")))

    def test_remove(self):
        """
        Removed addresses have no row left; an offer made on one stays.
        """
        self.store.put_many([lease(5), lease(6, "declined")])
        self.store.put(lease(6, "offered", client=9))
        self.store.remove([IPv4Address("10.0.0.5"), IPv4Address("10.0.0.6")])
        self.assertEqual(self.store.all(), [lease(6, "offered", client=9)])
        self.store.discard_offer(IPv4Address("10.0.0.6"))
        self.assertEqual(self.store.all(), [])

    def test_expired(self):
        """
        C{expired} returns the bound and declined leases due by then, oldest
        first, at most C{limit}.
        """
        self.store.put_many([lease(1, "bound", 30.0), lease(2, "declined", 10.0),
                             lease(3, "released", 5.0), lease(4, "expired", 5.0),
                             lease(5, "bound", 20.0), lease(6, "bound", 99.0),
                             lease(7, "offered", 1.0)])
        self.assertEqual([l.ip.packed[3] for l in self.store.expired(30.0, 10)], [2, 5, 1])
        self.assertEqual([l.ip.packed[3] for l in self.store.expired(30.0, 2)], [2, 5])
        self.assertEqual(self.store.expired(9.0, 10), [])

    def test_expired_after_renewal(self):
        """
        A lease renewed before it ran out is due at its new time only, and
        is returned once however often it was renewed.
        """
        self.store.put(lease(1, "bound", 10.0))
        self.store.put(lease(1, "bound", 20.0))
        self.store.put(lease(1, "bound", 20.0))
        self.assertEqual(self.store.expired(15.0), [])
        self.assertEqual(self.store.expired(25.0), [lease(1, "bound", 20.0)])
        self.assertEqual(self.store.expired(25.0), [lease(1, "bound", 20.0)])
        self.store.put(lease(1, "expired", 20.0))
        self.assertEqual(self.store.expired(25.0), [])

    def test_reads_from_memory(self):
        """
        Lookups by address, by client and by expiry, listing and counting
        answer from memory: no statement reaches the file.
        """
        self.store.put_many([lease(1), lease(2, "declined", 5.0), lease(3, "released")])
        db = self.store._db()
        statements: List[str] = []
        db.set_trace_callback(statements.append)
        self.assertEqual(self.store.get_by_ip(IPv4Address("10.0.0.1")), lease(1))
        self.assertEqual(self.store.get_by_client(lease(3).client_key, "lan"), lease(3, "released"))
        self.assertEqual(self.store.expired(10.0), [lease(2, "declined", 5.0)])
        self.assertEqual(len(self.store.all()), 3)
        self.assertEqual(self.store.count(), 3)
        db.set_trace_callback(None)
        self.assertEqual(statements, [])

    def test_all_by_subnet(self):
        """
        C{all} lists the leases in address order, of one subnet if asked.
        """
        self.store.put_many([lease(9), lease(3, subnet="guest"), lease(1)])
        self.assertEqual(self.store.all(), [lease(1), lease(3, subnet="guest"), lease(9)])
        self.assertEqual(self.store.all("lan"), [lease(1), lease(9)])
        self.assertEqual(self.store.count(), 3)

    def test_durable_commit(self):
        """
        A durable put commits with C{synchronous=FULL}, a non-durable one
        with C{NORMAL}, each in its own transaction.
        """
        db = self.store._db()
        statements: List[str] = []
        db.set_trace_callback(statements.append)
        self.store.put_many([lease(1), lease(2)], durable=True)
        self.assertEqual(db.execute("PRAGMA synchronous").fetchone()[0], 2)
        self.store.put(lease(3), durable=False)
        self.assertEqual(db.execute("PRAGMA synchronous").fetchone()[0], 1)
        db.set_trace_callback(None)
        self.assertEqual(statements.count("COMMIT"), 2)
        self.assertIn("PRAGMA synchronous=FULL", statements)

    def test_one_thread(self):
        """
        The file belongs to the thread that built the store; sqlite3
        refuses a commit from any other.
        """
        errors = []

        def other():
            try:
                self.store.put(lease(1))
            except Exception as e:
                errors.append(e)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        self.assertEqual(len(errors), 1)


class MemoryStoreTests(StoreTestsMixin, SynchronousTestCase):
    def make_store(self):
        return LeaseStore(":memory:")


class FileStoreTests(StoreTestsMixin, SynchronousTestCase):
    def make_store(self):
        return LeaseStore(self.mktemp())

    def test_wal(self):
        """
        The file is in WAL mode.
        """
        self.assertEqual(self.store._db().execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_reopen(self):
        """
        Closing and reopening the file keeps every lease but the offers.
        """
        leases = [lease(n, state) for n, state in
                  enumerate(["bound", "declined", "released", "expired"], 1)]
        self.store.put_many(leases, durable=True)
        self.store.put(lease(9, "bound"), durable=False)
        self.store.put(lease(8, "offered"))
        self.store.close()
        again = LeaseStore(self.store.path)
        self.addCleanup(again.close)
        self.assertEqual(again.all(), leases + [lease(9)])


class QueuedWritesTests(SynchronousTestCase):
    """
    A store that does not write through: memory changes at once, the file
    only when its owner commits.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.store = LeaseStore(self.path, write_through=False)
        self.addCleanup(self.store.close)

    def on_disk(self):
        other = LeaseStore(self.path)
        try:
            return other.all()
        finally:
            other.close()

    def test_queued_until_committed(self):
        """
        Writes are seen at once in memory, reach the file only when the
        writes taken are committed, the last change of each address only.
        """
        self.store.put_many([lease(1), lease(2)])
        self.store.put(lease(1, "released"))
        self.store.remove([IPv4Address("10.0.0.2")])
        self.store.put(lease(3, "offered"))
        self.assertEqual(self.store.all(), [lease(1, "released"), lease(3, "offered")])
        self.assertEqual(self.on_disk(), [])
        writes = self.store.take_writes()
        self.assertEqual(sorted(writes), [0x0A000001, 0x0A000002])
        self.assertIsNone(writes[0x0A000002])
        self.assertEqual(self.store.take_writes(), {})
        self.store.commit(writes, durable=True)
        self.assertEqual(self.on_disk(), [lease(1, "released")])

    def test_remove_after_commit(self):
        """
        A removal deletes the row already in the file.
        """
        self.store.put(lease(4))
        self.store.commit(self.store.take_writes())
        self.store.remove([IPv4Address("10.0.0.4")])
        self.store.commit(self.store.take_writes(), durable=False)
        self.assertEqual(self.on_disk(), [])

    def test_many_in_one_commit(self):
        """
        More changes than one statement takes go in one transaction: 1,200
        leases, then 700 of them removed.
        """
        many = [Lease(ip=IPv4Address(0x0A000000 + n), client_key=b"c%d" % n, mac=None,
                      state="bound", expires=1e12, subnet="lan") for n in range(1200)]
        self.store.put_many(many)
        self.store.commit(self.store.take_writes())
        self.store.remove([lease.ip for lease in many[:700]])
        db = self.store._db()
        statements: List[str] = []
        db.set_trace_callback(statements.append)
        self.store.commit(self.store.take_writes())
        db.set_trace_callback(None)
        self.assertEqual(statements.count("COMMIT"), 1)
        self.assertEqual(self.on_disk(), many[700:])

    def test_close_commits(self):
        """
        Closing commits what is still queued.
        """
        self.store.put(lease(7))
        self.store.close()
        self.assertEqual(self.on_disk(), [lease(7)])


# Puts durable leases in a loop; prints each address once put_many returned.
CHILD = r"""
import sys
from ipaddress import IPv4Address
from netsuite.dhcp.leases import Lease, LeaseStore
path, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = LeaseStore(path)
while True:
    leases = [Lease(ip=IPv4Address(0x0A000000 + n + i), client_key=b"c%d" % (n + i),
                    mac=None, state="bound", expires=1e12, subnet="lan")
              for i in range(batch)]
    store.put_many(leases, durable=True)
    sys.stdout.write("".join("%s\n" % l.ip for l in leases))
    sys.stdout.flush()
    n += batch
"""


class KillTests(SynchronousTestCase):
    def acknowledged_then_killed(self, path: str, start: int, batch: int,
                                 stop_after: int, deadline: float) -> List[str]:
        """
        Run the child until it has acknowledged C{stop_after} leases, kill
        it with SIGKILL, and return every address it printed.
        """
        env = dict(os.environ, PYTHONPATH=REPO)
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(start), str(batch)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.addCleanup(child.wait)
        self.addCleanup(child.stderr.close)
        self.addCleanup(child.stdout.close)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        selector = selectors.DefaultSelector()
        self.addCleanup(selector.close)
        selector.register(child.stdout, selectors.EVENT_READ)
        output = b""
        while output.count(NL) < stop_after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail(f"the child acknowledged only {output.count(NL)} leases in time")
            if selector.select(remaining):
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    self.fail(f"the child exited: {child.stderr.read().decode()}")
                output += chunk
        os.kill(child.pid, signal.SIGKILL)
        self.assertEqual(child.wait(timeout=max(1.0, deadline - time.monotonic())),
                         -signal.SIGKILL)
        output += child.stdout.read()
        return output.decode().split("\n")[:-1]

    def test_kill_9(self):
        """
        A process killed with SIGKILL at an arbitrary point, mid-commit or
        not, has lost none of the leases it acknowledged, singly or in
        groups; and the file still opens and takes writes.
        """
        seed = random.randrange(2 ** 32)
        chance = random.Random(seed)
        path = self.mktemp()
        deadline = time.monotonic() + 60
        acknowledged: List[str] = []
        start = 1
        for batch in (1, 16, 1, 16):
            printed = self.acknowledged_then_killed(
                path, start, batch, chance.randint(1, 300), deadline)
            acknowledged += printed
            start += len(printed) + batch
            store = LeaseStore(path)
            found = {str(l.ip) for l in store.all() if l.state == "bound"}
            store.close()
            missing = [ip for ip in acknowledged if ip not in found]
            self.assertEqual(missing, [], f"lost acknowledged leases (seed {seed})")
        self.assertTrue(acknowledged)
