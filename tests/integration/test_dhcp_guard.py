"""
The DHCP server's starvation defences against real packets: a hostile
client in a client namespace, sending raw UDP from port 68, against
netsuite-dhcp in the access point (issue 11).
"""

import json

from twisted.internet.defer import inlineCallbacks

from .procs import PYTHON, spawn
from .test_dhcp_lab import DHCPLab

# The attacker: "decline N" (N DISCOVERs, each under a new MAC, each offer
# DECLINEd), "renew N" (N RENEWING REQUESTs, ciaddr 10.89.0.100 + i, under
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
    if mode == "decline":
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


class StarvationLabTests(DHCPLab):
    """
    A range of 51 addresses (10.89.0.100 to .150) under attack from c1.
    """

    @inlineCallbacks
    def attack(self, mode, count):
        attacker = spawn(self, f"attacker {mode}", [PYTHON, "-c", ATTACKER, mode, str(count)],
                         netns=self.lab.netns("c1"))
        line = yield attacker.when_line(r"^\{", timeout=60)
        return json.loads(line)

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
