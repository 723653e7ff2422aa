"""
Tests for L{netsuite.dhcp.tap}: the C{[dhcp]} config made into subnets,
C{twistd netsuite-dhcp}'s options, and the service built from a config
(built, never started: no socket is bound).
"""

import os
from typing import Any
from ipaddress import IPv4Address, IPv4Network

from twisted.application.service import IServiceCollection, MultiService
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import ConfigError, load
from netsuite.dhcp import tap
from netsuite.dhcp.frames import bpf_program
from netsuite.dhcp.guard import RogueWatch
from netsuite.services import find_service
from netsuite.dhcp.neighbours import KernelNeighbours
from netsuite.dhcp.pool import Pool
from netsuite.dhcp.server import DHCPServer
from netsuite.registry import Registry
from netsuite.registry.values import MAC
from netsuite.services import all_sections

PLUGIN = find_service("dhcp")

LAN = """
[dhcp]
interface = "br-lan"
port = 6767
lease_file = "{leases}"
offer_hold = 30.0
decline_quarantine = 120.0
captive_portal_url = "http://10.89.0.1:8080/"
sweep_interval = 5.0

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.199"
server = "10.89.0.1"
router = "10.89.0.254"
dns = ["10.89.0.2", "10.89.0.3"]
domain_name = "hotspot.test"
lease_time = 900
interface = "br-lan"

[[dhcp.subnet.reservation]]
mac = "02:00:00:00:00:01"
ip = "10.89.0.10"

[[dhcp.subnet.reservation]]
client_id = "01:02:00:00:00:00:02"
ip = "10.89.0.11"
"""

RELAYED = """
[[dhcp.subnet]]
name = "far"
network = "10.90.0.0/24"
first = "10.90.0.10"
last = "10.90.0.20"
server = "10.89.0.1"
router = ""
dns = []
interface = ""
"""

ONE_SUBNET = """
[dhcp]
interface = "br-lan"

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
interface = "br-lan"
"""

BARE = """
[dhcp]
interface = "br-lan"

[[dhcp.subnet]]
name = "lan"
"""


class ConfigMixin:
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text.replace("{leases}", os.path.abspath(self.mktemp())))
        return path

    def load(self, text: str):
        return load(self.write(text), all_sections())

    def subnets(self, text: str):
        config = self.load(text)
        return tap.subnets_from_config(config.dhcp, config.source)

    def refused(self, text: str, *expected: str) -> str:
        """
        Loading C{text} and making its subnets raises a ConfigError that
        names the file and each of C{expected}.
        """
        path = self.write(text)

        def subnets():
            config = load(path, all_sections())
            return tap.subnets_from_config(config.dhcp, config.source)
        message = str(self.assertRaises(ConfigError, subnets))
        self.assertTrue(message.startswith(f"{path}: "), message)
        for part in expected:
            self.assertIn(part, message)
        return message


