"""
The bus's permissions per peer (docs/bus-protocol.md, section 1) against
real daemons, with a second real uid (nobody, 65534): without a
[[bus.grant]] it may only ping; with one, exactly what is granted. A
watcher of /portal/authenticate never sees the password of a real login
(curl through the portal, in a lab), while a hook still gets it.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import CONTINUE, connect

from . import test_portal_lab as portal_lab
from .procs import PYTHON, ROOT, socket_dir, spawn, start_daemon, write_config
from .test_stdlib_client import stdlib_client

NOBODY = 65534
HOOK_CLI = os.path.join(os.path.dirname(os.sys.executable), "netsuite-hook")
HOOK_PEER = os.path.join(ROOT, "tests", "integration", "hook_peer.py")
PASSWORD = "wonder land"

OPEN_SOCKET = f'[bus]\nsocket_mode = "0666"\nallowed_uids = [{NOBODY}]\n'


def need_root() -> None:
    if os.getuid() != 0:
        raise SkipTest("needs root to run a peer under another uid")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NobodyMixin:
    """
    Runs netsuite-hook and hook_peer.py as nobody.
    """

    sockets: str

    def hook_cli(self, *args: str) -> Any:
        return spawn(self, "netsuite-hook as nobody",  # type: ignore[arg-type]
                     [HOOK_CLI, "--socket-dir", self.sockets, "--timeout", "20", *args],
                     uid=NOBODY, gid=NOBODY)

    @inlineCallbacks
    def refused(self, *args: str) -> Any:
        """
        netsuite-hook ARGS as nobody exits 4 saying what it may not do.
        """
        hook = self.hook_cli(*args)
        code = yield hook.when_ended()
        self.assertEqual(code, 4, hook.output())  # type: ignore[attr-defined]
        self.assertIn("may not", hook.output())  # type: ignore[attr-defined]
        self.assertIn("bus.grant", hook.output())  # type: ignore[attr-defined]
        return hook.output()

    def hook_peer(self, process: str, mailbox: str) -> Any:
        return spawn(self, "hook peer as nobody",  # type: ignore[arg-type]
                     [PYTHON, HOOK_PEER, process, self.sockets, "stop", mailbox],
                     uid=NOBODY, gid=NOBODY)


class BusGrantTests(NobodyMixin, TestCase):
    """
    A plain daemon (no services) and nobody, allowed on its socket.
    """

    timeout = 120

    def setUp(self) -> None:
        need_root()
        self.sockets = socket_dir(self)

    @inlineCallbacks
    def test_nothing_without_grant(self) -> Any:
        """
        Without a grant nobody may ping, and nothing else: it cannot send
        to /system/mailboxes or /system/relay, watch /system/log, hook
        /system/ping; its list shows /system/ping alone. Each refusal is
        logged by the daemon; the connection of a refused hook stays up.
        """
        daemon = yield start_daemon(self, "alpha", self.sockets, write_config(self, OPEN_SOCKET))
        hook = self.hook_cli("send", "alpha:/system/ping")
        self.assertEqual((yield hook.when_ended()), 0, hook.output())
        self.assertIn('"process": "alpha"', hook.output())

        out = yield self.refused("send", "alpha:/system/mailboxes")
        self.assertIn("may not send /system/mailboxes", out)
        out = yield self.refused("send", "alpha:/system/relay", "to=alpha:/system/mailboxes")
        self.assertIn("may not send", out)
        out = yield self.refused("watch", "alpha:/system/log")
        self.assertIn("may not watch /system/log", out)
        self.assertNotIn("watching", out)

        listing = self.hook_cli("list", "alpha")
        self.assertEqual((yield listing.when_ended()), 0, listing.output())
        self.assertIn("process alpha: 1 mailboxes", listing.output())
        self.assertIn("/system/ping", listing.output())

        peer = self.hook_peer("alpha", "/system/ping")
        yield peer.when_line("may not hook /system/ping")
        bus = connect("alpha", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(bus.close)
        result = yield bus.send("/system/ping")
        self.assertNotIn("hooked", result)
        yield daemon.when_line(rf"refused bus peer pid \d+ uid {NOBODY} \(uid:{NOBODY}\): "
                               "may not hook /system/ping")
        self.assertIn(f"uid:{NOBODY}): may not watch /system/log", daemon.output())

    @inlineCallbacks
    def test_exactly_what_is_granted(self) -> Any:
        """
        With a grant nobody may hook and watch exactly the mailboxes it
        names, and still not send to them.
        """
        config = write_config(self, OPEN_SOCKET + """
