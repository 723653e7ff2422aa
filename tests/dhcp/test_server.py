"""
Tests for L{netsuite.dhcp.server}: the RFC 2131 state machine and its
mailboxes, with an in-memory lease store, a Clock and the inline runner.
"""

from ipaddress import IPv4Address, IPv4Network

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.options import decode_option
from netsuite.dhcp.packet import (ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST,
                                  Packet)
from netsuite.dhcp.pool import Pool, Subnet
from netsuite.dhcp.server import DHCPServer
from netsuite.firewall.runner import InlineRunner
from netsuite.registry import CONTINUE, Registry, Stop
from netsuite.registry.values import MAC

SERVER = IPv4Address("10.89.0.1")
MAC_A = MAC("02:4e:00:00:00:0a")
MAC_B = MAC("02:4e:00:00:00:0b")
LAN = Subnet(name="lan", network=IPv4Network("10.89.0.0/24"),
             first=IPv4Address("10.89.0.100"), last=IPv4Address("10.89.0.102"),
             server=SERVER, router=SERVER, dns=(SERVER,), lease_time=600.0,
             interface="br-lan")
RELAYED = Subnet(name="far", network=IPv4Network("10.90.0.0/24"),
                 first=IPv4Address("10.90.0.10"), last=IPv4Address("10.90.0.20"),
                 server=IPv4Address("10.90.0.1"))


def request(kind, mac=MAC_A, xid=7, **fields):
    options = [(53, bytes([kind]))]
    for code, value in fields.pop("options", {}).items():
        options.append((code, value))
    return Packet(op=1, xid=xid, chaddr=mac.packed, options=tuple(options), **fields)


class ServerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.registry = Registry("dhcp", self.clock)
        self.store = LeaseStore(":memory:")
        self.pool = Pool([LAN, RELAYED], self.store, self.clock, offer_hold=30,
                         quarantine=100)
        self.server = DHCPServer(self.registry, InlineRunner(), self.clock, LAN,
                                 portal_url="http://10.89.0.1:8080/", sweep_interval=10)
        self.server.start(self.pool)
        self.addCleanup(self.server.stop)
        self.events = []
        for kind in ("offered", "acked", "renewed", "released", "declined", "expired"):
            self.registry.watch(f"/dhcp/lease/{kind}",
                                lambda m, kind=kind: self.events.append((kind, m)))

    def handle(self, packet):
        reply = self.successResultOf(maybeDeferred(self.server.handle, packet))
        self.registry.eventual.flush_sync()
        return reply

    def lease(self, mac=MAC_A, xid=7):
        offer = self.handle(request(DISCOVER, mac, xid))
        ack = self.handle(request(REQUEST, mac, xid, options={
            54: SERVER.packed, 50: offer.yiaddr.packed}))
        return offer, ack

    def test_discover_offer(self):
        """
        A DISCOVER gets an OFFER of a range address with the server id,
        lease times, mask, router, DNS and the captive-portal URL.
        """
        offer = self.handle(request(DISCOVER))
        self.assertEqual(offer.message_type, OFFER)
        self.assertEqual((offer.op, offer.xid, offer.chaddr[:6]), (2, 7, MAC_A.packed))
        self.assertEqual(offer.yiaddr, IPv4Address("10.89.0.100"))
        self.assertEqual(offer.server_id, SERVER)
        self.assertEqual(decode_option(51, offer.option(51)), 600)
        self.assertEqual(decode_option(58, offer.option(58)), 300)
        self.assertEqual(decode_option(1, offer.option(1)), IPv4Address("255.255.255.0"))
        self.assertEqual(decode_option(114, offer.option(114)), "http://10.89.0.1:8080/")
        self.assertEqual(self.events, [("offered", {"ip": offer.yiaddr, "mac": MAC_A,
                                                    "subnet": "lan", "source": "pool"})])
        self.assertEqual(self.pool.free_count("lan"), 2)

    def test_request_ack_durable(self):
        """
        A REQUEST for the offered address is ACKed after the lease is in
        the store; the same client's next DISCOVER gets the same address.
        """
        offer, ack = self.lease()
        self.assertEqual(ack.message_type, ACK)
        self.assertEqual(ack.yiaddr, offer.yiaddr)
        stored = self.store.get_by_ip(offer.yiaddr)
        self.assertEqual((stored.state, stored.mac), ("bound", MAC_A))
        self.assertEqual(self.events[-1][0], "acked")
        again = self.handle(request(DISCOVER, xid=8))
        self.assertEqual(again.yiaddr, offer.yiaddr)

    def test_other_server_chosen(self):
        """
        A REQUEST naming another server releases our offer, silently.
        """
        offer = self.handle(request(DISCOVER))
        reply = self.handle(request(REQUEST, options={54: IPv4Address("10.89.0.254").packed,
                                                      50: offer.yiaddr.packed}))
        self.assertIsNone(reply)
        self.assertEqual(self.pool.free_count("lan"), 3)

    def test_init_reboot(self):
        """
        INIT-REBOOT: the client's own address is ACKed; another client's
        address or one on another network is NAKed; a client we have no
        record of gets silence.
        """
        offer, _ = self.lease()
        ack = self.handle(request(REQUEST, options={50: offer.yiaddr.packed}))
        self.assertEqual(ack.message_type, ACK)
        nak = self.handle(request(REQUEST, MAC_B, options={50: offer.yiaddr.packed}))
        self.assertEqual(nak.message_type, NAK)
        self.assertEqual(nak.yiaddr, IPv4Address(0))
        wrong = self.handle(request(REQUEST, MAC_B, options={50: IPv4Address("192.0.2.9").packed}))
        self.assertEqual(wrong.message_type, NAK)
        unknown = self.handle(request(REQUEST, MAC_B, options={
            50: IPv4Address("10.89.0.101").packed}))
        self.assertIsNone(unknown)

    def test_renew(self):
        """
        RENEWING (ciaddr set): the lease is extended, ACKed, and announced
        as renewed.
        """
        offer, _ = self.lease()
        self.clock.advance(300)
        ack = self.handle(request(REQUEST, ciaddr=offer.yiaddr))
        self.assertEqual((ack.message_type, ack.yiaddr), (ACK, offer.yiaddr))
        self.assertEqual(self.events[-1][0], "renewed")
        self.assertEqual(self.store.get_by_ip(offer.yiaddr).expires, self.clock.seconds() + 600)

    def test_decline_and_release(self):
        """
        A DECLINEd address is quarantined (not offered again until the
        quarantine ends); a RELEASEd one is free again.
        """
        offer, _ = self.lease()
        self.handle(request(DECLINE, options={54: SERVER.packed, 50: offer.yiaddr.packed}))
        self.assertEqual(self.events[-1][0], "declined")
        other = self.handle(request(DISCOVER, MAC_B))
        self.assertNotEqual(other.yiaddr, offer.yiaddr)
        _, ack = self.lease(MAC_B, xid=9)
        self.handle(request(RELEASE, MAC_B, ciaddr=ack.yiaddr))
        self.assertEqual(self.events[-1][0], "released")
        self.assertEqual(self.store.get_by_ip(ack.yiaddr).state, "released")

    def test_inform(self):
        """
        INFORM gets an ACK with options and no lease (yiaddr 0, no lease
        time), addressed to the client's ciaddr.
        """
        ack = self.handle(request(INFORM, ciaddr=IPv4Address("10.89.0.50")))
        self.assertEqual((ack.message_type, ack.yiaddr), (ACK, IPv4Address(0)))
        self.assertEqual(ack.ciaddr, IPv4Address("10.89.0.50"))
        self.assertIsNone(ack.option(51))
        self.assertIsNotNone(ack.option(6))

    def test_exhaustion(self):
        """
        When the range is used up, a new client is offered nothing.
        """
        for i, mac in enumerate(["02:4e:00:00:01:01", "02:4e:00:00:01:02",
                                 "02:4e:00:00:01:03"]):
            self.lease(MAC(mac), xid=i)
        self.assertIsNone(self.handle(request(DISCOVER, MAC("02:4e:00:00:01:04"))))
        self.assertEqual(self.server.counters["exhausted"], 1)

    def test_expiry(self):
        """
        A lease whose time is up is swept and announced as expired.
        """
        offer, _ = self.lease()
        self.clock.advance(601)
        self.clock.advance(10)
        self.registry.eventual.flush_sync()
        self.assertIn(("expired", {"ip": offer.yiaddr, "mac": MAC_A, "subnet": "lan"}),
                      self.events)

    def test_lookup_hook(self):
        """
        A listener in front of /dhcp/lookup chooses the address (even
        outside the dynamic range); an address it gives that another client
        holds is refused and the pool answers instead; CONTINUE falls
        through to the pool.
        """
        directory = {MAC_A: IPv4Address("10.89.0.50"), MAC_B: IPv4Address("10.89.0.50")}

        def hook(message):
            ip = directory.get(message["mac"])
            return Stop({"ip": ip, "source": "ldap"}) if ip else CONTINUE
        self.registry.listen("/dhcp/lookup", hook, first=True)
        offer, ack = self.lease()
        self.assertEqual((offer.yiaddr, ack.message_type), (IPv4Address("10.89.0.50"), ACK))
        other = self.handle(request(DISCOVER, MAC_B))
        self.assertEqual(other.yiaddr, IPv4Address("10.89.0.100"))
        self.assertEqual(self.server.counters["refused_hook_addresses"], 1)
        third = self.handle(request(DISCOVER, MAC("02:4e:00:00:00:0c")))
        self.assertEqual(third.yiaddr, IPv4Address("10.89.0.101"))

    def test_options_hook(self):
        """
        A listener on /dhcp/options adds and removes options of a reply.
        """
        self.registry.listen("/dhcp/options", lambda m: Stop({
            "captive_portal": "http://portal.test/", "domain_name": "hotspot.test",
            "dns_servers": None}), first=True)
        offer = self.handle(request(DISCOVER))
        self.assertEqual(decode_option(114, offer.option(114)), "http://portal.test/")
        self.assertEqual(decode_option(15, offer.option(15)), "hotspot.test")
        self.assertIsNone(offer.option(6))

    def test_options_without_listeners(self):
        """
        Without /dhcp/options listeners the reply carries the very options
        (bytes, order) that the listeners' path gives when they change
        nothing: subnet options overriding the lease time, a host name,
        and the kept lists reused for the next clients.
        """
        subnet = Subnet(name="lan", network=LAN.network, first=LAN.first, last=LAN.last,
                        server=SERVER, router=SERVER, dns=(SERVER,), lease_time=600.0,
                        interface="br-lan", options={"lease_time": 90, 15: "hotspot.test"})

        def replies(listener):
            clock = Clock()
            clock.advance(1_000_000)
            registry = Registry("dhcp", clock)
            server = DHCPServer(registry, InlineRunner(), clock, subnet,
                                portal_url="http://10.89.0.1:8080/", sweep_interval=0)
            server.start(Pool([subnet], LeaseStore(":memory:"), clock))
            if listener:
                registry.listen("/dhcp/options", lambda m: CONTINUE)
            out = []
            for n, mac in enumerate([MAC_A, MAC_B]):
                offer = self.successResultOf(server.handle(request(DISCOVER, mac, n)))
                ack = self.successResultOf(server.handle(request(REQUEST, mac, n, options={
                    54: SERVER.packed, 50: offer.yiaddr.packed, 12: b"laptop"})))
                out += [offer.to_bytes(), ack.to_bytes()]
            return out
        plain, hooked = replies(False), replies(True)
        self.assertEqual(plain, hooked)
        self.assertEqual(decode_option(51, Packet.from_bytes(plain[1]).option(51)), 90)

    def test_watched_decisions(self):
        """
        A watcher alone on /dhcp/packet/in or /dhcp/options sees every
        request and reply, which are served as without it.
        """
        seen = []
        self.registry.watch("/dhcp/packet/in", lambda m: seen.append(("in", m["type"])))
        self.registry.watch("/dhcp/options", lambda m: seen.append(("options", m["type"])))
        offer, ack = self.lease()
        self.assertEqual((offer.message_type, ack.message_type), (OFFER, ACK))
        self.assertEqual(seen, [("in", "DISCOVER"), ("options", "OFFER"),
                                ("in", "REQUEST"), ("options", "ACK")])

    def test_packet_in_drop(self):
        """
        A listener on /dhcp/packet/in can drop a request.
        """
        self.registry.listen("/dhcp/packet/in",
                             lambda m: Stop({"drop": m["mac"] == MAC_B}), first=True)
        self.assertIsNone(self.handle(request(DISCOVER, MAC_B)))
        self.assertIsNotNone(self.handle(request(DISCOVER, MAC_A)))
        self.assertEqual(self.server.counters["dropped"], 1)

    def test_relay(self):
        """
        A relayed request (giaddr) is served from the subnet holding the
        relay's address, and the relay agent information (82) is echoed.
        """
        offer = self.handle(request(DISCOVER, giaddr=IPv4Address("10.90.0.1"),
                                    options={82: b"\x01\x03eth\x02\x02ab"}))
        self.assertEqual(offer.yiaddr, IPv4Address("10.90.0.10"))
        self.assertEqual(offer.giaddr, IPv4Address("10.90.0.1"))
        self.assertEqual(offer.option(82), b"\x01\x03eth\x02\x02ab")
        self.assertEqual(offer.server_id, IPv4Address("10.90.0.1"))
        unknown = self.handle(request(DISCOVER, giaddr=IPv4Address("192.0.2.1")))
        self.assertIsNone(unknown)

    def test_leases_query(self):
        """
        /dhcp/leases answers the leases, by MAC or all.
        """
        offer, _ = self.lease()
        self.lease(MAC_B, xid=9)
        mine = self.successResultOf(self.registry.send("/dhcp/leases", {"mac": MAC_A}))
        self.assertEqual([(l["ip"], l["state"]) for l in mine], [(offer.yiaddr, "bound")])
        everyone = self.successResultOf(self.registry.send("/dhcp/leases", {}))
        self.assertEqual(len(everyone), 2)

    def test_not_ready(self):
        """
        Before the pool is built, requests are dropped and counted.
        """
        server = DHCPServer(Registry("x", self.clock), InlineRunner(), self.clock, LAN)
        self.assertIsNone(server.handle(request(DISCOVER)))
        self.assertEqual(server.counters["not_ready"], 1)


