"""
The DHCP server's starvation defences against real packets: a hostile
client in a client namespace, sending raw UDP from port 68, against
netsuite-dhcp in the access point (issue 11).
"""

import json
import os
import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from twisted.trial.unittest import SkipTest

from netsuite.lab.peers import missing

from .procs import PYTHON, spawn
from .test_dhcp_lab import DHCPLab

# The attacker: "decline N" (N DISCOVERs, each under a new MAC, each offer
# DECLINEd), "discover N" (N DISCOVERs under new MACs: a chaddr that is not
# the frame's source MAC, c1's own), "renew N" (N RENEWING REQUESTs, ciaddr 10.89.0.100 + i, under
# new MACs) or "giaddr" (a DISCOVER posing as relayed). Asks for broadcast
# replies, waits a second at most for each; prints the replies it got by
# type, as JSON.
ATTACKER = r"""
import json, random, socket, sys
from ipaddress import IPv4Address
from netsuite.dhcp.packet import DECLINE, DISCOVER, REQUEST, MessageType, Packet
mode, count = sys.argv[1], int(sys.argv[2])
server = IPv4Address("10.89.0.1")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, 25, b"eth0")  # SO_BINDTODEVICE: no route to 255.255.255.255
s.bind(("0.0.0.0", 68))
s.settimeout(1.0)
rng = random.Random(11)
got = {}

def send(packet):
    s.sendto(packet.to_bytes(), ("255.255.255.255", 67))

def reply(xid):
    try:
        while True:
            answer = Packet.from_bytes(s.recv(4096))
            if answer.xid == xid:
                got[MessageType(answer.message_type).name] = got.get(
                    MessageType(answer.message_type).name, 0) + 1
                return answer
    except socket.timeout:
        got["none"] = got.get("none", 0) + 1
        return None

for xid in range(1, count + 1):
    mac = bytes([2] + [rng.randrange(256) for _ in range(5)])
    if mode == "discover":
        send(Packet(op=1, xid=xid, flags=0x8000, chaddr=mac, options=((53, bytes([DISCOVER])),)))
        reply(xid)
    elif mode == "decline":
        send(Packet(op=1, xid=xid, flags=0x8000, chaddr=mac, options=((53, bytes([DISCOVER])),)))
        offer = reply(xid)
        if offer is not None:
            send(Packet(op=1, xid=xid, chaddr=mac, options=(
                (53, bytes([DECLINE])), (50, offer.yiaddr.packed), (54, server.packed))))
    elif mode == "renew":
        send(Packet(op=1, xid=xid, flags=0x8000, chaddr=mac,
                    ciaddr=IPv4Address(int(IPv4Address("10.89.0.100")) + xid - 1),
                    options=((53, bytes([REQUEST])),)))
        reply(xid)
    else:
        send(Packet(op=1, xid=xid, flags=0x8000, chaddr=mac, giaddr=IPv4Address("10.89.0.254"),
                    options=((53, bytes([DISCOVER])),)))
        reply(xid)
print(json.dumps(got), flush=True)
"""


class AttackLab(DHCPLab):
    """
    A range of 51 addresses (10.89.0.100 to .150) under attack from c1 (no
    tests of its own).
    """

    @inlineCallbacks
    def attack(self, mode, count):
        attacker = spawn(self, f"attacker {mode}", [PYTHON, "-c", ATTACKER, mode, str(count)],
                         netns=self.lab.netns("c1"))
        line = yield attacker.when_line(r"^\{", timeout=60)
        return json.loads(line)


class StarvationLabTests(AttackLab):
    """
    The starvation defences.
    """

    @inlineCallbacks
    def leases(self):
        leases = yield self.bus.send("/dhcp/leases", {})
        return sorted(lease["state"] for lease in leases)

    @inlineCallbacks
    def test_decline_flood(self):
        """
        200 DISCOVER+DECLINE exchanges under new MACs quarantine 5
        addresses (a tenth of the range), and udhcpc in c2 still gets a
        lease.
        """
        got = yield self.attack("decline", 200)
        self.assertEqual(got, {"OFFER": 200})
        self.assertEqual((yield self.leases()), ["declined"] * 5)
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual(counters["refused_declines"], 195)
        code, lines = yield self.udhcpc("c2")
        self.assertEqual(code, 0, lines)

    @inlineCallbacks
    def test_renewing_flood(self):
        """
        50 RENEWING REQUESTs for addresses never leased to their MACs are
        all NAKed and bind nothing.
        """
        got = yield self.attack("renew", 50)
        self.assertEqual(got, {"NAK": 50})
        self.assertEqual((yield self.leases()), [])
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual(counters["unknown_renewals"], 50)

    @inlineCallbacks
    def test_forged_giaddr(self):
        """
        A client on the LAN that sets giaddr gets no answer and no address;
        the server counts it.
        """
        got = yield self.attack("giaddr", 3)
        self.assertEqual(got, {"none": 3})
        self.assertEqual((yield self.leases()), [])
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual((counters["unlisted_relay"], counters["offers"]), (3, 0))


class ChaddrUncheckedLabTests(AttackLab):
    """
    With C{dhcp.check_chaddr} off (the default) a chaddr that is not the
    frame's source MAC is served.
    """

    def test_spoofed_chaddr_answered(self):
        """
        3 DISCOVERs from c1 under other MACs each get an OFFER.
        """
        return self.attack("discover", 3).addCallback(self.assertEqual, {"OFFER": 3})


