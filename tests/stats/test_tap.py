"""
C{twistd netsuite-stats}'s section and service (L{netsuite.stats.tap}).
"""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, Table, parse
from netsuite.services import all_sections, find_service
from netsuite.stats import tap
from netsuite.testing import registry_on_clock

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")


def config(**section):
    return parse({"stats": dict({"enabled": True}, **section)}, "test.toml", all_sections())


class TapTests(SynchronousTestCase):
    def test_plugin(self):
        plugin = find_service("stats")
        self.assertEqual((plugin.tapname, plugin.rank), ("netsuite-stats", 60))

    def test_example_documents_every_key(self):
        with open(EXAMPLE) as f:
            text = f.read()
        section = text.split("\n[stats]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^#? ?([a-z_0-9]+) =", section, re.M))
        plain = {k for k, v in tap.SECTION.items() if hasattr(v, "default")}
        self.assertEqual(keys & plain, plain)

    def test_example_documents_extrusion(self):
        """[stats.extrusion] documents every key of its table."""
        from netsuite.stats import guard
        with open(EXAMPLE) as f:
            text = f.read()
        section = text.split("\n[stats.extrusion]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^#? ?([a-z_0-9]+) =", section, re.M))
        self.assertEqual(keys, set(guard.SECTION))
        self.assertIsInstance(tap.SECTION["extrusion"], Table)

    def test_bad_values(self):
        for key, value in [("interval", 7), ("interval", 0), ("interval", True),
                           ("uplink_interface", "a/b")]:
            with self.assertRaises(ConfigError) as caught:
                config(**{key: value})
            self.assertIn(f"stats.{key}", str(caught.exception))

    def test_service(self):
        registry, clock = registry_on_clock("ap")
        service = tap.serviceFromConfig(config(interval=5), registry, clock)
        service.startService()
        self.assertTrue(self.successResultOf(service.when_ready()) is None)
        service.stopService()
