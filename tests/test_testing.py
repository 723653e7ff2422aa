"""
L{netsuite.testing}, the shipped fakes: its surface, and that each fake
provides the interface of what it stands in for. Their behaviour is held
to the real thing's by the contract tests: L{tests.test_runner},
L{tests.ldap.test_contract}, L{tests.firewall.test_contract} and
L{tests.firewall.test_shaper_contract}.
"""

import ipaddress

from twisted.internet.defer import Deferred, TimeoutError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite import testing
from netsuite.firewall.interfaces import IFirewall, IShaper
from netsuite.ldap import IDirectory
from netsuite.registry import CONTINUE, IRegistry, Stop
from netsuite.runner import IRunner


class SurfaceTests(SynchronousTestCase):
    def test_exports(self):
        """
        What the module says it ships is there.
        """
        self.assertEqual(sorted(testing.__all__), [
            "HeldRunner", "MemoryCapabilities", "MemoryDirectory", "MemoryFirewall",
            "MemoryShaper", "SyncRunner", "registry_on_clock"])
        for name in testing.__all__:
            self.assertTrue(hasattr(testing, name), name)

    def test_interfaces(self):
        """
        Each fake provides the interface of the real thing.
        """
        registry, clock = testing.registry_on_clock()
        self.assertTrue(verifyObject(IRunner, testing.SyncRunner()))
        self.assertTrue(verifyObject(IRunner, testing.HeldRunner()))
        self.assertTrue(verifyObject(IDirectory, testing.MemoryDirectory()))
        self.assertTrue(verifyObject(IShaper, testing.MemoryShaper(
            ipaddress.IPv4Network("10.0.0.0/24"))))
        self.assertTrue(verifyObject(IFirewall, testing.MemoryFirewall(
            clock, ipaddress.IPv4Network("10.0.0.0/24"))))
        self.assertTrue(verifyObject(IRegistry, registry))
        from netsuite.privileges import ICapabilityCalls
        self.assertTrue(verifyObject(ICapabilityCalls, testing.MemoryCapabilities()))


class RegistryOnClockTests(SynchronousTestCase):
    def test_deadline(self):
        """
        A listener's deadline runs on the returned clock: advancing it past
        the deadline skips the listener and the chain goes on.
        """
        registry, clock = testing.registry_on_clock("hooks", default_deadline=1.0)
        registry.declare("/x")
        registry.listen("/x", lambda message: Deferred())
        registry.listen("/x", lambda message: Stop("fell through"))
        d = registry.send("/x", {})
        self.assertNoResult(d)
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(d), "fell through")
        self.flushLoggedErrors(TimeoutError)

    def test_watchers_flushed(self):
        """
        Watchers are told on a later turn; C{registry.eventual.flush_sync()}
        delivers them.
        """
        registry, _ = testing.registry_on_clock()
        registry.declare("/x")
        seen = []
        registry.watch("/x", seen.append)
        registry.listen("/x", lambda message: CONTINUE)
        registry.send("/x", {"n": 1})
        self.assertEqual(seen, [])
        registry.eventual.flush_sync()
        self.assertEqual(seen, [{"n": 1}])
