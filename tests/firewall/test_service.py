"""
Tests for L{netsuite.firewall.service}: the firewall's mailboxes, its
lifecycle and the periodic check, with the in-memory firewall and a Clock.
"""

import ipaddress

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netsuite.firewall.memory import MemoryFirewall
from netsuite.firewall.service import FirewallService
from netsuite.firewall.tap import SECTION, settings_from_config
from netsuite.config.schema import parse
from netsuite.registry import Registry, Stop
from netsuite.registry.values import MAC

LAN = ipaddress.IPv4Network("10.89.0.0/24")
A = ipaddress.IPv4Address("10.89.0.11")
MAC_A = MAC("02:4e:00:00:00:0b")


class FirewallServiceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.registry = Registry("ap", self.clock)
        self.firewall = MemoryFirewall(self.clock, LAN)
        self.service = FirewallService(self.firewall, self.registry, self.clock,
                                       check_interval=5.0)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def send(self, path, message=None):
        return self.successResultOf(self.registry.send(path, message or {}))

    def test_authorize_over_mailbox(self):
        """
        /firewall/authorize authorizes the client, answers what was done,
        and tells /firewall/authorized.
        """
        told = []
        self.registry.watch("/firewall/authorized", told.append)
        answer = self.send("/firewall/authorize", {"ip": A, "mac": MAC_A, "up_kbit": 512})
        self.assertEqual(answer, {"authorized": True, "ip": A, "mac": MAC_A,
                                  "up_kbit": 512, "down_kbit": 0})
        self.assertIn(A, self.firewall.kernel_clients)
        self.assertEqual(self.firewall.kernel_limits[A], (512, 0))
        self.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A, "mac": MAC_A, "up_kbit": 512, "down_kbit": 0}])
        self.assertEqual(self.send("/firewall/clients"),
                         [{"ip": A, "mac": MAC_A, "up_kbit": 512, "down_kbit": 0}])

    def test_string_addresses(self):
        """
        Addresses may come as strings (from netsuite-hook --json, say).
        """
        answer = self.send("/firewall/authorize", {"ip": "10.89.0.11",
                                                   "mac": "02:4e:00:00:00:0b"})
        self.assertEqual(answer["ip"], A)

    def test_hook_can_refuse(self):
        """
        A listener put in front of /firewall/authorize can refuse a client:
        the stock listener never runs.
        """
        self.registry.listen("/firewall/authorize",
                             lambda m: Stop({"authorized": False, "reason": "banned"}),
                             first=True)
        answer = self.send("/firewall/authorize", {"ip": A, "mac": MAC_A})
        self.assertEqual(answer, {"authorized": False, "reason": "banned"})
        self.assertEqual(self.firewall.clients, {})

    def test_bad_message(self):
        """
        A message without an address is a failing stock listener: skipped,
        logged, counted; the send ends with no answer and nothing changes.
        """
        from netsuite.registry import NO_ANSWER
        self.assertIs(self.send("/firewall/authorize", {"mac": MAC_A}), NO_ANSWER)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        box = self.registry.describe("/firewall/authorize")[0]
        self.assertEqual(box["counters"]["errors"], 1)

    def test_deauthorize_outside_lan(self):
        """
        De-authorizing an address outside the LAN (an operator's kick of
        20.89.0.11, found by tests.fuzz.portal_forms) answers that it was
        not authorized, without a listener failure in the log.
        """
        import ipaddress
        outside = ipaddress.IPv4Address("20.89.0.11")
        self.assertEqual(self.send("/firewall/deauthorize", {"ip": outside}),
                         {"deauthorized": False, "ip": outside})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_deauthorize_and_counters(self):
        """
        /firewall/counters answers each client's traffic;
        /firewall/deauthorize removes it and tells /firewall/deauthorized.
        """
        self.send("/firewall/authorize", {"ip": A, "mac": MAC_A})
        self.firewall.add_traffic(A, up=1000, down=5000)
        counters = self.send("/firewall/counters")
        self.assertEqual(counters["10.89.0.11"]["bytes_up"], 1000)
        self.assertEqual(counters["10.89.0.11"]["bytes_down"], 5000)
        told = []
        self.registry.watch("/firewall/deauthorized", told.append)
        self.assertEqual(self.send("/firewall/deauthorize", {"ip": A}),
                         {"deauthorized": True, "ip": A})
        self.assertEqual(self.send("/firewall/deauthorize", {"ip": A}),
                         {"deauthorized": False, "ip": A})
        self.registry.eventual.flush_sync()
        self.assertEqual(told, [{"ip": A}])
        self.assertEqual(self.firewall.cut, [A, A])

    def test_compact_counters(self):
        """
        /firewall/counters with {compact: true} answers every client's
        address, MAC and counters as 42-byte rows, the old form unchanged.
        """
        from netsuite.firewall.compact import unpack_rows
        B, MAC_B = ipaddress.IPv4Address("10.89.0.12"), MAC("02:4e:00:00:00:0c")
        self.send("/firewall/authorize", {"ip": B, "mac": MAC_B})
        self.send("/firewall/authorize", {"ip": A, "mac": MAC_A})
        self.firewall.add_traffic(A, up=1000, down=5000, packets=3)
        answer = self.send("/firewall/counters", {"compact": True})
        self.assertEqual(answer["count"], 2)
        self.assertEqual(list(unpack_rows(answer["rows"])), [
            ("10.89.0.11", "02:4e:00:00:00:0b", 1000, 5000, 3, 3),
            ("10.89.0.12", "02:4e:00:00:00:0c", 0, 0, 0, 0)])
        self.assertEqual(self.send("/firewall/counters")["10.89.0.11"]["bytes_down"], 5000)

    def test_compact_counters_fit_the_bus(self):
        """
        10,000 clients' compact counters, encoded for the bus, fit its
        1 MiB message limit.
        """
        from netsuite.bus.arguments import MAX_MESSAGE
        from netsuite.registry.values import dumps
        firewall = MemoryFirewall(self.clock, ipaddress.IPv4Network("10.64.0.0/16"))
        registry = Registry("big", self.clock)
        FirewallService(firewall, registry, self.clock, check_interval=0)
        for i in range(10000):
            self.successResultOf(firewall.authorize(ipaddress.IPv4Address("10.64.0.10") + i,
                                                    MAC(bytes([2, 0, 0, 0, i >> 8, i & 255]))))
            firewall.add_traffic(ipaddress.IPv4Address("10.64.0.10") + i, up=10 ** 11,
                                 down=10 ** 12, packets=10 ** 9)
        answer = self.successResultOf(registry.send("/firewall/counters", {"compact": True}))
        self.assertEqual(answer["count"], 10000)
        self.assertLess(len(dumps(answer)), MAX_MESSAGE)

    def test_smtp_mailboxes(self):
        """
        /firewall/smtp/open opens a window that /firewall/smtp/windows lists
        and that closes by itself; /firewall/smtp/close closes it at once.
        """
        self.assertEqual(self.send("/firewall/smtp/open", {"ip": A, "seconds": 60}),
                         {"open": True, "seconds": 60})
        self.assertEqual(self.send("/firewall/smtp/windows"), {"10.89.0.11": {"any": 60}})
        self.clock.advance(61)
        self.assertEqual(self.send("/firewall/smtp/windows"), {})
        self.send("/firewall/smtp/open", {"ip": A})
        self.assertEqual(self.send("/firewall/smtp/windows"), {"10.89.0.11": {"any": 600}})
        self.assertEqual(self.send("/firewall/smtp/close", {"ip": A}), {"open": False})
        self.assertEqual(self.send("/firewall/smtp/windows"), {})

    def test_smtp_server_windows(self):
        """
        /firewall/smtp/open with a server opens a window towards it only,
        listed under its address; /firewall/smtp/close closes both kinds.
        """
        server = ipaddress.IPv4Address("192.0.2.25")
        self.assertEqual(self.send("/firewall/smtp/open",
                                   {"ip": A, "seconds": 60, "server": server}),
                         {"open": True, "seconds": 60})
        self.send("/firewall/smtp/open", {"ip": A, "seconds": 30, "server": "192.0.2.26"})
        self.send("/firewall/smtp/open", {"ip": A, "seconds": 90})
        self.assertEqual(self.send("/firewall/smtp/windows"), {
            "10.89.0.11": {"192.0.2.25": 60, "192.0.2.26": 30, "any": 90}})
        self.assertEqual(self.firewall.kernel_smtp_servers,
                         {(A, server): 60, (A, ipaddress.IPv4Address("192.0.2.26")): 30})
        self.send("/firewall/smtp/close", {"ip": A})
        self.assertEqual(self.send("/firewall/smtp/windows"), {})

    def test_periodic_check(self):
        """
        Every check_interval seconds the kernel is checked; a wipe by
        another tool is repaired on the next check and announced on
        /firewall/repaired.
        """
        self.send("/firewall/authorize", {"ip": A, "mac": MAC_A})
        repaired = []
        self.registry.watch("/firewall/repaired", repaired.append)
        self.firewall.wipe()
        self.clock.advance(4.9)
        self.assertEqual(self.firewall.kernel_clients, {})
        self.clock.advance(0.1)
        self.assertIn(A, self.firewall.kernel_clients)
        self.registry.eventual.flush_sync()
        self.assertEqual(len(repaired), 1)
        self.assertIn("authorized clients restored (1 were missing)", repaired[0]["what"])

    def test_stop(self):
        """
        Stopping the service stops the checks and the firewall (which, not
        keeping clients, empties the kernel).
        """
        self.send("/firewall/authorize", {"ip": A, "mac": MAC_A})
        self.successResultOf(self.service.stopService())
        self.assertEqual(self.firewall.kernel_clients, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SettingsTests(SynchronousTestCase):
    def test_from_config(self):
        """
        The [firewall] section becomes the rules' settings; a bad network
        is refused naming the key.
        """
        config = parse({"firewall": {"lan_network": "10.1.0.0/16", "portal_port": 8080,
                                     "walled_garden": ["198.51.100.0/24"]}},
                       "test.toml", {"firewall": SECTION})
        settings = settings_from_config(config.firewall)
        self.assertEqual(settings.lan_network, ipaddress.IPv4Network("10.1.0.0/16"))
        self.assertEqual(settings.walled_garden, (ipaddress.IPv4Network("198.51.100.0/24"),))
        from netsuite.config.schema import ConfigError
        error = self.assertRaises(ConfigError, parse, {"firewall": {"lan_network": "nope"}},
                                  "test.toml", {"firewall": SECTION})
        self.assertIn("test.toml: key 'firewall.lan_network'", str(error))

    def test_fair_share_keys(self):
        """
        The uplink's capacities and clients, and per-device rates by MAC
        ([firewall.rates], either direction may be left out); a bad rate is
        refused naming the key and the file; a capacity on a LAN larger
        than a /17 is refused by the check.
        """
        from netsuite.config.schema import ConfigError
        from netsuite.firewall.tap import check
        default = parse({"firewall": {}}, "test.toml", {"firewall": SECTION})
        self.assertEqual((default.firewall.uplink_up_kbit, default.firewall.uplink_down_kbit,
                          default.firewall.uplink_clients, default.firewall.rates),
                         (0, 0, 0, {}))
        chosen = parse({"firewall": {
            "uplink_down_kbit": 20000, "uplink_up_kbit": 5000, "uplink_clients": 20,
            "rates": {"02:4E:00:00:00:0B": {"up_kbit": 1000, "down_kbit": 4000},
                      "02:4e:00:00:00:0c": {"down_kbit": 0}}}},
            "test.toml", {"firewall": SECTION})
        self.assertEqual(chosen.firewall.rates, {MAC_A: (1000, 4000),
                                                 MAC("02:4e:00:00:00:0c"): (None, 0)})
        check(chosen)
        for bad in ({"nope": {"up_kbit": 1}}, {"02:4e:00:00:00:0b": {"up_kbit": -1}},
                    {"02:4e:00:00:00:0b": {"up_kbit": "fast"}},
                    {"02:4e:00:00:00:0b": {"upload": 1}}, {"02:4e:00:00:00:0b": {}},
                    {"02:4e:00:00:00:0b": 1000}, {"02:4e:00:00:00:0b": {"down_kbit": 10 ** 8}}):
            error = self.assertRaises(ConfigError, parse, {"firewall": {"rates": bad}},
                                      "test.toml", {"firewall": SECTION})
            self.assertIn("test.toml: key 'firewall.rates'", str(error))
        error = self.assertRaises(ConfigError, parse, {"firewall": {"uplink_up_kbit": -5}},
                                  "test.toml", {"firewall": SECTION})
        self.assertIn("firewall.uplink_up_kbit", str(error))
        wide = parse({"firewall": {"lan_network": "10.1.0.0/16", "uplink_down_kbit": 1000}},
                     "test.toml", {"firewall": SECTION})
        error = self.assertRaises(ConfigError, check, wide)
        self.assertIn("uplink", str(error))
        check(parse({"firewall": {"lan_network": "10.1.0.0/16", "uplink_down_kbit": 1000,
                                  "shaping": False}}, "test.toml", {"firewall": SECTION}))

    def test_example_documents_every_key(self):
        """
        etc/netsuite.toml's [firewall] section has every key, the per-MAC
        rates as the [firewall.rates] table after it, and loads.
        """
        import os
        import re
        from netsuite.config.schema import load
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")
        with open(example) as f:
            text = f.read()
        section = text.split("\n[firewall]\n", 1)[1].split("\n[", 1)[0]
        keys = set(re.findall(r"^([a-z_0-9]+) =", section, re.M))
        self.assertEqual(keys | {"rates"}, set(SECTION))
        self.assertIn("\n[firewall.rates]\n", text)
        from netsuite.services import all_sections
        config = load(example, all_sections())
        self.assertEqual((config.firewall.rates, config.firewall.uplink_down_kbit), ({}, 0))
        self.assertEqual(config.portal.auth.ldap_up_attribute, "")

    def test_preauth_dns(self):
        """
        preauth_dns is on unless the [firewall] section turns it off.
        """
        default = parse({"firewall": {}}, "test.toml", {"firewall": SECTION})
        self.assertTrue(settings_from_config(default.firewall).preauth_dns)
        off = parse({"firewall": {"preauth_dns": False}}, "test.toml", {"firewall": SECTION})
        self.assertFalse(settings_from_config(off.firewall).preauth_dns)

    def test_dns_keys(self):
        """
        dns_port (53) and dns_after_login ("direct") reach the settings;
        dns_after_login is one of direct or netsuite; the garden's keys
        have their defaults, and a shortest time longer than the longest is
        refused by the section's check, naming both keys.
        """
        from netsuite.config.schema import ConfigError
        from netsuite.firewall.tap import check
        default = parse({"firewall": {}}, "test.toml", {"firewall": SECTION})
        settings = settings_from_config(default.firewall)
        self.assertEqual((settings.dns_port, settings.dns_after_login), (53, "direct"))
        self.assertEqual((default.firewall.garden_min_ttl, default.firewall.garden_max_ttl,
                          default.firewall.garden_max_entries), (60, 86400, 4096))
        check(default)
        chosen = parse({"firewall": {"dns_port": 5353, "dns_after_login": "netsuite"}},
                       "test.toml", {"firewall": SECTION})
        settings = settings_from_config(chosen.firewall)
        self.assertEqual((settings.dns_port, settings.dns_after_login), (5353, "netsuite"))
        self.assertRaises(ConfigError, parse, {"firewall": {"dns_after_login": "tunnel"}},
                          "test.toml", {"firewall": SECTION})
        crossed = parse({"firewall": {"garden_min_ttl": 600, "garden_max_ttl": 60}},
                        "test.toml", {"firewall": SECTION})
        error = self.assertRaises(ConfigError, check, crossed)
        self.assertIn("garden_min_ttl (600) is longer than garden_max_ttl (60)", str(error))
        self.assertEqual(settings_from_config(default.firewall).ipv6_mark, 2)
        overlapping = parse({"firewall": {"ipv6_mark": 3}}, "test.toml", {"firewall": SECTION})
        error = self.assertRaises(ConfigError, check, overlapping)
        self.assertIn("ipv6_mark (0x3) overlaps tproxy_mark (0x1)", str(error))
        queued = {"nfqueue_num": 0, "nfqueue_ports": [143], "nfqueue_redirect_port": 10144}
        chosen = parse({"firewall": queued}, "test.toml", {"firewall": SECTION})
        check(chosen)
        self.assertEqual(settings_from_config(chosen.firewall).nfqueue_redirect_port, 10144)
        both = parse({"firewall": dict(queued, tproxy_port=10143)}, "test.toml",
                     {"firewall": SECTION})
        error = self.assertRaises(ConfigError, check, both)
        self.assertIn("nfqueue_ports and tproxy_ports both hold [143]", str(error))
        self.assertEqual(settings_from_config(default.firewall).extrusion_queue, -1)
        shared = parse({"firewall": {"nfqueue_num": 3, "extrusion_queue": 3}}, "test.toml",
                       {"firewall": SECTION})
        error = self.assertRaises(ConfigError, check, shared)
        self.assertIn("extrusion_queue and nfqueue_num are both 3", str(error))
        self.assertEqual(settings_from_config(parse(
            {"firewall": {"extrusion_queue": 4}}, "test.toml",
            {"firewall": SECTION}).firewall).extrusion_queue, 4)
        self.assertEqual(settings_from_config(default.firewall).divert_mark, 4)
        for mark, other in ((5, "tproxy_mark (0x1)"), (6, "ipv6_mark (0x2)")):
            overlapping = parse({"firewall": {"divert_mark": mark}}, "test.toml",
                                {"firewall": SECTION})
            error = self.assertRaises(ConfigError, check, overlapping)
            self.assertIn(f"divert_mark (0x{mark:x}) overlaps {other}", str(error))
        self.assertEqual(settings_from_config(default.firewall).ipv6_timeout, 1800)
        chosen = parse({"firewall": {"ipv6_timeout": 600}}, "test.toml", {"firewall": SECTION})
        self.assertEqual(settings_from_config(chosen.firewall).ipv6_timeout, 600)
        self.assertRaises(ConfigError, parse, {"firewall": {"ipv6_timeout": 5}},
                          "test.toml", {"firewall": SECTION})


class GardenMailboxTests(SynchronousTestCase):
    """
    /firewall/garden/add, /firewall/garden and /firewall/garden/flush, on
    the in-memory firewall with a Clock.
    """

    def setUp(self):
        self.clock = Clock()
        self.registry = Registry("ap", self.clock)
        self.firewall = MemoryFirewall(self.clock, LAN, garden_ttl=(60, 3600))
        self.service = FirewallService(self.firewall, self.registry, self.clock,
                                       check_interval=0)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def send(self, path, message=None):
        return self.successResultOf(self.registry.send(path, message or {}))

    def test_add_list_flush(self):
        """
        An add answers how many addresses are in; the list answers them by
        string with their seconds left (clamped to garden_max_ttl); the
        entries expire with the clock; a flush answers how many it removed.
        """
        self.assertEqual(self.send("/firewall/garden/add",
                                   {"ips": ["198.51.100.7", "203.0.113.9"], "seconds": 7200}),
                         {"added": 2, "refused": 0})
        self.assertEqual(self.send("/firewall/garden"),
                         {"198.51.100.7": 3600, "203.0.113.9": 3600})
        self.assertEqual(self.send("/firewall/garden/add",
                                   {"ips": ["192.0.2.1"], "seconds": 5}), {"added": 1, "refused": 0})
        self.clock.advance(60)
        self.assertEqual(self.send("/firewall/garden"),
                         {"198.51.100.7": 3540, "203.0.113.9": 3540})
        self.assertEqual(self.send("/firewall/garden/flush"), {"flushed": 2})
        self.assertEqual(self.send("/firewall/garden"), {})

    def test_full(self):
        """Addresses refused because the set is full are counted in the answer."""
        self.firewall.garden_book.max_entries = 2
        answer = self.send("/firewall/garden/add",
                           {"ips": ["198.51.100.7", "203.0.113.9", "198.51.100.8"],
                            "seconds": 600})
        self.assertEqual(answer, {"added": 2, "refused": 1})
        self.assertEqual(self.send("/firewall/garden/add",
                                   {"ips": ["198.51.100.9"], "seconds": 600}),
                         {"added": 0, "refused": 2})

    def test_bad_add(self):
        """
        An add without ips, with a non-address or a non-int seconds fails
        (a failing stock listener: logged, no answer) and changes nothing.
        """
        from netsuite.registry import NO_ANSWER
        for message in ({"seconds": 60}, {"ips": ["x"], "seconds": 60},
                        {"ips": ["198.51.100.7"], "seconds": "long"}):
            self.assertIs(self.send("/firewall/garden/add", message), NO_ANSWER, message)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)
        self.assertEqual(self.send("/firewall/garden"), {})
