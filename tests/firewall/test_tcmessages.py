"""
Tests for L{netsuite.firewall.tcmessages}: the shaper's tc netlink messages,
byte for byte, and the readers of what the kernel dumps back. No root.

The golden messages were captured from L{netsuite.firewall.shaping.Shaper}
as it was before the messages moved to their own module (commit 62cda68),
with a stand-in for C{IPRoute} that recorded each request: LAN ifindex 7,
IFB ifindex 8, client 10.77.9.10 of 10.77.9.0/24, sequence number and port
id 0. A run in a namespace sends the same bytes.
"""

from ipaddress import IPv4Address, IPv4Network

from pyroute2.netlink.rtnl import RTM_GETTCLASS
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import calc_xmittime
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall import tcmessages as tc
from netsuite.firewall.slots import (
    DEFAULT_CLASSID,
    LINK_HANDLE,
    ROOT_HANDLE,
    UNLIMITED_KBIT,
    UPLINK_CLASSID,
    client_slot,
    ip_match_key,
)

NET = IPv4Network("10.77.9.0/24")
IP = IPv4Address("10.77.9.10")
SLOT = client_slot(IP, NET)
LAN, IFB = 7, 8

# limit(10.77.9.10, up 4000, down 2000); 10,000,000 is the default class
CLASS_LAN_2000 = bytes.fromhex(
    "6000000028000505000000000000000000000000070000000a00010000000100000000000800010068746200"
    "3400020030000100000100000000000090d00300000100000000000090d00300a0860100a0860100a8610000"
    "0000000000000000")
CLASS_IFB_4000 = bytes.fromhex(
    "6000000028000505000000000000000000000000080000000a00010000000100000000000800010068746200"
    "3400020030000100000100000000000020a10700000100000000000020a1070050c3000050c3000050c30000"
    "0000000000000000")
CLASS_LAN_DEFAULT = bytes.fromhex(
    "600000002800050500000000000000000000000007000000ffff010000000100000000000800010068746200"
    "34000200300001000001000000000000807c814a0001000000000000807c814a0f0000000f000000400d0300"
    "0000000000000000")
FILTER_LAN = bytes.fromhex(
    "640000002c0005050000000000000000000000000700000001a020000000010008000a000800010075333200"
    "380002000800020000a02000080001000a0001002400050001000100000000000000000000000000ffffffff"
    "0a4d090a1000000000000000")
FILTER_IFB = bytes.fromhex(
    "640000002c0005050000000000000000000000000800000001a020000000010008000a000800010075333200"
    "380002000800020000a02000080001000a0001002400050001000100000000000000000000000000ffffffff"
    "0a4d090a0c00000000000000")
# unlimit(10.77.9.10) on the LAN: the filter, then the class
DELETE_FILTER_LAN = bytes.fromhex(
    "2c0000002d0005000000000000000000000000000700000001a020000000010008000a000800010075333200")
DELETE_CLASS_LAN = bytes.fromhex(
    "2400000029000500000000000000000000000000070000000a0001000000010000000000")
# setup() on the LAN
HTB_ROOT_LAN = bytes.fromhex(
    "48000000240005060000000000000000000000000700000000000100ffffffff000000000800010068746200"
    "1c00020018000200030000000a000000ffff00000000000000000000")
HASH_TABLE_LAN = bytes.fromhex(
    "380000002c00050600000000000000000000000007000000000020000000010008000a000800010075333200"
    "0c0002000800040000010000")
HASH_LINK_LAN = bytes.fromhex(
    "5c0000002c00050500000000000000000000000007000000010000800000010008000a000800010075333200"
    "30000200080003000000200024000500000001000000000000001000000000ffffffff000a4d090010000000"
    "00000000")
HASH_LINK_IFB = bytes.fromhex(
    "5c0000002c00050500000000000000000000000008000000010000800000010008000a000800010075333200"
    "30000200080003000000200024000500000001000000000000000c00000000ffffffff000a4d09000c000000"
    "00000000")
INGRESS_LAN = bytes.fromhex(
    "3000000024000506000000000000000000000000070000000000fffff1ffffff000000000c000100696e6772"
    "65737300")
REDIRECT_LAN_TO_IFB = bytes.fromhex(
    "8c0000002c00050500000000000000000000000007000000010000800000ffff000301000800010075333200"
    "6000020024000500010001000000000000000000000000000000000000000000000000000000000038000700"
    "340001000b0001006d69727265640000240002802000020000000000000000000400000000000000000000"
    "000100000008000000")
GET_LINK_LAN = bytes.fromhex(
    "2c0000002e00050000000000000000000000000007000000010000800000010008000a000800010075333200")
