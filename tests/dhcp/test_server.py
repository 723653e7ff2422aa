"""
Tests for L{netsuite.dhcp.server}: the RFC 2131 state machine and its
mailboxes, with an in-memory lease store, a Clock and the inline runner.
"""

import sqlite3
from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.options import decode_option
from netsuite.dhcp.packet import (ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST,
                                  MalformedPacket, Packet)
from netsuite.dhcp.pool import Pool, Subnet
from netsuite.dhcp.protocol import reply_destination
from netsuite.dhcp.server import REQUEST_TYPES, DHCPServer
from netsuite.testing import HeldRunner, SyncRunner
from netsuite.registry import CONTINUE, Registry, Stop
from netsuite.registry.values import MAC

from .test_packet import CAPTURES, _mutate

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
RELAY = IPv4Address("10.90.0.1")


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
        self.server = DHCPServer(self.registry, SyncRunner(), self.clock, LAN,
                                 portal_url="http://10.89.0.1:8080/", sweep_interval=10,
                                 relays=[RELAY])
        self.server.start(self.pool)
        self.addCleanup(self.server.stop)
        self.events = []
        for kind in ("offered", "acked", "renewed", "released", "declined", "expired"):
            self.registry.watch(f"/dhcp/lease/{kind}",
                                lambda m, kind=kind: self.events.append((kind, m)))

    def handle(self, packet, source=None):
        """
        The reply to C{packet}, from C{source} (a relayed one: the relay).
        """
        if source is None and packet.giaddr != IPv4Address(0):
            source = str(RELAY)
        reply = self.successResultOf(maybeDeferred(self.server.handle, packet, source))
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
                        interface="br-lan", options={51: 90, 15: "hotspot.test"})

        def replies(listener):
            clock = Clock()
            clock.advance(1_000_000)
            registry = Registry("dhcp", clock)
            server = DHCPServer(registry, SyncRunner(), clock, subnet,
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
        server = DHCPServer(Registry("x", self.clock), SyncRunner(), self.clock, LAN)
        self.assertIsNone(server.handle(request(DISCOVER)))
        self.assertEqual(server.counters["not_ready"], 1)

    def test_unknown_message_type(self):
        """
        A request whose option 53 is no message type a client sends (0,
        13, 255, an OFFER) or is missing is dropped and counted, even with
        a watcher on /dhcp/packet/in (which never sees it), and logs no
        failure; the next request is served.
        """
        seen = []
        self.registry.watch("/dhcp/packet/in", seen.append)
        bad = [request(0), request(13), request(255), request(OFFER),
               Packet(op=1, chaddr=MAC_A.packed, options=((53, b""),)),
               Packet(op=1, chaddr=MAC_A.packed)]
        for packet in bad:
            self.assertIsNone(self.handle(packet))
        self.assertEqual(self.server.counters["unknown_type"], len(bad))
        self.assertEqual((seen, self.events), ([], []))
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.handle(request(DISCOVER)).message_type, OFFER)
        self.assertEqual([m["type"] for m in seen], ["DISCOVER"])

    def test_summary_network(self):
        """
        The messages about a request carry the subnet's name and its
        network as CIDR text, and the request's xid and ciaddr.
        """
        seen = []
        self.registry.watch("/dhcp/packet/in", lambda m: seen.append(("in", m)))
        self.registry.listen("/dhcp/lookup", lambda m: seen.append(("lookup", m)) or CONTINUE,
                             first=True)
        self.handle(request(DISCOVER, xid=41))
        self.handle(request(DISCOVER, MAC_B, xid=42, giaddr=IPv4Address("10.90.0.1")))
        self.assertEqual(
            [(where, m["subnet"], m["network"], m["xid"], m["ciaddr"]) for where, m in seen],
            [("lookup", "lan", "10.89.0.0/24", 41, IPv4Address(0)),
             ("in", "lan", "10.89.0.0/24", 41, IPv4Address(0)),
             ("lookup", "far", "10.90.0.0/24", 42, IPv4Address(0)),
             ("in", "far", "10.90.0.0/24", 42, IPv4Address(0))])

    def test_rebinding(self):
        """
        REBINDING (after T2; ciaddr set, no server id, no requested
        address, broadcast): the lease is extended and ACKed, the ACK sent
        to ciaddr (RFC 2131 section 4.1).
        """
        offer, _ = self.lease()
        self.clock.advance(530)  # past T2 (7/8 of 600 s)
        rebind = request(REQUEST, xid=11, ciaddr=offer.yiaddr, flags=0x8000)
        self.assertEqual((rebind.server_id, rebind.requested_ip), (None, None))
        ack = self.handle(rebind)
        self.assertEqual((ack.message_type, ack.yiaddr, ack.xid), (ACK, offer.yiaddr, 11))
        self.assertTrue(ack.broadcast)
        self.assertEqual(reply_destination(rebind, ack), (str(offer.yiaddr), 68, None))
        self.assertEqual(self.store.get_by_ip(offer.yiaddr).expires, self.clock.seconds() + 600)
        self.assertEqual(self.events[-1][0], "renewed")

    def test_renew_not_own_address(self):
        """
        RENEWING or REBINDING with a ciaddr bound to another client, or on
        another network, is NAKed (RFC 2131 section 4.3.2: the server
        checks ciaddr); the other client's lease is untouched.
        """
        mine, _ = self.lease()
        theirs, _ = self.lease(MAC_B, xid=9)
        for flags in (0, 0x8000):
            nak = self.handle(request(REQUEST, MAC_B, ciaddr=mine.yiaddr, flags=flags))
            self.assertEqual((nak.message_type, nak.yiaddr), (NAK, IPv4Address(0)))
            wrong = self.handle(request(REQUEST, MAC_B, ciaddr=IPv4Address("192.0.2.9"),
                                        flags=flags))
            self.assertEqual(wrong.message_type, NAK)
        self.assertEqual(self.server.counters["naks"], 4)
        self.assertEqual(self.store.get_by_ip(mine.yiaddr).mac, MAC_A)
        self.assertEqual(self.store.get_by_ip(theirs.yiaddr).state, "bound")

    def test_lookup_hook_claims_pool(self):
        """
        A hook answering C{source: "pool"} is checked like any hook unless
        the pool really holds that address for the client: another
        client's lease is refused (logged, counted) and the pool answers;
        a free address is offered as the hook's.
        """
        taken, _ = self.lease(MAC_B, xid=9)
        answers = {MAC_A: taken.yiaddr}
        self.registry.listen("/dhcp/lookup", lambda m: Stop(
            {"ip": answers[m["mac"]], "source": "pool"}) if m["mac"] in answers else CONTINUE,
            first=True)
        offer = self.handle(request(DISCOVER))
        self.assertEqual(offer.yiaddr, IPv4Address("10.89.0.101"))
        self.assertEqual(self.server.counters["refused_hook_addresses"], 1)
        self.assertEqual(self.events[-1], ("offered", {"ip": offer.yiaddr, "mac": MAC_A,
                                                       "subnet": "lan", "source": "pool"}))
        held = self.store.get_by_ip(taken.yiaddr)
        self.assertEqual((held.mac, held.state), (MAC_B, "bound"))
        self.assertEqual(self.server.counters["offers"], 2)
        # The pool's own offer to this client, repeated, is the pool's.
        answers[MAC_A] = offer.yiaddr
        self.assertEqual(self.handle(request(DISCOVER, xid=12)).yiaddr, offer.yiaddr)
        self.assertEqual(self.events[-1][1]["source"], "pool")
        # A free address the pool never offered it is checked, and is the hook's.
        answers[MAC_A] = IPv4Address("10.89.0.50")
        self.assertEqual(self.handle(request(DISCOVER, xid=13)).yiaddr, answers[MAC_A])
        self.assertEqual(self.events[-1][1]["source"], "hook")
        self.assertEqual(self.server.counters["refused_hook_addresses"], 1)

    def test_lookup_hook_outside_network(self):
        """
        A hook's address outside the subnet's network (or no address at
        all) is refused, logged and counted, and the pool answers.
        """
        answers = iter(["192.0.2.9", IPv4Address("10.90.0.15"), "not-an-address"])
        self.registry.listen("/dhcp/lookup", lambda m: Stop(
            {"ip": next(answers), "source": "ldap"}), first=True)
        offers = [self.handle(request(DISCOVER, mac)) for mac in
                  (MAC_A, MAC_B, MAC("02:4e:00:00:00:0c"))]
        self.assertEqual([offer.yiaddr for offer in offers],
                         [IPv4Address("10.89.0.100"), IPv4Address("10.89.0.101"),
                          IPv4Address("10.89.0.102")])
        self.assertEqual(self.server.counters["refused_hook_addresses"], 3)
        self.assertEqual([m["source"] for kind, m in self.events], ["pool"] * 3)
        self.assertIsNone(self.store.get_by_ip(IPv4Address("192.0.2.9")))
        self.assertEqual(self.flushLoggedErrors(), [])