class SubnetsFromConfigTests(ConfigMixin, SynchronousTestCase):
    """
    L{tap.subnets_from_config}: every key of a C{[[dhcp.subnet]]} reaches
    its L{netsuite.dhcp.pool.Subnet}.
    """

    def test_every_field(self) -> None:
        """
        Network, range, server, router, DNS, lease time, option 15,
        reservations by MAC and by client identifier, and the interface.
        """
        [lan, far] = self.subnets(LAN + RELAYED)
        self.assertEqual(lan.name, "lan")
        self.assertEqual(lan.network, IPv4Network("10.89.0.0/24"))
        self.assertEqual((lan.first, lan.last),
                         (IPv4Address("10.89.0.100"), IPv4Address("10.89.0.199")))
        self.assertEqual(lan.server, IPv4Address("10.89.0.1"))
        self.assertEqual(lan.router, IPv4Address("10.89.0.254"))
        self.assertEqual(lan.dns, (IPv4Address("10.89.0.2"), IPv4Address("10.89.0.3")))
        self.assertEqual(lan.lease_time, 900.0)
        self.assertEqual(lan.options, {15: "hotspot.test"})  # by option code
        self.assertEqual(lan.reservations, {
            MAC("02:00:00:00:00:01"): IPv4Address("10.89.0.10"),
            bytes.fromhex("01020000000002"): IPv4Address("10.89.0.11")})
        self.assertEqual(lan.interface, "br-lan")

    def test_relayed_subnet(self) -> None:
        """
        A subnet with C{interface = ""} is reached through relays: no
        interface, and its server may be off its network; C{router = ""}
        and an empty C{dns} send neither option.
        """
        [_, far] = self.subnets(LAN + RELAYED)
        self.assertIsNone(far.interface)
        self.assertIsNone(far.router)
        self.assertEqual(far.dns, ())
        self.assertEqual(far.server, IPv4Address("10.89.0.1"))
        self.assertEqual((far.options, far.reservations), ({}, {}))

    def test_relayed_only(self) -> None:
        """
        A server may have no subnet on its interface at all (it answers
        relays only).
        """
        [far] = self.subnets('[dhcp]\ninterface = "br-lan"\n' + RELAYED)
        self.assertEqual(far.name, "far")

    def test_client_id_spellings(self) -> None:
        """
        A client identifier is hex bytes, with colons, dashes or nothing
        between them.
        """
        for spelled in ("01:02:00:00:00:00:02", "01-02-00-00-00-00-02", "01020000000002"):
            [lan] = self.subnets(ONE_SUBNET + f'[[dhcp.subnet.reservation]]\n'
                                 f'client_id = "{spelled}"\nip = "10.89.0.11"\n')
            self.assertEqual(lan.reservations,
                             {bytes.fromhex("01020000000002"): IPv4Address("10.89.0.11")})

    def test_reservation_hostname_refused(self) -> None:
        """
        A reservation has no C{hostname} key (nothing would send it): the
        config naming one is refused rather than ignored.
        """
        self.refused(ONE_SUBNET + '[[dhcp.subnet.reservation]]\nmac = "02:00:00:00:00:01"\n'
                     'ip = "10.89.0.10"\nhostname = "printer"\n',
                     "unknown key 'dhcp.subnet[0].reservation[0].hostname'")

    def test_shipped_config(self) -> None:
        """
        etc/netsuite.toml's subnet loads as documented.
        """
        path = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")
        config = load(path, all_sections())
        [lan] = tap.subnets_from_config(config.dhcp, config.source)
        self.assertEqual((lan.name, lan.interface), ("lan", config.dhcp.interface))