class ChaddrCheckLabTests(AttackLab):
    """
    C{dhcp.check_chaddr = true}: requests are taken from the frames.
    """

    dhcp_keys = "check_chaddr = true"

    @inlineCallbacks
    def test_spoofed_chaddr_refused(self):
        """
        3 DISCOVERs from c1 under MACs not c1's get no answer and are
        counted; udhcpc in c2, under its own MAC, still gets a lease, by
        unicast (the neighbour entry) as without the check.
        """
        got = yield self.attack("discover", 3)
        self.assertEqual(got, {"none": 3})
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual((counters["chaddr_mismatch"], counters["offers"]), (3, 0))
        code, lines = yield self.udhcpc("c2")
        self.assertEqual(code, 0, lines)
        self.assertIn("ip=10.89.0.", lines[-1])
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual((counters["chaddr_mismatch"], counters["acks"]), (3, 1))
        self.assertNotIn("broadcast: no neighbour entry", self.server.output())


# busybox udhcpd on c3's eth0 (10.89.0.250): another server on the LAN. It
# broadcasts its OFFERs and ACKs (ciaddr 0).
UDHCPD_CONF = """start 10.89.0.200
end 10.89.0.210
interface eth0
lease_file {work}/udhcpd.leases
pidfile {work}/udhcpd.pid
opt subnet 255.255.255.0
opt router 10.89.0.250
opt lease 600
"""


class RogueServerTests:
    """
    For a L{DHCPLab}: C{dhcp.watch_servers} (on by default) and another
    DHCP server in c3.
    """

    def rogue_argv(self):
        """The other server's command line, run in c3 (at 10.89.0.250)."""
        raise NotImplementedError()

    started = "started"

    @inlineCallbacks
    def rogue_server(self):
        """
        Start the other server in c3 at 10.89.0.250; fire once it listens.
        At clean-up, after it is killed, its process must be gone.
        """
        yield deferToThread(self.lab.exec, "c3", ["ip", "addr", "add", "10.89.0.250/24", "dev",
                                                  "eth0"], timeout=10, check=True)
        started = []
        self.addCleanup(lambda: self.assertFalse(
            [pid for pid in started if os.path.exists(f"/proc/{pid}")],
            "the other DHCP server outlived the test"))
        rogue = spawn(self, "rogue server", self.rogue_argv(), netns=self.lab.netns("c3"))
        started.append(rogue.pid)
        yield rogue.when_line(self.started, timeout=20)
        return rogue

    @inlineCallbacks
    def test_rogue_server_reported(self):
        """
        Alone, netsuite's own replies to udhcpc in c2 are no other server's.
        With the other server in c3 answering udhcpc in c1, netsuite emits
        C{/dhcp/rogue-server} with its address, MAC and server identifier,
        counts its replies and warns once.
        """
        rogue_mac = self.lab.client_mac(3)
        seen, first = yield self.watching(self.bus, "/dhcp/rogue-server", rogue_mac)
        code, lines = yield self.udhcpc("c2")
        self.assertEqual(code, 0, lines)
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertEqual((counters["rogue_replies"], counters["acks"]), (0, 1))
        yield self.rogue_server()
        yield self.udhcpc("c1")
        event = yield first.addTimeout(30, reactor)
        self.assertEqual(
            (str(event["ip"]), str(event["server_id"]), event["interface"], str(event["client"])),
            ("10.89.0.250", "10.89.0.250", "br-lan", self.lab.client_mac(1)))
        self.assertIn(event["type"], ("OFFER", "ACK"))
        yield self.server.when_line(
            re.escape(f"another DHCP server on br-lan: 10.89.0.250 ({rogue_mac}"), timeout=10)
        counters = yield self.bus.send("/dhcp/counters", {})
        self.assertGreaterEqual(counters["rogue_replies"], 1)
        self.assertEqual(len(seen), 1)
        self.assertEqual(self.server.output().count("another DHCP server"), 1)


class UdhcpdRogueLabTests(RogueServerTests, DHCPLab):
    """
    busybox udhcpd, whose replies are broadcast.
    """

    def rogue_argv(self):
        path = os.path.join(self.work, "udhcpd.conf")
        with open(path, "w") as f:
            f.write(UDHCPD_CONF.format(work=self.work))
        open(os.path.join(self.work, "udhcpd.leases"), "w").close()
        return ["busybox", "udhcpd", "-f", "-a", "0", path]


class DnsmasqRogueLabTests(RogueServerTests, DHCPLab):
    """
    dnsmasq, whose replies to udhcpc (broadcast flag clear) are unicast to
    the client's MAC: the bridge forwards them from c3's port to c1's,
    past the access point, which sees them only because the watch makes
    br-lan promiscuous.
    """

    started = "started, version"

    def setUp(self):
        if missing("dnsmasq"):
            raise SkipTest("not installed: dnsmasq (Debian dnsmasq-base)")
        return super().setUp()

    def rogue_argv(self):
        return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                "--no-ping", "--interface=eth0", "--bind-interfaces", "--user=root",
                "--dhcp-range=10.89.0.200,10.89.0.210,255.255.255.0,10m",
                "--dhcp-authoritative", "--log-facility=-", "--log-dhcp",
                f"--dhcp-leasefile={os.path.join(self.work, 'dnsmasq.leases')}",
                f"--pid-file={os.path.join(self.work, 'dnsmasq.pid')}"]