_ADDRESSES = st.one_of(
    st.sampled_from([IPv4Address(a) for a in (
        "0.0.0.0", "10.89.0.1", "10.89.0.50", "10.89.0.100", "10.89.0.101", "10.89.0.102",
        "10.89.0.255", "10.90.0.1", "10.90.0.10", "192.0.2.9", "255.255.255.255")]),
    st.ip_addresses(v=4))
_PACKED = st.one_of(_ADDRESSES.map(lambda ip: ip.packed), st.binary(max_size=5))
_TYPES = st.one_of(st.sampled_from(sorted(REQUEST_TYPES)).map(lambda kind: bytes([kind])),
                   st.integers(0, 255).map(lambda kind: bytes([kind])), st.binary(max_size=2))
_MACS = [MAC_A, MAC_B, MAC("02:4e:00:00:00:0c")]
_REQUESTS = st.builds(
    Packet, op=st.sampled_from([1, 1, 1, 2]), htype=st.sampled_from([1, 1, 6]),
    hlen=st.sampled_from([6, 6, 0, 16]), xid=st.integers(0, 2 ** 32 - 1),
    flags=st.sampled_from([0, 0x8000, 1]), ciaddr=_ADDRESSES, giaddr=_ADDRESSES,
    chaddr=st.one_of(st.sampled_from([mac.packed for mac in _MACS]), st.binary(max_size=16)),
    options=st.fixed_dictionaries({}, optional={
        53: _TYPES, 50: _PACKED, 54: _PACKED, 61: st.binary(max_size=12),
        12: st.binary(max_size=40), 55: st.binary(max_size=12), 57: st.binary(max_size=3),
        82: st.binary(max_size=40)}).map(lambda options: tuple(options.items())))
