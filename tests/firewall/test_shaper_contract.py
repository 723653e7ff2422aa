"""
One contract for both shapers: the in-memory one, and the kernel one in
namespaces made for the test (L{tests.firewall.shaperlab}; as root only).
"""

from ipaddress import IPv4Address, IPv4Network

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite.firewall.interfaces import IShaper
from netsuite.firewall.memory import MemoryShaper
from netsuite.firewall.shaping import Shaper
from netsuite.firewall.slots import NO_UPLINK, UNLIMITED_KBIT, Uplink

from .shaperlab import TC, KernelTestsMixin, run


class ShaperContract:
    """
    What every IShaper does. Subclasses provide, in C{setUp},
    C{self.shaper} (not set up) on C{self.network} with two clients
    C{self.ip_a} and C{self.ip_b}; C{build(network)}, a shaper for another
    LAN; and C{flush()}, what another tool's C{tc qdisc del} of the roots
    and the ingress does.
    """

    def test_interface(self):
        """
        It provides IShaper.
        """
        self.assertTrue(verifyObject(IShaper, self.shaper))

    def test_before_setup(self):
        """
        Before setup() the layout is not intact, and limits can be neither
        set, removed nor read: there is no IFB device.
        """
        self.assertFalse(self.shaper.intact())
        self.assertRaises(LookupError, self.shaper.limit, self.ip_a, 10, 10)
        self.assertRaises(LookupError, self.shaper.unlimit, self.ip_a)
        self.assertRaises(LookupError, self.shaper.limits)

    def test_setup_twice(self):
        """
        A limit set between two setup() calls survives the second, and the
        layout is intact.
        """
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        self.shaper.limit(self.ip_a, 1000, 2000)
        self.shaper.setup()
        self.assertEqual(self.shaper.limits(), {self.ip_a: (1000, 2000)})
        self.assertTrue(self.shaper.intact())

    def test_limits_read_back(self):
        """
        limits() reads back what limit() set: a second limit() replaces, 0
        leaves a direction out (both 0: no limit), unlimit() removes, twice
        or for a client that has no limit without error.
        """
        self.shaper.setup()
        a, b = self.ip_a, self.ip_b
        self.assertEqual(self.shaper.limits(), {})
        self.shaper.limit(a, 1000, 3000)
        self.shaper.limit(b, 0, 2000)
        self.assertEqual(self.shaper.limits(), {a: (1000, 3000), b: (0, 2000)})
        self.shaper.limit(a, 500, 0)
        self.assertEqual(self.shaper.limits(), {a: (500, 0), b: (0, 2000)})
        self.shaper.unlimit(b)
        self.shaper.unlimit(b)
        self.shaper.unlimit(self.network.network_address + 99)
        self.assertEqual(self.shaper.limits(), {a: (500, 0)})
        self.shaper.unlimit(a)
        self.assertEqual(self.shaper.limits(), {})
        self.shaper.limit(b, UNLIMITED_KBIT, 1)
        self.assertEqual(self.shaper.limits(), {b: (UNLIMITED_KBIT, 1)})
        self.shaper.limit(b, 0, 0)
        self.assertEqual(self.shaper.limits(), {})

    def test_refuses(self):
        """
        Limits are ints of kbit/s up to 10 gbit/s; an address that is not a
        client of the LAN (outside it, its network or broadcast address) is
        refused by limit() and unlimit(), and nothing changes; a shaper for
        a LAN larger than a /16 cannot be built.
        """
        self.shaper.setup()
        self.assertRaises(ValueError, self.shaper.limit, self.ip_a, -1, 10)
        self.assertRaises(ValueError, self.shaper.limit, self.ip_a, 1.5, 10)
        self.assertRaises(ValueError, self.shaper.limit, self.ip_a, 10, UNLIMITED_KBIT + 1)
        self.assertRaises(ValueError, self.shaper.limit, IPv4Address("192.0.2.1"), 10, 10)
        for ip in (IPv4Address("192.0.2.1"), self.network.network_address,
                   self.network.broadcast_address):
            self.assertRaises(ValueError, self.shaper.limit, ip, 10, 10)
            self.assertRaises(ValueError, self.shaper.unlimit, ip)
        self.assertEqual(self.shaper.limits(), {})
        self.assertRaises(ValueError, self.build, IPv4Network("10.0.0.0/8"))

    def test_teardown(self):
        """
        teardown() twice is harmless; the layout is then not intact and has
        no limits to read until the next setup(), which starts empty.
        """
        self.shaper.setup()
        self.shaper.limit(self.ip_a, 1000, 1000)
        self.shaper.teardown()
        self.shaper.teardown()
        self.assertFalse(self.shaper.intact())
        self.assertRaises(LookupError, self.shaper.limits)
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        self.assertEqual(self.shaper.limits(), {})

    def test_flushed(self):
        """
        Once another tool flushes the qdiscs, the layout is not intact and
        the limits are gone (unlimit() stays harmless); setup() makes it
        intact again, and limits can be set again.
        """
        self.shaper.setup()
        self.shaper.limit(self.ip_a, 1000, 2000)
        self.assertTrue(self.shaper.intact())
        self.flush()
        self.assertFalse(self.shaper.intact())
        self.assertEqual(self.shaper.limits(), {})
        self.shaper.unlimit(self.ip_a)
        self.shaper.setup()
        self.assertTrue(self.shaper.intact())
        self.assertEqual(self.shaper.limits(), {})
        self.shaper.limit(self.ip_a, 1000, 2000)
        self.assertEqual(self.shaper.limits(), {self.ip_a: (1000, 2000)})


