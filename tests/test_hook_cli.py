"""
Tests for the parts of C{netsuite-hook} that need no daemon (the rest is in
tests/integration/test_bus_processes.py).
"""

import errno
import os
from io import StringIO
from ipaddress import IPv4Address
from unittest.mock import patch

from twisted.internet.error import ConnectError, ConnectionRefusedError

from twisted.trial.unittest import SynchronousTestCase

from netsuite.registry.values import MAC
from netsuite.bus.client import unreachable
from netsuite.scripts.hook import (EXIT_ACCESS_DENIED, EXIT_NOT_RUNNING, EXIT_STATUS,
                                   CommandError, _explain, format_listing, parse_args,
                                   parse_pairs, split_target)


class ParsePairsTests(SynchronousTestCase):
    def test_typed(self):
        """
        key=value pairs are typed: ints, floats, booleans, null, IPs, MACs,
        and strings otherwise; key:type=value forces the type.
        """
        message = parse_pairs(["n=3", "x=1.5", "ok=true", "none=null",
                               "ip=10.0.0.1", "mac=AA-BB-CC-DD-EE-FF", "name=guest",
                               "code:str=42", "raw:bytes=00ff", "eq=a=b"])
        self.assertEqual(message, {
            "n": 3, "x": 1.5, "ok": True, "none": None, "ip": IPv4Address("10.0.0.1"),
            "mac": MAC("aa:bb:cc:dd:ee:ff"), "name": "guest", "code": "42",
            "raw": b"\x00\xff", "eq": "a=b"})

    def test_errors(self):
        """
        A pair without '=' or with a value that does not fit its type is a
        usage error (exit 2) naming the pair.
        """
        for bad in ["novalue", "=3", "n:int=three", "m:mac=zz", "t:nosuch=1"]:
            error = self.assertRaises(CommandError, parse_pairs, [bad])
            self.assertEqual(error.code, 2)
            self.assertIn(repr(bad), str(error))


class TargetTests(SynchronousTestCase):
    def test_targets(self):
        """
        send and watch need PROC:/path; list takes PROC or PROC:/prefix.
        """
        self.assertEqual(split_target("dhcp:/dhcp/lookup", True), ("dhcp", "/dhcp/lookup"))
        self.assertEqual(split_target("dhcp", False), ("dhcp", "/"))
        self.assertEqual(split_target("dhcp:/dhcp", False), ("dhcp", "/dhcp"))
        self.assertEqual(self.assertRaises(CommandError, split_target, "/x/y", True).code, 2)
        self.assertEqual(self.assertRaises(CommandError, split_target, "a:b", True).code, 2)

    def test_args(self):
        """
        The command line names the command, the target and the options.
        """
        args = parse_args(["--socket-dir", "/tmp/s", "send", "a:/b", "k=v", "--json", "{}"])
        self.assertEqual((args.command, args.target, args.pairs, args.json_message,
                          args.socket_dir), ("send", "a:/b", ["k=v"], "{}", "/tmp/s"))


class ExplainTests(SynchronousTestCase):
    """
    A failure to connect becomes a one-line error with its own exit status.
    """

    def explain(self, code: int) -> CommandError:
        args = parse_args(["list", "ap"])
        return _explain(unreachable("ap", "unix:path=/run/netsuite/ap.sock",
                                    ConnectError(code, os.strerror(code))), args)

    def test_permissionDenied(self):
        """
        EACCES (and EPERM) on the socket is "permission denied", saying who
        may connect, exit status 4; not "not running".
        """
        for code in (errno.EACCES, errno.EPERM):
            error = self.explain(code)
            self.assertEqual(error.code, EXIT_ACCESS_DENIED)
            self.assertEqual(error.code, 4)
            self.assertIn("permission denied connecting to process ap at "
                          "unix:path=/run/netsuite/ap.sock", str(error))
            self.assertIn("bus.allowed_uids", str(error))
            self.assertNotIn("not running", str(error))

    def test_notRunning(self):
        """
        No socket, or a refused connection, is "not running", exit status 3,
        saying which.
        """
        error = self.explain(errno.ENOENT)
        self.assertEqual(error.code, EXIT_NOT_RUNNING)
        self.assertIn("process ap is not running (nothing listens at "
                      "unix:path=/run/netsuite/ap.sock: no such socket", str(error))
        error = _explain(unreachable("ap", "unix:path=/x", ConnectionRefusedError()),
                         parse_args(["list", "ap"]))
        self.assertEqual(error.code, 3)
        self.assertIn("connection refused", str(error))

    def test_help(self):
        """
        --help lists the exit statuses.
        """
        out = StringIO()
        with patch("sys.stdout", out):
            self.assertRaises(SystemExit, parse_args, ["--help"])
        self.assertIn(EXIT_STATUS, out.getvalue())
        self.assertIn("4  permission denied", out.getvalue())