_HOOK_ANSWERS = st.one_of(
    st.just(None), st.builds(lambda ip, source: {"ip": ip, "source": source},
                             st.one_of(_ADDRESSES, st.just("nonsense"), st.integers(0, 2 ** 32)),
                             st.sampled_from(["pool", "ldap"])))
_SEEDS = CAPTURES + [packet.to_bytes() for packet in [
    request(REQUEST, options={54: SERVER.packed, 50: IPv4Address("10.89.0.100").packed}),
    request(REQUEST, ciaddr=IPv4Address("10.89.0.100"), flags=0x8000),
    request(REQUEST, options={50: IPv4Address("10.89.0.100").packed}),
    request(DISCOVER, giaddr=IPv4Address("10.90.0.1"), options={82: b"\x01\x03eth"}),
    request(DECLINE, options={54: SERVER.packed, 50: IPv4Address("10.89.0.100").packed}),
    request(RELEASE, ciaddr=IPv4Address("10.89.0.100")),
    request(INFORM, ciaddr=IPv4Address("10.89.0.50"))]]
PROPERTY = settings(max_examples=150, deadline=None, database=None)


class ServerPropertyTests(SynchronousTestCase):
    """
    Random and mutated requests through L{DHCPServer.handle}, with every
    mailbox heard (so the messages about them are built): the server
    answers each with a well-formed reply or nothing, never fails, never
    logs a failure, and counts what it drops for its message type.
    """

    def setUp(self):
        self.failures = []

        def observe(event):
            if "log_failure" in event or event.get("log_level") in (LogLevel.error,
                                                                    LogLevel.critical):
                self.failures.append(event)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def serve(self, packets, hook_answers=()):
        """
        Give C{packets} (with seconds to wait before each) to a new
        server, a hook on /dhcp/lookup answering C{hook_answers} in turn.
        """
        clock = Clock()
        clock.advance(1_000_000)
        registry = Registry("dhcp", clock)
        pool = Pool([LAN, RELAYED], LeaseStore(":memory:"), clock, offer_hold=30)
        server = DHCPServer(registry, SyncRunner(), clock, LAN, sweep_interval=10)
        server.start(pool)
        heard = []
        for path in ["/dhcp/packet/in", "/dhcp/options", "/dhcp/lookup"] + [
                f"/dhcp/lease/{kind}" for kind in ("offered", "acked", "renewed", "released",
                                                   "declined", "expired")]:
            registry.watch(path, heard.append)
        answers = list(hook_answers)

        def hook(message):
            answer = answers.pop(0) if answers else None
            return CONTINUE if answer is None else Stop(answer)
        registry.listen("/dhcp/lookup", hook, first=True)
        unknown = 0
        for wait, packet in packets:
            clock.advance(wait)
            result = maybeDeferred(server.handle, packet)
            registry.eventual.flush_sync()
            reply = self.successResultOf(result)
            if packet.message_type not in REQUEST_TYPES:
                unknown += 1
                self.assertIsNone(reply)
            if reply is not None:
                self.assertIn(reply.message_type, (OFFER, ACK, NAK))
                self.assertEqual((reply.op, reply.xid, reply.chaddr),
                                 (2, packet.xid, packet.chaddr))
                self.assertEqual(Packet.from_bytes(reply.to_bytes(1500)), reply)
        self.assertEqual(server.counters["unknown_type"], unknown)
        self.successResultOf(server.stop())
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.failures, [])

    @PROPERTY
    @given(st.lists(st.tuples(st.integers(0, 400), _REQUESTS), min_size=1, max_size=8),
           st.lists(_HOOK_ANSWERS, max_size=4))
    def test_random_requests(self, packets, hook_answers):
        """
        Sequences of random requests, some of a type no client sends,
        some with garbage options, with a lookup hook answering anything.
        """
        self.serve(packets, hook_answers)

    @PROPERTY
    @given(st.sampled_from(_SEEDS),
           st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "extend"]),
                              st.integers(0, 700), st.binary(max_size=8)),
                    min_size=1, max_size=4))
    def test_mutated_requests(self, seed, mutations):
        """
        Real requests with bits flipped, cut short or extended, after a
        client took a lease: whatever still parses is served or dropped.
        """
        data = seed
        for how, where, extra in mutations:
            data = _mutate(data, how, where, extra)
        try:
            packet = Packet.from_bytes(data)
        except MalformedPacket:
            return
        discover = request(DISCOVER, Packet.from_bytes(seed).mac or MAC_A)
        self.serve([(0, discover), (0, discover.replace(options=(
            (53, bytes([REQUEST])), (54, SERVER.packed),
            (50, IPv4Address("10.89.0.100").packed)))), (1, packet)])