[[bus.grant]]
user = "nobody"
hook = ["/system/ping"]
watch = ["/system/log"]
""")
        yield start_daemon(self, "beta", self.sockets, config)
        peer = self.hook_peer("beta", "/system/ping")
        yield peer.when_line(r"\bhooked$")
        bus = connect("beta", socket_dir=self.sockets, reactor=reactor)
        self.addCleanup(bus.close)
        result = yield bus.send("/system/ping")
        self.assertEqual(result["hooked"], True)

        watcher = self.hook_cli("watch", "beta:/system/log")
        yield watcher.when_line("watching beta:/system/log")
        yield bus.send("/system/log", {"text": "granted watch works"})
        yield watcher.when_line("granted watch works")

        yield self.refused("send", "beta:/system/log", "text=from nobody")
        out = yield self.refused("watch", "beta:/system/relay")
        self.assertIn("may not watch /system/relay", out)

    @inlineCallbacks
    def test_tcp_peer_and_stdlib_client(self) -> Any:
        """
        A TCP peer gets nothing but a ping without a grant naming
        C{peer = "tcp"}; the stdlib client (examples/stdlib_client.py)
        reports the refusal as its C{NotPermitted}, and its connection
        stays usable.
        """
        port = _free_port()
        config = write_config(self, f'[bus]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n'
                              '[[bus.grant]]\npeer = "tcp"\nsend = ["/system/mailboxes"]\n')
        daemon = yield start_daemon(self, "gamma", self.sockets, config)
        # "bus ready" comes once per endpoint: the stdlib client connects
        # once, without retrying, so wait for the TCP one.
        yield daemon.when_line(rf"bus ready: gamma listening on tcp:{port}\b")

        def talk() -> List[Any]:
            with stdlib_client.BusConnection.tcp("127.0.0.1", port, 10.0) as bus:
                seen: List[Any] = []
                try:
                    bus.send("/system/log", {"text": "over tcp"})
                except stdlib_client.NotPermitted as e:
                    seen.append(e)
                seen.append(bus.send("/system/ping"))
                seen.append(bus.send("/system/mailboxes", {}))
                return seen
        refusal, ping, mailboxes = yield deferToThread(talk)
        self.assertEqual(refusal.code, "NOT_PERMITTED")
        self.assertIsInstance(refusal, stdlib_client.BusError)
        self.assertIn("may not send /system/log", refusal.description)
        self.assertEqual(ping[1]["process"], "gamma")
        self.assertTrue(mailboxes[0])


class PortalSecretLabTests(NobodyMixin, portal_lab.PortalLab):
    """
    The portal with a users file; nobody may watch /portal/authenticate
    and nothing else.
    """

    def more_config(self) -> str:
        users = os.path.join(self.tmp, "users")
        with open(users, "w") as f:
            f.write(f"alice:{portal_lab.hash_password(PASSWORD, n=16, r=1, p=1)}\n")
        self.json_log = os.path.join(self.tmp, "log.json")
        return (f'\n[portal.auth]\nusers_file = "{users}"\n\n' + OPEN_SOCKET
                + '\n[[bus.grant]]\nuid = 65534\nwatch = ["/portal/authenticate"]\n'
                + f'\n[log]\njson_file = "{self.json_log}"\n')

    @inlineCallbacks
    def test_watcher_never_sees_password(self) -> Any:
        """
        nobody cannot hook /firewall/authorize, nor watch it or
        /portal/login; its watch of /portal/authenticate sees alice log in
        with her password redacted, while a hook (root's) gets the
        password, and the daemon's log (text and JSON) never shows it.
        """
        peer = self.hook_peer("ap", "/firewall/authorize")
        yield peer.when_line("may not hook /firewall/authorize")
        yield self.refused("watch", "ap:/firewall/authorize")
        yield self.refused("watch", "ap:/portal/login")
        yield self.refused("send", "ap:/portal/authenticate", "method=password",
                           "username=alice", f"password={PASSWORD}")

        heard: List[Any] = []

        def hook(message: Any) -> Any:
            heard.append(message)
            return CONTINUE
        handle = self.bus.listen("/portal/authenticate", hook, first=True)
        yield handle.when_attached()
        watcher = self.hook_cli("watch", "ap:/portal/authenticate")
        yield watcher.when_line("watching ap:/portal/authenticate")

        done = yield self.login_script("--data-urlencode", "username=alice",
                                       "--data-urlencode", f"password={PASSWORD}")
        self.assertEqual((done.returncode, done.stdout), (0, "303\n"), done.stderr)
        line = yield watcher.when_line(r'"username": "alice"')
        seen = json.loads(line[line.index("{"):])
        self.assertEqual((seen["username"], seen["password"], seen["method"]),
                         ("alice", "<redacted>", "password"))
        self.assertNotIn(PASSWORD, watcher.output())
        self.assertEqual([m["password"] for m in heard], [PASSWORD])
        self.assertNotIn(PASSWORD, self.daemon.output())
        with open(self.json_log) as f:
            logged = f.read()
        self.assertIn("portal login", logged)
        self.assertNotIn(PASSWORD, logged)
