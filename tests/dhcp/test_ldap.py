# -*- test-case-name: tests.dhcp.test_ldap -*-
"""
Tests for L{netsuite.dhcp.ldap} and
L{netsuite.dhcp.ldaphook}.

Unit tests use ldap3's C{MOCK_SYNC} directory, a synchronous runner and a
L{Clock}. Integration tests run a real slapd on loopback and, for the hook
process, a real child process on a real bus socket.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from ipaddress import IPv4Address
from typing import Any, Dict, List, Optional, Tuple

from ldap3.core.exceptions import LDAPSessionTerminatedByServerError, LDAPSocketOpenError
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from netsuite.bus import BusServerFactory
from netsuite.config.fields import Secret
from netsuite.config.schema import ConfigError
from netsuite.dhcp.ldap import (DEFAULT_FILTER, LDAP_SECTION, LdapLookup, _Cache, install,
                                parse_settings, search_filter, settings_from_toml)
from netsuite.dhcp.ldaphook import load_config, load_settings, parse_args, target
from netsuite.dhcp.leases import LeaseStore
from netsuite.dhcp.options import decode_option
from netsuite.dhcp.packet import DISCOVER
from netsuite.dhcp.pool import Pool
from netsuite.dhcp.server import DHCPServer
from netsuite.ldap import MemoryDirectory
from netsuite.testing import SyncRunner
from netsuite.registry import MAC, Continue, Registry, Remember, Stop

from ..integration.procs import PYTHON, spawn, socket_dir, write_config
from ..test_clock import watched
from .test_server import LAN, RELAYED, request

BASE = "ou=hosts,dc=example,dc=test"
ADMIN = "cn=admin,dc=example,dc=test"
KNOWN = MAC("00:11:22:33:44:55")
OTHER = MAC("00:11:22:33:44:66")
UNKNOWN = MAC("aa:bb:cc:dd:ee:ff")
SUBNET = "10.0.0.0/24"


def host(cn: str, mac: Any, *addresses: str) -> Tuple[str, Dict[str, Any]]:
    return f"cn={cn},{BASE}", {"objectClass": ["device", "ieee802Device", "ipHost"],
                               "cn": cn, "macAddress": str(mac),
                               "ipHostNumber": list(addresses)}


def message(mac: Any, subnet: str = SUBNET) -> Dict[str, Any]:
    return {"mac": mac, "client_id": None, "requested": None, "subnet": subnet,
            "giaddr": None, "hostname": None, "type": "DISCOVER"}


class MockDirectory(MemoryDirectory):
    """
    The in-memory directory with an admin entry (password C{secret}) and
    C{entries}.
    """

    def __init__(self, *entries: Tuple[str, Dict[str, Any]]) -> None:
        MemoryDirectory.__init__(self)
        self.add(ADMIN, {"objectClass": "person", "cn": "admin", "sn": "a",
                         "userPassword": "secret"})
        for dn, attributes in entries:
            self.add(dn, attributes)

    def for_settings(self, settings: Any) -> "MockDirectory":
        return self.use_account(settings.bind_dn, settings.password.reveal())  # type: ignore[return-value]


class Runner:
    """
    A runner whose calls either run at once (C{inline}) or wait for the
    test to fire them.
    """

    def __init__(self, inline: bool = True) -> None:
        self.inline = inline
        self.calls: List[Tuple[Any, Tuple[Any, ...], Deferred[Any]]] = []

    def run(self, fn: Any, *args: Any) -> "Deferred[Any]":
        d: Deferred[Any] = maybeDeferred(fn, *args) if self.inline else Deferred()
        self.calls.append((fn, args, d))
        return d

    def stop(self) -> None:
        pass


def make_lookup(directory: MockDirectory, runner: Any = None, **table: Any
                ) -> Tuple[LdapLookup, Clock]:
    clock = Clock()
    settings = parse_settings(dict({"base": BASE, "remember": False}, **table))
    lookup = LdapLookup(settings, clock, clock=clock,
                        runner=runner if runner is not None else Runner(),
                        directory=directory.for_settings(settings))
    return lookup, clock


def counts(lookup: LdapLookup) -> Dict[str, int]:
    return {k: v for k, v in lookup.counters.items() if v}


class CacheClockStepTests(SynchronousTestCase):
    def test_clock_steps(self):
        """
        An entry keeps the time it had left across a step of the wall
        clock, back (it does not live an hour longer) or forward (it does
        not expire at once).
        """
        clock, watch = watched()
        cache = _Cache(clock, 300.0)
        cache.put("a", 1)
        clock.advance(100)
        clock.step(-3600)
        watch.check()
        self.assertEqual(cache.left("a"), 200.0)
        clock.step(7200)
        watch.check()
        self.assertEqual(cache.get("a"), 1)
        clock.advance(200)
        self.assertIsNone(cache.get("a"))


class SettingsTests(SynchronousTestCase):
    """
    The C{[dhcp.ldap]} table: its keys, defaults and checks.
    """

    def test_defaults(self) -> None:
        """
        Every key has the documented default.
        """
        settings = parse_settings()
        self.assertEqual(sorted(LDAP_SECTION), sorted(vars(settings)))
        self.assertEqual(vars(settings), {
            "enabled": False, "url": "ldap://127.0.0.1:389", "base": "",
            "filter": "(&(objectClass=ieee802Device)(macAddress={mac}))",
            "address_attribute": "ipHostNumber", "hostname_attribute": "cn",
            "bind_dn": "", "password": Secret(""), "deadline": 1.0, "cache_ttl": 300.0,
            "negative_ttl": 60.0, "threads": 4, "remember": True})

    def test_filter(self) -> None:
        """
        C{{mac}} becomes the lower-case colon form, whatever form the MAC
        came in, passed through ldap3's escaping.
        """
        self.assertEqual(search_filter(DEFAULT_FILTER, MAC("AA-BB-CC-00-11-22")),
                         "(&(objectClass=ieee802Device)(macAddress=aa:bb:cc:00:11:22))")
        self.assertEqual(search_filter("(cn=*)(m={mac})", "aabbcc001122"),
                         "(cn=*)(m=aa:bb:cc:00:11:22)")

    def test_bad_values(self) -> None:
        """
        A bad value is refused with the full key and what was expected.
        """
        for key, value, expected in [
                ("url", "http://x", "ldap://"), ("filter", "(macAddress=x)", "{mac}"),
                ("filter", "(macAddress={mac}", "LDAP filter"), ("threads", 0, "integer"),
                ("deadline", 0, "above 0"), ("cache_ttl", -1, "from 0"),
                ("address_attribute", "", "attribute")]:
            error = self.assertRaises(ConfigError, parse_settings, {key: value}, "x.toml")
            self.assertIn(f"x.toml: key 'dhcp.ldap.{key}'", str(error))
            self.assertIn(expected, str(error))

    def test_file(self) -> None:
        """
        The hook reads C{[dhcp.ldap]} of the daemon's whole file, checked as
        the daemon checks it; an unknown key is named with the file.
        """
        fd, path = tempfile.mkstemp(suffix=".toml")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write('[process]\nname = "dhcp"\n[dhcp]\ninterface = "lan0"\n'
                    '[[dhcp.subnet]]\nnetwork = "10.0.0.0/24"\n'
                    '[dhcp.ldap]\nurl = "ldaps://ldap.example.org"\ncache_ttl = 0\n')
        settings = load_settings(path)
        self.assertEqual((settings.url, settings.cache_ttl, settings.threads),
                         ("ldaps://ldap.example.org", 0.0, 4))
        with open(path, "a") as f:
            f.write("bogus = 1\n")
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertIn(f"{path}: unknown key 'dhcp.ldap.bogus'", str(error))
        self.assertIn("known in [dhcp.ldap]", str(error))
        self.assertEqual(vars(settings_from_toml({}, "-")), vars(parse_settings()))
        self.assertRaises(ConfigError, settings_from_toml, {"dhcp": {"ldap": 3}}, "-")
        with open(path, "w") as f:
            f.write('[dhcp]\ninterface = "lan0"\nbogus = 1\n')
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertIn(f"{path}: unknown key 'dhcp.bogus'", str(error))

    def write(self, text: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".toml")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def test_target(self) -> None:
        """
        The hook finds the daemon where the daemon listens: process.name in
        bus.socket_dir of the same file, with the daemon's defaults
        (netsuite in /run/netsuite), or bus.peers[name]; flags win.
        """
        def found(text: str, *flags: str) -> Any:
            path = self.write(text)
            return target(load_config(path), parse_args(["--config", path, *flags]))
        self.assertEqual(found(""), ("netsuite", "unix:path=/run/netsuite/netsuite.sock",
                                     "process.name, bus.socket_dir"))
        named = '[process]\nname = "ap"\n[bus]\nsocket_dir = "/srv/ns"\n'
        self.assertEqual(found(named)[:2], ("ap", "unix:path=/srv/ns/ap.sock"))
        self.assertEqual(found(named, "--process", "dhcp"),
                         ("dhcp", "unix:path=/srv/ns/dhcp.sock", "--process, bus.socket_dir"))
        self.assertEqual(found(named, "--socket-dir", "/tmp/x"),
                         ("ap", "unix:path=/tmp/x/ap.sock", "process.name, --socket-dir"))
        peers = named + 'peers = { ap = "tcp:host=192.0.2.1:port=7070" }\n'
        self.assertEqual(found(peers), ("ap", "tcp:host=192.0.2.1:port=7070",
                                        "process.name, bus.peers"))
        self.assertEqual(found(peers, "--endpoint", "tcp:host=127.0.0.1:port=1")[1:],
                         ("tcp:host=127.0.0.1:port=1", "process.name, --endpoint"))
        self.assertEqual(found("", "--process", "dhcp", "--socket-dir", "/a")[:2],
                         ("dhcp", "unix:path=/a/dhcp.sock"))
        for bad in ("", "a/b", "x y"):
            error = self.assertRaises(ConfigError, found, "", "--process", bad)
            self.assertIn(f"--process {bad!r}: expected a process name", str(error))

    def test_exampleConfig(self) -> None:
        """
        With the documented example file, the hook looks where
        C{twistd netsuite-dhcp --config etc/netsuite.toml} listens.
        """
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "netsuite.toml")
        process, endpoint, _ = target(load_config(example),
                                      parse_args(["--config", example]))
        self.assertEqual((process, endpoint), ("netsuite", "unix:path=/run/netsuite/netsuite.sock"))


class LookupTests(SynchronousTestCase):
    """
    Directory answers become verdicts; nothing makes a lookup fail.
    """

    def test_hit(self) -> None:
        """
        A MAC the directory knows gets its address and host name.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")))
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))),
                         Stop({"ip": IPv4Address("10.0.0.5"), "hostname": "alpha",
                               "source": "ldap"}, reason="hit"))
        self.assertEqual(counts(lookup), {"lookups": 1, "hits": 1})

    def test_no_hostname(self) -> None:
        """
        With C{hostname_attribute = ""} the answer has no host name.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")),
                                hostname_attribute="")
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))),
                         Stop({"ip": IPv4Address("10.0.0.5"), "source": "ldap"},
                              reason="hit"))

    def test_miss(self) -> None:
        """
        A MAC the directory does not know falls through.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")))
        self.assertEqual(self.successResultOf(lookup.lookup(message(UNKNOWN))), Continue("miss"))
        self.assertEqual(counts(lookup), {"lookups": 1, "misses": 1})

    def test_directory_error(self) -> None:
        """
        A search the directory refuses (no such base) falls through, counted
        as an error.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")),
                                base="ou=nowhere,dc=example,dc=test")
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1})

    def test_bind(self) -> None:
        """
        With C{bind_dn} the connection binds first; refused credentials are
        an error, not a failure.
        """
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        lookup, _ = make_lookup(directory, bind_dn=ADMIN, password="secret")
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))).value["ip"],
                         IPv4Address("10.0.0.5"))
        lookup, _ = make_lookup(directory, bind_dn=ADMIN, password="wrong")
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1})

    def test_unreachable_then_back(self) -> None:
        """
        An unreachable server falls through; once it is back, the next
        lookup uses it, with no restart.
        """
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        directory.refuse = 1
        lookup, _ = make_lookup(directory, cache_ttl=0, negative_ttl=0)
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)
        self.assertEqual(counts(lookup), {"lookups": 2, "errors": 1, "hits": 1})

    def test_connection_reused(self) -> None:
        """
        One connection serves lookup after lookup; a reused connection that
        breaks (the server restarted) is replaced within the same lookup.
        """
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        lookup, _ = make_lookup(directory, cache_ttl=0, negative_ttl=0)
        for _ in range(3):
            self.successResultOf(lookup.lookup(message(KNOWN)))
        self.assertEqual(len(directory.opened), 1)

        def broken(*args: Any, **kwargs: Any) -> None:
            raise LDAPSessionTerminatedByServerError("session terminated by server")
        directory.opened[0].search = broken
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)
        self.assertEqual(len(directory.opened), 2)
        self.assertTrue(directory.opened[0].closed)
        self.assertEqual(counts(lookup), {"lookups": 4, "hits": 4})

    def test_invalid_addresses(self) -> None:
        """
        An address that is no IPv4 unicast address of the subnet falls
        through as an error: garbage, the subnet's own network or broadcast
        address, multicast.
        """
        for bad in ["not-an-ip", "10.0.0.300", "10.0.0.0", "10.0.0.255", "224.0.0.1",
                    "0.0.0.0"]:
            lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, bad)))
            self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))),
                             Continue("error"), bad)
            self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1}, bad)

    def test_subnet(self) -> None:
        """
        Of several addresses, the one in the client's subnet is chosen; an
        entry with none there falls through as a miss.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.1.0.5", "10.0.0.5")))
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))).value["ip"],
                         IPv4Address("10.0.0.5"))
        self.assertEqual(self.successResultOf(
            lookup.lookup(message(KNOWN, "10.1.0.0/16"))).value["ip"], IPv4Address("10.1.0.5"))
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN, "192.168.0.0/24"))),
                         Continue("miss"))

    def test_ambiguous(self) -> None:
        """
        Two entries giving one MAC different addresses: nobody can tell which
        is right, so the pool decides.
        """
        lookup, _ = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5"),
                                              host("beta", KNOWN, "10.0.0.6")))
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1})

    def test_bad_message(self) -> None:
        """
        A message without a usable MAC falls through.
        """
        lookup, _ = make_lookup(MockDirectory())
        for bad in [{}, {"mac": "nonsense"}, {"mac": 5}]:
            self.assertEqual(self.successResultOf(lookup.lookup(bad)), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 3, "errors": 3})


