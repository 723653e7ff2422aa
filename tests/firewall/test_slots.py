"""
Tests for L{netsuite.firewall.slots}: the class ids, u32 handles and keys
derived from a client's address, and tc's kbit. Nothing needed: pure.
"""

from ipaddress import IPv4Address, IPv4Network

from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.slots import (
    DEFAULT_MINOR,
    HASH_HT,
    MIN_GUARANTEE_KBIT,
    NO_UPLINK,
    ROOT_HANDLE,
    UNLIMITED_KBIT,
    UPLINK_CLASSID,
    Uplink,
    address_of,
    bytes_to_kbit,
    check_limits,
    check_uplink,
    client_slot,
    fair_class,
    ip_match_key,
    kbit_to_bytes,
    network_match_key,
    u32_key,
)


class SlotArithmeticTests(SynchronousTestCase):
    """
    Class ids and u32 handles derived from the address.
    """

    def test_slash24(self):
        """
        On a /24 the class minor is the host offset, the bucket the low byte
        and the node 1: 10.77.9.10 is class 1:a, u32 node 2:a:1.
        """
        slot = client_slot(IPv4Address("10.77.9.10"), IPv4Network("10.77.9.0/24"))
        self.assertEqual(slot.offset, 10)
        self.assertEqual(slot.classid, 0x1000A)
        self.assertEqual(slot.minor, 0xA)
        self.assertEqual(slot.bucket, 0x0A)
        self.assertEqual(slot.node, 1)
        self.assertEqual(slot.hash_handle, 0x0020A000)   # 2:a:
        self.assertEqual(slot.filter_handle, 0x0020A001)  # 2:a:1

    def test_slash16(self):
        """
        On a /16 addresses sharing a low byte share a bucket and differ by
        node; the largest host offset, 0xfffe, stays below the default
        class 1:ffff.
        """
        net = IPv4Network("10.78.0.0/16")
        a = client_slot(IPv4Address("10.78.0.7"), net)
        b = client_slot(IPv4Address("10.78.3.7"), net)
        last = client_slot(IPv4Address("10.78.255.254"), net)
        self.assertEqual((a.bucket, a.node, a.classid), (7, 1, 0x10007))
        self.assertEqual((b.bucket, b.node, b.classid), (7, 4, 0x10307))
        self.assertEqual(b.filter_handle, 0x00207004)    # 2:7:4
        self.assertEqual((last.classid, last.bucket, last.node), (0x1FFFE, 0xFE, 0x100))
        self.assertLess(last.minor, DEFAULT_MINOR)

    def test_unique_on_slash16(self):
        """
        Every host of a /16 has its own class and its own u32 handle, all
        in range (minor 1..0xfffe, node 1..0x100 in 12 bits).
        """
        net = IPv4Network("10.78.0.0/16")
        base = int(net.network_address)
        classids, handles = set(), set()
        for offset in range(1, 0xFFFF):
            slot = client_slot(IPv4Address(base + offset), net)
            classids.add(slot.classid)
            handles.add(slot.filter_handle)
            self.assertTrue(1 <= slot.node <= 0xFFF)
            self.assertEqual(slot.filter_handle >> 20, HASH_HT >> 20)
        self.assertEqual(len(classids), 0xFFFE)
        self.assertEqual(len(handles), 0xFFFE)
        self.assertNotIn(ROOT_HANDLE | DEFAULT_MINOR, classids)

    def test_unaligned_small_network(self):
        """
        On a /26 that does not start at .0 the bucket is still the low byte
        of the address (what the kernel hashes), not the offset.
        """
        slot = client_slot(IPv4Address("192.0.2.70"), IPv4Network("192.0.2.64/26"))
        self.assertEqual((slot.offset, slot.bucket, slot.node), (6, 70, 1))
        self.assertEqual(address_of(slot.minor, IPv4Network("192.0.2.64/26")),
                         IPv4Address("192.0.2.70"))

    def test_address_of(self):
        """
        The minor of a class maps back to its address; minors that are not
        hosts of the LAN (0, broadcast, the default class) map to None.
        """
        net = IPv4Network("10.77.9.0/24")
        self.assertEqual(address_of(10, net), IPv4Address("10.77.9.10"))
        self.assertIsNone(address_of(0, net))
        self.assertIsNone(address_of(255, net))
        self.assertIsNone(address_of(DEFAULT_MINOR, net))
        self.assertIsNone(address_of(DEFAULT_MINOR, IPv4Network("10.78.0.0/16")))

    def test_refused(self):
        """
        Addresses outside the LAN, its network and broadcast addresses, and
        LANs larger than a /16 are refused (and so are shapers for them:
        L{tests.firewall.test_shaper_contract}).
        """
        net = IPv4Network("10.77.9.0/24")
        for ip in ("10.77.8.10", "10.77.9.0", "10.77.9.255"):
            self.assertRaises(ValueError, client_slot, IPv4Address(ip), net)
        self.assertRaises(ValueError, client_slot, IPv4Address("10.0.0.1"),
                          IPv4Network("10.0.0.0/15"))

    def test_rates(self):
        """
        tc's kbit is 1000 bit/s; the kernel counts bytes/s.
        """
        self.assertEqual(kbit_to_bytes(4000), 500000)
        self.assertEqual(bytes_to_kbit(500000), 4000)
        self.assertEqual(bytes_to_kbit(kbit_to_bytes(1)), 1)

    def test_limits_checked(self):
        """
        A limit is an int of kbit/s from 0 (none) to the default class's
        10 gbit/s; both are checked.
        """
        check_limits(0, UNLIMITED_KBIT)
        for bad in (-1, 1.5, "10", None, UNLIMITED_KBIT + 1):
            self.assertRaises(ValueError, check_limits, bad, 0)
            self.assertRaises(ValueError, check_limits, 0, bad)


