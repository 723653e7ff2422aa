"""
Where netsuite-dhcp's replies go on the wire (RFC 2131 section 4.1), seen
by tcpdump on the access point's LAN bridge: real clients asking with the
broadcast flag clear (udhcpc's and dhclient's default) and set (udhcpc
-B), a renewal, a relayed request and a NAK.
"""

import re
import signal

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

from netsuite.lab.peers import missing

from .procs import PYTHON, spawn
from .test_dhcp_lab import DHCPLab

BROADCAST = ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
RELAY = "10.89.0.254"  # c1 posing as a relay (outside the range)

# A relay's DISCOVER (broadcast flag set), or a client's INIT-REBOOT
# REQUEST for an address on another network; prints the reply's type.
PEER = r"""
import socket, sys
from ipaddress import IPv4Address
from netsuite.dhcp.packet import MessageType, Packet
mode, relay, mac = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", ""))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.settimeout(10)
if mode == "relay":
    s.bind((relay, 67))
    request = Packet(op=1, xid=77, hops=1, flags=0x8000, chaddr=mac, giaddr=IPv4Address(relay),
                     options=((53, b"\x01"),))
    s.sendto(request.to_bytes(), ("10.89.0.1", 67))
else:
    s.setsockopt(socket.SOL_SOCKET, 25, b"eth0")  # SO_BINDTODEVICE: no route to 255.255.255.255
    s.bind(("0.0.0.0", 68))
    request = Packet(op=1, xid=78, chaddr=mac, options=((53, b"\x03"), (50, bytes([10, 99, 0, 5]))))
    s.sendto(request.to_bytes(), ("255.255.255.255", 67))
reply = Packet.from_bytes(s.recv(4096))
print("got", MessageType(reply.message_type).name, flush=True)
"""


def replies(lines):
    """
    The DHCP replies in tcpdump C{-n -e -vv} output: one dict per packet,
    with its Ethernet and IP destinations, its message type and flags.
    """
    found = []
    for line in lines:
        header = re.match(r"^\S+ (\S+) > (\S+), ethertype IPv4", line)
        if header:
            found.append({"eth_src": header.group(1), "eth_dst": header.group(2)})
            continue
        if not found:
            continue
        udp = re.search(r"(\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):", line)
        if udp and "ip_dst" not in found[-1]:
            found[-1].update(ip_dst=udp.group(3), port=int(udp.group(4)))
            flags = re.search(r"Flags \[(\w*)\]", line)
            found[-1]["flags"] = flags.group(1) if flags else None
        kind = re.search(r"DHCP-Message \(53\), length 1: (\w+)", line)
        if kind:
            found[-1]["type"] = kind.group(1)
    return [reply for reply in found if reply.get("type") in ("Offer", "ACK", "NACK")]


def summary(lines):
    """
    The replies in tcpdump's C{lines}: (type, Ethernet destination, IP
    destination, port, flags) each.
    """
    return [(r["type"], r["eth_dst"], r["ip_dst"], r["port"], r["flags"])
            for r in replies(lines)]


