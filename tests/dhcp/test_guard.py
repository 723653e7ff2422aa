"""
Tests for L{netsuite.dhcp.guard}: the chaddr check and the rogue-server
watch, on frames built in the tests, with a Clock and a real registry.
"""

from ipaddress import IPv4Address

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.dhcp.frames import (PACKET_BROADCAST, PACKET_HOST, PACKET_OTHERHOST,
                                  PACKET_OUTGOING, parse_frame)
from netsuite.dhcp.guard import ROGUE_EVENT, FrameSorter, RogueWatch
from netsuite.dhcp.packet import ACK, DISCOVER, INFORM, OFFER, Packet
from netsuite.dhcp.server import DHCPServer
from netsuite.registry import Registry
from netsuite.registry.values import MAC
from netsuite.testing import SyncRunner

from .test_frames import CLIENT, SERVER_MAC, udp_frame
from .test_server import LAN

OTHER = MAC("02:4e:00:00:00:99")
ROGUE = MAC("02:66:00:00:00:01")
ROGUE_IP = "10.89.0.250"


def request(chaddr=CLIENT.packed, giaddr="0.0.0.0", kind=DISCOVER):
    return Packet(op=1, xid=7, chaddr=chaddr, giaddr=IPv4Address(giaddr),
                  options=((53, bytes([kind])),)).to_bytes()


def reply(kind=OFFER, yiaddr="10.89.0.200", server_id=ROGUE_IP):
    return Packet(op=2, xid=7, chaddr=CLIENT.packed, yiaddr=IPv4Address(yiaddr),
                  options=((53, bytes([kind])), (54, IPv4Address(server_id).packed))).to_bytes()


def reply_frame(data=None, mac=ROGUE, source=ROGUE_IP):
    return udp_frame(reply() if data is None else data, source_port=67, destination_port=68,
                     source_mac=mac.packed, destination_mac=CLIENT.packed, source=source,
                     destination="10.89.0.200")


class FakeRogues:
    def __init__(self):
        self.seen = []

    def saw(self, frame, packet):
        self.seen.append((frame, packet))


