"""
Where netsuite-dhcp's replies go on the wire (RFC 2131 section 4.1), seen
by tcpdump on the access point's LAN bridge while real clients ask with
the broadcast flag clear (udhcpc's and dhclient's default) and set
(udhcpc -B).
"""

import re

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

from netsuite.lab.peers import missing

from .procs import spawn
from .test_dhcp_lab import DHCPLab

BROADCAST = ("ff:ff:ff:ff:ff:ff", "255.255.255.255")


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
    return [reply for reply in found if reply.get("port") == 68 and "type" in reply]


class UnicastTests(DHCPLab):
    """
    tcpdump on br-lan in the access point, capturing what the server sends
    to clients (UDP port 67 to 68).
    """

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
    def sent(self, capture, mac):
        """
        The replies to C{mac} (or broadcast) up to the ACK: (type, Ethernet
        destination, IP destination, flags) each.
        """
        yield capture.when_line(r"DHCP-Message \(53\), length 1: ACK", timeout=20)
        return [(r["type"], r["eth_dst"], r["ip_dst"], r["flags"])
                for r in replies(capture.lines()) if r["eth_dst"] in (mac, BROADCAST[0])]

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
        sent = yield self.sent(capture, mac)
        self.assertEqual(sent, [("Offer", mac, ip, "none"), ("ACK", mac, ip, "none")],
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
        mac = self.lab.client_mac(1)
        capture = yield self.tcpdump()
        code, lines = yield self.udhcpc("c1", "-B")
        self.assertEqual(code, 0, lines)
        sent = yield self.sent(capture, mac)
        self.assertEqual(sent, [("Offer", *BROADCAST, "Broadcast"),
                                ("ACK", *BROADCAST, "Broadcast")], capture.output())

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
        sent = yield self.sent(capture, mac)
        self.assertEqual(sent, [("Offer", mac, ip, "none"), ("ACK", mac, ip, "none")],
                         capture.output())
