"""
Tests for L{netsuite.firewall.flows}: parsing conntrack messages (pure), and
cutting real flows in a namespace.
"""

import ipaddress
import os
import socket
import struct
import subprocess

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite.firewall.flows import (CTA_IP_V4_SRC, CTA_IP_V6_SRC, CTA_TUPLE_IP, CTA_TUPLE_ORIG,
                                     CTA_TUPLE_REPLY, FlowCutter, _original_source,
                                     _top_attributes, _tuple_source)
from netsuite.firewall.nfnetlink import NLA_F_NESTED, attr, message
from netsuite.runner import enter_netns


def tuple_(kind: int, source: str, destination: str) -> bytes:
    return attr(kind | NLA_F_NESTED, attr(CTA_TUPLE_IP | NLA_F_NESTED,
                attr(CTA_IP_V4_SRC, ipaddress.IPv4Address(source).packed)
                + attr(2, ipaddress.IPv4Address(destination).packed)))


def entry(source: str, reply_source: str = "198.51.100.1") -> bytes:
    """
    A conntrack message as the kernel sends one (trimmed to the tuples and
    a status attribute).
    """
    status = attr(3, struct.pack(">I", 8))
    return message(1, 0, 2, 7, status + tuple_(CTA_TUPLE_ORIG, source, "198.51.100.1")
                   + tuple_(CTA_TUPLE_REPLY, reply_source, source))


class ParseTests(SynchronousTestCase):
    def test_original_source(self):
        """
        The original tuple's source address is found among the attributes.
        """
        attributes = _top_attributes(entry("10.89.0.11"))
        self.assertEqual(len(attributes), 3)
        self.assertEqual(_original_source(attributes),
                         ipaddress.IPv4Address("10.89.0.11").packed)

    def test_reply_source(self):
        """
        The reply tuple's source: where the answers come from (the access
        point itself for a redirected flow).
        """
        attributes = _top_attributes(entry("10.89.0.11", reply_source="10.89.0.1"))
        self.assertEqual(_tuple_source(attributes, CTA_TUPLE_REPLY),
                         ipaddress.IPv4Address("10.89.0.1").packed)

    def test_ipv6_source(self):
        """
        An IPv6 entry's source is its 16 bytes.
        """
        source = ipaddress.IPv6Address("2001:db8:89::11")
        tuple6 = attr(CTA_TUPLE_ORIG | NLA_F_NESTED, attr(CTA_TUPLE_IP | NLA_F_NESTED,
                      attr(CTA_IP_V6_SRC, source.packed)
                      + attr(4, ipaddress.IPv6Address("2001:db8:100::1").packed)))
        attributes = _top_attributes(message(1, 0, 2, 7, tuple6, socket.AF_INET6))
        self.assertEqual(_original_source(attributes), source.packed)

    def test_no_tuple(self):
        """
        A message without an original tuple has no source.
        """
        self.assertIsNone(_original_source(_top_attributes(message(1, 0, 0, 1, b""))))


