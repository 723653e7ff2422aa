# -*- test-case-name: tests.test_systemd -*-
"""
The systemd units in C{etc/systemd/} against what the default configuration
makes each service do: every unit grants exactly the capabilities its
services need, makes writable exactly the directories they write, and all
of them agree on the user and the bus socket directory.

Which services a unit runs comes from its C{ExecStart}: C{twistd
netsuite-<service>} runs that service alone, whatever its section's
C{enabled} says; C{twistd netsuite} runs whatever the deployed config
enables, which the unit cannot know, so it must allow every service. What a
need is, and where in the code it comes from, is in L{NEEDS} and
L{WRITES}; docs/deploying.md explains the same to operators.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Set

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite.bus.client import DEFAULT_SOCKET_DIR
from netsuite.config.schema import defaults, load
from netsuite.dhcp.ldaphook import parse_args as ldaphook_args
from netsuite.services import all_sections, installed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT_DIR = os.path.join(ROOT, "etc", "systemd")
EXAMPLE_CONFIG = os.path.join(ROOT, "etc", "netsuite.toml")
INSTALLED_BIN = "/opt/netsuite/.venv/bin/"
"""Where the units expect netsuite (docs/deploying.md)."""
USER = "netsuite"
LDAPHOOK = "ldaphook"
"""The LDAP hook process (C{python -m netsuite.dhcp.ldaphook}), not a twistd service."""

# What each process needs, and why. The units must grant exactly this.
NEEDS: Dict[str, FrozenSet[str]] = {
    # netsuite/firewall/: CAP_NET_RAW for libiptc's raw IP socket
    # (python-iptables, iptables.py); CAP_NET_ADMIN for replacing the
    # tables, ipset and conntrack over nfnetlink (kernelsets.py,
    # setwriter.py, flows.py), tc classes and the IFB device (shaping.py),
    # the TPROXY routing rule (netlink.py), and writing
    # /proc/sys/net/bridge/bridge-nf-call-iptables (netlink.py; the kernel
    # lets CAP_NET_ADMIN write the net.* sysctls of its namespace).
    "firewall": frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW"}),
    # netsuite/dhcp/protocol.py dhcp_socket: binds dhcp.port (67, see
    # PORTS). SO_BINDTODEVICE needs nothing on an unbound socket since
    # Linux 5.7. netsuite/dhcp/neighbours.py: CAP_NET_ADMIN for SIOCSARP,
    # the neighbour entry of a unicast reply to a client without an
    # address (without it, broadcast); it also lets SO_RCVBUFFORCE work.
    # netsuite/dhcp/frames.py packet_socket: CAP_NET_RAW for the AF_PACKET
    # socket of dhcp.watch_servers and dhcp.check_chaddr.
    "dhcp": frozenset({"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"}),
    # netsuite/portal/: ports 5280 and 8443 (see PORTS); /proc/net/arp
    # (service.py neighbour_mac) is readable by anyone; the firewall is
    # changed over the bus.
    "portal": frozenset(),
    # netsuite/dns/tap.py: binds dns.port (53, see PORTS), UDP and TCP; the
    # firewall is reached over the bus.
    "dns": frozenset({"CAP_NET_BIND_SERVICE"}),
    # netsuite/smtpgate/: binds nothing; the SMTP windows are the firewall's,
    # opened and closed over the bus.
    "smtpgate": frozenset(),
    # netsuite/mailproxy/tap.py and netsuite/proxy/intercept.py:
    # IP_TRANSPARENT (CAP_NET_RAW or CAP_NET_ADMIN) on the TPROXY listener
    # and on each outbound socket of mailproxy.spoof_source, made while it
    # runs; port 10143 (see PORTS).
    "mailproxy": frozenset({"CAP_NET_RAW"}),
    # netsuite/stats/: reads the firewall's counters over the bus and the
    # uplink interface's from netlink (RTM_GETLINK, unprivileged).
    # netsuite/stats/guard.py: CAP_NET_ADMIN for the extrusion queue's
    # verdicts (netsuite/nfqueue.py; the kernel takes them only from a
    # process that has it), whether [stats.extrusion] is enabled or not.
    "stats": frozenset({"CAP_NET_ADMIN"}),
    # netsuite/dhcp/ldaphook.py: a bus client and an LDAP client.
    LDAPHOOK: frozenset(),
}

# What a service needs only in privilegedStartService (binding port 67),
# which twistd --uid runs as root: NEEDS less these is what the service
# declares it needs once started (its tap.py CAPABILITIES).
START_ONLY: Dict[str, FrozenSet[str]] = {
    "firewall": frozenset(),
    "dhcp": frozenset({"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}),  # port 67, the packet socket
    "portal": frozenset(),
    "dns": frozenset({"CAP_NET_BIND_SERVICE"}),  # port 53, bound in privilegedStartService
    "smtpgate": frozenset(),
    "mailproxy": frozenset(),
    "stats": frozenset(),
}

# The ports each service binds by default: below 1024 takes CAP_NET_BIND_SERVICE.
PORTS: Dict[str, Callable[[Any], List[int]]] = {
    "firewall": lambda config: [],
    "dhcp": lambda config: [config.dhcp.port],
    "portal": lambda config: [config.portal.port, config.portal.api_port],
    "dns": lambda config: [config.dns.port],
    "smtpgate": lambda config: [],
    "mailproxy": lambda config: [config.mailproxy.port],
    "stats": lambda config: [config.stats.metrics.port],  # stats/metrics.py: /metrics
    LDAPHOOK: lambda config: [],
}

# The files each service writes (besides its bus socket, which every twistd
# process has in bus.socket_dir, and log.json_file when set).
WRITES: Dict[str, Callable[[Any], List[str]]] = {
    "firewall": lambda config: [],  # kernel state only
    "dhcp": lambda config: [config.dhcp.lease_file],  # dhcp/tap.py: LeaseStore, SQLite WAL
    "portal": lambda config: [config.portal.session_file],  # portal/tap.py: SessionStore
    "dns": lambda config: [],  # memory only
    "smtpgate": lambda config: [],  # memory only
    "mailproxy": lambda config: [],  # memory only
    # stats/store.py: the round-robin files under stats.directory
    "stats": lambda config: [config.stats.directory + "/uplink.rrd",
                             # stats/accounting.py: the accounting log
                             config.stats.accounting.path],
}

STATE_ROOTS = {"StateDirectory": "/var/lib", "RuntimeDirectory": "/run",
               "LogsDirectory": "/var/log", "CacheDirectory": "/var/cache"}


def parse_unit(path: str) -> Dict[str, Dict[str, List[str]]]:
    """
    C{{section: {key: [values]}}} of a unit file, read as systemd reads it
    (systemd.syntax(7)): comments, continued lines, a repeated key adds a
    value, an empty assignment resets the list.
    """
    sections: Dict[str, Dict[str, List[str]]] = {}
    current: Optional[Dict[str, List[str]]] = None
    pending = ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = (pending + raw.strip()) if pending else raw.strip()
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            assert current is not None, f"{path}: {line!r} before any [section]"
            key, equals, value = line.partition("=")
            assert equals, f"{path}: {line!r} is not key=value"
            values = current.setdefault(key.strip(), [])
            if value.strip():
                values.append(value.strip())
            else:
                values.clear()
    return sections


def _plugin_options(tapname: str) -> Any:
    """
    The options of the twistd plugin C{tapname}, as installed.
    """
    for maker in getPlugins(IServiceMaker):
        if maker.tapname == tapname:
            return maker.options()
    raise AssertionError(f"no twistd plugin {tapname!r}")


class Unit:
    """
    One unit file and the process its C{ExecStart} runs.

    @ivar services: the services the process may run (L{installed} names), or
        C{{LDAPHOOK}}.
    @ivar process: its name on the bus (None for a hook process).
    @ivar hooks: the process a hook process attaches to.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.sections = parse_unit(path)
        self.service = self.sections.get("Service", {})
        start = self.service.get("ExecStart", [])
        assert len(start) == 1, f"{self.name}: one ExecStart, not {start}"
        self.argv = shlex.split(start[0].lstrip("-@:+!"))
        self.environment = dict(item.split("=", 1) for value in self.service.get(
            "Environment", []) for item in shlex.split(value))
        self.hooks: Optional[str] = None
        self.process: Optional[str] = None
        self._read_command()

    def _read_command(self) -> None:
        program, args = os.path.basename(self.argv[0]), self.argv[1:]
        if program == "python" and args[:2] == ["-m", "netsuite.dhcp.ldaphook"]:
            options = ldaphook_args(args[2:])
            self.services: FrozenSet[str] = frozenset({LDAPHOOK})
            self.config_path = options.config
            # As the hook finds the daemon: its flags, else the config's keys.
            config = defaults(all_sections())
            self.hooks = options.process or config.process.name
            self.socket_dir = options.socket_dir or config.bus.socket_dir
            return
        assert program == "twistd", f"{self.name}: ExecStart runs {program}, not twistd"
        plugin = next(i for i, arg in enumerate(args) if not arg.startswith("-"))
        tapname, plugin_args = args[plugin], args[plugin + 1:]
        if tapname == "netsuite":
            self.services = frozenset(installed())  # whatever the deployed config enables
        else:
            assert tapname.startswith("netsuite-") and tapname[9:] in installed(), tapname
            self.services = frozenset({tapname[9:]})
        options = _plugin_options(tapname)
        options.postOptions = lambda: None  # read the arguments, not the config file
        options.parseOptions(plugin_args)
        self.config_path = options["config"]
        config = defaults(all_sections())
        self.process = options["name"] or config.process.name
        self.socket_dir = options["socket-dir"] or config.bus.socket_dir

    def values(self, key: str) -> List[str]:
        return self.service.get(key, [])

    def value(self, key: str) -> Optional[str]:
        values = self.values(key)
        return values[-1] if values else None

    def words(self, key: str) -> Set[str]:
        return {word for value in self.values(key) for word in value.split()}

    def capabilities(self, key: str) -> Set[str]:
        words = self.words(key)
        assert not any(w.startswith("~") for w in words), f"{self.name}: {key}= inverted"
        return words

    def writable(self) -> Set[str]:
        """
        The directories this unit makes writable under ProtectSystem=strict.
        """
        found = {os.path.join(root, entry) for key, root in STATE_ROOTS.items()
                 for entry in self.words(key)}
        return found | {path.lstrip("-+") for path in self.words("ReadWritePaths")}

    def needs(self) -> FrozenSet[str]:
        return frozenset().union(*(NEEDS[s] for s in self.services))

    def writes(self, config: Any) -> Set[str]:
        """
        The directories the process writes with C{config}.
        """
        if self.services == {LDAPHOOK}:
            return set()
        files = [path for s in self.services for path in WRITES[s](config)]
        if config.log.json_file not in ("", "-"):
            files.append(config.log.json_file)
        return {self.socket_dir} | {os.path.dirname(path) for path in files
                                    if path != ":memory:"}


