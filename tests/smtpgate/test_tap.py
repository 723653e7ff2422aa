"""
C{twistd netsuite-smtpgate}'s section and service (L{netsuite.smtpgate.tap}).
"""

import ipaddress
import os
import re

from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, parse
from netsuite.services import all_sections, find_service
from netsuite.smtpgate import tap
from netsuite.testing import registry_on_clock

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")


def config(**section):
    return parse({"smtpgate": dict({"enabled": True}, **section)}, "test.toml", all_sections())


class TapTests(SynchronousTestCase):
    def test_plugin(self):
        plugin = find_service("smtpgate")
        self.assertEqual((plugin.tapname, plugin.capabilities),
                         ("netsuite-smtpgate", frozenset()))

    def test_example_documents_every_key(self):
        with open(EXAMPLE) as f:
            text = f.read()
        section = text.split("\n[smtpgate]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^#? ?([a-z_]+) =", section, re.M))
        self.assertEqual(keys & set(tap.SECTION), set(tap.SECTION))

    def test_providers(self):
        section = config(providers={"192.0.2.10": ["198.51.100.25", "198.51.100.26"]}).smtpgate
        self.assertEqual(section.providers, {ipaddress.IPv4Address("192.0.2.10"): [
            ipaddress.IPv4Address("198.51.100.25"), ipaddress.IPv4Address("198.51.100.26")]})

    def test_bad_values(self):
        for key, value in [("providers", {"x": ["198.51.100.25"]}),
                           ("providers", {"192.0.2.10": []}),
                           ("providers", {"192.0.2.10": "198.51.100.25"}),
                           ("scope", "everywhere"), ("window", 0), ("max_pending", 0)]:
            self.assertRaises(ConfigError, config, **{key: value})

    def test_service(self):
        registry, clock = registry_on_clock("ap")
        service = tap.serviceFromConfig(config(window=60, scope="any"), registry, clock)
        self.assertEqual((service.gate.window, service.gate.scope), (60, "any"))
        service.startService()
        self.assertTrue(self.successResultOf(service.when_ready()) is None)
        service.stopService()