class UnicastTests(DHCPLab):
    """
    tcpdump on br-lan in the access point, capturing what leaves UDP port
    67 (the server's replies, and the test relay's request).
    """

    relays = (RELAY,)

    def before_server(self):
        if missing("tcpdump"):
            raise SkipTest("not installed: tcpdump (Debian: tcpdump)")

    def tcpdump(self):
        capture = spawn(self, "tcpdump", [
            "tcpdump", "-l", "-n", "-e", "-vv", "-i", "br-lan", "udp and src port 67"],
            netns=self.lab.netns("ap"))
        return capture.when_line("listening on br-lan", timeout=20).addCallback(
            lambda _: capture)

    @inlineCallbacks
    def sent(self, capture, until="ACK", count=1):
        """
        The replies captured (L{summary}) once C{count} of type C{until}
        are.
        """
        pattern, position = rf"DHCP-Message \(53\), length 1: {until}$", 0
        for n in range(count):
            yield capture.when_line(pattern, after=position, timeout=20)
            position = [i for i, line in enumerate(capture.lines())
                        if re.search(pattern, line)][n] + 1
        return summary(capture.lines())

    @inlineCallbacks
    def test_udhcpc_flag_clear(self):
        """
        udhcpc asks with the broadcast flag clear: the OFFER and the ACK go
        to its MAC and the address it is given, and the access point's
        neighbour table has that address at that MAC.
        """
        mac = self.lab.client_mac(1)
        capture = yield self.tcpdump()
        code, lines = yield self.udhcpc("c1")
        self.assertEqual(code, 0, lines)
        ip = self.fields(lines[-1])["ip"]
        sent = yield self.sent(capture)
        self.assertEqual(sent, [("Offer", mac, ip, 68, "none"), ("ACK", mac, ip, 68, "none")],
                         capture.output())
        shown = yield deferToThread(self.lab.exec, "ap", ["ip", "neigh", "show", "dev", "br-lan",
                                                          ip])
        self.assertIn(f"lladdr {mac}", shown.stdout)

    @inlineCallbacks
    def test_udhcpc_flag_set(self):
        """
        udhcpc -B sets the broadcast flag: the OFFER and the ACK go to
        ff:ff:ff:ff:ff:ff and 255.255.255.255.
        """
        capture = yield self.tcpdump()
        code, lines = yield self.udhcpc("c1", "-B")
        self.assertEqual(code, 0, lines)
        sent = yield self.sent(capture)
        self.assertEqual(sent, [("Offer", *BROADCAST, 68, "Broadcast"),
                                ("ACK", *BROADCAST, 68, "Broadcast")], capture.output())

    @inlineCallbacks
    def test_dhclient_flag_clear(self):
        """
        ISC dhclient (flag clear) gets its OFFER and ACK by unicast too.
        """
        mac = self.lab.client_mac(2)
        capture = yield self.tcpdump()
        code, lines, errors = yield self.dhclient("c2", "-1")
        self.assertEqual(code, 0, errors)
        [ip] = [fields["ip"] for fields in lines if fields["reason"] == "BOUND"]
        sent = yield self.sent(capture)
        self.assertEqual(sent, [("Offer", mac, ip, 68, "none"), ("ACK", mac, ip, 68, "none")],
                         capture.output())

    @inlineCallbacks
    def test_renew(self):
        """
        A renewal (SIGUSR1: a REQUEST from the client's address) is ACKed
        at that address (ciaddr).
        """
        mac = self.lab.client_mac(1)
        capture = yield self.tcpdump()
        client = spawn(self, "udhcpc", ["udhcpc", "-f", "-i", "eth0", "-s", self.script,
                                        "-t", "3", "-T", "1"], netns=self.lab.netns("c1"))
        ip = self.fields((yield client.when_line("^event=bound", timeout=20)))["ip"]
        client.signal(signal.SIGUSR1)
        yield client.when_line("^event=renew", timeout=20)
        sent = yield self.sent(capture, count=2)
        self.assertEqual(sent[-1], ("ACK", mac, ip, 68, "none"), capture.output())

    @inlineCallbacks
    def test_relay_and_nak(self):
        """
        A relayed DISCOVER (giaddr) is answered at the relay's port 67, even
        with the broadcast flag set; a NAK to a client on the LAN (an
        INIT-REBOOT for an address of another network) is broadcast.
        """
        mac = self.lab.client_mac(1)
        yield deferToThread(self.lab.exec, "c1", ["ip", "addr", "add", f"{RELAY}/24", "dev",
                                                  "eth0"], check=True)
        capture = yield self.tcpdump()
        for mode, kind, until in (("relay", "OFFER", "Offer"), ("nak", "NAK", "NACK")):
            peer = spawn(self, mode, [PYTHON, "-c", PEER, mode, RELAY, "02:4e:00:00:99:01"],
                         netns=self.lab.netns("c1"))
            yield peer.when_ended().addTimeout(30, reactor)
            self.assertIn(f"got {kind}", peer.output())
            sent = yield self.sent(capture, until)
        self.assertEqual(sent, [("Offer", mac, RELAY, 67, "Broadcast"),
                                ("NACK", *BROADCAST, 68, "none")], capture.output())
