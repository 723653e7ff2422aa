"""
C{twistd netsuite-stats}'s section and service (L{netsuite.stats.tap}).
"""

import os
import re

from twisted.internet.testing import MemoryReactorClock
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
        # each sub-table ([stats.accounting], ...) in a block of its own after it
        for name, table in tap.SECTION.items():
            if hasattr(table, "fields"):
                block = text.split(f"\n[stats.{name}]\n", 1)[1].split("\n[", 1)[0]
                keys = set(re.findall(r"^#? ?([a-z_0-9]+) =", block, re.M))
                self.assertEqual(keys & set(table.fields), set(table.fields), name)

    def test_example_documents_operator_keys(self):
        """[stats.operator] (netsuite.stats.operator) documents each of its keys."""
        from netsuite.stats.operator import OPERATOR_SECTION
        with open(EXAMPLE) as f:
            text = f.read()
        table = text.split("\n[stats.operator]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^#? ?([a-z_0-9]+) =", table, re.M))
        self.assertEqual(keys, set(OPERATOR_SECTION))

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
        reactor = MemoryReactorClock()  # the metrics' port listens on it
        service = tap.serviceFromConfig(config(interval=5), registry, reactor)
        service.startService()
        self.assertTrue(self.successResultOf(service.when_ready()) is None)
        service.stopService()