class BadConfigTests(ConfigMixin, SynchronousTestCase):
    """
    A config the server could not serve as written is refused with a
    L{ConfigError} naming the file and the key or subnet.
    """

    def test_no_subnet(self) -> None:
        self.refused('[dhcp]\nenabled = true\n', "[dhcp] is enabled but has no [[dhcp.subnet]]")

    def test_bad_values(self) -> None:
        """
        A value of the wrong form names its key.
        """
        for key, value, expected in [
                ("network", '"10.89.0.0/33"', "an IPv4 network"),
                ("network", '"10.89.0.1/24"', "an IPv4 network"),
                ("first", '"10.89.0"', "an IPv4 address"),
                ("last", '"x"', "an IPv4 address"),
                ("server", '"::1"', "an IPv4 address"),
                ("router", '"gateway"', "an IPv4 address, or \"\" for none"),
                ("dns", '["10.89.0.1", "dns.example"]', "a list of IPv4 addresses"),
                ("dns", '"10.89.0.1"', "a list of IPv4 addresses"),
                ("lease_time", "0", "a number greater than 0"),
                ("lease_time", "-60", "a number greater than 0"),
                ("lease_time", '"1h"', "an integer")]:
            self.refused(BARE + f"{key} = {value}\n",
                         f"key 'dhcp.subnet[0].{key}': expected {expected}")

    def test_unknown_key(self) -> None:
        self.refused(ONE_SUBNET + 'gateway = "10.89.0.1"\n',
                     "unknown key 'dhcp.subnet[0].gateway'")

    def test_subnet_not_a_table(self) -> None:
        self.refused('[dhcp]\nsubnet = "lan"\n', "key 'dhcp.subnet': expected a list of tables")

    def test_inconsistent_subnet(self) -> None:
        """
        Addresses that do not fit the subnet name it by index and name.
        """
        for extra, expected in [
                ('first = "10.89.1.100"\n', "first 10.89.1.100 is not a host of 10.89.0.0/24"),
                ('last = "10.89.0.255"\n', "last 10.89.0.255 is not a host of 10.89.0.0/24"),
                ('first = "10.89.0.150"\nlast = "10.89.0.120"\n',
                 "range 10.89.0.150-10.89.0.120 is empty"),
                ('server = "10.1.0.1"\n', "server 10.1.0.1 is not a host of 10.89.0.0/24")]:
            self.refused(ONE_SUBNET + extra, "[[dhcp.subnet]] 0 (lan): ", expected)

    def test_bad_reservations(self) -> None:
        """
        A reservation needs one client (MAC or identifier), an address,
        inside the network, and a client reserved for once per subnet.
        """
        item = "[[dhcp.subnet.reservation]]\n"
        for reservations, expected in [
                (item + 'mac = "02:00:00:00:00:01"\nip = "10.89.1.10"\n',
                 "reservation MAC('02:00:00:00:00:01') 10.89.1.10 is not a host"),
                (item + 'mac = "02:00:00:00:00:01"\n',
                 "reservation 0 (02:00:00:00:00:01): no ip"),
                (item + 'ip = "10.89.0.10"\n', "reservation 0: give either mac or client_id"),
                (item + 'mac = "02:00:00:00:00:01"\nclient_id = "01:02"\nip = "10.89.0.10"\n',
                 "reservation 0: give either mac or client_id"),
                (item + 'mac = "02:00:00:00:00:01"\nip = "10.89.0.10"\n'
                 + item + 'mac = "02-00-00-00-00-01"\nip = "10.89.0.11"\n',
                 "reservation 1 (02:00:00:00:00:01): that client already has a reservation"),
                (item + 'client_id = "0102"\nip = "10.89.0.10"\n'
                 + item + 'client_id = "01:02"\nip = "10.89.0.11"\n',
                 "reservation 1 (01:02): that client already has a reservation")]:
            self.refused(ONE_SUBNET + reservations, "[[dhcp.subnet]] 0 (lan): ", expected)

    def test_bad_reservation_values(self) -> None:
        """
        A malformed MAC, client identifier or address names its key.
        """
        item = "[[dhcp.subnet.reservation]]\n"
        for reservation, key, expected in [
                ('mac = "02:00:00:00:01"\nip = "10.89.0.10"\n', "mac", "a MAC address"),
                ('client_id = "zz"\nip = "10.89.0.10"\n', "client_id", "option 61 as hex"),
                ('client_id = "01"\nip = "10.89.0.10"\n', "client_id", "option 61 as hex"),
                ('mac = "02:00:00:00:00:01"\nip = "printer"\n', "ip", "an IPv4 address")]:
            self.refused(ONE_SUBNET + item + reservation,
                         f"key 'dhcp.subnet[0].reservation[0].{key}': expected {expected}")

    def test_duplicate_name(self) -> None:
        """
        Two subnets of one name (leases name their subnet) are refused here,
        not when the pool is built.
        """
        self.refused(LAN + RELAYED.replace('"far"', '"lan"'),
                     "[[dhcp.subnet]] 1 (lan): the name is also subnet 0's")


