"""
C{twistd netsuite-mailproxy}'s section and service (L{netsuite.mailproxy.tap}).
"""

import os
import re

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, parse
from netsuite.mailproxy import tap
from netsuite.services import all_sections, find_service
from netsuite.testing import registry_on_clock

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")
FAKE = "tests.mailproxy.fakemail:logins"


def config(firewall=None, **mailproxy):
    data = {"mailproxy": dict({"enabled": True, "modules": {"143": FAKE}}, **mailproxy)}
    if firewall:
        data["firewall"] = firewall
    return parse(data, "test.toml", all_sections())


class TapTests(SynchronousTestCase):
    def test_plugin(self) -> None:
        plugin = find_service("mailproxy")
        self.assertEqual((plugin.tapname, plugin.capabilities),
                         ("netsuite-mailproxy", frozenset({"CAP_NET_RAW"})))

    def test_example_documents_every_key(self) -> None:
        with open(EXAMPLE) as f:
            text = f.read()
        section = text.split("\n[mailproxy]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^([a-z_0-9]+) =", section, re.M))
        self.assertEqual(keys, set(tap.SECTION))

    def test_defaults(self) -> None:
        section = parse({}, "test.toml", all_sections()).mailproxy
        self.assertEqual(section.modules, {143: ["imap"], 110: ["pop3"]})
        self.assertEqual((section.mode, section.port, str(section.listen)),
                         ("tproxy", 10143, "0.0.0.0"))

    def test_bad_values(self) -> None:
        for key, value in [("modules", {"http": "imap"}), ("modules", {"0": "imap"}),
                           ("modules", {"143": 5}), ("mode", "queue"), ("nfqueue_num", -1),
                           ("listen6", "10.0.0.1"), ("max_held", 0)]:
            self.assertRaises(ConfigError, config, **{key: value})

    def test_check(self) -> None:
        tap.check(config())
        e = self.assertRaises(ConfigError, tap.check, config(modules={"143": "smtp"}))
        self.assertIn("unknown proxy module 'smtp'", str(e))
        e = self.assertRaises(ConfigError, tap.check, config(firewall={"tproxy_port": 10000}))
        self.assertIn("is not [firewall] tproxy_port (10000)", str(e))
        tap.check(config(firewall={"tproxy_port": 10143}))
        tap.check(config(mode="redirect", firewall={"tproxy_port": 10000}))
        self.assertRaises(ConfigError, tap.check, config(mode="redirect", spoof_source=True))

    def test_check_nfqueue(self) -> None:
        """nfqueue mode: the queue and the port are the firewall's, when it has them."""
        tap.check(config(mode="nfqueue"))
        tap.check(config(mode="nfqueue", nfqueue_num=3, firewall={
            "nfqueue_num": 3, "nfqueue_redirect_port": 10143, "tproxy_port": 10000}))
        e = self.assertRaises(ConfigError, tap.check, config(mode="nfqueue", firewall={
            "nfqueue_num": 3}))
        self.assertIn("nfqueue_num (0) is not [firewall] nfqueue_num (3)", str(e))
        e = self.assertRaises(ConfigError, tap.check, config(mode="nfqueue", firewall={
            "nfqueue_num": 0, "nfqueue_redirect_port": 10000}))
        self.assertIn("is not [firewall] nfqueue_redirect_port (10000)", str(e))

    def test_service_nfqueue(self) -> None:
        """nfqueue mode: a plain listener, a queue reader, destinations from its table."""
        registry, clock = registry_on_clock("mailproxy")
        service = tap.serviceFromConfig(
            config(mode="nfqueue", nfqueue_num=5, nfqueue_entries=7, nfqueue_seconds=3.0),
            registry, MemoryReactorClock())
        self.assertFalse(service.transparent)
        reader = service.reader
        self.assertEqual((reader.num, reader.table.max_entries, reader.table.ttl), (5, 7, 3.0))
        self.assertEqual(service.mailproxy.proxy.destination, reader.table.destination)
        reader.table.counters["syn_recorded"] += 1
        self.assertEqual(service.mailproxy.all_counters()["syn_recorded"], 1)
        service.runner.stop()

    def test_tls_heuristic_keys(self) -> None:
        registry, clock = registry_on_clock("mailproxy")
        service = tap.serviceFromConfig(config(), registry, MemoryReactorClock())
        self.assertIsNone(service.mailproxy.tls_seconds)
        service.runner.stop()
        service = tap.serviceFromConfig(config(tls_heuristic=True, tls_seconds=5.0),
                                        registry_on_clock("mailproxy")[0], MemoryReactorClock())
        self.assertEqual(service.mailproxy.tls_seconds, 5.0)
        service.runner.stop()

    def test_service(self) -> None:
        registry, clock = registry_on_clock("mailproxy")
        service = tap.serviceFromConfig(config(listen6="::", port=49110, idle=60.0,
                                               modules={"143": FAKE, "110": [FAKE, "relay"]}),
                                        registry, MemoryReactorClock())
        self.assertEqual(service.listeners, [("0.0.0.0", 49110), ("::", 49110)])
        self.assertTrue(service.transparent)
        mailproxy = service.mailproxy
        self.assertEqual([name for name, _ in mailproxy.by_port[110]], [FAKE, "relay"])
        self.assertEqual(mailproxy.proxy.settings.idle, 60.0)
        self.assertTrue(registry.describe("/mailproxy/login"))
        service.runner.stop()