class DeadlineTests(SynchronousTestCase):
    """
    Slow and stuck searches: the answer still comes within the deadline.
    """

    def test_slow(self) -> None:
        """
        A search slower than the deadline falls through at the deadline;
        its late answer fills the cache.
        """
        runner = Runner(inline=False)
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        lookup, clock = make_lookup(directory, runner=runner, deadline=0.5)
        answer = lookup.lookup(message(KNOWN))
        clock.advance(0.499)
        self.assertNoResult(answer)
        clock.advance(0.001)
        self.assertEqual(self.successResultOf(answer), Continue("timeout"))
        self.assertEqual(counts(lookup), {"lookups": 1, "timeouts": 1})
        self.assertEqual(lookup.running, 1)
        fn, args, work = runner.calls[0]
        work.callback(fn(*args))  # the search ends at last
        self.assertEqual(lookup.running, 0)
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)
        self.assertEqual(len(runner.calls), 1)
        self.assertEqual(lookup.counters["cache_hits"], 1)

    def test_busy(self) -> None:
        """
        Once every thread holds a search, further lookups fall through at
        once instead of queueing; a freed thread takes work again.
        """
        runner = Runner(inline=False)
        lookup, clock = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")),
                                    runner=runner, threads=2)
        first = lookup.lookup(message(MAC("02:00:00:00:00:01")))
        lookup.lookup(message(MAC("02:00:00:00:00:02")))
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("busy"))
        self.assertEqual(len(runner.calls), 2)
        self.assertEqual(lookup.counters["busy"], 1)
        idle = lookup.idle()
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(first), Continue("timeout"))
        self.assertNoResult(idle)
        for fn, args, work in runner.calls:
            work.errback(LDAPSocketOpenError("timed out"))
        self.successResultOf(idle)
        runner.inline = True
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)
        self.assertEqual(counts(lookup), {"lookups": 4, "timeouts": 2, "busy": 1, "hits": 1})

    def test_shared(self) -> None:
        """
        A client repeating itself while its search runs shares that search.
        """
        runner = Runner(inline=False)
        lookup, clock = make_lookup(MockDirectory(host("alpha", KNOWN, "10.0.0.5")),
                                    runner=runner)
        first = lookup.lookup(message(KNOWN))
        clock.advance(0.5)
        second = lookup.lookup(message(KNOWN))
        self.assertEqual(len(runner.calls), 1)
        fn, args, work = runner.calls[0]
        work.callback(fn(*args))
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))

    def test_runner_raises(self) -> None:
        """
        A runner that raises (its pool stopped) makes an error, not a failure.
        """
        class Broken(Runner):
            def run(self, fn: Any, *args: Any) -> Deferred[Any]:
                raise RuntimeError("pool stopped")
        lookup, _ = make_lookup(MockDirectory(), runner=Broken())
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1})
        self.assertEqual(lookup.running, 0)
        # Not an LDAP error: logged with its traceback.
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_closed(self) -> None:
        """
        After L{LdapLookup.close}, lookups fall through; the pool stays
        stopped.
        """
        settings = parse_settings({"base": BASE})
        clock = Clock()
        lookup = LdapLookup(settings, clock, directory=MockDirectory())
        lookup.close()
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertEqual(counts(lookup), {"lookups": 1, "errors": 1})
        self.flushLoggedErrors(RuntimeError)