class CutTests(SynchronousTestCase):
    def setUp(self):
        if os.getuid() != 0:
            raise SkipTest("needs root to make a network namespace")
        self.ns = f"nsflow{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", self.ns])
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "addr", "add", "10.9.0.1/24", "dev", "lo"],
                     ["ip", "addr", "add", "10.9.0.2/24", "dev", "lo"],
                     ["ip", "addr", "add", "2001:db8:9::1/64", "dev", "lo", "nodad"],
                     ["ip", "addr", "add", "2001:db8:9::2/64", "dev", "lo", "nodad"],
                     ["iptables-legacy", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW",
                      "-j", "ACCEPT"],
                     ["ip6tables-legacy", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW",
                      "-j", "ACCEPT"]):
            subprocess.run(["ip", "netns", "exec", self.ns, *argv], check=True)

    def count(self, source):
        family = ["-f", "ipv6"] if ":" in source else []
        out = subprocess.run(["ip", "netns", "exec", self.ns, "conntrack", "-L", *family,
                              "-s", source], capture_output=True, text=True, check=True).stdout
        return len(out.splitlines())

    def test_cut_ipv6(self):
        """
        IPv4 and IPv6 sources are cut in one call; other sources stay.
        """
        import threading
        result = {}

        def work():
            enter_netns(self.ns)  # this thread only
            server4, server6 = socket.socket(), socket.socket(socket.AF_INET6)
            server4.bind(("10.9.0.1", 5555))
            server6.bind(("2001:db8:9::1", 5555))
            sockets = [server4, server6]
            for server in (server4, server6):
                server.listen(10)
            for server, source in [(server4, "10.9.0.2"), (server6, "2001:db8:9::2"),
                                   (server6, "2001:db8:9::2"), (server6, "2001:db8:9::1")]:
                client = socket.create_connection(server.getsockname()[:2],
                                                  source_address=(source, 0))
                sockets += [client, server.accept()[0]]
            cutter = FlowCutter()
            result["before"] = (self.count("10.9.0.2"), self.count("2001:db8:9::2"),
                                self.count("2001:db8:9::1"))
            result["cut"] = cutter.cut({ipaddress.IPv4Address("10.9.0.2"),
                                        ipaddress.IPv6Address("2001:db8:9::2")})
            result["after"] = (self.count("10.9.0.2"), self.count("2001:db8:9::2"),
                               self.count("2001:db8:9::1"))
            cutter.close()
            for s in sockets:
                s.close()
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(30)
        self.assertEqual(result["before"], (1, 2, 1))
        self.assertEqual(result["cut"], 3)
        self.assertEqual(result["after"], (0, 0, 1))

    def test_cut(self):
        """
        cut() deletes exactly the flows started by the given addresses.
        """
        import threading
        result = {}

        def work():
            enter_netns(self.ns)  # this thread only
            server = socket.socket()
            server.bind(("10.9.0.1", 5555))
            server.listen(10)
            sockets = [server]
            for source in ["10.9.0.1"] * 3 + ["10.9.0.2"] * 2:
                client = socket.create_connection(("10.9.0.1", 5555), source_address=(source, 0))
                sockets += [client, server.accept()[0]]
            result["before"] = (self.count("10.9.0.1"), self.count("10.9.0.2"))
            cutter = FlowCutter()
            result["cut"] = cutter.cut({ipaddress.IPv4Address("10.9.0.1")})
            result["after"] = (self.count("10.9.0.1"), self.count("10.9.0.2"))
            result["none"] = cutter.cut(set())
            cutter.close()
            for s in sockets:
                s.close()
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(30)
        self.assertEqual(result["before"], (3, 2))
        self.assertEqual(result["cut"], 3)
        self.assertEqual(result["after"], (0, 2))
        self.assertEqual(result["none"], 0)

    def test_local_spared(self):
        """
        With C{local}, the entries answered from there (flows ending on this
        host) stay; the others of the same source go.
        """
        import threading
        result = {}

        def work():
            enter_netns(self.ns)  # this thread only
            here, there = socket.socket(), socket.socket()
            here.bind(("10.9.0.1", 5555))
            there.bind(("10.9.0.2", 5556))
            sockets = [here, there]
            for server in sockets[:2]:
                server.listen(10)
                for _ in range(2):
                    client = socket.create_connection(server.getsockname(),
                                                      source_address=("10.9.0.1", 0))
                    sockets += [client, server.accept()[0]]
            cutter = FlowCutter(local=ipaddress.IPv4Network("10.9.0.1/32"))
            result["cut"] = cutter.cut({ipaddress.IPv4Address("10.9.0.1")})
            out = subprocess.run(["ip", "netns", "exec", self.ns, "conntrack", "-L", "-s",
                                  "10.9.0.1"], capture_output=True, text=True).stdout
            result["left"] = sorted(line.split("dport=")[1].split()[0]
                                    for line in out.splitlines())
            cutter.close()
            for s in sockets:
                s.close()
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(30)
        self.assertEqual(result["cut"], 2)
        self.assertEqual(result["left"], ["5555", "5555"])
