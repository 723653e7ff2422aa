# -*- test-case-name: tests.dhcp.test_leases -*-
"""
The lease store: every lease in memory, every change also written to one
SQLite file in WAL mode, one row per address.

Reads never touch the file: a lookup by address, by client or by expiry
time is a dict or heap operation, so the server answers from memory on the
reactor thread. Writes change memory at once and queue their rows for the
file. With C{write_through} (the default) a write commits before it
returns; without it the owner takes the queued rows with L{take_writes}
and commits them with L{commit} in the store's thread, several changes in
one transaction (the server's group commit).

A durable commit runs with C{synchronous=FULL}, so the WAL is fsynced
before it returns: the server sends an ACK only after that, and a kill -9
or a power cut at any moment loses no acknowledged lease. Offers live for
seconds and only in memory. Other writes (release, expiry, decline) may
commit without fsync: a crash may undo them, never corrupt the file, and
undoing them is harmless.

The file's connection opens in the thread that builds the store (it reads
every row then) and sqlite3 refuses calls from any other thread: build
the store in the thread that will commit.
"""

from __future__ import annotations

import heapq
import sqlite3
from ipaddress import IPv4Address
from typing import Dict, Iterable, List, Optional, Set, Tuple, Union

import attr

from ..registry.values import MAC

__all__ = ["Lease", "LeaseStore", "STATES", "ACTIVE", "Writes"]

STATES = frozenset({"offered", "bound", "declined", "released", "expired"})
"""Every lease state."""

ACTIVE = ("bound", "declined")
"""The states whose C{expires} matters: a bound lease runs out, a declined
address leaves quarantine. Only these are in the expiry heap."""


def _check_state(instance: object, attribute: object, value: str) -> None:
    if value not in STATES:
        raise ValueError(f"unknown lease state {value!r}")