class CacheTests(SynchronousTestCase):
    """
    Answers are remembered by MAC for C{cache_ttl}, absences for
    C{negative_ttl}, on the clock.
    """

    def setUp(self) -> None:
        self.runner = Runner()
        self.lookup, self.clock = make_lookup(
            MockDirectory(host("alpha", KNOWN, "10.0.0.5", "10.1.0.5")),
            runner=self.runner, cache_ttl=300, negative_ttl=60)

    def test_positive(self) -> None:
        """
        A found entry is answered from the cache until it expires; the
        cached entry still picks the address in each message's subnet.
        """
        hit = self.successResultOf(self.lookup.lookup(message(KNOWN)))
        self.clock.advance(299)
        self.assertEqual(self.successResultOf(self.lookup.lookup(message(KNOWN))), hit)
        self.assertEqual(self.successResultOf(
            self.lookup.lookup(message(KNOWN, "10.1.0.0/16"))).value["ip"],
            IPv4Address("10.1.0.5"))
        self.assertEqual(len(self.runner.calls), 1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.lookup.lookup(message(KNOWN))), hit)
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(counts(self.lookup), {"lookups": 4, "hits": 2, "cache_hits": 2})

    def test_negative(self) -> None:
        """
        An absent MAC is answered from the cache for C{negative_ttl}.
        """
        self.successResultOf(self.lookup.lookup(message(UNKNOWN)))
        self.clock.advance(59)
        self.assertEqual(self.successResultOf(self.lookup.lookup(message(UNKNOWN))),
                         Continue("miss"))
        self.assertEqual(len(self.runner.calls), 1)
        self.clock.advance(1)
        self.successResultOf(self.lookup.lookup(message(UNKNOWN)))
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(counts(self.lookup), {"lookups": 3, "misses": 2, "cache_hits": 1})

    def test_off(self) -> None:
        """
        A TTL of 0 turns its cache off; errors are never cached.
        """
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        lookup, _ = make_lookup(directory, runner=self.runner, cache_ttl=0, negative_ttl=0)
        for mac in (KNOWN, KNOWN, UNKNOWN, UNKNOWN):
            lookup.lookup(message(mac))
        self.assertEqual(len(self.runner.calls), 4)
        directory.refuse = 1
        lookup, _ = make_lookup(directory, runner=self.runner)
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)