class DirectSubnetTests(ConfigMixin, SynchronousTestCase):
    """
    The server listens on C{dhcp.interface} alone and answers unrelayed
    requests from one subnet: a config saying otherwise is refused.
    """

    def test_second_subnet_on_interface(self) -> None:
        message = self.refused(
            LAN + RELAYED.replace('interface = ""', 'interface = "br-lan"'),
            "[[dhcp.subnet]] 1 (far): interface 'br-lan' is also subnet 0 (lan)'s")
        self.assertIn('interface = ""', message)

    def test_other_interface(self) -> None:
        message = self.refused(
            LAN + RELAYED.replace('interface = ""', 'interface = "br-guest"'),
            "[[dhcp.subnet]] 1 (far): interface 'br-guest' is not the one this server "
            "listens on ('br-lan', dhcp.interface or --interface)")
        self.assertIn('"" for a subnet reached through relays', message)

    def test_only_subnet_on_other_interface(self) -> None:
        """
        A lone subnet on another interface is refused too: the server
        would never answer it.
        """
        self.refused(ONE_SUBNET.replace('interface = "br-lan"\n\n', 'interface = "eth0"\n\n'),
                     "[[dhcp.subnet]] 0 (lan): interface 'br-lan' is not the one")


class OptionsTests(ConfigMixin, SynchronousTestCase):
    """
    C{twistd netsuite-dhcp}'s command line.
    """

    def parse(self, *argv: str) -> Any:
        options = PLUGIN.options()
        options.parseOptions(list(argv))
        return options

    def test_config(self) -> None:
        """
        C{--config} loads the file and enables the server; C{dhcp.interface}
        stays as written without C{--interface}.
        """
        options = self.parse("--config", self.write(LAN))
        self.assertTrue(options.config.dhcp.enabled)
        self.assertEqual(options.config.dhcp.interface, "br-lan")
        self.assertEqual(options.config.dhcp.port, 6767)

    def test_interface(self) -> None:
        """
        C{--interface} (or C{-i}) overrides C{dhcp.interface}, and the
        subnets are checked against the interface given.
        """
        text = ONE_SUBNET.replace('"br-lan"', '"eth9"').replace(
            '[dhcp]\ninterface = "eth9"', '[dhcp]\ninterface = "br-lan"')
        for flag in ("--interface", "-i"):
            options = self.parse("--config", self.write(text), flag, "eth9")
            self.assertEqual(options.config.dhcp.interface, "eth9")
            self.assertTrue(options.config.dhcp.enabled)

    def test_interface_subnet_mismatch(self) -> None:
        """
        C{--interface} naming an interface the config's subnet is not on is
        a usage error naming the file and the subnet.
        """
        path = self.write(LAN)
        error = self.assertRaises(usage.UsageError, self.parse,
                                  "--config", path, "--interface", "eth9")
        self.assertIn(f"{path}: [[dhcp.subnet]] 0 (lan): interface 'br-lan' is not the one "
                      "this server listens on ('eth9'", str(error))

    def test_no_subnet(self) -> None:
        """
        A config without a subnet is a usage error naming the file.
        """
        path = self.write('[dhcp]\ninterface = "br-lan"\n')
        error = self.assertRaises(usage.UsageError, self.parse,
                                  "--config", path, "--interface", "eth9")
        self.assertEqual(str(error), f"{path}: [dhcp] is enabled but has no [[dhcp.subnet]]")

    def test_no_config(self) -> None:
        """
        The built-in defaults have no subnet either.
        """
        error = self.assertRaises(usage.UsageError, self.parse)
        self.assertIn("<defaults>: [dhcp] is enabled but has no [[dhcp.subnet]]", str(error))

    def test_bad_config(self) -> None:
        """
        A schema error is a usage error too.
        """
        path = self.write(ONE_SUBNET + "lease_time = 0\n")
        error = self.assertRaises(usage.UsageError, self.parse, "--config", path)
        self.assertIn(f"{path}: key 'dhcp.subnet[0].lease_time'", str(error))


