"""
Tests for L{netsuite.firewall.setwriter}: its messages are byte for byte
those pyroute2 builds.
"""

import ipaddress
import socket

from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_IPSET
from pyroute2.netlink.nfnetlink.ipset import ipset_msg
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.setwriter import IPSET_CMD_ADD, IPSET_CMD_DEL, encode_entry
from netsuite.registry.values import MAC


def pyroute2_entry(command, name, ip, mac=None, timeout=None):
    data = [["IPSET_ATTR_IP", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", ip]]}]]
    if timeout is not None:
        data.append(["IPSET_ATTR_TIMEOUT", timeout])
    if mac is not None:
        data.append(["IPSET_ATTR_ETHER", mac])
    msg = ipset_msg()
    msg["attrs"] = [["IPSET_ATTR_PROTOCOL", 7], ["IPSET_ATTR_SETNAME", name],
                    ["IPSET_ATTR_DATA", {"attrs": data}]]
    msg["header"]["type"] = (NFNL_SUBSYS_IPSET << 8) | command
    msg["header"]["flags"] = 5
    msg["header"]["sequence_number"] = 42
    msg["nfgen_family"] = socket.AF_INET
    msg.encode()
    return bytes(msg.data)


class EncodeTests(SynchronousTestCase):
    def test_same_as_pyroute2(self):
        """
        Adds with a MAC, adds with a timeout and deletes encode exactly as
        pyroute2 encodes them, for set names of every padding length.
        """
        ip = ipaddress.IPv4Address("10.89.0.11")
        for name in ("a", "ns-auth", "ns-down", "ns-smtp1", "x" * 30):
            cases = [
                ((IPSET_CMD_ADD, name, ip, MAC("02:4e:00:00:00:01"), None),
                 (IPSET_CMD_ADD, name, "10.89.0.11", "02:4e:00:00:00:01", None)),
                ((IPSET_CMD_ADD, name, ip, None, 600),
                 (IPSET_CMD_ADD, name, "10.89.0.11", None, 600)),
                ((IPSET_CMD_DEL, name, ip, None, None),
                 (IPSET_CMD_DEL, name, "10.89.0.11", None, None)),
            ]
            for ours, theirs in cases:
                self.assertEqual(encode_entry(*ours, sequence=42), pyroute2_entry(*theirs))


    def test_window_same_as_pyroute2(self):
        """
        An add (with a timeout) and a delete of a hash:ip,port,ip entry
        (client, TCP port, server) encode as pyroute2 encodes them.
        """
        client = ipaddress.IPv4Address("10.89.0.11")
        server = ipaddress.IPv4Address("192.0.2.25")
        for command, timeout in ((IPSET_CMD_ADD, 900), (IPSET_CMD_DEL, None)):
            data = [["IPSET_ATTR_IP", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", str(client)]]}],
                    ["IPSET_ATTR_PORT", 587], ["IPSET_ATTR_PROTO", socket.IPPROTO_TCP],
                    ["IPSET_ATTR_IP2", {"attrs": [["IPSET_ATTR_IPADDR_IPV4", str(server)]]}]]
            if timeout is not None:
                data.append(["IPSET_ATTR_TIMEOUT", timeout])
            msg = ipset_msg()
            msg["attrs"] = [["IPSET_ATTR_PROTOCOL", 7], ["IPSET_ATTR_SETNAME", "ns-smtpto"],
                            ["IPSET_ATTR_DATA", {"attrs": data}]]
            msg["header"]["type"] = (NFNL_SUBSYS_IPSET << 8) | command
            msg["header"]["flags"] = 5
            msg["header"]["sequence_number"] = 42
            msg["nfgen_family"] = socket.AF_INET
            msg.encode()
            self.assertEqual(encode_entry(command, "ns-smtpto", client, None, timeout, 42,
                                          port=587, ip2=server), bytes(msg.data))


class ParseListTests(SynchronousTestCase):
    def test_windows(self):
        """
        The entries of a hash:ip,port,ip LIST dump: client, port, server
        and time left; an entry missing a part is left out.
        """
        import struct
        from netsuite.firewall.nfnetlink import NLA_F_NESTED, attr, message
        from netsuite.firewall.setwriter import parse_windows

        def ip(kind, text):
            return attr(kind | NLA_F_NESTED,
                        attr(1 | 0x4000, ipaddress.IPv4Address(text).packed))

        def entry(*parts):
            return attr(7 | NLA_F_NESTED, b"".join(parts))
        port = attr(4 | 0x4000, struct.pack(">H", 25)) + attr(7 | 0x4000, b"\x06")
        adt = attr(8 | NLA_F_NESTED,
                   entry(ip(1, "10.89.0.11"), port, ip(20, "192.0.2.25"),
                         attr(6 | 0x4000, struct.pack(">I", 899)))
                   + entry(ip(1, "10.89.0.12"), port))
        body = message(6, 7, 2, 1, attr(2, b"ns-smtpto\0") + adt)
        self.assertEqual(parse_windows([body]), [
            (ipaddress.IPv4Address("10.89.0.11"), 25, ipaddress.IPv4Address("192.0.2.25"),
             899)])

    def test_entries(self):
        """
        The entries of a LIST dump message: address, MAC, counters and
        time left, each only when present.
        """
        import struct
        from netsuite.firewall.nfnetlink import NLA_F_NESTED, attr, message
        from netsuite.firewall.setwriter import parse_list

        def entry(ip, mac=None, counters=None, timeout=None):
            data = attr(1 | NLA_F_NESTED, attr(1 | 0x4000, ipaddress.IPv4Address(ip).packed))
            if mac is not None:
                data += attr(17, MAC(mac).packed)
            if counters is not None:
                data += attr(24 | 0x4000, struct.pack(">Q", counters[0]))
                data += attr(25 | 0x4000, struct.pack(">Q", counters[1]))
            if timeout is not None:
                data += attr(6 | 0x4000, struct.pack(">I", timeout))
            return attr(7 | NLA_F_NESTED, data)

        adt = attr(8 | NLA_F_NESTED, entry("10.89.0.11", "02:4e:00:00:00:0b", (1500, 3))
                   + entry("10.89.0.12", timeout=42))
        body = message(6, 7, 2, 1, attr(2, b"ns-auth\0") + adt)
        self.assertEqual(parse_list([body]), [
            (ipaddress.IPv4Address("10.89.0.11"), MAC("02:4e:00:00:00:0b"), 1500, 3, None),
            (ipaddress.IPv4Address("10.89.0.12"), None, 0, 0, 42)])