class RememberTests(SynchronousTestCase):
    """
    With C{remember}, the directory's verdicts come as L{Remember} for the
    time their cache entry has left; errors never do.
    """

    def make(self, directory: Any = None, **table: Any) -> Tuple[LdapLookup, Clock]:
        clock = Clock()
        settings = parse_settings(dict({"base": BASE, "cache_ttl": 300, "negative_ttl": 60,
                                        "remember": True}, **table))
        directory = directory or MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        return LdapLookup(settings, clock, clock=clock, runner=Runner(),
                          directory=directory), clock

    def test_found(self) -> None:
        """
        A found entry is remembered for its cache TTL, then for what is left.
        """
        lookup, clock = self.make()
        first = self.successResultOf(lookup.lookup(message(KNOWN)))
        self.assertIsInstance(first, Remember)
        self.assertEqual(first.seconds, 300)
        self.assertEqual(first.verdict.value["ip"], IPv4Address("10.0.0.5"))
        clock.advance(100)
        again = self.successResultOf(lookup.lookup(message(KNOWN)))
        self.assertEqual((again.verdict, again.seconds), (first.verdict, 200))

    def test_absent(self) -> None:
        """
        An absent MAC is remembered as Continue("miss") for the negative TTL.
        """
        lookup, _ = self.make()
        self.assertEqual(self.successResultOf(lookup.lookup(message(UNKNOWN))),
                         Remember(Continue("miss"), 60))

    def test_errorsNotRemembered(self) -> None:
        """
        A directory error falls through without being remembered.
        """
        directory = MockDirectory(host("alpha", KNOWN, "10.0.0.5"))
        directory.refuse = 1
        lookup, _ = self.make(directory)
        self.assertEqual(self.successResultOf(lookup.lookup(message(KNOWN))), Continue("error"))

    def test_cacheOff(self) -> None:
        """
        With the cache off there is nothing to remember.
        """
        lookup, _ = self.make(cache_ttl=0, negative_ttl=0)
        self.assertIsInstance(self.successResultOf(lookup.lookup(message(KNOWN))), Stop)
        self.assertEqual(self.successResultOf(lookup.lookup(message(UNKNOWN))), Continue("miss"))

    def test_installRemembers(self) -> None:
        """
        Installed in-process with the default C{remember}, a returning
        client is answered from the mailbox's memory; with C{remember =
        false} the lookup is asked each time.
        """
        for remember, asked in ((True, 1), (False, 2)):
            clock = Clock()
            registry = Registry("dhcp", clock)
            registry.declare("/dhcp/lookup")
            settings = parse_settings({"base": BASE, "enabled": True, "remember": remember})
            hook = install(registry, settings, clock, clock=clock, runner=Runner(),
                           directory=MockDirectory(host("alpha", KNOWN, "10.0.0.5")))
            for _ in range(2):
                self.assertEqual(self.successResultOf(
                    registry.send("/dhcp/lookup", message(KNOWN)))["ip"], IPv4Address("10.0.0.5"))
            self.assertEqual(hook.lookup.counters["lookups"], asked)


