"""
Tests for L{netsuite.services}: services found by name as plugins, and
the one rule of which services a process runs.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite import tap
from netsuite.config.schema import Field
from netsuite.services import (IServicePlugin, ServicePlugin, UnknownService, all_sections,
                               enabled_services, find_service, installed)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A service of the tests' own, found when passed as plugins=[...].
SECTION = {"enabled": Field(bool, False, "run it"),
           "greeting": Field(str, "hello", "what it says")}
BUILT = []
CAPABILITIES = frozenset({"CAP_NET_BROADCAST"})


def serviceFromConfig(config, registry, reactor):
    BUILT.append((config.echo.greeting, registry.name))
    return None


def check(config):
    if config.echo.greeting == "refuse":
        from netsuite.config.schema import ConfigError
        raise ConfigError(f"{config.source}: echo.greeting: refused")


ECHO = ServicePlugin("echo", __name__, "a test service", rank=5)


class FoundTests(SynchronousTestCase):
    def test_installed(self):
        """
        The firewall, DHCP and portal are found as service plugins, each
        also the twistd plugin netsuite-NAME.
        """
        found = installed()
        self.assertLessEqual({"firewall", "dhcp", "dns", "portal"}, set(found))
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        for name, plugin in found.items():
            self.assertTrue(verifyObject(IServicePlugin, plugin))
            self.assertIs(makers[f"netsuite-{name}"], plugin)
        self.assertEqual([p.name for p in sorted(found.values(), key=lambda p: p.rank)][:4],
                         ["firewall", "dhcp", "dns", "portal"])

    def test_unknown(self):
        """
        A name no plugin has is refused, naming the services there are.
        """
        error = self.assertRaises(UnknownService, find_service, "dhpc")
        self.assertIn("no netsuite service named 'dhpc'", str(error))
        self.assertIn("(installed: dhcp, dns, firewall, ", str(error))
        self.assertIs(find_service("echo", [ECHO]), ECHO)

    def test_lazy(self):
        """
        Finding the plugins imports no service's code (a fresh interpreter
        tells).
        """
        code = ("import sys\nfrom netsuite.services import installed\n"
                "print(sorted(installed()))\n"
                "print([m for m in ('netsuite.firewall.kernel', 'netsuite.dhcp.server', "
                "'netsuite.portal.resource', 'netsuite.dhcp.tap') if m in sys.modules])\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, cwd=ROOT, check=True).stdout.splitlines()
        self.assertIn("'dhcp'", out[0])
        self.assertEqual(out[1], "[]")

    def test_sections(self):
        """
        The schema has the process's sections and every service's.
        """
        sections = all_sections([ECHO])
        self.assertEqual(sorted(sections), ["bus", "echo", "log", "process"])
        self.assertIs(sections["echo"], SECTION)


class CapabilitiesTests(SynchronousTestCase):
    def test_declared(self):
        """
        Each service declares what it needs once started: the firewall
        CAP_NET_ADMIN and CAP_NET_RAW, the DHCP server CAP_NET_ADMIN (its
        port is bound before twistd switches uid), the portal nothing.
        """
        self.assertEqual({name: plugin.capabilities for name, plugin in installed().items()
                          if name in ("firewall", "dhcp", "portal")},
                         {"firewall": {"CAP_NET_ADMIN", "CAP_NET_RAW"},
                          "dhcp": {"CAP_NET_ADMIN"}, "portal": frozenset()})
        self.assertEqual(ECHO.capabilities, {"CAP_NET_BROADCAST"})

    def test_process_keeps_them(self):
        """
        Under twistd --uid (its options are the plugin's parent), the
        process keeps what its services declare, and makes its socket
        directory that uid's.
        """
        from netsuite.privileges import KeepCapabilities, UidSwitch
        from netsuite.process import SocketDirectory
        options = ECHO.options()
        options.sections = all_sections([ECHO])
        options.parseOptions(["--config", os.devnull, "--socket-dir", self.mktemp()])
        options.parent = {"uid": 65534, "gid": 65533}
        service = ECHO.makeService(options, MemoryReactorClock())
        [keep] = [s for s in service if isinstance(s, KeepCapabilities)]
        self.assertEqual(keep.keep, {"CAP_NET_BROADCAST"})
        [directory] = [s for s in service if isinstance(s, SocketDirectory)]
        expected = UidSwitch(65534, 65533) if os.geteuid() == 0 else None
        self.assertEqual(directory.switch, expected)


class RuleTests(SynchronousTestCase):
    """
    netsuite-NAME runs exactly NAME; netsuite runs what the config enables.
    """

    def setUp(self):
        del BUILT[:]

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_plugin_runs_itself(self):
        """
        A service's plugin runs it whatever C{enabled} says, and says so in
        the configuration; its check runs first.
        """
        options = ECHO.options()
        options.sections = all_sections([ECHO])
        options.parseOptions(["--config", self.write('[echo]\ngreeting = "hi"\n'),
                              "--name", "e1", "--socket-dir", self.mktemp()])
        self.assertTrue(options.config.echo.enabled)
        ECHO.makeService(options, MemoryReactorClock())
        self.assertEqual(BUILT, [("hi", "e1")])
        options = ECHO.options()
        options.sections = all_sections([ECHO])
        error = self.assertRaises(usage.UsageError, options.parseOptions, [
            "--config", self.write('[echo]\ngreeting = "refuse"\n')])
        self.assertIn("echo.greeting: refused", str(error))

    def test_all_in_one(self):
        """
        The all-in-one runs the services enabled in the file, in rank
        order, and none of the others.
        """
        config = self.write("[firewall]\nenabled = false\n[dhcp]\nenabled = false\n")
        options = tap.Options()
        options.parseOptions(["--config", config, "--socket-dir", self.mktemp()])
        self.assertEqual(enabled_services(options.config), [])
        options = tap.Options()
        options.sections = all_sections([ECHO, find_service("firewall")])
        options.services = lambda: enabled_services(
            options.config, [ECHO, find_service("firewall")])
        options.parseOptions(["--config", self.write("[echo]\nenabled = true\n"),
                              "--socket-dir", self.mktemp()])
        self.assertEqual([p.name for p in options.services()], ["echo"])
        tap.makeService(options, MemoryReactorClock())
        self.assertEqual(BUILT, [("hello", "netsuite")])

    def test_order(self):
        """
        Enabled services come in rank order, whatever order they are found in.
        """
        late = ServicePlugin("late", __name__, "", rank=99)
        config = SimpleNamespace(echo=SimpleNamespace(enabled=True),
                                 late=SimpleNamespace(enabled=True))
        self.assertEqual(enabled_services(config, [late, ECHO]), [ECHO, late])
