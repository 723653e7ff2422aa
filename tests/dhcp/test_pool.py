"""
Tests for L{netsuite.dhcp.pool}: the RFC 2131 preference order,
reservations, offers, quarantine, expiry, exhaustion and restarts.
"""

from ipaddress import IPv4Address, IPv4Network

import attr

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.leases import Lease, LeaseStore
from netsuite.dhcp.pool import Pool, Subnet
from netsuite.registry.values import MAC


def ip(text):
    return IPv4Address(text if "." in text else f"10.0.0.{text}")


def client(n):
    return b"\x01" + bytes([2, 0, 0, 0, 0, n])


def mac(n):
    return MAC(bytes([2, 0, 0, 0, 0, n]))


def lan(first="10", last="20", **kw):
    kw.setdefault("router", ip("1"))
    return Subnet(name="lan", network=IPv4Network("10.0.0.0/24"), first=ip(first),
                  last=ip(last), server=ip("1"), lease_time=600.0, **kw)


class SubnetTests(SynchronousTestCase):
    def test_range_in_network(self):
        """
        The range, the server and reservations must be hosts of the network.
        """
        self.assertRaises(ValueError, lan, first="0")
        self.assertRaises(ValueError, lan, last="255")
        self.assertRaises(ValueError, lan, first="30", last="20")
        self.assertRaises(ValueError, lan, reservations={mac(1): ip("10.0.1.5")})

    def test_server_of_relayed_subnet(self):
        """
        An attached subnet's server address is one of its hosts; a relayed
        subnet's is the server's own address elsewhere, which the relays
        forward to.
        """
        def subnet(interface):
            return Subnet(name="far", network=IPv4Network("10.90.0.0/24"),
                          first=IPv4Address("10.90.0.10"), last=IPv4Address("10.90.0.20"),
                          server=IPv4Address("10.89.0.1"), interface=interface)
        self.assertRaises(ValueError, subnet, "br-lan")
        self.assertEqual(subnet(None).server, IPv4Address("10.89.0.1"))


class PoolTestsBase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = LeaseStore()
        self.addCleanup(self.store.close)

    def make_pool(self, *subnets, **kw):
        self.pool = Pool(subnets or [lan()], self.store, self.clock, offer_hold=30.0,
                         quarantine=3600.0, **kw)
        return self.pool

    def lease(self, n, address, subnet="lan"):
        """
        Offer C{address} to client C{n} and bind it.
        """
        offer = self.pool.hold_offer(subnet, ip(address), client(n), mac(n))
        self.assertIsNotNone(offer)
        return self.pool.bind(subnet, ip(address), client(n), mac(n))