class InstallTests(SynchronousTestCase):
    """
    L{install} puts the lookup first on C{/dhcp/lookup}, before the pool.
    """

    def test_install(self) -> None:
        """
        A known MAC gets the directory's address, an unknown one the pool's;
        removed, the hook leaves the pool alone.
        """
        clock = Clock()
        registry = Registry("dhcp", clock)
        registry.declare("/dhcp/lookup")
        registry.listen("/dhcp/lookup", lambda m: Stop({"ip": IPv4Address("10.0.0.100"),
                                                        "source": "pool"}),
                        tags={"stock": "pool"})
        settings = parse_settings({"base": BASE, "enabled": True})
        hook = install(registry, settings, clock, clock=clock, runner=Runner(),
                       directory=MockDirectory(host("alpha", KNOWN, "10.0.0.5")))
        listeners = registry.describe("/dhcp/lookup")[0]["listeners"]
        self.assertEqual(listeners[0]["tags"], {"hook": "ldap"})
        self.assertEqual(listeners[0]["deadline"], 1.25)
        self.assertEqual(self.successResultOf(registry.send("/dhcp/lookup", message(KNOWN))),
                         {"ip": IPv4Address("10.0.0.5"), "hostname": "alpha",
                          "source": "ldap"})
        self.assertEqual(self.successResultOf(
            registry.send("/dhcp/lookup", message(UNKNOWN)))["source"], "pool")
        hook.remove()
        self.assertEqual(self.successResultOf(
            registry.send("/dhcp/lookup", message(KNOWN)))["source"], "pool")

    def test_reasons(self) -> None:
        """
        The listener's counters show why the lookup answered or fell
        through: hit, miss, error, timeout and busy, a remembered answer
        counted again each time it is given.
        """
        clock = Clock()
        registry = Registry("dhcp", clock)
        registry.declare("/dhcp/lookup")
        registry.listen("/dhcp/lookup", lambda m: Stop("pool"), tags={"stock": "pool"})
        runner = Runner()
        settings = parse_settings({"base": BASE, "threads": 1, "negative_ttl": 0})
        install(registry, settings, clock, clock=clock, runner=runner,
                directory=MockDirectory(host("alpha", KNOWN, "10.0.0.5")))
        for mac in (KNOWN, KNOWN, UNKNOWN, "nonsense"):
            registry.send("/dhcp/lookup", message(mac))
        runner.inline = False
        slow = registry.send("/dhcp/lookup", message(OTHER))  # holds the one thread
        self.assertEqual(self.successResultOf(registry.send(
            "/dhcp/lookup", message(MAC("02:00:00:00:00:01")))), "pool")
        clock.advance(settings.deadline)
        self.assertEqual(self.successResultOf(slow), "pool")
        [listener] = [l for l in registry.describe("/dhcp/lookup")[0]["listeners"]
                      if l["tags"] == {"hook": "ldap"}]
        self.assertEqual(listener["counters"]["reasons"],
                         {"hit": 2, "miss": 1, "error": 1, "busy": 1, "timeout": 1})
        self.assertEqual(listener["counters"]["remembered"], 1)


