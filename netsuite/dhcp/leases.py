# -*- test-case-name: tests.dhcp.test_leases -*-
"""
The lease store: one SQLite file in WAL mode, one row per address.

A durable write commits with C{synchronous=FULL}, so the WAL is fsynced
before L{LeaseStore.put} returns: the server sends an ACK only after that,
and a kill -9 or a power cut at any moment loses no acknowledged lease.
Offers live for seconds and only in memory. Other writes (release, expiry,
decline) commit without fsync: a crash may undo them, never corrupt the
file, and undoing them is harmless.

The store blocks, so it belongs to one worker thread (the server runs it
through a serial runner). Its connection opens lazily in the first thread
that uses it, and sqlite3 refuses calls from any other thread.
"""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import attr

from ..registry.values import MAC

__all__ = ["Lease", "LeaseStore", "STATES", "ACTIVE"]

STATES = frozenset({"offered", "bound", "declined", "released", "expired"})
"""Every lease state."""

ACTIVE = ("bound", "declined")
"""The states whose C{expires} matters: a bound lease runs out, a declined
address leaves quarantine. Only these rows are in the expiry index."""


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
CREATE INDEX IF NOT EXISTS leases_client ON leases (client_key, subnet);
CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires)
    WHERE state IN ('bound', 'declined');
"""

_COLUMNS = "ip, client_key, mac, state, expires, hostname, subnet"

_Row = Tuple[int, bytes, Optional[bytes], str, float, Optional[str], str]

# The WHERE clause must repeat the index's own so that SQLite uses it.
EXPIRED_QUERY = (f"SELECT {_COLUMNS} FROM leases"
                 " WHERE state IN ('bound', 'declined') AND expires <= ?"
                 " ORDER BY expires LIMIT ?")


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
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._conn: Optional[sqlite3.Connection] = None
        self._synchronous = ""
        self._offers: Dict[int, Lease] = {}
        self._offer_of: Dict[Tuple[bytes, str], int] = {}

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
        Close the connection (in the thread that used it). In-memory offers
        are forgotten; the next call reopens the file.
        """
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._offers.clear()
        self._offer_of.clear()

    def _write(self, durable: bool, statements: Sequence[Tuple[str, Sequence[Tuple[object, ...]]]]) -> None:
        """
        Run C{statements} in one transaction; fsync the commit if C{durable}.
        """
        db = self._db()
        wanted = "FULL" if durable else "NORMAL"
        if self._synchronous != wanted:
            db.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # Offers, in memory.

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
        rows = []
        for lease in leases:
            if lease.state == "offered":
                self._hold(lease)
            else:
                rows.append(_to_row(lease))
        if rows:
            self._write(durable, [(f"INSERT OR REPLACE INTO leases ({_COLUMNS})"
                                   " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)])
            for row in rows:
                self._drop_offer(row[0])

    def release(self, ip: IPv4Address, durable: bool = False) -> Optional[Lease]:
        """
        Drop the offer on C{ip} and mark a bound lease there released.

        @return: the lease as it is now, or L{None} if there was none.
        """
        self._drop_offer(int(ip))
        lease = self._row(int(ip))
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
        if keys:
            self._write(durable, [("DELETE FROM leases WHERE ip = ?",
                                   [(key,) for key in keys])])

    # Reads.

    def _row(self, ip: int) -> Optional[Lease]:
        row = self._db().execute(f"SELECT {_COLUMNS} FROM leases WHERE ip = ?",
                                 (ip,)).fetchone()
        return None if row is None else _from_row(row)

    def get_by_ip(self, ip: IPv4Address) -> Optional[Lease]:
        """
        The offer on C{ip} if there is one, else its row.
        """
        offer = self._offers.get(int(ip))
        return offer if offer is not None else self._row(int(ip))

    def get_by_client(self, client_key: bytes, subnet: str) -> Optional[Lease]:
        """
        The client's lease in C{subnet}: its offer if it has one, else its
        bound lease, else its most recent released or expired one. Declined
        addresses are not the client's.
        """
        ip = self._offer_of.get((client_key, subnet))
        if ip is not None:
            return self._offers[ip]
        row = self._db().execute(
            f"SELECT {_COLUMNS} FROM leases WHERE client_key = ? AND subnet = ?"
            " AND state != 'declined'"
            " ORDER BY state = 'bound' DESC, expires DESC LIMIT 1",
            (client_key, subnet)).fetchone()
        return None if row is None else _from_row(row)

    def expired(self, now: float, limit: int = 1000) -> List[Lease]:
        """
        Up to C{limit} bound or declined leases whose time ran out by
        C{now}, oldest first, read from the expiry index: the cost depends
        on what expired, not on the size of the store. Offers are not
        included; the pool times those.
        """
        rows = self._db().execute(EXPIRED_QUERY, (now, limit)).fetchall()
        return [_from_row(row) for row in rows]

    def all(self, subnet: Optional[str] = None) -> List[Lease]:
        """
        Every lease (one per address, offers shadowing rows), optionally of
        one subnet only, in address order.
        """
        if subnet is None:
            cursor = self._db().execute(f"SELECT {_COLUMNS} FROM leases ORDER BY ip")
        else:
            cursor = self._db().execute(
                f"SELECT {_COLUMNS} FROM leases WHERE subnet = ? ORDER BY ip", (subnet,))
        leases = {row[0]: _from_row(row) for row in cursor}
        for ip, offer in self._offers.items():
            if subnet is None or offer.subnet == subnet:
                leases[ip] = offer
        return [leases[ip] for ip in sorted(leases)]

    def rows(self, subnet: str) -> List[Tuple[int, str]]:
        """
        The address (as an integer) and state of every row of C{subnet}:
        what a pool needs at start-up, without building L{Lease}s.
        """
        return self._db().execute("SELECT ip, state FROM leases WHERE subnet = ?",
                                  (subnet,)).fetchall()

    def count(self) -> int:
        """
        How many leases L{all} would return.
        """
        rows: int = self._db().execute("SELECT count(*) FROM leases").fetchone()[0]
        return rows + sum(1 for ip in self._offers if self._row(ip) is None)