@attr.s(frozen=True, auto_attribs=True, slots=True)
class Lease:
    """
    One address and who has it.

    @ivar client_key: the RFC 2131 client identity: option 61 if the client
        sent one, else the hardware type byte followed by C{chaddr}.
    @ivar state: one of L{STATES}.
    @ivar expires: epoch seconds when the lease, the offer hold or the
        quarantine ends.
    @ivar subnet: the name of the L{netsuite.dhcp.pool.Subnet}.
    """

    ip: IPv4Address
    client_key: bytes
    mac: Optional[MAC]
    state: str = attr.ib(validator=_check_state)
    expires: float
    hostname: Optional[str] = None
    subnet: str = ""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    ip INTEGER PRIMARY KEY,
    client_key BLOB NOT NULL,
    mac BLOB,
    state TEXT NOT NULL,
    expires REAL NOT NULL,
    hostname TEXT,
    subnet TEXT NOT NULL
);
DROP INDEX IF EXISTS leases_client;
DROP INDEX IF EXISTS leases_expires;
"""
# (Files written before the store kept its leases in memory have two
# indexes that nothing reads any more; dropping them makes writes cheaper.)

_COLUMNS = "ip, client_key, mac, state, expires, hostname, subnet"
_PUT = f"INSERT OR REPLACE INTO leases ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM leases WHERE ip IN (%s)"
_CHUNK = 500  # rows per statement: 3,500 parameters, under SQLite's 32,766

_Row = Tuple[int, bytes, Optional[bytes], str, float, Optional[str], str]

Writes = Dict[int, Optional[_Row]]
"""Changes waiting for the file: the new row of each address, or L{None}
to delete it. The last change of an address is the only one that counts."""


def _from_row(row: _Row) -> Lease:
    ip, client_key, mac, state, expires, hostname, subnet = row
    return Lease(ip=IPv4Address(ip), client_key=bytes(client_key),
                 mac=None if mac is None else MAC(bytes(mac)), state=state,
                 expires=expires, hostname=hostname, subnet=subnet)


def _to_row(lease: Lease) -> _Row:
    return (int(lease.ip), lease.client_key,
            None if lease.mac is None else lease.mac.packed, lease.state,
            lease.expires, lease.hostname, lease.subnet)


class LeaseStore:
    """
    Leases by address and by client, durable on request.

    Each address has at most one row: the lease that holds it now, or the
    last one that did (released or expired), which lets a returning client
    get its previous address back. An offer shadows the row of its address
    until it is bound, dropped or replaced.

    @param path: the database file, or C{":memory:"} for tests.
    @param write_through: commit each write before returning; else queue
        it for L{take_writes} and L{commit}.
    """

    def __init__(self, path: str = ":memory:", write_through: bool = True) -> None:
        self.path = path
        self.write_through = write_through
        self._conn: Optional[sqlite3.Connection] = None
        self._synchronous = ""
        self._rows: Dict[int, Lease] = {}
        # The addresses of each client: an int, or a set of them for a client
        # that has held several (a set per client would cost ~200 B a lease).
        self._of_client: Dict[Tuple[bytes, str], Union[int, Set[int]]] = {}
        self._due: List[Tuple[float, int]] = []
        self._offers: Dict[int, Lease] = {}
        self._offer_of: Dict[Tuple[bytes, str], int] = {}
        self._writes: Writes = {}
        for row in self._db().execute(f"SELECT {_COLUMNS} FROM leases"):
            self._remember(_from_row(row))

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
            self._synchronous = ""
        return self._conn

    def close(self) -> None:
        """
        Commit what is queued and close the connection (in its thread).
        In-memory offers are forgotten; a later write reopens the file.
        """
        if self._writes and self._conn is not None:
            self.commit(self.take_writes(), durable=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._offers.clear()
        self._offer_of.clear()

    # The file.

    def take_writes(self) -> Writes:
        """
        The changes not yet handed to L{commit}, which are now the
        caller's to commit.
        """
        writes, self._writes = self._writes, {}
        return writes

    def give_back(self, writes: Writes) -> None:
        """
        Queue C{writes} again (their commit failed), under the changes
        queued since: the newer change of an address wins.
        """
        for ip, row in writes.items():
            self._writes.setdefault(ip, row)

    def shift(self, seconds: float) -> None:
        """
        Move the end of every lease and offer by C{seconds}: the wall
        clock stepped that far (L{netsuite.clock}), and each keeps the
        time it had left. Every row is queued for the file (its new end
        is in the wall clock's new reckoning). Costs one pass over the
        leases, once per step.
        """
        for ip, lease in list(self._rows.items()):
            moved = attr.evolve(lease, expires=lease.expires + seconds)
            self._rows[ip] = moved
            self._writes[ip] = _to_row(moved)
        self._due = [(lease.expires, ip) for ip, lease in self._rows.items()
                     if lease.state in ACTIVE]
        heapq.heapify(self._due)
        for ip, offer in list(self._offers.items()):
            self._offers[ip] = attr.evolve(offer, expires=offer.expires + seconds)

    def commit(self, writes: Writes, durable: bool = True) -> None:
        """
        Write C{writes} in one transaction, fsynced if C{durable}. Touches
        the file only, never the leases in memory: call it from the
        store's thread while the reactor thread goes on serving.
        """
        if not writes:
            return
        db = self._db()
        wanted = "FULL" if durable else "NORMAL"
        if self._synchronous != wanted:
            db.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted
        rows = [row for row in writes.values() if row is not None]
        gone = [ip for ip, row in writes.items() if row is None]
        db.execute("BEGIN IMMEDIATE")
        try:
            # Many rows per statement: sqlite3 lets go of the GIL around
            # each statement it steps, and getting it back from a busy
            # reactor thread can take a switch interval (5 ms) each time.
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start:start + _CHUNK]
                db.execute(_PUT + ", (?, ?, ?, ?, ?, ?, ?)" * (len(chunk) - 1),
                           [value for row in chunk for value in row])
            for start in range(0, len(gone), _CHUNK):
                chunk = gone[start:start + _CHUNK]
                db.execute(_DELETE % ", ".join("?" * len(chunk)), chunk)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _wrote(self, durable: bool) -> None:
        if self.write_through:
            self.commit(self.take_writes(), durable)

    # Memory.

    def _remember(self, lease: Lease) -> None:
        """
        Make C{lease} the row of its address, in every index.
        """
        ip = int(lease.ip)
        self._forget(ip)
        self._rows[ip] = lease
        key = (lease.client_key, lease.subnet)
        held = self._of_client.get(key)
        if held is None:
            self._of_client[key] = ip
        elif type(held) is int:
            if held != ip:
                self._of_client[key] = {held, ip}
        else:
            held.add(ip)  # type: ignore[union-attr]
        if lease.state in ACTIVE:
            heapq.heappush(self._due, (lease.expires, ip))

    def _forget(self, ip: int) -> None:
        old = self._rows.pop(ip, None)
        if old is not None:
            key = (old.client_key, old.subnet)
            held = self._of_client.get(key)
            if type(held) is int:
                if held == ip:
                    del self._of_client[key]
            elif held is not None:
                held.discard(ip)  # type: ignore[union-attr]
                if len(held) == 1:  # type: ignore[arg-type]
                    self._of_client[key] = next(iter(held))  # type: ignore[call-overload]
        # Its entry in the expiry heap goes stale; L{expired} skips it.

    def _drop_offer(self, ip: int) -> None:
        offer = self._offers.pop(ip, None)
        if offer is not None:
            key = (offer.client_key, offer.subnet)
            if self._offer_of.get(key) == ip:
                del self._offer_of[key]

    def _hold(self, offer: Lease) -> None:
        ip = int(offer.ip)
        self._drop_offer(ip)
        previous = self._offer_of.get((offer.client_key, offer.subnet))
        if previous is not None:
            self._drop_offer(previous)
        self._offers[ip] = offer
        self._offer_of[(offer.client_key, offer.subnet)] = ip

    def discard_offer(self, ip: IPv4Address) -> Optional[Lease]:
        """
        Forget the offer on C{ip}, if any, and return it.
        """
        offer = self._offers.get(int(ip))
        self._drop_offer(int(ip))
        return offer

    def offers(self) -> List[Lease]:
        """
        The offers held now.
        """
        return list(self._offers.values())

    # Writes.

    def put(self, lease: Lease, durable: bool = True) -> None:
        """
        Record C{lease}, replacing whatever held its address.

        @param durable: fsync before returning; the server asks for this
            before it sends an ACK. Offers are kept in memory whatever this
            says.
        """
        self.put_many([lease], durable)

    def put_many(self, leases: Iterable[Lease], durable: bool = True) -> None:
        """
        Record several leases in one transaction: one fsync for all of them
        (group commit, for ACKs that wait on durability together).
        """
        wrote = False
        for lease in leases:
            if lease.state == "offered":
                self._hold(lease)
                continue
            ip = int(lease.ip)
            self._remember(lease)
            self._drop_offer(ip)
            self._writes[ip] = _to_row(lease)
            wrote = True
        if wrote:
            self._wrote(durable)

    def release(self, ip: IPv4Address, durable: bool = False) -> Optional[Lease]:
        """
        Drop the offer on C{ip} and mark a bound lease there released.

        @return: the lease as it is now, or L{None} if there was none.
        """
        self._drop_offer(int(ip))
        lease = self._rows.get(int(ip))
        if lease is None or lease.state != "bound":
            return lease
        released = attr.evolve(lease, state="released")
        self.put(released, durable)
        return released

    def remove(self, ips: Iterable[IPv4Address], durable: bool = False) -> None:
        """
        Delete the rows of C{ips}, as if they had never been leased. Offers
        made on them since stay.
        """
        keys = [int(ip) for ip in ips]
        for key in keys:
            self._forget(key)
            self._writes[key] = None
        if keys:
            self._wrote(durable)

    # Reads, from memory.

    def get_by_ip(self, ip: IPv4Address) -> Optional[Lease]:
        """
        The offer on C{ip} if there is one, else its row.
        """
        return self.at(int(ip))

    def at(self, ip: int) -> Optional[Lease]:
        """
        L{get_by_ip} for an address given as an integer.
        """
        offer = self._offers.get(ip)
        return offer if offer is not None else self._rows.get(ip)

    def get_by_client(self, client_key: bytes, subnet: str) -> Optional[Lease]:
        """
        The client's lease in C{subnet}: its offer if it has one, else its
        bound lease, else its most recent released or expired one. Declined
        addresses are not the client's.
        """
        ip = self._offer_of.get((client_key, subnet))
        if ip is not None:
            return self._offers[ip]
        best: Optional[Lease] = None
        held = self._of_client.get((client_key, subnet))
        for ip in (() if held is None else (held,) if type(held) is int else held):  # type: ignore[union-attr]
            lease = self._rows[ip]
            if lease.state == "declined":
                continue
            if best is None or ((lease.state == "bound", lease.expires)
                                > (best.state == "bound", best.expires)):
                best = lease
        return best

    def expired(self, now: float, limit: int = 1000) -> List[Lease]:
        """
        Up to C{limit} bound or declined leases whose time ran out by
        C{now}, oldest first, from the expiry heap: the cost depends on
        what expired, not on the size of the store. Offers are not
        included; the pool times those.
        """
        due: List[Lease] = []
        keep: List[Tuple[float, int]] = []
        seen: Set[int] = set()
        while self._due and self._due[0][0] <= now and len(due) < limit:
            entry = heapq.heappop(self._due)
            lease = self._rows.get(entry[1])
            if (lease is not None and lease.state in ACTIVE and lease.expires == entry[0]
                    and entry[1] not in seen):
                due.append(lease)
                keep.append(entry)
                seen.add(entry[1])
        for entry in keep:  # still due until the caller changes them
            heapq.heappush(self._due, entry)
        return due

    def all(self, subnet: Optional[str] = None) -> List[Lease]:
        """
        Every lease (one per address, offers shadowing rows), optionally of
        one subnet only, in address order.
        """
        leases = {ip: lease for ip, lease in self._rows.items()
                  if subnet is None or lease.subnet == subnet}
        for ip, offer in self._offers.items():
            if subnet is None or offer.subnet == subnet:
                leases[ip] = offer
        return [leases[ip] for ip in sorted(leases)]

    def rows(self, subnet: str) -> List[Tuple[int, str]]:
        """
        The address (as an integer) and state of every row of C{subnet}:
        what a pool needs at start-up.
        """
        return [(ip, lease.state) for ip, lease in self._rows.items()
                if lease.subnet == subnet]

    def count(self) -> int:
        """
        How many leases L{all} would return.
        """
        return len(self._rows) + sum(1 for ip in self._offers if ip not in self._rows)