class HeldRunner:
    """
    A runner whose calls wait until the test lets them run.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, fn, *args):
        d = Deferred()
        self.calls.append((d, fn, args))
        return d

    def run_next(self, fail_with=None):
        d, fn, args = self.calls.pop(0)
        if fail_with is not None:
            d.errback(fail_with)
        else:
            d.callback(fn(*args))


class GroupCommitTests(SynchronousTestCase):
    """
    The server answers from memory and commits the lease file in the
    runner: an ACK waits for the commit holding its lease, ACKs waiting
    together share one commit, and a failed commit sends no ACK.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.registry = Registry("dhcp", self.clock)
        self.path = self.mktemp()
        self.store = LeaseStore(self.path, write_through=False)
        self.addCleanup(self.store.close)
        self.runner = HeldRunner()
        self.server = DHCPServer(self.registry, self.runner, self.clock, LAN)
        self.server.start(Pool([LAN], self.store, self.clock))
        self.addCleanup(self.server.stop)

    def ask(self, mac, xid):
        offer = self.successResultOf(self.server.handle(request(DISCOVER, mac, xid)))
        return self.server.handle(request(REQUEST, mac, xid, options={
            54: SERVER.packed, 50: offer.yiaddr.packed}))

    def on_disk(self):
        other = LeaseStore(self.path)
        try:
            return [(l.ip, l.state) for l in other.all()]
        finally:
            other.close()

    def test_ack_after_commit(self):
        """
        Nothing touches the file while offers are made; the first ACK
        waits for its commit; two more ACKs asked meanwhile share the next.
        """
        first = self.ask(MAC_A, 1)
        self.assertNoResult(first)
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(self.on_disk(), [])
        second, third = self.ask(MAC_B, 2), self.ask(MAC("02:4e:00:00:00:0c"), 3)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(first).message_type, ACK)
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "bound")])
        self.assertNoResult(second)
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertEqual([self.successResultOf(d).message_type for d in (second, third)],
                         [ACK, ACK])
        self.assertEqual(len(self.on_disk()), 3)

    def test_failed_commit_no_ack(self):
        """
        A commit that fails is logged and its REQUEST gets no answer; the
        next one is committed again.
        """
        first = self.ask(MAC_A, 1)
        self.runner.run_next(fail_with=OSError(28, "No space left on device"))
        self.assertIsNone(self.successResultOf(first))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        again = self.ask(MAC_A, 4)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(again).message_type, ACK)
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "bound")])