class AllocateTests(PoolTestsBase):
    def test_free_in_order(self):
        """
        A new client gets a free address of the range, skipping the server's
        own, the router's and the DNS servers'.
        """
        pool = self.make_pool(lan(first="1", last="5", router=ip("2"), dns=(ip("4"),)))
        self.assertEqual(pool.free_count(), 2)
        self.assertEqual(pool.allocate("lan", client(1)), ip("3"))
        self.lease(1, "3")
        self.assertEqual(pool.allocate("lan", client(2)), ip("5"))
        self.lease(2, "5")
        self.assertIsNone(pool.allocate("lan", client(3)))

    def test_requested(self):
        """
        The address the client asks for is given if free and in the range.
        """
        pool = self.make_pool()
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("15")), ip("15"))
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("30")), ip("10"))
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("1")), ip("10"))
        self.lease(2, "15")
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("15")), ip("10"))

    def test_previous_binding_first(self):
        """
        The client's current binding, or failing that its previous one,
        beats the address it asks for.
        """
        pool = self.make_pool()
        self.lease(1, "12")
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("15")), ip("12"))
        pool.release(ip("12"), client(1))
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("15")), ip("12"))

    def test_reservation_first(self):
        """
        A reservation, by MAC or by client key, beats everything; the
        reserved address may lie outside the range.
        """
        pool = self.make_pool(lan(reservations={mac(1): ip("50"), client(2): ip("11")}))
        self.lease(1, "12")
        self.assertEqual(pool.allocate("lan", client(1), mac(1), requested=ip("15")), ip("50"))
        self.assertEqual(pool.allocate("lan", client(2), requested=ip("15")), ip("11"))
        self.assertEqual(self.lease(1, "50").ip, ip("50"))

    def test_reserved_for_others(self):
        """
        An address reserved for someone else is never given, even when
        asked for, and cannot be bound.
        """
        pool = self.make_pool(lan(first="10", last="11", reservations={mac(1): ip("10")}))
        self.assertEqual(pool.free_count(), 1)
        self.assertEqual(pool.allocate("lan", client(2), mac(2), requested=ip("10")), ip("11"))
        self.lease(2, "11")
        self.assertIsNone(pool.allocate("lan", client(3), mac(3), requested=ip("10")))
        self.assertIsNone(pool.bind("lan", ip("10"), client(3), mac(3)))
        self.assertEqual(pool.allocate("lan", client(1), mac(1)), ip("10"))

    def test_reserved_but_bound(self):
        """
        A reserved address bound to another client (before the reservation
        existed) waits until that client lets it go.
        """
        self.make_pool()
        self.lease(2, "10")
        pool = self.make_pool(lan(reservations={mac(1): ip("10")}))
        self.assertEqual(pool.allocate("lan", client(1), mac(1)), ip("11"))
        pool.release(ip("10"), client(2))
        self.assertEqual(pool.allocate("lan", client(1), mac(1)), ip("10"))

    def test_never_leased_first(self):
        """
        Free addresses never leased go before those another client had, so
        that a returning client is likelier to find its own.
        """
        pool = self.make_pool(lan(first="10", last="12"))
        self.lease(1, "10")
        pool.release(ip("10"), client(1))
        self.assertEqual(pool.allocate("lan", client(2)), ip("11"))
        self.lease(2, "11")
        self.assertEqual(pool.allocate("lan", client(3)), ip("12"))
        self.lease(3, "12")
        self.assertEqual(pool.allocate("lan", client(4)), ip("10"))

    def test_subnets(self):
        """
        Each subnet leases from its own range; the giaddr or interface
        address selects it.
        """
        guest = Subnet(name="guest", network=IPv4Network("10.1.0.0/24"), first=ip("10.1.0.10"),
                       last=ip("10.1.0.20"), server=ip("10.1.0.1"))
        pool = self.make_pool(lan(), guest)
        self.assertEqual(pool.subnet_for(ip("10.1.0.1")), guest)
        self.assertEqual(pool.subnet_for(ip("10.0.0.99")).name, "lan")
        self.assertIsNone(pool.subnet_for(ip("10.2.0.1")))
        self.assertEqual(pool.allocate("guest", client(1)), ip("10.1.0.10"))
        self.assertEqual(self.lease(1, "10.1.0.10", "guest").subnet, "guest")
        self.assertEqual(pool.allocate("lan", client(1)), ip("10"))
        self.assertIsNone(pool.hold_offer("lan", ip("10.1.0.11"), client(2)))
        self.assertEqual(pool.free_count("guest"), 10)
        self.assertEqual(pool.free_count(), 21)


