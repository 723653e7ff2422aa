"""
Tests for L{netsuite.config.fields}: each kind gives the value the code
uses, once, or says what it expected; a secret never shows.
"""

import os
from ipaddress import IPv4Address, IPv4Network

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netsuite.config import fields
from netsuite.config.fields import Secret
from netsuite.config.schema import ConfigError, Field, parse
from netsuite.registry.values import MAC


def converts(kind, raw):
    value, expected = Field(kind, raw, "test").parse(raw)
    assert expected is None, (raw, expected)
    return value


class KindTests(SynchronousTestCase):
    def assertRefused(self, kind, *raws):
        field = Field(kind, None if kind in (fields.IPV4_OR_NONE,) else _good[kind], "test")
        for raw in raws:
            value, expected = field.parse(raw)
            self.assertEqual(expected, kind.expected, raw)

    def test_addresses(self):
        self.assertEqual(converts(fields.IPV4, "10.0.0.1"), IPv4Address("10.0.0.1"))
        self.assertIsNone(converts(fields.IPV4_OR_NONE, ""))
        self.assertEqual(converts(fields.IPV4_LIST, ["10.0.0.1"]), [IPv4Address("10.0.0.1")])
        self.assertEqual(converts(fields.NETWORK, "10.0.0.0/8"), IPv4Network("10.0.0.0/8"))
        self.assertEqual(converts(fields.MAC_OR_NONE, "02-00-00-00-00-01"),
                         MAC("02:00:00:00:00:01"))
        self.assertEqual(converts(fields.CLIENT_ID, "01:02:03"), b"\x01\x02\x03")
        self.assertRefused(fields.IPV4, "10.0.0.300", "", 5, "::1")
        self.assertRefused(fields.NETWORK, "10.0.0.1/8", "x", 10)
        self.assertRefused(fields.IPV4_LIST, "10.0.0.1", ["x"])
        self.assertRefused(fields.CLIENT_ID, "01", "zz")

    def test_numbers(self):
        self.assertEqual(converts(fields.PORT, 67), 67)
        self.assertEqual(converts(fields.PORT_OR_ZERO, 0), 0)
        self.assertEqual(converts(fields.SECONDS, 3), 3.0)
        self.assertRefused(fields.PORT, 0, 65536, True, "67")
        self.assertRefused(fields.PORT_LIST, [0], 25)
        self.assertRefused(fields.SECONDS, -1, float("nan"), float("inf"), "1")
        self.assertRefused(fields.POSITIVE_SECONDS, 0)
        self.assertRefused(fields.INT, True, 1.5)
        self.assertEqual(converts(fields.POSITIVE_INT, 3), 3)
        self.assertRefused(fields.POSITIVE_INT, 0, -1, True, 1.5, "3")

    def test_names(self):
        self.assertEqual(converts(fields.INTERFACE, "br-lan"), "br-lan")
        self.assertRefused(fields.INTERFACE, "", "a/b", "a b", "x" * 16, "eth0:1", "..")
        self.assertEqual(converts(fields.OPTIONAL_PATH, ""), "")
        self.assertRefused(fields.PATH, "", "a\0b")

    def test_endpoints(self):
        """
        Endpoint strings are checked by building (not using) the endpoint.
        """
        self.assertEqual(converts(fields.SERVER_ENDPOINT_LIST, ["tcp:7070:interface=127.0.0.1"]),
                         ["tcp:7070:interface=127.0.0.1"])
        self.assertEqual(converts(fields.CLIENT_ENDPOINT_MAP, {"c": "tcp:host=x:port=1"}),
                         {"c": "tcp:host=x:port=1"})
        self.assertRefused(fields.SERVER_ENDPOINT_LIST, ["nonsense:1"], ["tcp:notaport"])
        self.assertRefused(fields.CLIENT_ENDPOINT_MAP, {"c": "nonsense:"}, {"c": 1})

    def test_defaults_typed(self):
        """
        A default is written as in TOML and converted like a value.
        """
        self.assertEqual(Field(fields.NETWORK, "10.89.0.0/24", "x").default,
                         IPv4Network("10.89.0.0/24"))
        self.assertRaises(ValueError, Field, fields.PORT, 0, "x")


_good = {fields.IPV4: "10.0.0.1", fields.NETWORK: "10.0.0.0/8", fields.IPV4_LIST: [],
         fields.CLIENT_ID: "", fields.PORT: 1, fields.PORT_LIST: [], fields.SECONDS: 0,
         fields.POSITIVE_SECONDS: 1, fields.INT: 0, fields.POSITIVE_INT: 1, fields.INTERFACE: "lo",
         fields.PATH: "/x", fields.SERVER_ENDPOINT_LIST: [], fields.CLIENT_ENDPOINT_MAP: {}}