class ListingTests(SynchronousTestCase):
    def test_format(self):
        """
        The listing shows each mailbox with its counters and its listeners,
        in chain order, with their tags.
        """
        out = StringIO()
        format_listing("dhcp", [{
            "path": "/dhcp/lookup", "kind": "decision", "doc": "Which address?",
            "counters": {"messages": 3, "stops": 2, "errors": 1, "timeouts": 0,
                         "seconds": 0.25},
            "watchers": 0,
            "listeners": [{"id": "2", "tags": {"script": "ldap"}, "deadline": 1.0,
                           "counters": {"messages": 3, "stops": 1, "errors": 1,
                                        "timeouts": 0, "seconds": 0.2}}]}], out)
        self.assertEqual(out.getvalue().splitlines(), [
            "process dhcp: 1 mailboxes",
            "/dhcp/lookup  (decision)  messages=3 stops=2 errors=1 timeouts=0 seconds=0.250000",
            "    Which address?",
            "    listener 2 [script=ldap] deadline=1.0s messages=3 stops=1 errors=1 timeouts=0",
        ])

    def test_reasons(self):
        """
        A listener's verdicts by reason follow its counters, sorted by
        name; a listener with none (or a daemon that does not count them)
        shows none.
        """
        counters = {"messages": 5, "stops": 1, "errors": 0, "timeouts": 0, "seconds": 0.1}
        listeners = [
            {"id": "3", "tags": {"hook": "ldap"}, "deadline": 1.25,
             "counters": dict(counters, reasons={"miss": 2, "busy": 1, "hit": 1,
                                                 "timeout": 1})},
            {"id": "1", "tags": {"stock": True}, "deadline": 2.0,
             "counters": dict(counters, reasons={})},
            {"id": "0", "tags": {}, "deadline": 2.0, "counters": counters}]
        out = StringIO()
        format_listing("dhcp", [{"path": "/dhcp/lookup", "kind": "decision", "doc": "",
                                 "counters": counters, "watchers": 0,
                                 "listeners": listeners}], out)
        self.assertEqual(out.getvalue().splitlines()[2:], [
            "    listener 3 [hook=ldap] deadline=1.25s messages=5 stops=1 errors=0 timeouts=0"
            "  reasons: busy=1 hit=1 miss=2 timeout=1",
            "    listener 1 [stock=True] deadline=2.0s messages=5 stops=1 errors=0 timeouts=0",
            "    listener 0 [] deadline=2.0s messages=5 stops=1 errors=0 timeouts=0",
        ])


class NotPermittedTests(SynchronousTestCase):
    """
    The daemon's refusal of a command (no bus.grant) is exit status 4, with
    the daemon's words.
    """

    def test_notPermitted(self):
        from netsuite.bus.errors import NotPermitted
        args = parse_args(["watch", "ap:/portal/authenticate"])
        error = _explain(NotPermitted("pid 7 uid 1000 may not watch /portal/authenticate: "
                                      "no bus.grant ..."), args)
        self.assertEqual(error.code, EXIT_ACCESS_DENIED)
        self.assertIn("may not watch /portal/authenticate", str(error))
        self.assertIn("not permitted", EXIT_STATUS)