class FillingStore(LeaseStore):
    """
    A lease store on a disk that fills: while C{full}, a commit raises
    what sqlite3 raises on a full disk.
    """

    full = False

    def commit(self, writes, durable=True):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().commit(writes, durable)


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
        self.store = FillingStore(self.path, write_through=False)
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
        again = self.ask(MAC_A, 4)
        self.runner.run_next()
        self.assertEqual(self.successResultOf(again).message_type, ACK)
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "bound")])

    def full_disk(self):
        """
        Make the store's commits fail as SQLite's do on a full disk until
        the returned callable is called.
        """
        self.store.full = True
        return lambda: setattr(self.store, "full", False)

    def run_all(self):
        while self.runner.calls:
            self.runner.run_next()

    def test_full_disk(self):
        """
        On a full disk no REQUEST is ACKed (nor NAKed): each is counted
        (unstored, store_failures) and logged once in all; once there is
        space again the retransmitted REQUEST is ACKed, with no restart.
        """
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        space = self.full_disk()
        answers = [self.ask(MAC_A, 1), self.ask(MAC_B, 2)]
        self.run_all()
        answers.append(self.ask(MAC_A, 3))
        self.run_all()
        self.assertEqual([self.successResultOf(d) for d in answers], [None, None, None])
        counters = self.successResultOf(self.registry.send("/dhcp/counters", {}))
        self.assertEqual((counters["acks"], counters["naks"], counters["unstored"],
                          counters["store_failures"]), (0, 0, 3, 3))
        errors = [e for e in logged if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual(self.on_disk(), [])
        space()
        again = self.ask(MAC_A, 4)
        self.run_all()
        self.assertEqual(self.successResultOf(again).message_type, ACK)
        # MAC_B's lease, bound in memory when its commit failed, is stored too
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "bound"),
                                          (IPv4Address("10.89.0.101"), "bound")])

    def test_full_disk_retried(self):
        """
        Changes nobody waits for (a RELEASE) whose commit failed are
        stored by a retry a few seconds later, once there is space.
        """
        self.ask(MAC_A, 1)
        self.run_all()
        space = self.full_disk()
        self.server.handle(request(RELEASE, MAC_A, 2, ciaddr=IPv4Address("10.89.0.100")))
        self.run_all()
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "bound")])
        space()
        self.clock.advance(self.server.committer.retry_after)
        self.run_all()
        self.assertEqual(self.on_disk(), [(IPv4Address("10.89.0.100"), "released")])