class ServiceFromConfigTests(ConfigMixin, SynchronousTestCase):
    """
    L{tap.serviceFromConfig} builds the service tree, binding nothing.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.registry = Registry("dhcp", self.reactor)

    def build(self, text: str):
        self.config = self.load(text)
        return tap.serviceFromConfig(self.config, self.registry, self.reactor)

    def dhcp_service(self, top) -> tap.DHCPService:
        [service] = list(IServiceCollection(top))
        self.assertIsInstance(service, tap.DHCPService)
        return service

    def test_service(self) -> None:
        """
        One L{tap.DHCPService} on the configured interface and port, its
        server answering unrelayed requests from the interface's subnet;
        nothing is bound or started yet.
        """
        top = self.build(LAN + RELAYED)
        service = self.dhcp_service(top)
        self.assertEqual((service.interface, service.port_number), ("br-lan", 6767))
        self.assertIs(service.reactor, self.reactor)
        self.assertIsNone(service.port)
        self.assertFalse(service.running)
        self.assertEqual(self.reactor.adoptedPorts, [])
        # Unicast replies' neighbour entries: on the interface, in a
        # thread of their own (not behind the lease file's commits).
        self.assertIsInstance(service.neighbours, KernelNeighbours)
        self.assertEqual(service.neighbours.interface, "br-lan")
        self.assertIsNot(service.neighbours.runner, service.runner)
        server = service.server
        self.assertIsInstance(server, DHCPServer)
        self.assertEqual(server.interface_subnet.name, "lan")
        self.assertEqual(server.interface_subnet.interface, "br-lan")
        self.assertEqual(server.portal_url, "http://10.89.0.1:8080/")
        self.assertEqual(server.sweep_interval, 5.0)
        self.assertIsNone(server.pool)
        self.assertIs(server.registry, self.registry)
        paths = {box["path"] for box in self.registry.describe()}
        self.assertTrue({"/dhcp/lookup", "/dhcp/options", "/dhcp/leases",
                         "/dhcp/lease/acked"} <= paths, paths)

    def test_relayed_only(self) -> None:
        """
        Without a subnet on the interface, unrelayed requests have none.
        """
        service = self.dhcp_service(self.build('[dhcp]\ninterface = "br-lan"\n' + RELAYED))
        self.assertIsNone(service.server.interface_subnet)

    def test_build_pool(self) -> None:
        """
        The pool is built (in the worker thread, called directly here) from
        every subnet and the lease file, whose directory is made; it serves
        the reservations.
        """
        service = self.dhcp_service(self.build(LAN + RELAYED))
        leases = self.config.dhcp.lease_file = os.path.join(
            os.path.abspath(self.mktemp()), "state", "leases.sqlite")
        pool = service.build_pool()
        self.addCleanup(pool.store.close)
        self.assertIsInstance(pool, Pool)
        self.assertTrue(os.path.isfile(leases))
        self.assertEqual(sorted(pool.subnets), ["far", "lan"])
        self.assertEqual((pool.offer_hold, pool.quarantine), (30.0, 120.0))
        self.assertFalse(pool.store.write_through)
        by_mac = pool.offer("lan", b"\x01" + bytes.fromhex("020000000001"),
                            MAC("02:00:00:00:00:01"))
        self.assertEqual(by_mac.ip, IPv4Address("10.89.0.10"))
        by_id = pool.offer("lan", bytes.fromhex("01020000000002"), MAC("02:00:00:00:00:09"))
        self.assertEqual(by_id.ip, IPv4Address("10.89.0.11"))
        other = pool.offer("lan", b"\x01" + bytes.fromhex("02000000000a"),
                           MAC("02:00:00:00:00:0a"))
        self.assertTrue(IPv4Address("10.89.0.100") <= other.ip <= IPv4Address("10.89.0.199"))

    def test_guard_keys(self) -> None:
        """
        The starvation defences' keys reach the pool and the server: by
        default no relay is trusted, unknown renewals are NAKed, and a
        client quarantines at most 3 addresses, a subnet a tenth of its
        range; a relayed subnet without dhcp.relays is warned about.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = self.dhcp_service(self.build(LAN + RELAYED))
        self.assertEqual((service.server.relays, service.server.bind_unknown_renewals),
                         (frozenset(), False))
        self.assertIn("dhcp.relays lists none", "".join(
            formatEvent(event) for event in events))
        self.config.dhcp.lease_file = ":memory:"
        pool = service.build_pool()
        self.assertEqual((pool.declines_per_client, pool.decline_fraction), (3, 0.1))
        self.registry = Registry("dhcp", self.reactor)
        service = self.dhcp_service(self.build(LAN.replace("[dhcp]\n", (
            '[dhcp]\nrelays = ["10.90.0.254"]\nbind_unknown_renewals = true\n'
            'declines_per_client = 1\ndecline_fraction = 0.5\n'))))
        self.assertEqual((service.server.relays, service.server.bind_unknown_renewals),
                         (frozenset({"10.90.0.254"}), True))
        self.config.dhcp.lease_file = ":memory:"
        pool = service.build_pool()
        self.assertEqual((pool.declines_per_client, pool.decline_fraction), (1, 0.5))
        for key, value, expected in [("decline_fraction", "0", "a number above 0"),
                                     ("decline_fraction", "1.5", "at most 1"),
                                     ("declines_per_client", "-1", "0 or more"),
                                     ("relays", '["relay.example"]', "IPv4 addresses")]:
            error = self.assertRaises(ConfigError, self.load, LAN.replace(
                "[dhcp]\n", f"[dhcp]\n{key} = {value}\n"))
            self.assertIn(f"key 'dhcp.{key}': expected", str(error))
            self.assertIn(expected, str(error))

    def test_refused(self) -> None:
        """
        The all-in-one (which checks the services it runs in its own options) refuses the
        same configs.
        """
        config = self.load(LAN + RELAYED.replace('interface = ""', 'interface = "br-lan"'))
        error = self.assertRaises(ConfigError, tap.serviceFromConfig, config, self.registry,
                                  self.reactor)
        self.assertIn("[[dhcp.subnet]] 1 (far): interface 'br-lan' is also", str(error))

    def test_ldap(self) -> None:
        """
        With C{[dhcp.ldap]} enabled its lookup listens first on
        C{/dhcp/lookup}, in front of the pool.
        """
        self.build(LAN + '[dhcp.ldap]\nenabled = true\nbase = "dc=example,dc=org"\n')
        [lookup] = [box for box in self.registry.describe() if box["path"] == "/dhcp/lookup"]
        self.assertEqual(lookup["listeners"][0]["tags"], {"hook": "ldap"})
        self.assertEqual(len(lookup["listeners"]), 2)

    def test_makeService(self) -> None:
        """
        C{twistd netsuite-dhcp} builds the process with the DHCP service in
        it, on the C{--interface} given.
        """
        text = LAN.replace('interface = "br-lan"', 'interface = "eth9"')
        options = PLUGIN.options()
        options.parseOptions(["--config", self.write(text), "--socket-dir",
                              self.mktemp(), "--interface", "eth9"])
        top = PLUGIN.makeService(options, self.reactor)
        [dhcp] = [service for service in IServiceCollection(top)
                  if isinstance(service, MultiService) and any(
                      isinstance(child, tap.DHCPService) for child in service)]
        [service] = list(dhcp)
        self.assertEqual(service.interface, "eth9")
        self.assertIs(service.server.registry, top.registry)
        self.assertEqual(self.reactor.unixServers, [])