# teardown() on the LAN
DELETE_ROOT_LAN = bytes.fromhex(
    "24000000250005000000000000000000000000000700000000000000ffffffff00000000")
DELETE_INGRESS_LAN = bytes.fromhex(
    "2400000025000500000000000000000000000000070000000000fffff1ffffff00000000")


def encoded(msg):
    msg.encode()
    return bytes(msg.data)


class GoldenMessageTests(SynchronousTestCase):
    """
    Each request is built as the Shaper has always sent it.
    """

    def test_client(self):
        """
        A limited client: its class and its u32 node on each device; an
        unlimited direction: the node's then the class's deletion.
        """
        self.assertEqual(encoded(tc.set_class(LAN, SLOT.classid, 2000)), CLASS_LAN_2000)
        self.assertEqual(encoded(tc.set_class(IFB, SLOT.classid, 4000)), CLASS_IFB_4000)
        self.assertEqual(encoded(tc.set_client_filter(LAN, SLOT, IP, "dst")), FILTER_LAN)
        self.assertEqual(encoded(tc.set_client_filter(IFB, SLOT, IP, "src")), FILTER_IFB)
        self.assertEqual(encoded(tc.delete_client_filter(LAN, SLOT)), DELETE_FILTER_LAN)
        self.assertEqual(encoded(tc.delete_class(LAN, SLOT.classid)), DELETE_CLASS_LAN)

    def test_layout(self):
        """
        The htb root, its default class, the hash table and the hashing
        node (keyed on dst on the LAN, src on the IFB), the ingress and its
        redirect, and the get that checks the tree.
        """
        self.assertEqual(encoded(tc.add_htb_root(LAN)), HTB_ROOT_LAN)
        self.assertEqual(encoded(tc.set_class(LAN, DEFAULT_CLASSID, UNLIMITED_KBIT)),
                         CLASS_LAN_DEFAULT)
        self.assertEqual(encoded(tc.add_hash_table(LAN)), HASH_TABLE_LAN)
        self.assertEqual(encoded(tc.set_hash_link(LAN, NET, "dst")), HASH_LINK_LAN)
        self.assertEqual(encoded(tc.set_hash_link(IFB, NET, "src")), HASH_LINK_IFB)
        self.assertEqual(encoded(tc.add_ingress(LAN)), INGRESS_LAN)
        self.assertEqual(encoded(tc.set_redirect(LAN, IFB)), REDIRECT_LAN_TO_IFB)
        self.assertEqual(encoded(tc.get_tree_filter(LAN, LINK_HANDLE)), GET_LINK_LAN)

    def test_teardown(self):
        """
        Deleting the root and the ingress qdisc.
        """
        self.assertEqual(encoded(tc.delete_root(LAN)), DELETE_ROOT_LAN)
        self.assertEqual(encoded(tc.delete_ingress(LAN)), DELETE_INGRESS_LAN)