class ServerLookupTests(SynchronousTestCase):
    """
    The lookup installed on a real L{DHCPServer}'s C{/dhcp/lookup}.
    """

    def test_subnet_of_request(self) -> None:
        """
        An entry with an address in each of two subnets gives the client
        the one of the subnet its request came from (the server names the
        subnet's network in the message), fresh and cached.
        """
        clock = Clock()
        clock.advance(1_000_000)
        registry = Registry("dhcp", clock)
        server = DHCPServer(registry, SyncRunner(), clock, LAN, sweep_interval=0,
                            relays=[IPv4Address("10.90.0.1")])
        server.start(Pool([LAN, RELAYED], LeaseStore(":memory:"), clock))
        directory = MockDirectory(host("alpha", KNOWN, "10.90.0.15", "10.89.0.50"))
        hook = install(registry, parse_settings({"base": BASE, "enabled": True}), clock,
                       clock=clock, runner=Runner(), directory=directory)
        self.addCleanup(hook.remove)
        for xid in (1, 2):
            direct = self.successResultOf(server.handle(request(DISCOVER, KNOWN, xid)))
            relayed = self.successResultOf(server.handle(
                request(DISCOVER, KNOWN, xid, giaddr=IPv4Address("10.90.0.1")), "10.90.0.1"))
            self.assertEqual((direct.yiaddr, relayed.yiaddr),
                             (IPv4Address("10.89.0.50"), IPv4Address("10.90.0.15")))
            self.assertEqual(decode_option(12, relayed.option(12)), "alpha")
        self.assertEqual(counts(hook.lookup), {"lookups": 2, "hits": 1, "cache_hits": 1})
        self.assertEqual(server.counters["refused_hook_addresses"], 0)


# integration: a real slapd

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slapd_peer(port: int) -> Any:
    """
    A L{SlapdPeer} on 127.0.0.1:C{port} knowing C{KNOWN}.
    """
    from netsuite.lab.peers import SlapdPeer
    return SlapdPeer(None, "127.0.0.1", port, hosts=[("alpha", str(KNOWN), "10.0.0.5")])


def need_slapd() -> None:
    from netsuite.lab.peers import missing
    absent = missing("slapd", "slapadd", "ldapadd")
    if absent:
        raise SkipTest(f"needs OpenLDAP's {', '.join(absent)} (Debian: slapd, ldap-utils)")
    if not os.path.exists("/etc/ldap/schema/nis.schema"):
        raise SkipTest("needs /etc/ldap/schema/nis.schema (Debian: slapd)")


def elapsed(since: float) -> float:
    return time.monotonic() - since


class SlapdTests(TestCase):
    """
    The lookup against a real slapd on loopback, in running, stopped, hung
    and resumed states. Times are measured with generous bounds.
    """

    timeout = 60
    DEADLINE = 0.5
    MARGIN = 0.4

    def setUp(self) -> None:
        need_slapd()
        self.port = free_port()
        self.slapd = self.start_slapd()

    def start_slapd(self) -> Any:
        peer = slapd_peer(self.port)
        self.addCleanup(peer.stop)
        peer.start(timeout=10)
        return peer

    def make(self, **table: Any) -> LdapLookup:
        settings = parse_settings(dict({"url": self.slapd.url, "base": self.slapd.hosts_dn,
                                        "deadline": self.DEADLINE, "cache_ttl": 0,
                                        "negative_ttl": 0}, **table))
        lookup = LdapLookup(settings, reactor)
        self.addCleanup(lookup.close)
        return lookup

    @inlineCallbacks
    def test_known_unknown(self) -> Any:
        """
        A known MAC gets its directory address and name, also for an entry
        added while running; an unknown MAC falls through.
        """
        lookup = self.make()
        answer = yield lookup.lookup(message(KNOWN))
        self.assertEqual(answer, Stop({"ip": IPv4Address("10.0.0.5"), "hostname": "alpha",
                                       "source": "ldap"}, reason="hit"))
        answer = yield lookup.lookup(message(OTHER))
        self.assertEqual(answer, Continue("miss"))
        self.slapd.add_host("beta", str(OTHER).upper(), "10.0.0.6")
        answer = yield lookup.lookup(message(OTHER))
        self.assertEqual(answer.value["hostname"], "beta")
        self.assertEqual(counts(lookup), {"lookups": 3, "hits": 2, "misses": 1})

    @inlineCallbacks
    def test_stopped(self) -> Any:
        """
        With slapd stopped, the lookup falls through within the deadline;
        started again on the same port, it answers again with no restart,
        even on the connection left from before.
        """
        lookup = self.make(threads=1)
        answer = yield lookup.lookup(message(KNOWN))
        self.assertIsInstance(answer, Stop)
        self.slapd.stop()
        start = time.monotonic()
        answer = yield lookup.lookup(message(KNOWN))
        took = elapsed(start)
        self.assertEqual(answer, Continue("error"))
        self.assertLess(took, self.DEADLINE + self.MARGIN)
        self.assertEqual(lookup.counters["errors"], 1)
        answer = yield lookup.lookup(message(KNOWN))  # a new connection each time
        self.assertEqual(answer, Continue("error"))
        self.slapd = self.start_slapd()
        answer = yield lookup.lookup(message(KNOWN))
        self.assertIsInstance(answer, Stop)
        # slapd restarted under a live connection: replaced within the lookup.
        self.slapd.stop()
        self.slapd = self.start_slapd()
        answer = yield lookup.lookup(message(KNOWN))
        self.assertIsInstance(answer, Stop)

    @inlineCallbacks
    def test_hung_then_resumed(self) -> Any:
        """
        slapd paused (it accepts TCP and never answers): lookups fall
        through at the deadline, those finding every thread busy at once;
        resumed, it answers again with no restart.
        """
        lookup = self.make(threads=2)
        answer = yield lookup.lookup(message(KNOWN))
        self.assertIsInstance(answer, Stop)
        self.slapd.pause()
        start = time.monotonic()
        times: List[float] = []
        macs = [KNOWN] + [MAC(f"02:00:00:00:00:0{i}") for i in range(1, 4)]
        answers = yield DeferredList([
            lookup.lookup(message(mac)).addCallback(
                lambda a: times.append(elapsed(start)) or a) for mac in macs],
            fireOnOneErrback=True)
        self.assertEqual([a for _, a in answers],
                         [Continue("timeout")] * 2 + [Continue("busy")] * 2)
        times.sort()
        self.assertLess(times[-1], self.DEADLINE + self.MARGIN, times)
        self.assertGreater(times[-1], self.DEADLINE * 0.9, times)
        self.assertLess(times[1], self.MARGIN, times)  # the two busy ones: at once
        self.assertEqual((lookup.counters["timeouts"], lookup.counters["busy"]), (2, 2))
        self.slapd.resume()
        yield lookup.idle().addTimeout(10, reactor)
        answer = yield lookup.lookup(message(KNOWN))
        self.assertEqual(answer.value["ip"], IPv4Address("10.0.0.5"))

    @inlineCallbacks
    def test_hung_on_connect(self) -> Any:
        """
        A lookup that must connect to the paused slapd (no connection yet)
        also falls through at the deadline.
        """
        lookup = self.make()
        self.slapd.pause()
        start = time.monotonic()
        answer = yield lookup.lookup(message(KNOWN))
        took = elapsed(start)
        self.assertEqual(answer, Continue("timeout"))
        self.assertGreater(took, self.DEADLINE * 0.9)
        self.assertLess(took, self.DEADLINE + self.MARGIN)
        self.slapd.resume()