class U32KeyTests(SynchronousTestCase):
    """
    u32 keys: (value, mask, offset from the IP header).
    """

    def test_ip_keys(self):
        self.assertEqual(ip_match_key(IPv4Address("10.77.9.10"), "dst"),
                         (0x0A4D090A, 0xFFFFFFFF, 16))
        self.assertEqual(ip_match_key(IPv4Address("10.77.9.10"), "src"),
                         (0x0A4D090A, 0xFFFFFFFF, 12))

    def test_network_keys(self):
        self.assertEqual(network_match_key(IPv4Network("10.77.9.0/24"), "dst"),
                         (0x0A4D0900, 0xFFFFFF00, 16))
        self.assertEqual(network_match_key(IPv4Network("10.78.0.0/16"), "src"),
                         (0x0A4E0000, 0xFFFF0000, 12))

    def test_bad_keys(self):
        self.assertRaises(ValueError, u32_key, 1, 0xFF, 2)          # unaligned
        self.assertRaises(ValueError, u32_key, 0x100, 0xFF, 0)      # value outside mask
        self.assertRaises(ValueError, ip_match_key, IPv4Address("10.0.0.1"), "both")


class UplinkTests(SynchronousTestCase):
    """
    The uplink's capacity, the guarantee of each client under it and a
    client's (rate, ceil).
    """

    def test_capacity(self):
        """
        Download is shaped where the tree matches dst (the LAN), upload
        where it matches src (the IFB); no capacity is off.
        """
        uplink = Uplink(up_kbit=1000, down_kbit=20000)
        self.assertEqual((uplink.capacity("dst"), uplink.capacity("src")), (20000, 1000))
        self.assertTrue(uplink.on)
        self.assertFalse(NO_UPLINK.on)
        self.assertTrue(Uplink(down_kbit=1).on)
        self.assertRaises(ValueError, uplink.capacity, "both")

    def test_guarantee(self):
        """
        The guarantee is the capacity over the expected clients (by default
        every client address of the LAN, so that guarantees never add up to
        more than the capacity), at least 8 kbit/s.
        """
        net24, net17 = IPv4Network("10.0.0.0/24"), IPv4Network("10.0.0.0/17")
        self.assertEqual(Uplink(down_kbit=20000).guarantee(20000, net24), 20000 // 254)
        self.assertEqual(Uplink(down_kbit=20000, clients=10).guarantee(20000, net24), 2000)
        self.assertEqual(Uplink(down_kbit=20000).guarantee(20000, net17), MIN_GUARANTEE_KBIT)
        self.assertEqual(Uplink(down_kbit=100, clients=1).guarantee(100, net24), 100)

    def test_fair_class(self):
        """
        A client without a limit of its own may take the whole capacity;
        with one, that is its ceil; its rate is the guarantee, unless its
        ceil is lower.
        """
        self.assertEqual(fair_class(20000, 78, 0), (78, 20000))
        self.assertEqual(fair_class(20000, 78, 4000), (78, 4000))
        self.assertEqual(fair_class(20000, 78, 50), (50, 50))
        self.assertEqual(fair_class(20000, 78, 30000), (78, 30000))

    def test_check_uplink(self):
        """
        Capacities are ints of kbit/s up to 10 gbit/s, clients an int >= 0,
        and fair shares need a LAN of /17 or smaller (class 1:fffe is the
        uplink's; on a /16 it is a client's); without a capacity a /16 is
        fine.
        """
        net = IPv4Network("10.0.0.0/24")
        self.assertEqual(check_uplink(Uplink(5, 6, 7), net), Uplink(5, 6, 7))
        for bad in (Uplink(-1), Uplink(UNLIMITED_KBIT + 1), Uplink(1.5), Uplink(1, 1, -1)):
            self.assertRaises(ValueError, check_uplink, bad, net)
        sixteen = IPv4Network("10.1.0.0/16")
        self.assertEqual(check_uplink(NO_UPLINK, sixteen), NO_UPLINK)
        error = self.assertRaises(ValueError, check_uplink, Uplink(down_kbit=1000), sixteen)
        self.assertIn("/17", str(error))
        self.assertEqual(check_uplink(Uplink(down_kbit=1000), IPv4Network("10.1.0.0/17")),
                         Uplink(down_kbit=1000))
        self.assertEqual(address_of(UPLINK_CLASSID & 0xFFFF, IPv4Network("10.1.0.0/17")), None)