class FrameKeysTests(ConfigMixin, SynchronousTestCase):
    """
    C{dhcp.check_chaddr}, C{dhcp.watch_servers} and
    C{dhcp.rogue_report_interval} reach the service.
    """

    def service(self, keys: str = "") -> tap.DHCPService:
        config = self.load(LAN.replace("[dhcp]\n", f"[dhcp]\n{keys}\n")
                           + RELAYED.replace('server = "10.89.0.1"', 'server = "10.89.0.2"'))
        reactor = MemoryReactorClock()
        top = tap.serviceFromConfig(config, Registry("dhcp", reactor), reactor)
        [service] = list(IServiceCollection(top))
        return service

    def test_defaults(self) -> None:
        """
        By default requests come from the UDP socket and other servers are
        watched for, reported at most every 300 s; a request taken from a
        frame may go to any subnet's server address or the LAN's broadcast.
        """
        service = self.service()
        self.assertFalse(service.check_chaddr)
        self.assertIsInstance(service.rogues, RogueWatch)
        self.assertEqual((service.rogues.interval, service.rogues.interface), (300.0, "br-lan"))
        self.assertIs(service.rogues.counters, service.server.counters)
        self.assertEqual(set(service.destinations), {
            IPv4Address("10.89.0.1"), IPv4Address("10.89.0.2"), IPv4Address("10.89.0.255")})

    def test_set(self) -> None:
        """
        Each key as set.
        """
        service = self.service("check_chaddr = true\nwatch_servers = false")
        self.assertEqual((service.check_chaddr, service.rogues), (True, None))
        service = self.service("rogue_report_interval = 60")
        self.assertEqual(service.rogues.interval, 60.0)