def units() -> List[Unit]:
    names = sorted(n for n in os.listdir(UNIT_DIR) if n.endswith(".service"))
    return [Unit(os.path.join(UNIT_DIR, n)) for n in names]


def configs() -> Mapping[str, Any]:
    """
    The default configuration and the documented example, which operators copy.
    """
    return {"defaults": defaults(all_sections()),
            EXAMPLE_CONFIG: load(EXAMPLE_CONFIG, all_sections())}


def _under(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


class UnitTests(SynchronousTestCase):
    """
    Each unit file against its services' needs.
    """

    def setUp(self) -> None:
        self.units = units()
        self.by_name = {unit.name: unit for unit in self.units}

    def test_one_unit_per_service(self) -> None:
        """
        Every service has a unit that runs it alone; the all-in-one and the
        LDAP hook have one each.
        """
        alone = {next(iter(u.services)): u.name for u in self.units if len(u.services) == 1}
        self.assertEqual(set(alone), set(installed()) | {LDAPHOOK})
        self.assertEqual(self.by_name["netsuite.service"].services, frozenset(installed()))
        for service in installed():
            self.assertEqual(alone[service], f"netsuite-{service}.service")

    def test_capabilities_exact(self) -> None:
        """
        A unit's ambient capabilities are exactly what its services need,
        and its bounding set holds nothing more.
        """
        for unit in self.units:
            needed = unit.needs()
            self.assertEqual(unit.capabilities("AmbientCapabilities"), needed, unit.name)
            self.assertIn("CapabilityBoundingSet", unit.service, unit.name)
            self.assertEqual(unit.capabilities("CapabilityBoundingSet"), needed, unit.name)

    def test_declared_capabilities(self) -> None:
        """
        What each service declares it needs once started, which a process
        under twistd --uid keeps (L{netsuite.privileges}), is what its unit
        grants less L{START_ONLY}: twistd binds as root, before it
        switches uid.
        """
        self.assertEqual(set(START_ONLY), set(installed()))
        for name, plugin in installed().items():
            self.assertEqual(plugin.capabilities, NEEDS[name] - START_ONLY[name], name)

    def test_all_in_one_union(self) -> None:
        """
        The all-in-one unit grants the union of every service's needs.
        """
        union = frozenset().union(*(NEEDS[s] for s in installed()))
        self.assertEqual(self.by_name["netsuite.service"].capabilities("AmbientCapabilities"),
                         union)

    def test_privileged_ports(self) -> None:
        """
        L{NEEDS} holds CAP_NET_BIND_SERVICE exactly for the services whose
        default ports are below 1024.
        """
        for name, config in configs().items():
            for service, ports in PORTS.items():
                privileged = any(0 < port < 1024 for port in ports(config))
                self.assertEqual("CAP_NET_BIND_SERVICE" in NEEDS[service], privileged,
                                 f"{service} with {name}")

    def test_writable_directories(self) -> None:
        """
        Every directory a unit's services write with the default (and the
        example) configuration is writable, and no other.
        """
        for name, config in configs().items():
            for unit in self.units:
                writable, writes = unit.writable(), unit.writes(config)
                for directory in writes:
                    self.assertTrue(any(_under(directory, w) for w in writable),
                                    f"{unit.name} with {name}: {directory} is not writable "
                                    f"(writable: {sorted(writable)})")
                for directory in writable:
                    self.assertTrue(any(_under(d, directory) for d in writes),
                                    f"{unit.name} with {name}: makes {directory} writable, "
                                    f"which it does not write")

    def test_socket_directory(self) -> None:
        """
        Every unit uses one socket directory, and every twistd unit's
        RuntimeDirectory is that directory, kept when the unit stops (the
        other units' sockets are in it).
        """
        self.assertEqual({unit.socket_dir for unit in self.units}, {DEFAULT_SOCKET_DIR})
        for unit in self.units:
            if unit.process is not None:
                self.assertEqual({os.path.join("/run", entry)
                                  for entry in unit.words("RuntimeDirectory")},
                                 {unit.socket_dir}, unit.name)
                self.assertEqual(unit.value("RuntimeDirectoryMode"), "0755", unit.name)
            if unit.values("RuntimeDirectory"):
                self.assertEqual(unit.value("RuntimeDirectoryPreserve"), "yes", unit.name)

    def test_processes(self) -> None:
        """
        The units share one config file; the separate processes have names
        of their own, and the LDAP hook attaches to the DHCP unit's process.
        """
        self.assertEqual({unit.config_path for unit in self.units},
                         {"/etc/netsuite/netsuite.toml"})
        named = [unit.process for unit in self.units if unit.process is not None]
        self.assertEqual(len(named), len(set(named)))
        hook = next(unit for unit in self.units if unit.services == {LDAPHOOK})
        self.assertEqual(hook.hooks, self.by_name["netsuite-dhcp.service"].process)

    def test_user(self) -> None:
        """
        Every unit runs as the one system user: the bus serves root, its
        own uid and bus.allowed_uids, so the processes reach each other by
        sharing it.
        """
        for unit in self.units:
            self.assertEqual(unit.value("User"), USER, unit.name)
            self.assertEqual(unit.value("Group"), USER, unit.name)

    def test_installed_path(self) -> None:
        """
        Every unit runs netsuite from the documented place.
        """
        for unit in self.units:
            self.assertTrue(unit.argv[0].startswith(INSTALLED_BIN), unit.argv[0])

    def test_hardening(self) -> None:
        """
        Every unit keeps the hardening that costs its services nothing; a
        unit running the firewall leaves /proc/sys writable (it sets
        net.bridge.bridge-nf-call-iptables).
        """
        for unit in self.units:
            for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                               ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                               ("PrivateDevices", "yes"), ("ProtectKernelModules", "yes"),
                               ("RestrictSUIDSGID", "yes")]:
                self.assertEqual(unit.value(key), value, f"{unit.name}: {key}")
            self.assertNotEqual(unit.value("PrivateNetwork"), "yes", unit.name)
            if "firewall" in unit.services:
                self.assertNotIn(unit.value("ProtectKernelTunables"), ("yes", "true"), unit.name)
                self.assertNotEqual(unit.value("ProcSubset"), "pid", unit.name)
                for key in ("ReadOnlyPaths", "InaccessiblePaths"):
                    self.assertFalse([p for p in unit.words(key)
                                      if _under("/proc/sys/net", p.lstrip("-+"))], unit.name)
            else:
                self.assertEqual(unit.value("ProtectKernelTunables"), "yes", unit.name)