class HookProcessTests(TestCase):
    """
    C{python -m netsuite.dhcp.ldaphook}, a separate process, hooks a DHCP
    registry served on a real bus socket.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        need_slapd()
        self.slapd = slapd_peer(free_port())
        self.addCleanup(self.slapd.stop)
        self.slapd.start(timeout=10)
        self.sockets = socket_dir(self)
        self.connections: List[Any] = []
        self.lost: List[Deferred[None]] = []  # fire when the server sees each connection go
        self.listening: Any = None
        self.addCleanup(self.stop_serving)
        yield self.serve()
        self.config = self.write_hook_config()

    def write_hook_config(self, extra: str = "", name: str = "dhcp",
                          sockets: Optional[str] = None) -> str:
        """
        The daemon's file: the hook finds it by its process.name and
        bus.socket_dir.
        """
        return write_config(self, (
            f'[process]\nname = "{name}"\n'
            f'[bus]\nsocket_dir = "{sockets or self.sockets}"\n[dhcp]\ninterface = "lan0"\n'
            f'[dhcp.ldap]\nurl = "{self.slapd.url}"\nbase = "{self.slapd.hosts_dn}"\n'
            'deadline = 1.0\n' + extra))

    @inlineCallbacks
    def serve(self) -> Any:
        """
        A fresh registry with the stock pool listener, served on
        C{dhcp.sock}, as a (re)started DHCP daemon would.
        """
        self.registry = Registry("dhcp", reactor)
        self.registry.declare("/dhcp/lookup")
        self.registry.listen("/dhcp/lookup", lambda m: Stop({"ip": IPv4Address("10.0.0.100"),
                                                             "source": "pool"}),
                             tags={"stock": "pool"})
        factory = BusServerFactory(self.registry)
        build = factory.buildProtocol

        def record(addr: Any) -> Any:
            protocol = build(addr)
            self.connections.append(protocol)
            lost: Deferred[None] = Deferred()
            self.lost.append(lost)
            seen_lost = protocol.connectionLost

            def connectionLost(reason: Any) -> None:
                seen_lost(reason)
                lost.callback(None)
            protocol.connectionLost = connectionLost
            return protocol
        factory.buildProtocol = record  # type: ignore[method-assign]
        endpoint = serverFromString(reactor, f"unix:{self.sockets}/dhcp.sock")
        self.listening = yield endpoint.listen(factory)

    def stop_serving(self) -> Any:
        """
        Close the socket and every connection, as a dying daemon would.
        """
        for protocol in self.connections:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        self.connections = []
        listening, self.listening = self.listening, None
        return listening.stopListening() if listening is not None else None

    def start_hook(self, config: str, *flags: str) -> Any:
        return spawn(self, "ldaphook", [PYTHON, "-m", "netsuite.dhcp.ldaphook", "--config",
                                        config, *flags])

    def send(self, mac: MAC) -> Deferred[Any]:
        return self.registry.send("/dhcp/lookup", message(mac))

    @inlineCallbacks
    def test_hook(self) -> Any:
        """
        Hooked: a known MAC gets the directory address, an unknown one the
        pool's; the hook's answers are remembered by the server for their
        cache time, so a returning client costs no round trip. Killed: its
        remembered answers go with its connection, and the next lookup
        gets the pool address at once.
        """
        hook = self.start_hook(self.config)
        yield hook.when_line(r"^hooked$").addTimeout(20, reactor)
        listeners = self.registry.describe("/dhcp/lookup")[0]["listeners"]
        self.assertEqual(listeners[0]["tags"]["hook"], "ldap")
        self.assertEqual(listeners[0]["remember_by"], ["mac", "subnet"])
        for _ in range(2):
            answer = yield self.send(KNOWN)
            self.assertEqual(answer, {"ip": IPv4Address("10.0.0.5"), "hostname": "alpha",
                                      "source": "ldap"})
        answer = yield self.send(UNKNOWN)
        self.assertEqual(answer["source"], "pool")
        counters = self.registry.describe("/dhcp/lookup")[0]["listeners"][0]["counters"]
        self.assertEqual((counters["messages"], counters["remembered"]), (3, 1))
        hook.signal("KILL")
        yield self.lost[-1].addTimeout(10, reactor)
        start = time.monotonic()
        answer = yield self.send(KNOWN)
        self.assertEqual(answer["source"], "pool")
        self.assertLess(elapsed(start), 0.5)
        self.assertEqual(len(self.registry.describe("/dhcp/lookup")[0]["listeners"]), 1)
        yield hook.when_ended().addTimeout(10, reactor)

    @inlineCallbacks
    def test_hook_asked_every_time(self) -> Any:
        """
        With C{remember = false} the server asks the hook on every lookup;
        killed, the very next lookup gets the pool address at once, even
        before the server has seen the connection close.
        """
        hook = self.start_hook(self.write_hook_config("remember = false\n"))
        yield hook.when_line(r"^hooked$").addTimeout(20, reactor)
        for _ in range(2):
            answer = yield self.send(KNOWN)
            self.assertEqual(answer["source"], "ldap")
        listener = self.registry.describe("/dhcp/lookup")[0]["listeners"][0]
        self.assertIsNone(listener["remember_by"])
        self.assertEqual(listener["counters"]["remembered"], 0)
        hook.signal("KILL")
        start = time.monotonic()
        answer = yield self.send(KNOWN)
        took = elapsed(start)
        self.assertEqual(answer["source"], "pool")
        self.assertLess(took, 0.5)
        # Had the send reached the stand-in before the registry saw the
        # connection drop, the registry logged the lost call as a failure.
        self.flushLoggedErrors(ConnectionLost, ConnectionDone)
        yield hook.when_ended().addTimeout(10, reactor)
        answer = yield self.send(KNOWN)
        self.assertEqual(answer["source"], "pool")
        self.assertEqual(len(self.registry.describe("/dhcp/lookup")[0]["listeners"]), 1)

    @inlineCallbacks
    def test_daemon_restart(self) -> Any:
        """
        When the DHCP daemon restarts, the hook re-attaches by itself.
        """
        hook = self.start_hook(self.config)
        yield hook.when_line(r"^hooked$").addTimeout(20, reactor)
        yield hook.when_line(r"attached 1 listeners").addTimeout(20, reactor)
        seen = hook.line_count
        yield self.stop_serving()
        yield self.serve()
        yield hook.when_line(r"attached 1 listeners", after=seen).addTimeout(20, reactor)
        answer = yield self.send(KNOWN)
        self.assertEqual(answer["source"], "ldap")

    @inlineCallbacks
    def test_flags_override(self) -> Any:
        """
        --process and --socket-dir win over the file (a daemon started with
        --name dhcp, say).
        """
        elsewhere = socket_dir(self)
        config = self.write_hook_config(name="netsuite", sockets=elsewhere)
        hook = self.start_hook(config, "--process", "dhcp", "--socket-dir", self.sockets)
        yield hook.when_line(r"^hooked$").addTimeout(20, reactor)
        self.assertIn(f"hooking dhcp:/dhcp/lookup at unix:path={self.sockets}/dhcp.sock "
                      "(from --process, --socket-dir)", hook.output())

    @inlineCallbacks
    def test_says_why_not(self) -> Any:
        """
        While the daemon is not there, the hook says which socket it tries
        and why it fails (once per reason, not per attempt), and Twisted's
        retry lines name the socket; it hooks as soon as the daemon comes.
        """
        yield self.stop_serving()  # which removes the socket
        self.assertFalse(os.path.exists(os.path.join(self.sockets, "dhcp.sock")))
        hook = self.start_hook(self.config)
        where = f"unix:path={self.sockets}/dhcp.sock"
        yield hook.when_line(f"hooking dhcp:/dhcp/lookup at {where} "
                             r"\(from process.name, bus.socket_dir\)").addTimeout(20, reactor)
        yield hook.when_line(f"cannot connect to process dhcp at {where}: no such socket "
                             r"\(is the process running, under that name\?\); retrying"
                             ).addTimeout(20, reactor)
        yield hook.when_line(f"Scheduling retry 3 to connect {where} in").addTimeout(20, reactor)
        yield self.serve()
        yield hook.when_line(r"^hooked$").addTimeout(20, reactor)
        output = hook.output()
        self.assertEqual(output.count("cannot connect"), 1, output)
        self.assertNotIn("object at 0x", output)
        self.assertIn(f"connected to process dhcp at {where}", output)
        answer = yield self.send(KNOWN)
        self.assertEqual(answer["source"], "ldap")

    @inlineCallbacks
    def test_bad_config(self) -> Any:
        """
        A bad key stops the hook at once, naming the file and the key.
        """
        config = write_config(self, '[dhcp.ldap]\nurl = "ldap://127.0.0.1"\nbogus = 1\n')
        hook = self.start_hook(config)
        code = yield hook.when_ended().addTimeout(20, reactor)
        self.assertEqual(code, 2)
        self.assertIn(f"{config}: unknown key 'dhcp.ldap.bogus'", hook.output())

