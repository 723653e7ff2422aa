# -*- test-case-name: tests.config.test_schema -*-
"""
Tests for L{netsuite.config.schema}: TOML checked against a schema, with
errors that name the file, the key and what was expected.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.trial.unittest import SynchronousTestCase

from netsuite.config.schema import (BASE_SECTIONS, ConfigError, Field, Table, TableList, defaults,
                                    load, parse)

SOURCE = "/etc/netsuite/test.toml"

VALID_TOML = b"""
[process]
name = "dhcp"

[bus]
socket_dir = "/tmp/sockets"
socket_mode = "0600"
listen = ["tcp:7000:interface=127.0.0.1"]
allowed_uids = [1000, 0]
default_deadline = 3
peers = { portal = "tcp:127.0.0.1:7001" }

[log]
level = "debug"
"""


class DefaultsTests(SynchronousTestCase):
    """
    L{defaults} and missing keys take the schema's defaults.
    """

    def test_defaults(self) -> None:
        """
        Every key of every section is at its default.
        """
        config = defaults()
        self.assertEqual(config.source, "<defaults>")
        self.assertEqual(config.process.name, "netsuite")
        self.assertEqual(config.bus.socket_dir, "/run/netsuite")
        self.assertEqual(config.bus.socket_mode, "0660")
        self.assertEqual(config.bus.listen, [])
        self.assertEqual(config.bus.allowed_uids, [])
        self.assertEqual(config.bus.default_deadline, 2.0)
        self.assertEqual(config.bus.peers, {})
        self.assertEqual(config.log.level, "info")
        self.assertEqual(config.log.json_file, "")

    def test_partial(self) -> None:
        """
        Keys left out of a section keep their defaults.
        """
        config = parse({"bus": {"socket_dir": "/tmp/x"}}, SOURCE)
        self.assertEqual(config.bus.socket_dir, "/tmp/x")
        self.assertEqual(config.bus.socket_mode, "0660")
        self.assertEqual(config.process.name, "netsuite")
        self.assertEqual(config.source, SOURCE)

    def test_serviceSections(self) -> None:
        """
        A service adds its own sections to the schema.
        """
        sections: Dict[str, Dict[str, Field]] = dict(BASE_SECTIONS)
        sections["dhcp"] = {"lease_time": Field(int, 3600, "seconds")}
        self.assertEqual(defaults(sections).dhcp.lease_time, 3600)
        self.assertEqual(parse({"dhcp": {"lease_time": 60}}, SOURCE, sections).dhcp.lease_time,
                         60)
        self.assertRaises(ConfigError, parse, {"dhcp": {}}, SOURCE)

    def test_defaultsNotShared(self) -> None:
        """
        Changing a list in one configuration does not change the defaults.
        """
        first = defaults()
        first.bus.listen.append("tcp:1")
        self.assertEqual(defaults().bus.listen, [])


class ParseErrorTests(SynchronousTestCase):
    """
    L{parse} refuses what does not fit the schema, saying where and why.
    """

    def assertConfigError(self, data: Dict[str, Any], *fragments: str) -> str:
        """
        C{parse(data)} raises L{ConfigError} naming the file and every
        fragment.
        """
        message = str(self.assertRaises(ConfigError, parse, data, SOURCE))
        self.assertTrue(message.startswith(SOURCE + ": "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_unknownSection(self) -> None:
        """
        An unknown section is named, with the known ones.
        """
        self.assertConfigError({"dhpc": {}}, "unknown section [dhpc]", "bus, log, process")

    def test_notATable(self) -> None:
        """
        A section that is not a table is refused.
        """
        self.assertConfigError({"bus": "x"}, "[bus] must be a table")

    def test_unknownKey(self) -> None:
        """
        An unknown key is named as C{section.key}, with the known keys.
        """
        self.assertConfigError({"bus": {"socket_dri": "/x"}}, "unknown key 'bus.socket_dri'",
                               "socket_dir")

    def test_wrongType(self) -> None:
        """
        A value of the wrong type names the key, the expected type and the
        value given.
        """
        self.assertConfigError({"bus": {"socket_dir": 5}},
                               "key 'bus.socket_dir': expected a string, got 5")
        self.assertConfigError({"bus": {"default_deadline": "2"}},
                               "key 'bus.default_deadline': expected a number, got '2'")
        self.assertConfigError({"bus": {"listen": "tcp:1"}}, "expected a list of Twisted server endpoint strings")
        self.assertConfigError({"bus": {"listen": ["tcp:1", 2]}}, "expected a list of Twisted server endpoint strings")
        self.assertConfigError({"bus": {"peers": {"a": 1}}}, "expected a table of Twisted client endpoint strings")
        self.assertConfigError({"process": {"name": ["a"]}}, "key 'process.name'")

    def test_boolIsNotInt(self) -> None:
        """
        C{true} is not a number and not a user id; 1 is not a boolean.
        """
        self.assertConfigError({"bus": {"default_deadline": True}}, "expected a number")
        self.assertConfigError({"bus": {"allowed_uids": [True]}},
                               "expected a list of user ids")
        sections = {"x": {"flag": Field(bool, False, "a flag")}}
        self.assertRaises(ConfigError, parse, {"x": {"flag": 1}}, SOURCE, sections)
        self.assertIs(parse({"x": {"flag": True}}, SOURCE, sections).x.flag, True)

    def test_uids(self) -> None:
        """
        User ids are integers of at least 0.
        """
        self.assertConfigError({"bus": {"allowed_uids": [-1]}},
                               "expected a list of user ids (integers >= 0), got [-1]")
        self.assertEqual(parse({"bus": {"allowed_uids": [0, 1000]}}, SOURCE).bus.allowed_uids,
                         [0, 1000])

    def test_floatAcceptsInt(self) -> None:
        """
        A float key accepts an integer and stores it as a float.
        """
        deadline = parse({"bus": {"default_deadline": 3}}, SOURCE).bus.default_deadline
        self.assertEqual(deadline, 3.0)
        self.assertIs(type(deadline), float)

    def test_positive(self) -> None:
        """
        The default deadline must be greater than 0.
        """
        self.assertConfigError({"bus": {"default_deadline": 0}},
                               "key 'bus.default_deadline': expected a number greater than 0")
        self.assertConfigError({"bus": {"default_deadline": -1.5}}, "greater than 0")

    def test_socketMode(self) -> None:
        """
        The socket mode is an octal string of at most 0777.
        """
        for good in ("0660", "600", "0777", "0"):
            self.assertEqual(parse({"bus": {"socket_mode": good}}, SOURCE).bus.socket_mode, good)
        for bad in ("0999", "rw-rw----", "01777", "-1", ""):
            self.assertConfigError({"bus": {"socket_mode": bad}}, "key 'bus.socket_mode'",
                                   "an octal file mode such as \"0660\"", repr(bad))
        self.assertConfigError({"bus": {"socket_mode": 0o660}}, "expected a string")

    def test_logLevel(self) -> None:
        """
        The log level is one of the listed names.
        """
        for level in ("debug", "info", "warn", "error", "critical"):
            self.assertEqual(parse({"log": {"level": level}}, SOURCE).log.level, level)
        self.assertConfigError({"log": {"level": "verbose"}}, "key 'log.level'",
                               "expected one of debug, info, warn, error, critical",
                               "got 'verbose'")


class LoadTests(SynchronousTestCase):
    """
    L{load} reads a TOML file and checks it.
    """

    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_valid(self) -> None:
        """
        A valid file gives its values, converted, and its path as the source.
        """
        path = self.write(VALID_TOML)
        config = load(path)
        self.assertEqual(config.source, path)
        self.assertEqual(config.process.name, "dhcp")
        self.assertEqual(config.bus.socket_mode, "0600")
        self.assertEqual(config.bus.listen, ["tcp:7000:interface=127.0.0.1"])
        self.assertEqual(config.bus.allowed_uids, [1000, 0])
        self.assertEqual(config.bus.default_deadline, 3.0)
        self.assertEqual(config.bus.peers, {"portal": "tcp:127.0.0.1:7001"})
        self.assertEqual(config.log.level, "debug")
        self.assertEqual(config.log.json_file, "")

    def test_missing(self) -> None:
        """
        A missing file is a L{ConfigError} naming the file and the reason.
        """
        path = self.mktemp()
        message = str(self.assertRaises(ConfigError, load, path))
        self.assertIn(path, message)
        self.assertIn("cannot read", message)
        self.assertIn("No such file", message)

    def test_invalidTOML(self) -> None:
        """
        A file that is not TOML is a L{ConfigError} naming the file.
        """
        path = self.write(b"[bus\nsocket_dir = \n")
        message = str(self.assertRaises(ConfigError, load, path))
        self.assertTrue(message.startswith(path + ": not valid TOML"), message)

    def test_schemaErrorNamesFile(self) -> None:
        """
        A schema error in a file names that file and the key.
        """
        path = self.write(b"[bus]\nsocket_dir = 5\n")
        message = str(self.assertRaises(ConfigError, load, path))
        self.assertEqual(message, f"{path}: key 'bus.socket_dir': expected a string, got 5")


class NestedTableTests(SynchronousTestCase):
    """
    Nested tables ([a.b]) and arrays of tables ([[a.c]]) are checked like
    sections, and their errors name the full key.
    """

    SCHEMA = {"dhcp": {
        "enabled": Field(bool, False, "on"),
        "ldap": Table({"url": Field(str, "ldap://127.0.0.1", "server")}),
        "subnet": TableList({"network": Field(str, "", "CIDR"),
                             "lease_time": Field(int, 3600, "seconds")}),
    }}

    def test_defaults(self):
        """
        A missing nested table gets its defaults; a missing array is empty.
        """
        config = parse({}, "x.toml", self.SCHEMA)
        self.assertEqual(config.dhcp.ldap.url, "ldap://127.0.0.1")
        self.assertEqual(config.dhcp.subnet, [])

    def test_values(self):
        """
        Values of nested tables and of each table in an array are read.
        """
        config = parse({"dhcp": {"ldap": {"url": "ldap://10.0.0.1"},
                                 "subnet": [{"network": "10.0.0.0/24"},
                                            {"network": "10.1.0.0/24", "lease_time": 60}]}},
                       "x.toml", self.SCHEMA)
        self.assertEqual(config.dhcp.ldap.url, "ldap://10.0.0.1")
        self.assertEqual([(s.network, s.lease_time) for s in config.dhcp.subnet],
                         [("10.0.0.0/24", 3600), ("10.1.0.0/24", 60)])

    def test_errors(self):
        """
        An unknown or mistyped key inside names its place: the table and the
        array index.
        """
        error = self.assertRaises(ConfigError, parse, {"dhcp": {"ldap": {"uri": "x"}}},
                                  "x.toml", self.SCHEMA)
        self.assertIn("x.toml: unknown key 'dhcp.ldap.uri'", str(error))
        error = self.assertRaises(ConfigError, parse,
                                  {"dhcp": {"subnet": [{}, {"lease_time": "long"}]}},
                                  "x.toml", self.SCHEMA)
        self.assertIn("x.toml: key 'dhcp.subnet[1].lease_time': expected an integer", str(error))
        error = self.assertRaises(ConfigError, parse, {"dhcp": {"subnet": {"network": "x"}}},
                                  "x.toml", self.SCHEMA)
        self.assertIn("key 'dhcp.subnet': expected a list of tables", str(error))


class GrantTests(SynchronousTestCase):
    """
    C{[[bus.grant]]}: what a peer other than root and the daemon's uid may
    do on the bus, checked with the file and key named.
    """

    def grants(self, *tables: Dict[str, Any]) -> Any:
        from netsuite.config.schema import bus_grants
        users = {"hotspot": 1234}
        return bus_grants(parse({"bus": {"grant": list(tables)}}, SOURCE), users.__getitem__)

    def assertGrantError(self, table: Dict[str, Any], *fragments: str) -> None:
        message = str(self.assertRaises(ConfigError, self.grants, table))
        self.assertTrue(message.startswith(SOURCE + ": "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_none(self) -> None:
        self.assertEqual(defaults().bus.grant, [])
        self.assertEqual(self.grants(), [])

    def test_peers(self) -> None:
        """
        A grant names its peer by uid, by user name (looked up), or as
        C{peer = "tcp"}; its prefixes are kept per verb.
        """
        by_uid, by_user, tcp = self.grants(
            {"uid": 1000, "send": ["/dhcp/"], "watch": ["/portal/login"]},
            {"user": "hotspot", "hook": ["/dhcp/lookup"]},
            {"peer": "tcp", "send": ["/"]})
        self.assertEqual((by_uid.peer, by_user.peer, tcp.peer), ("uid:1000", "uid:1234", "tcp"))
        self.assertEqual(by_uid.prefixes, {"send": ("/dhcp",), "hook": (),
                                           "watch": ("/portal/login",)})
        self.assertEqual(by_user.prefixes["hook"], ("/dhcp/lookup",))
        self.assertEqual(tcp.prefixes["send"], ("",))

    def test_exactlyOnePeer(self) -> None:
        self.assertGrantError({"send": ["/"]}, "bus.grant[0]", "exactly one of the keys uid, "
                              "user, peer", "got none")
        self.assertGrantError({"uid": 1, "peer": "tcp"}, "bus.grant[0]", "got uid, peer")

    def test_unknownUser(self) -> None:
        self.assertGrantError({"user": "nobody-here"}, "key 'bus.grant[0].user'",
                              "'nobody-here'")

    def test_badValues(self) -> None:
        """
        Bad keys and values are refused naming the key.
        """
        for table, key in [({"uid": -1}, "bus.grant[0].uid"),
                           ({"uid": "1000"}, "bus.grant[0].uid"),
                           ({"peer": "udp"}, "bus.grant[0].peer"),
                           ({"uid": 1, "send": ["dhcp"]}, "bus.grant[0].send"),
                           ({"uid": 1, "hook": "/dhcp"}, "bus.grant[0].hook"),
                           ({"uid": 1, "watch": ["portal:/portal/login"]},
                            "bus.grant[0].watch"),
                           ({"uid": 1, "sned": ["/"]}, "bus.grant[0].sned")]:
            message = str(self.assertRaises(ConfigError, parse, {"bus": {"grant": [table]}},
                                            SOURCE))
            self.assertIn(SOURCE, message)
            self.assertIn(f"'{key}'", message)