class FrameSorterTests(SynchronousTestCase):
    """
    L{FrameSorter}.
    """

    def setUp(self):
        self.counters = {}
        self.served = []
        self.rogues = FakeRogues()
        self.sorter = FrameSorter(self.counters, SERVER_MAC,
                                  requests=lambda p, a: self.served.append((p, a)),
                                  destinations=[IPv4Address("10.89.0.1")], rogues=self.rogues)

    def test_own_chaddr_served(self):
        """
        A broadcast request whose chaddr is its frame's source MAC goes to
        the protocol with its IP source and port.
        """
        self.sorter.receive(udp_frame(request()), PACKET_BROADCAST)
        [(packet, source)] = self.served
        self.assertEqual((packet.mac, source), (CLIENT, ("0.0.0.0", 68)))

    def test_chaddr_mismatch(self):
        """
        A request whose chaddr is another MAC is dropped and counted; the
        first is warned about, the next ones are not.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(3):
            self.sorter.receive(udp_frame(request(chaddr=OTHER.packed)), PACKET_BROADCAST)
        self.assertEqual((self.served, self.counters["chaddr_mismatch"]), ([], 3))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual((warnings[0]["chaddr"], warnings[0]["mac"]), (str(OTHER), str(CLIENT)))

    def test_not_ethernet_chaddr(self):
        """
        A request with another hardware type has no MAC to match: dropped.
        """
        data = Packet.from_bytes(request()).replace(htype=6).to_bytes()
        self.sorter.receive(udp_frame(data), PACKET_BROADCAST)
        self.assertEqual((self.served, self.counters["chaddr_mismatch"]), ([], 1))

    def test_relayed_not_checked(self):
        """
        A relayed request (giaddr set) comes from the relay's MAC: not
        checked (dhcp.relays decides about it).
        """
        self.sorter.receive(udp_frame(request(chaddr=OTHER.packed, giaddr="10.90.0.1"),
                                      source_port=67, source="10.90.0.1",
                                      destination="10.89.0.1",
                                      destination_mac=SERVER_MAC.packed), PACKET_HOST)
        [(packet, source)] = self.served
        self.assertEqual(source, ("10.90.0.1", 67))

    def test_elsewhere(self):
        """
        A request to another host's MAC, or to an address not this
        server's, is not served (the UDP socket would not have had it).
        """
        self.sorter.receive(udp_frame(request(), destination="10.89.0.250"), PACKET_HOST)
        self.sorter.receive(udp_frame(request()), PACKET_OTHERHOST)
        self.assertEqual((self.served, self.counters["frames_elsewhere"]), ([], 2))

    def test_unicast_to_server(self):
        """
        A renewal unicast to the server's address is served.
        """
        self.sorter.receive(udp_frame(request(), source="10.89.0.100", destination="10.89.0.1",
                                      destination_mac=SERVER_MAC.packed), PACKET_HOST)
        self.assertEqual(len(self.served), 1)

    def test_own_and_outgoing(self):
        """
        Frames from this interface's MAC, or sent by this host, are ignored.
        """
        self.sorter.receive(reply_frame(mac=SERVER_MAC), PACKET_BROADCAST)
        self.sorter.receive(reply_frame(), PACKET_OUTGOING)
        self.assertEqual(self.rogues.seen, [])

    def test_reply_to_rogues(self):
        """
        A server's reply goes to the watch, not to the protocol.
        """
        self.sorter.receive(reply_frame(), PACKET_OTHERHOST)
        [(frame, packet)] = self.rogues.seen
        self.assertEqual((frame.source_mac, packet.message_type), (ROGUE, OFFER))
        self.assertEqual(self.served, [])

    def test_malformed(self):
        """
        A frame that does not parse, or whose BOOTP payload does not, is
        counted and dropped.
        """
        self.sorter.receive(udp_frame(request())[:40], PACKET_BROADCAST)
        self.sorter.receive(udp_frame(b"\x01" * 30), PACKET_BROADCAST)
        self.assertEqual((self.served, self.counters["malformed_frames"]), ([], 2))

    def test_without_check(self):
        """
        Without C{requests} (dhcp.check_chaddr off), requests are ignored.
        """
        sorter = FrameSorter(self.counters, SERVER_MAC, rogues=self.rogues)
        sorter.receive(udp_frame(request()), PACKET_BROADCAST)
        self.assertEqual((self.served, self.rogues.seen), ([], []))


class RogueWatchTests(SynchronousTestCase):
    """
    L{RogueWatch}, with the event declared by a L{DHCPServer}.
    """

    def setUp(self):
        self.clock = Clock()
        self.registry = Registry("dhcp", self.clock)
        self.server = DHCPServer(self.registry, SyncRunner(), self.clock, LAN)
        self.events = []
        self.registry.watch(ROGUE_EVENT, self.events.append)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.watch = RogueWatch(self.registry, self.clock, "br-lan", self.server.counters,
                                interval=300.0, limit=2)

    def see(self, mac=ROGUE, data=None):
        frame = parse_frame(reply_frame(data, mac=mac))
        self.watch.saw(frame, Packet.from_bytes(frame.payload))
        self.registry.eventual.flush_sync()

    def warnings(self):
        return [e for e in self.logged if e["log_level"] == LogLevel.warn]

    def test_reported_once_per_interval(self):
        """
        The first reply is an event and a warning; the next within the
        interval are only counted; after it, one more report with the count.
        """
        self.see()
        [event] = self.events
        self.assertEqual(event, {
            "ip": IPv4Address(ROGUE_IP), "mac": ROGUE, "server_id": IPv4Address(ROGUE_IP),
            "type": "OFFER", "interface": "br-lan", "client": CLIENT,
            "yiaddr": IPv4Address("10.89.0.200"), "replies": 1})
        self.assertEqual(len(self.warnings()), 1)
        self.clock.advance(299)
        self.see(data=reply(ACK))
        self.assertEqual((len(self.events), len(self.warnings())), (1, 1))
        self.clock.advance(1)
        self.see(data=reply(ACK))
        self.assertEqual((len(self.events), self.events[-1]["replies"],
                          self.events[-1]["type"]), (2, 3, "ACK"))
        self.assertEqual(len(self.warnings()), 2)
        self.assertEqual(self.server.counters["rogue_replies"], 3)
        counters = self.successResultOf(self.registry.send("/dhcp/counters", {}))
        self.assertEqual(counters["rogue_replies"], 3)

    def test_each_server(self):
        """
        Two servers are reported each on their own.
        """
        self.see()
        self.see(mac=OTHER)
        self.assertEqual([str(e["mac"]) for e in self.events], [str(ROGUE), str(OTHER)])

    def test_not_a_server_reply(self):
        """
        A BOOTREPLY that is no OFFER, ACK or NAK is not counted.
        """
        self.see(data=reply(INFORM))
        self.assertEqual((self.events, self.server.counters["rogue_replies"]), ([], 0))

    def test_own_replies_relayed(self):
        """
        A reply with this server's identifier, sent on by a relay agent on
        the LAN (its own MAC and address), is counted apart, not reported.
        """
        watch = RogueWatch(self.registry, self.clock, "br-lan", self.server.counters,
                           own=[IPv4Address("10.89.0.1")])
        frame = parse_frame(reply_frame(reply(server_id="10.89.0.1"), mac=OTHER,
                                        source="10.89.0.254"))
        watch.saw(frame, Packet.from_bytes(frame.payload))
        self.registry.eventual.flush_sync()
        self.assertEqual((self.events, self.warnings()), ([], []))
        self.assertEqual((self.server.counters["rogue_replies"],
                          self.server.counters["own_replies_relayed"]), (0, 1))
        frame = parse_frame(reply_frame())  # another server's is still reported
        watch.saw(frame, Packet.from_bytes(frame.payload))
        self.registry.eventual.flush_sync()
        self.assertEqual(len(self.events), 1)

    def test_bounded(self):
        """
        Past C{limit} servers remembered, a new one is counted, not
        reported, until a remembered one has been quiet for an interval.
        """
        self.see(mac=MAC("02:66:00:00:00:02"))
        self.see(mac=MAC("02:66:00:00:00:03"))
        self.see(mac=MAC("02:66:00:00:00:04"))
        self.assertEqual((len(self.events), self.server.counters["rogue_unreported"]), (2, 1))
        self.assertEqual(len(self.watch.servers), 2)
        self.clock.advance(300)
        self.see(mac=MAC("02:66:00:00:00:04"))
        self.assertEqual(str(self.events[-1]["mac"]), "02:66:00:00:00:04")
        self.assertLessEqual(len(self.watch.servers), 2)
