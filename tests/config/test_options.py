# -*- test-case-name: tests.config.test_options -*-
"""
Tests for L{netsuite.config.options.ProcessOptions}, the command line every
netsuite twistd plugin shares.
"""

from __future__ import annotations

from typing import Dict

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.options import ProcessOptions
from netsuite.config.schema import BASE_SECTIONS, Field

CONFIG_TOML = b"""
[process]
name = "from-file"

[bus]
socket_dir = "/srv/file-sockets"
default_deadline = 4
"""


class ProcessOptionsTests(SynchronousTestCase):
    """
    C{--config}, C{--name} and C{--socket-dir}.
    """

    def config_file(self, data: bytes = CONFIG_TOML) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_noArguments(self) -> None:
        """
        Without arguments the configuration is the defaults.
        """
        options = ProcessOptions()
        options.parseOptions([])
        self.assertEqual(options.config.process.name, "netsuite")
        self.assertEqual(options.config.bus.socket_dir, "/run/netsuite")
        self.assertEqual(options.config.source, "<defaults>")

    def test_config(self) -> None:
        """
        C{--config} loads the file.
        """
        path = self.config_file()
        options = ProcessOptions()
        options.parseOptions(["--config", path])
        self.assertEqual(options.config.source, path)
        self.assertEqual(options.config.process.name, "from-file")
        self.assertEqual(options.config.bus.socket_dir, "/srv/file-sockets")
        self.assertEqual(options.config.bus.default_deadline, 4.0)

    def test_grantOfUnknownUser(self) -> None:
        """
        A C{[[bus.grant]]} naming a user this system lacks stops the start
        with the file and the key.
        """
        path = self.config_file(b'[[bus.grant]]\nuser = "no-such-user-here"\nsend = ["/"]\n')
        error = self.assertRaises(usage.UsageError, ProcessOptions().parseOptions,
                                  ["--config", path])
        self.assertIn(f"{path}: key 'bus.grant[0].user'", str(error))

    def test_overrides(self) -> None:
        """
        C{--name} and C{--socket-dir} override the file, long or short.
        """
        path = self.config_file()
        for argv in (["--config", path, "--name", "dhcp-2", "--socket-dir", "/tmp/s"],
                     ["-c", path, "-n", "dhcp-2", "-s", "/tmp/s"]):
            options = ProcessOptions()
            options.parseOptions(argv)
            self.assertEqual(options.config.process.name, "dhcp-2")
            self.assertEqual(options.config.bus.socket_dir, "/tmp/s")
            self.assertEqual(options.config.bus.default_deadline, 4.0)

    def test_badName(self) -> None:
        """
        A C{--name} that is not a process name is a usage error quoting it.
        """
        for bad in ("two words", "a:b", "-lead", "", "x/y"):
            error = self.assertRaises(usage.UsageError, ProcessOptions().parseOptions,
                                      ["--name", bad])
            self.assertIn(f"--name: {bad!r} is not a process name", str(error))

    def test_missingConfig(self) -> None:
        """
        A C{--config} file that cannot be read is a usage error naming it.
        """
        path = self.mktemp()
        error = self.assertRaises(usage.UsageError, ProcessOptions().parseOptions,
                                  ["--config", path])
        self.assertIn(path, str(error))
        self.assertIn("cannot read", str(error))

    def test_invalidConfig(self) -> None:
        """
        A C{--config} file that does not fit the schema is a usage error
        naming the file and the key.
        """
        path = self.config_file(b"[bus]\nsocket_mode = \"999\"\n")
        error = self.assertRaises(usage.UsageError, ProcessOptions().parseOptions,
                                  ["--config", path])
        self.assertIn(path, str(error))
        self.assertIn("bus.socket_mode", str(error))

    def test_subclassSections(self) -> None:
        """
        A plugin's subclass adds its sections to the schema.
        """
        sections: Dict[str, Dict[str, Field]] = dict(BASE_SECTIONS)
        sections["dhcp"] = {"lease_time": Field(int, 3600, "seconds")}

        class DHCPOptions(ProcessOptions):
            pass

        DHCPOptions.sections = sections
        path = self.config_file(b"[dhcp]\nlease_time = 60\n")
        options = DHCPOptions()
        options.parseOptions(["--config", path])
        self.assertEqual(options.config.dhcp.lease_time, 60)
        self.assertRaises(usage.UsageError, ProcessOptions().parseOptions, ["--config", path])