class ExhaustionTests(PoolTestsBase):
    def test_exhausted(self):
        """
        When every address is taken, C{allocate} returns L{None} and says so
        once in the log; when one frees up, it says that too.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        pool = self.make_pool(lan(first="10", last="11"))
        self.lease(1, "10")
        self.lease(2, "11")
        self.assertEqual(pool.free_count(), 0)
        self.assertIsNone(pool.allocate("lan", client(3)))
        self.assertIsNone(pool.allocate("lan", client(4)))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["subnet"], "lan")
        pool.release(ip("11"), client(2))
        self.assertEqual(pool.allocate("lan", client(3)), ip("11"))
        self.assertIn("free addresses again", events[-1]["log_format"])

    def test_exhausted_sweeps(self):
        """
        An exhausted pool ends the leases that ran out before it gives up.
        """
        pool = self.make_pool(lan(first="10", last="10"))
        self.lease(1, "10")
        self.clock.advance(600)
        self.assertEqual(pool.allocate("lan", client(2)), ip("10"))


class OfferTests(PoolTestsBase):
    def test_held(self):
        """
        An offered address goes to nobody else while held, and is free
        again once the hold is over.
        """
        pool = self.make_pool(lan(first="10", last="10"))
        offer = pool.hold_offer("lan", ip("10"), client(1), mac(1), "laptop")
        self.assertEqual(offer, Lease(ip=ip("10"), client_key=client(1), mac=mac(1),
                                      state="offered", expires=1030.0, hostname="laptop",
                                      subnet="lan"))
        self.assertEqual(pool.free_count(), 0)
        self.assertIsNone(pool.allocate("lan", client(2), requested=ip("10")))
        self.assertIsNone(pool.hold_offer("lan", ip("10"), client(2)))
        self.assertIsNone(pool.bind("lan", ip("10"), client(2)))
        self.assertEqual(pool.allocate("lan", client(1)), ip("10"))
        self.clock.advance(29)
        self.assertIsNone(pool.allocate("lan", client(2)))
        self.clock.advance(1)
        self.assertEqual(pool.free_count(), 1)
        self.assertEqual(pool.allocate("lan", client(2)), ip("10"))
        self.assertIsNone(self.store.get_by_ip(ip("10")))

    def test_new_offer_frees_old(self):
        """
        A client's new offer frees the address of its previous one, and a
        renewed offer is held for the full time again.
        """
        pool = self.make_pool(lan(first="10", last="11"))
        pool.hold_offer("lan", ip("10"), client(1))
        pool.hold_offer("lan", ip("11"), client(1))
        self.assertEqual(pool.free_count(), 1)
        self.assertEqual(pool.allocate("lan", client(2)), ip("10"))
        self.clock.advance(20)
        pool.hold_offer("lan", ip("11"), client(1))
        self.clock.advance(20)
        self.assertEqual(self.store.get_by_ip(ip("11")).state, "offered")
        self.assertEqual(pool.free_count(), 1)

    def test_offer_of_bound(self):
        """
        Offering a client its own bound address keeps the binding.
        """
        pool = self.make_pool()
        bound = self.lease(1, "10")
        self.assertEqual(pool.hold_offer("lan", ip("10"), client(1)), bound)
        self.clock.advance(60)
        self.assertEqual(self.store.get_by_ip(ip("10")), bound)


class BindTests(PoolTestsBase):
    def test_bind(self):
        """
        Binding writes a durable lease for the subnet's lease time.
        """
        pool = self.make_pool()
        lease = pool.bind("lan", ip("12"), client(1), mac(1), "laptop")
        self.assertEqual(lease, Lease(ip=ip("12"), client_key=client(1), mac=mac(1),
                                      state="bound", expires=1600.0, hostname="laptop",
                                      subnet="lan"))
        self.assertEqual(self.store.get_by_ip(ip("12")), lease)
        self.assertEqual(self.store._db().execute("PRAGMA synchronous").fetchone()[0], 2)

    def test_not_others(self):
        """
        An address bound to someone else, excluded, or outside the range
        cannot be bound.
        """
        pool = self.make_pool()
        self.lease(1, "12")
        for address in ["12", "1", "30", "10.9.0.1"]:
            self.assertIsNone(pool.bind("lan", ip(address), client(2)), address)

    def test_renew(self):
        """
        Binding again extends the lease.
        """
        pool = self.make_pool()
        self.lease(1, "12")
        self.clock.advance(500)
        self.assertEqual(pool.bind("lan", ip("12"), client(1)).expires, 2100.0)

    def test_move(self):
        """
        A client bound elsewhere in the subnet gives its old address back.
        """
        pool = self.make_pool()
        self.lease(1, "12")
        self.lease(1, "13")
        self.assertEqual(self.store.get_by_ip(ip("12")).state, "released")
        self.assertEqual(self.store.get_by_client(client(1), "lan").ip, ip("13"))
        self.assertEqual(pool.free_count(), 10)

    def test_bind_first_client_wins(self):
        """
        Two clients binding one address: the first gets it, the second
        nothing. (Several bindings share one commit through the store's
        queued writes: L{tests.dhcp.test_leases}' test_many_in_one_commit.)
        """
        pool = self.make_pool()
        leases = [pool.bind("lan", ip("10"), client(1)), pool.bind("lan", ip("11"), client(2)),
                  pool.bind("lan", ip("10"), client(3))]
        self.assertEqual([None if l is None else l.ip for l in leases], [ip("10"), ip("11"), None])
        self.assertEqual(pool.free_count(), 9)


class ReleaseDeclineTests(PoolTestsBase):
    def test_release(self):
        """
        A released address is free again; only its client may release it.
        """
        pool = self.make_pool()
        self.lease(1, "10")
        self.assertIsNone(pool.release(ip("10"), client(2)))
        self.assertEqual(pool.release(ip("10"), client(1)).state, "released")
        self.assertEqual(pool.free_count(), 11)
        self.assertIsNone(pool.release(ip("10"), client(1)))

    def test_release_offer(self):
        """
        Releasing an offered address drops the offer.
        """
        pool = self.make_pool()
        pool.hold_offer("lan", ip("10"), client(1))
        self.assertEqual(pool.release(ip("10"), client(1)).state, "released")
        self.assertEqual(self.store.offers(), [])
        self.assertEqual(pool.free_count(), 11)

    def test_quarantine(self):
        """
        A declined address is given to nobody, the decliner included, until
        its quarantine is over; then it is free as if never leased.
        """
        pool = self.make_pool(lan(first="10", last="11"))
        self.lease(1, "10")
        self.assertIsNone(pool.decline(ip("10"), client(2)))
        self.assertEqual(pool.decline(ip("10"), client(1)).expires, 4600.0)
        self.assertEqual(pool.free_count(), 1)
        self.assertEqual(pool.allocate("lan", client(1), requested=ip("10")), ip("11"))
        self.assertIsNone(pool.bind("lan", ip("10"), client(1)))
        self.clock.advance(3599)
        self.assertEqual(pool.expire(), [])
        self.assertEqual(pool.allocate("lan", client(2), requested=ip("10")), ip("11"))
        self.clock.advance(1)
        self.assertEqual(pool.expire(), [])
        self.assertIsNone(self.store.get_by_ip(ip("10")))
        self.assertEqual(pool.free_count(), 2)
        self.assertEqual(pool.allocate("lan", client(2)), ip("10"))


class ExpireTests(PoolTestsBase):
    def test_expire(self):
        """
        C{expire} ends the bound leases whose time is over, returns them,
        and frees their addresses; a returning client gets its own back.
        """
        pool = self.make_pool()
        first = self.lease(1, "10")
        self.clock.advance(300)
        self.lease(2, "11")
        self.clock.advance(300)
        self.assertEqual(pool.expire(), [attr.evolve(first, state="expired")])
        self.assertEqual(pool.free_count(), 10)
        self.assertEqual(pool.allocate("lan", client(3)), ip("12"))
        self.assertEqual(pool.allocate("lan", client(1)), ip("10"))
        self.clock.advance(300)
        self.assertEqual([l.ip for l in pool.expire()], [ip("11")])
        self.assertEqual(pool.expire(), [])

    def test_limit(self):
        """
        One sweep ends at most C{limit} leases, oldest first.
        """
        pool = self.make_pool()
        for n in range(5):
            self.lease(n + 1, str(10 + n))
            self.clock.advance(1)
        self.clock.advance(600)
        self.assertEqual([l.ip for l in pool.expire(limit=2)], [ip("10"), ip("11")])
        self.assertEqual(len(pool.expire(limit=10)), 3)


class RestartTests(SynchronousTestCase):
    def test_restart(self):
        """
        A pool rebuilt from the reopened file gives each client the address
        it had, and nobody else an address in use.
        """
        clock = Clock()
        path = self.mktemp()
        store = LeaseStore(path)
        pool = Pool([lan()], store, clock)
        for n in range(1, 6):
            address = pool.allocate("lan", client(n))
            pool.hold_offer("lan", address, client(n))
            pool.bind("lan", address, client(n))
        pool.decline(ip("11"), client(2))
        pool.release(ip("12"), client(3))
        before = store.all()
        store.close()

        store = LeaseStore(path)
        self.addCleanup(store.close)
        pool = Pool([lan()], store, clock)
        self.assertEqual(store.all(), before)
        self.assertEqual(pool.free_count(), 7)
        for n in (1, 3, 4, 5):
            self.assertEqual(pool.allocate("lan", client(n)), ip(str(9 + n)))
        self.assertEqual(pool.allocate("lan", client(9)), ip("15"))
        self.assertEqual(pool.allocate("lan", client(9), requested=ip("13")), ip("15"))

    def test_scale(self):
        """
        50,000 leases go into a file in one commit, come back on reopening,
        and a pool built from them allocates as it should.
        """
        clock = Clock()
        clock.advance(1000)
        path = self.mktemp()
        store = LeaseStore(path)
        base = int(ip("10.0.0.10"))
        store.put_many([Lease(ip=IPv4Address(base + n), client_key=n.to_bytes(7, "big"),
                              mac=None, state="bound", expires=2000.0 + n, subnet="big")
                        for n in range(50000)])
        store.close()
        store = LeaseStore(path)
        self.addCleanup(store.close)
        self.assertEqual(store.count(), 50000)
        big = Subnet(name="big", network=IPv4Network("10.0.0.0/16"), first=ip("10.0.0.10"),
                     last=ip("10.0.255.250"), server=ip("10.0.0.1"), lease_time=600.0)
        pool = Pool([big], store, clock)
        self.assertEqual(pool.free_count(), 65521 - 50000)
        self.assertEqual(pool.allocate("big", (12345).to_bytes(7, "big")), IPv4Address(base + 12345))
        self.assertEqual(pool.allocate("big", b"new"), IPv4Address(base + 50000))
        clock.advance(1100)
        self.assertEqual(len(pool.expire(limit=100)), 100)
        self.assertEqual(pool.free_count(), 65521 - 50000 + 100)
