"""
Tests for the DHCP server's defences against a hostile client on the LAN
(issue 11): each attack the security review reproduced, replayed against
L{netsuite.dhcp.server.DHCPServer} with a Clock and an in-memory store.
"""

import random
from ipaddress import IPv4Address, IPv4Network

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.packet import ACK, DECLINE, DISCOVER, NAK, OFFER, REQUEST, Packet
from netsuite.dhcp.pool import Pool, Subnet
from netsuite.dhcp.server import DHCPServer
from netsuite.registry import Registry
from netsuite.registry.values import MAC
from netsuite.testing import SyncRunner

SERVER = IPv4Address("10.89.0.1")
RELAY = IPv4Address("10.90.0.1")
LAN = Subnet(name="lan", network=IPv4Network("10.89.0.0/24"),
             first=IPv4Address("10.89.0.100"), last=IPv4Address("10.89.0.199"),
             server=SERVER, router=SERVER, dns=(SERVER,), lease_time=600.0,
             interface="br-lan")
FAR = Subnet(name="far", network=IPv4Network("10.90.0.0/24"),
             first=IPv4Address("10.90.0.10"), last=IPv4Address("10.90.0.109"),
             server=IPv4Address("10.90.0.1"))


def packet(kind, mac, xid=1, **fields):
    options = [(53, bytes([kind]))] + list(fields.pop("options", {}).items())
    return Packet(op=1, xid=xid, chaddr=mac.packed, options=tuple(options), **fields)


def random_mac(rng):
    return MAC(bytes([0x02] + [rng.randrange(256) for _ in range(5)]))


class StarvationTests(SynchronousTestCase):
    """
    A client that forges MACs cannot take the pool from the others.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.random = random.Random(11)
        self.store = LeaseStore(":memory:")
        self.pool = Pool([LAN, FAR], self.store, self.clock, offer_hold=60,
                         quarantine=3600)
        self.registry = Registry("dhcp", self.clock)
        self.server = DHCPServer(self.registry, SyncRunner(), self.clock, LAN,
                                 sweep_interval=0, relays=[RELAY])
        self.server.start(self.pool)
        self.addCleanup(self.server.stop)

    def handle(self, request, source="10.89.0.150"):
        return self.successResultOf(maybeDeferred(self.server.handle, request, source))

    def test_decline_flood(self):
        """
        200 DISCOVER + DECLINE exchanges, each under a new MAC, quarantine
        at most a tenth of the 100 addresses; the refused DECLINEs let
        their offer go, so 90 addresses stay free, and a real client then
        gets one. The refusals are warned about once (then every
        thousandth), not 190 times.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for xid in range(200):
            mac = random_mac(self.random)
            offer = self.handle(packet(DISCOVER, mac, xid))
            self.assertEqual(offer.message_type, OFFER)
            self.handle(packet(DECLINE, mac, xid, options={
                50: offer.yiaddr.packed, 54: SERVER.packed}))
        self.assertEqual(self.pool.free_count("lan"), 90)
        self.assertEqual(self.server.counters["refused_declines"], 190)
        self.assertEqual(self.pool.refused_declines, 190)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn
                              and "refused a DECLINE" in formatEvent(e)]), 1)
        declined = [lease for lease in self.store.all("lan") if lease.state == "declined"]
        self.assertEqual(len(declined), 10)
        offer = self.handle(packet(DISCOVER, MAC("02:4e:00:00:00:0a")))
        self.assertEqual(offer.message_type, OFFER)

    def test_declines_per_client(self):
        """
        One client quarantines at most three addresses in a quarantine
        time; its fourth DECLINE is refused, and after the quarantine time
        it may decline again.
        """
        mac = MAC("02:4e:00:00:00:0a")

        def decline():
            offer = self.handle(packet(DISCOVER, mac))
            self.handle(packet(DECLINE, mac, options={50: offer.yiaddr.packed}))
        for _ in range(4):
            decline()
        self.assertEqual(self.server.counters["refused_declines"], 1)
        self.assertEqual(self.pool.free_count("lan"), 97)
        self.clock.advance(3600)
        self.pool.expire()
        decline()
        self.assertEqual(self.server.counters["refused_declines"], 1)
        self.assertEqual(self.pool.free_count("lan"), 99)

    def test_renewing_unknown_address(self):
        """
        100 REQUESTs in RENEWING form (ciaddr, no server id) for addresses
        never offered to their MAC are NAKed and bind nothing: the pool
        stays whole.
        """
        for xid in range(100):
            mac = random_mac(self.random)
            ip = IPv4Address(int(LAN.first) + xid)
            reply = self.handle(packet(REQUEST, mac, xid, ciaddr=ip), str(ip))
            self.assertEqual(reply.message_type, NAK)
        self.assertEqual(self.pool.free_count("lan"), 100)
        self.assertEqual(self.store.all(), [])
        self.assertEqual(self.server.counters["unknown_renewals"], 100)

    def test_renewing_other_clients_address(self):
        """
        A RENEWING REQUEST for an address bound to another client is NAKed;
        the owner's own renewal is ACKed.
        """
        owner, thief = MAC("02:4e:00:00:00:0a"), MAC("02:4e:00:00:00:0b")
        offer = self.handle(packet(DISCOVER, owner))
        self.handle(packet(REQUEST, owner, options={50: offer.yiaddr.packed,
                                                    54: SERVER.packed}))
        stolen = self.handle(packet(REQUEST, thief, ciaddr=offer.yiaddr))
        self.assertEqual(stolen.message_type, NAK)
        renewed = self.handle(packet(REQUEST, owner, ciaddr=offer.yiaddr))
        self.assertEqual((renewed.message_type, renewed.yiaddr), (ACK, offer.yiaddr))

    def test_bind_unknown_renewals(self):
        """
        With C{bind_unknown_renewals}, a RENEWING client the server has no
        lease for (a lost lease file) keeps its free address.
        """
        server = DHCPServer(Registry("dhcp", self.clock), SyncRunner(), self.clock, LAN,
                            sweep_interval=0, bind_unknown_renewals=True)
        server.start(Pool([LAN], LeaseStore(":memory:"), self.clock))
        ip = IPv4Address("10.89.0.150")
        reply = self.successResultOf(maybeDeferred(
            server.handle, packet(REQUEST, MAC("02:4e:00:00:00:0a"), ciaddr=ip), str(ip)))
        self.assertEqual((reply.message_type, reply.yiaddr), (ACK, ip))
        self.assertEqual(server.counters["unknown_renewals"], 0)

    def test_giaddr_from_unlisted_source(self):
        """
        A client on the LAN that sets giaddr is dropped and counted, and
        gets nothing from the relayed subnet (C{/dhcp/counters} says so);
        the listed relay is served.
        """
        mac = MAC("02:4e:00:00:00:0a")
        forged = packet(DISCOVER, mac, giaddr=RELAY)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertIsNone(self.handle(forged, "10.89.0.150"))
        self.assertIsNone(self.handle(forged, None))
        warned = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warned), 1)  # the first, then every thousandth
        self.assertIn("from 10.89.0.150, not in dhcp.relays", warned[0])
        counters = self.successResultOf(self.registry.send("/dhcp/counters", {}))
        self.assertEqual((counters["unlisted_relay"], counters["offers"]), (2, 0))
        self.assertEqual(self.pool.free_count("far"), 100)
        relayed = self.handle(forged, str(RELAY))
        self.assertEqual((relayed.message_type, relayed.yiaddr),
                         (OFFER, IPv4Address("10.90.0.10")))