class FakeFrameSocket:
    closed = False

    def fileno(self) -> int:
        return 98

    def close(self) -> None:
        self.closed = True


class FakeUDPReactor(MemoryReactorClock):
    """
    Records the UDP socket adopted and the readers added.
    """

    def __init__(self) -> None:
        super().__init__()
        self.adopted: list = []
        self.readers: list = []

    def adoptDatagramPort(self, fd: int, family: Any, protocol: Any) -> Any:
        self.adopted.append((os.dup(fd), protocol))
        return None

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


class FrameSocketStartTests(SynchronousTestCase):
    """
    L{tap.DHCPService} opens the packet socket when asked, and what it does
    without one (on C{lo}, port 0: no privilege needed).
    """

    def start(self, check: bool, watch: bool, error: Any = None) -> Any:
        self.reactor = FakeUDPReactor()
        registry = Registry("dhcp", self.reactor)
        server = DHCPServer(registry, None, self.reactor, None)
        self.opened: list = []

        def open_frames(interface: str, program: Any, promiscuous: bool) -> Any:
            if error is not None:
                raise error
            self.opened.append((interface, program, promiscuous))
            return FakeFrameSocket(), MAC("02:00:00:00:00:fe")
        rogues = RogueWatch(registry, self.reactor, "lo", server.counters) if watch else None
        service = tap.DHCPService(server, None, "lo", 0, self.reactor, None,
                                  check_chaddr=check, rogues=rogues, open_frames=open_frames)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        try:
            service.privilegedStartService()
        finally:
            for fd, _ in self.reactor.adopted:
                self.addCleanup(os.close, fd)
        return service

    def test_watch_only(self) -> None:
        """
        The watch alone: a promiscuous socket passing replies only; the UDP
        socket still receives.
        """
        service = self.start(check=False, watch=True)
        [(interface, program, promiscuous)] = self.opened
        self.assertEqual((interface, program, promiscuous),
                         ("lo", bpf_program(requests=False, replies=True), True))
        self.assertEqual(self.reactor.readers, [service.frames])
        self.assertIsNone(service.frames.receive.__self__.requests)

    def test_check(self) -> None:
        """
        With check_chaddr, the frames' requests go to the protocol.
        """
        service = self.start(check=True, watch=False)
        [(_, program, promiscuous)] = self.opened
        self.assertEqual((program, promiscuous), (bpf_program(requests=True, replies=False),
                                                  False))
        self.assertEqual(service.frames.receive.__self__.requests,
                         service.protocol.request_received)

    def test_neither(self) -> None:
        """
        Neither: no packet socket.
        """
        service = self.start(check=False, watch=False)
        self.assertEqual((self.opened, service.frames), ([], None))

    def test_watch_without_capability(self) -> None:
        """
        Without the packet socket the watch is given up with one warning;
        the server runs on.
        """
        service = self.start(check=False, watch=True, error=PermissionError(1, "no"))
        self.assertIsNone(service.frames)
        [warning] = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.assertIn("not watching lo for other DHCP servers", formatEvent(warning))
        self.assertEqual(len(self.reactor.adopted), 1)

    def test_check_without_capability(self) -> None:
        """
        check_chaddr without the packet socket: the server does not start.
        """
        self.assertRaises(SystemExit, self.start, check=True, watch=True,
                          error=PermissionError(1, "no"))
        [critical] = [e for e in self.events if e["log_level"] == LogLevel.critical]
        self.assertIn("dhcp.check_chaddr needs a packet socket", formatEvent(critical))
