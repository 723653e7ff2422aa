"""
C{twistd netsuite-dns}'s section and service (L{netsuite.dns.tap}).
"""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, parse
from netsuite.dns import tap
from netsuite.services import all_sections, find_service
from netsuite.testing import registry_on_clock

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")


def config(**dns):
    return parse({"dns": dict({"enabled": True}, **dns)}, "test.toml", all_sections())


class TapTests(SynchronousTestCase):
    def test_plugin(self) -> None:
        plugin = find_service("dns")
        self.assertEqual((plugin.tapname, plugin.capabilities), ("netsuite-dns", frozenset()))

    def test_example_documents_every_key(self) -> None:
        with open(EXAMPLE) as f:
            text = f.read()
        section = text.split("\n[dns]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^([a-z_]+) =", section, re.M))
        self.assertEqual(keys, set(tap.SECTION))

    def test_bad_values(self) -> None:
        for key, value in [("upstreams", ["not-an-ip"]), ("preauth_refuse_types", ["BOGUS"]),
                           ("garden_names", ["a.*.org"]), ("cache_size", -1)]:
            self.assertRaises(ConfigError, config, **{key: value})

    def test_check(self) -> None:
        self.assertRaises(ConfigError, tap.check, config(hosts="/nonexistent/dnscore-hosts"))
        self.assertRaises(ConfigError, tap.check, config(local_names={"a": "nope"}))
        self.assertRaises(ConfigError, tap.check, config(listen=[]))
        tap.check(config())

    def test_local_and_portal_names(self) -> None:
        c = parse({"dns": {"local_names": {"printer.lan": "10.89.0.5"}},
                   "portal": {"host": "portal.hotspot.lan"}}, "test.toml", all_sections())
        local = tap.local_names(c)
        self.assertEqual(sorted(local.names), [b"portal.hotspot.lan", b"printer.lan"])
        self.assertEqual(str(local.names[b"portal.hotspot.lan"][0]), "10.89.0.1")

    def test_service(self) -> None:
        registry, clock = registry_on_clock("dns")
        service = tap.serviceFromConfig(config(upstreams=["192.0.2.53:5353"],
                                               upstream_sockets=3, upstream_port_queries=50,
                                               upstream_max_pending=9), registry, clock)
        upstream = service.server.upstream
        self.assertEqual(upstream.servers, [("192.0.2.53", 5353)])
        self.assertEqual(tap._upstreams(["192.0.2.1", "2001:DB8::1", "[2001:db8::2]:5353"]),
                         [("192.0.2.1", 53), ("2001:db8::1", 53), ("2001:db8::2", 5353)])
        for bad in ["2001:db8::1]:53", "[2001:db8::1]53", "[2001:db8::1]:0", "host:53"]:
            self.assertRaises(ValueError, tap._upstream, bad)
        self.assertEqual((upstream.size, upstream.port_queries, upstream.port_seconds,
                          upstream.max_pending), (3, 50, 60.0, 9))
        self.assertTrue(registry.describe("/dns/query"))