class VerifyTests(SynchronousTestCase):
    """
    C{systemd-analyze verify} accepts every unit without a warning.
    """

    def setUp(self) -> None:
        self.analyze = shutil.which("systemd-analyze")
        if self.analyze is None:
            raise SkipTest("systemd-analyze is not installed (Debian package systemd)")

    def test_verify(self) -> None:
        """
        Each unit verifies cleanly. systemd-analyze checks that ExecStart's
        program exists, so it verifies a copy whose ExecStart runs this
        virtualenv's twistd or python instead of the installed one.
        """
        here = os.path.dirname(sys.executable) + os.sep
        directory = tempfile.mkdtemp(prefix="nsunits-")
        self.addCleanup(shutil.rmtree, directory)
        found = units()
        for unit in found:
            with open(unit.path, encoding="utf-8") as f:
                text = f.read()
            self.assertIn(INSTALLED_BIN, text)
            program = os.path.join(here, os.path.basename(unit.argv[0]))
            self.assertTrue(os.access(program, os.X_OK), program)
            with open(os.path.join(directory, unit.name), "w", encoding="utf-8") as f:
                f.write(text.replace(INSTALLED_BIN, here))
        for unit in found:
            done = subprocess.run([self.analyze, "verify", "--man=no", unit.name],
                                  cwd=directory, capture_output=True, text=True)
            output = done.stdout + done.stderr
            about = [line for line in output.splitlines()
                     if any(u.name in line for u in found)]
            self.assertEqual((done.returncode, about), (0, []), output)