class ReadBackTests(SynchronousTestCase):
    """
    What the kernel would send back, decoded by pyroute2 and read by us.
    """

    def decoded(self, data):
        back = tcmsg(data)
        back.decode()
        return back

    def test_encoded_filter(self):
        """
        A client's filter message carries the hash bucket, the class id and
        one key, and reads back the same through a decode.
        """
        slot = SLOT
        msg = tc.tc_message(7, handle=slot.filter_handle, parent=ROOT_HANDLE,
                            info=tc.filter_info(tc.CLIENT_PRIO, tc.ETH_P_IP),
                            attrs=[('TCA_KIND', 'u32'),
                                   ('TCA_OPTIONS', {'attrs': [
                                       ['TCA_U32_HASH', slot.hash_handle],
                                       ['TCA_U32_CLASSID', slot.classid],
                                       ['TCA_U32_SEL', {'keys': [ip_match_key(IP, "dst")],
                                                        'flags': 1}]]})])
        msg['header']['type'] = tc.RTM_NEWTFILTER
        msg['header']['flags'] = tc.REPLACE
        data = encoded(msg)
        self.assertEqual(data, FILTER_LAN)
        back = self.decoded(data)
        self.assertEqual(back['handle'], 0x0020A001)
        self.assertEqual(back['info'], (10 << 16) | 0x0008)   # prio 10, htons(ETH_P_IP)
        opts = back.get_attr('TCA_OPTIONS')
        self.assertEqual(opts.get_attr('TCA_U32_HASH'), 0x0020A000)
        self.assertEqual(opts.get_attr('TCA_U32_CLASSID'), 0x1000A)
        self.assertEqual(tc.u32_sel(opts),
                         {'flags': 1, 'hoff': 0, 'hmask': 0, 'keys': [(0x0A4D090A, 0xFFFFFFFF, 16)]})

    def test_encoded_class(self):
        """
        A class carries rate = ceil in bytes/s with the Ethernet link layer
        and no rate tables.
        """
        opts = tc.htb_class_options(4000)
        parms = dict(opts['attrs'])['TCA_HTB_PARMS']
        self.assertEqual((parms['rate'], parms['ceil']), (500000, 500000))
        self.assertEqual(parms['rate___reserved'], tc.LINKLAYER_ETHERNET)
        self.assertEqual([name for name, _ in opts['attrs']], ['TCA_HTB_PARMS'])
        big = dict(tc.htb_class_options(40_000_000)['attrs'])
        self.assertEqual(big['TCA_HTB_RATE64'], 5_000_000_000)

    def test_class_limit(self):
        """
        A dumped client class reads as its address and kbit/s; the default
        class is no client's.
        """
        self.assertEqual(tc.class_limit(self.decoded(CLASS_LAN_2000), NET), (IP, 2000))
        self.assertIsNone(tc.class_limit(self.decoded(CLASS_LAN_DEFAULT), NET))

    def test_hash_link(self):
        """
        The hashing node is recognized for its LAN and direction only.
        """
        link = self.decoded(HASH_LINK_LAN)
        self.assertTrue(tc.is_hash_link(link, NET, "dst"))
        self.assertFalse(tc.is_hash_link(link, NET, "src"))
        self.assertFalse(tc.is_hash_link(link, IPv4Network("10.99.0.0/16"), "dst"))
        self.assertFalse(tc.is_hash_link(None, NET, "dst"))
        self.assertTrue(tc.is_hash_table(self.decoded(HASH_TABLE_LAN)))
        self.assertFalse(tc.is_hash_table(link))

    def test_redirect(self):
        """
        The ingress redirect is recognized with its target device only.
        """
        redirect = [self.decoded(REDIRECT_LAN_TO_IFB)]
        self.assertTrue(tc.redirects_only_to(redirect, IFB))
        self.assertFalse(tc.redirects_only_to(redirect, 9))
        self.assertFalse(tc.redirects_only_to([], IFB))


class FairShareMessageTests(SynchronousTestCase):
    """
    The classes of fair shares: the uplink's, and a client's under it.
    """

    def decoded(self, msg):
        back = tcmsg(encoded(msg))
        back.decode()
        return back

    def test_client_class(self):
        """
        A client's class under the uplink carries its parent, rate and ceil,
        the quantum and a ceil burst of that quantum (its rate burst stays
        one MTU), and reads back as its address, parent and ceil.
        """
        msg = tc.set_class(LAN, SLOT.classid, 78, parent=UPLINK_CLASSID, ceil_kbit=20000,
                           quantum=50000, cburst=50000)
        back = self.decoded(msg)
        self.assertEqual((back['handle'], back['parent']), (SLOT.classid, UPLINK_CLASSID))
        parms = back.get_attr('TCA_OPTIONS').get_attr('TCA_HTB_PARMS')
        self.assertEqual((parms['rate'], parms['ceil'], parms['quantum']),
                         (78 * 125, 20000 * 125, 50000))
        self.assertEqual(parms['buffer'], calc_xmittime(78 * 125, tc.MTU))
        self.assertEqual(parms['cbuffer'], calc_xmittime(20000 * 125, 50000))
        self.assertEqual(tc.client_class(back, NET), (IP, UPLINK_CLASSID, 20000))
        self.assertEqual(tc.class_limit(back, NET), (IP, 20000))

    def test_uplink_class(self):
        """
        The uplink's class is a root class (rate = ceil) and no client's;
        a class under any other parent is no client's either.
        """
        back = self.decoded(tc.set_class(LAN, UPLINK_CLASSID, 20000))
        self.assertEqual(back['parent'], ROOT_HANDLE)
        self.assertEqual(tc.htb_rate(back), tc.htb_ceil(back))
        self.assertIsNone(tc.client_class(back, NET))
        other = self.decoded(tc.set_class(LAN, SLOT.classid, 10, parent=ROOT_HANDLE | 5))
        self.assertIsNone(tc.client_class(other, NET))

    def test_get_class(self):
        """
        One class asked for by its id.
        """
        msg = tc.get_class(LAN, UPLINK_CLASSID)
        self.assertEqual((msg['header']['type'], msg['index'], msg['handle']),
                         (RTM_GETTCLASS, LAN, UPLINK_CLASSID))

    def test_fair_quantum(self):
        """
        Twenty milliseconds of the uplink, from one MTU to 64 KiB.
        """
        self.assertEqual(tc.fair_quantum(20000), 50000)
        self.assertEqual(tc.fair_quantum(100), tc.MTU)
        self.assertEqual(tc.fair_quantum(1_000_000), 65536)