class SecretTests(SynchronousTestCase):
    SECTIONS = {"svc": {"password": Field(fields.SECRET, "", "a password",
                                          lambda s: None if not s or len(s.reveal()) > 3 else
                                          "four characters or more")}}

    def test_hidden(self):
        """
        A secret's str and repr hide it; reveal() gives it.
        """
        secret = Secret("hunter2")
        self.assertNotIn("hunter2", str(secret) + repr(secret))
        self.assertEqual(secret.reveal(), "hunter2")
        self.assertTrue(secret)
        self.assertFalse(Secret(""))
        self.assertNotIn("hunter2", formatEvent({"log_format": "bind with {p}", "p": secret}))

    def test_not_in_errors(self):
        """
        A config error about a secret names the key, never the value.
        """
        for raw in ("abc", 12345):
            error = self.assertRaises(ConfigError, parse, {"svc": {"password": raw}}, "f.toml",
                                      self.SECTIONS)
            self.assertIn("key 'svc.password'", str(error))
            self.assertNotIn(str(raw), str(error))
            self.assertIn("a hidden value", str(error))
        config = parse({"svc": {"password": "long enough"}}, "f.toml", self.SECTIONS)
        self.assertEqual(config.svc.password.reveal(), "long enough")


class SecretFileTests(SynchronousTestCase):
    """
    A secret key may name a file holding the secret; a file others may
    read that holds a secret is warned about.
    """

    SECTIONS = SecretTests.SECTIONS

    def setUp(self):
        self.warnings = []
        observer = self.warnings.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def warned(self):
        return [formatEvent(e) for e in self.warnings if e.get("log_level") == LogLevel.warn]

    def write(self, text, mode):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_from_file(self):
        """
        C{password = { file = "/path" }} is that file's text, its trailing
        newline dropped; a 0600 file is not warned about.
        """
        path = self.write("s3cret words\n", 0o600)
        config = parse({"svc": {"password": {"file": path}}}, "f.toml", self.SECTIONS)
        self.assertEqual(config.svc.password.reveal(), "s3cret words")
        self.assertEqual(self.warned(), [])

    def test_file_checked_like_a_value(self):
        """
        The file's text is checked as the value would be, and an error
        still hides it.
        """
        path = self.write("abc\n", 0o600)
        error = self.assertRaises(ConfigError, parse, {"svc": {"password": {"file": path}}},
                                  "f.toml", self.SECTIONS)
        self.assertIn("key 'svc.password'", str(error))
        self.assertNotIn("abc", str(error).replace(path, ""))

    def test_bad_file(self):
        """
        A missing file, a relative path or another table is a clear error
        naming the key (and the file).
        """
        missing = os.path.abspath(self.mktemp())
        error = self.assertRaises(ConfigError, parse, {"svc": {"password": {"file": missing}}},
                                  "f.toml", self.SECTIONS)
        self.assertIn(f"key 'svc.password': cannot read the secret file {missing}", str(error))
        for raw in ({"file": "relative/path"}, {"path": "/x"}, {"file": "/x", "mode": 1}):
            error = self.assertRaises(ConfigError, parse, {"svc": {"password": raw}},
                                      "f.toml", self.SECTIONS)
            self.assertIn('expected a string or { file = "/absolute/path" }', str(error))

    def test_warn_readable(self):
        """
        A secret file every user may read, or a config file every user may
        read that holds a secret itself, is warned about (naming the key,
        never the secret); an empty secret is not.
        """
        secret_file = self.write("long enough\n", 0o644)
        parse({"svc": {"password": {"file": secret_file}}}, "f.toml", self.SECTIONS)
        config_file = self.write("", 0o644)
        parse({"svc": {"password": "long enough"}}, config_file, self.SECTIONS)
        parse({"svc": {"password": ""}}, config_file, self.SECTIONS)
        private = self.write("", 0o640)
        parse({"svc": {"password": "long enough"}}, private, self.SECTIONS)
        warned = self.warned()
        self.assertEqual(len(warned), 2, warned)
        self.assertIn(f"{secret_file} (the secret of f.toml key 'svc.password') may be read "
                      "by every user", warned[0])
        self.assertIn(f"{config_file}: key 'svc.password' holds a secret in a file every "
                      "user may read", warned[1])
        self.assertNotIn("long enough", " ".join(warned))