class FairShareContract:
    """
    What every IShaper does with an uplink capacity. Subclasses provide
    what L{ShaperContract} asks for, and C{build(network, uplink)}.
    """

    UPLINK = Uplink(up_kbit=8000, down_kbit=20000)

    def test_fair_read_back(self):
        """
        With a capacity both ways every client limited has classes,
        C{limit(ip, 0, 0)} included, read back as (0, 0); a limit of its
        own reads back as set (even above the capacity); unlimit() removes
        the client; a second setup() keeps them all.
        """
        shaper = self.build(self.network, self.UPLINK)
        shaper.setup()
        a, b = self.ip_a, self.ip_b
        shaper.limit(a, 0, 0)
        shaper.limit(b, 1000, 0)
        self.assertEqual(shaper.limits(), {a: (0, 0), b: (1000, 0)})
        shaper.limit(b, 1000, 30000)
        shaper.setup()
        self.assertTrue(shaper.intact())
        self.assertEqual(shaper.limits(), {a: (0, 0), b: (1000, 30000)})
        shaper.unlimit(a)
        shaper.unlimit(a)
        self.assertEqual(shaper.limits(), {b: (1000, 30000)})
        shaper.limit(b, 0, 0)
        self.assertEqual(shaper.limits(), {b: (0, 0)})

    def test_fair_one_direction(self):
        """
        With a download capacity only, upload is as without fair shares: a
        client without an upload limit has no upload class, one with a
        limit has it; limits() reads both back.
        """
        shaper = self.build(self.network, Uplink(down_kbit=20000))
        shaper.setup()
        shaper.limit(self.ip_a, 0, 0)
        shaper.limit(self.ip_b, 500, 0)
        self.assertEqual(shaper.limits(), {self.ip_a: (0, 0), self.ip_b: (500, 0)})
        self.assertTrue(shaper.intact())

    def test_fair_flushed(self):
        """
        A flush takes the clients' classes with the qdiscs; setup() makes
        the layout intact again, and clients can be put back.
        """
        shaper = self.build(self.network, self.UPLINK)
        shaper.setup()
        shaper.limit(self.ip_a, 0, 0)
        self.flush()
        self.assertFalse(shaper.intact())
        self.assertEqual(shaper.limits(), {})
        shaper.setup()
        self.assertTrue(shaper.intact())
        shaper.limit(self.ip_a, 0, 0)
        self.assertEqual(shaper.limits(), {self.ip_a: (0, 0)})

    def test_fair_refuses_a_16(self):
        """
        A shaper with fair shares on a /16 cannot be built.
        """
        self.assertRaises(ValueError, self.build, IPv4Network("10.1.0.0/16"), self.UPLINK)
        self.build(IPv4Network("10.1.0.0/16"))


class MemoryShaperTests(ShaperContract, FairShareContract, SynchronousTestCase):
    """
    The contract, for the in-memory shaper.
    """

    def setUp(self):
        self.network = IPv4Network("10.77.9.0/24")
        self.ip_a = self.network.network_address + 10
        self.ip_b = self.network.network_address + 20
        self.shaper = self.build(self.network)

    def build(self, network, uplink=NO_UPLINK):
        self.built = MemoryShaper(network, uplink)
        return self.built

    def flush(self):
        self.built.flush()

    def test_fair_classes(self):
        """
        The simulated classes are the kernel's: under the uplink, rate the
        guarantee (capacity / the LAN's 254 client addresses) or a lower
        ceil, ceil the client's limit or the capacity; without a capacity
        in a direction, root classes at rate = ceil.
        """
        shaper = self.build(self.network, Uplink(down_kbit=20000))
        shaper.setup()
        shaper.limit(self.ip_a, 500, 0)
        shaper.limit(self.ip_b, 0, 50)
        self.assertEqual(shaper.kernel_classes, {
            self.ip_a: {"up": ("root", 500, 500), "down": ("uplink", 78, 20000)},
            self.ip_b: {"down": ("uplink", 50, 50)},
        })
        shaper.unlimit(self.ip_a)
        self.assertEqual(list(shaper.kernel_classes), [self.ip_b])

    def test_flushed_refuses_limits(self):
        """
        On a flushed layout, limit() fails until setup() and sets nothing
        (the kernel's fails with its own error, perhaps half done).
        """
        self.shaper.setup()
        self.flush()
        self.assertRaises(LookupError, self.shaper.limit, self.ip_a, 10, 10)
        self.assertEqual(self.shaper.kernel_limits, {})


class KernelShaperTests(ShaperContract, FairShareContract, KernelTestsMixin,
                        SynchronousTestCase):
    """
    The contract, for the kernel shaper on the bridge of a lab of its own.
    """

    def setUp(self):
        KernelTestsMixin.setUp(self)
        self.network = self.lab.network
        self.ip_a, self.ip_b = self.lab.ip_a, self.lab.ip_b

    def build(self, network, uplink=NO_UPLINK):
        return Shaper("br0", network, ipr=self.lab.ipr, uplink=uplink)

    def flush(self):
        for argv in (["dev", "br0", "root"], ["dev", "br0", "ingress"],
                     ["dev", "ifb-ns0", "root"]):
            run([TC, "-n", self.lab.ap, "qdisc", "del", *argv])
