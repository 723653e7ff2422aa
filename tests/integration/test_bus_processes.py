"""
The bus between real processes: twistd daemons, hook scripts and
netsuite-hook over real Unix sockets.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from netsuite.bus import connect

from .procs import ROOT, kill, restart_daemon, run_script, socket_dir, spawn, start_daemon, \
    write_config

HOOK_PEER = os.path.join(ROOT, "tests", "integration", "hook_peer.py")
EXAMPLE = os.path.join(ROOT, "examples", "ping_hook.py")
HOOK_CLI = os.path.join(os.path.dirname(os.sys.executable), "netsuite-hook")


class BusProcessTests(TestCase):
    """
    Hooks in one process change what another process answers.
    """

    timeout = 60

    def client(self, name: str, sockets: str):
        bus = connect(name, socket_dir=sockets, reactor=reactor)
        self.addCleanup(bus.close)
        return bus

    @inlineCallbacks
    def test_example_hook_changes_result(self):
        """
        The example script, in its own process, answers /system/ping for the
        operator and lets everyone else fall through to the stock answer.
        """
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        hook = run_script(self, "example", EXAMPLE, "alpha", sockets)
        yield hook.when_line(r"\bhooked$")
        bus = self.client("alpha", sockets)
        hooked = yield bus.send("/system/ping", {"who": "operator"})
        self.assertEqual(hooked["greeting"], "hello operator")
        stock = yield bus.send("/system/ping", {"who": "guest"})
        self.assertEqual(stock["process"], "alpha")

    @inlineCallbacks
    def test_send_reaches_another_process(self):
        """
        A send to C{beta:/system/ping} made inside process alpha reaches
        process beta and its hook, through alpha's own bus client.
        """
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        yield start_daemon(self, "beta", sockets)
        hook = run_script(self, "hook", HOOK_PEER, "beta", sockets, "stop")
        yield hook.when_line(r"\bhooked$")
        alpha = self.client("alpha", sockets)
        result = yield alpha.send("/system/relay", {"to": "beta:/system/ping",
                                                    "message": {"n": 7}})
        self.assertEqual(result["hooked"], True)
        self.assertEqual(result["seen"], {"n": 7})
        local = yield alpha.send("/system/relay", {"to": "alpha:/system/ping"})
        self.assertEqual(local["process"], "alpha")

    @inlineCallbacks
    def test_killed_hook_falls_through_at_once(self):
        """
        A send waiting on a hook that never answers (deadline 60 s) falls
        through to the stock listener as soon as the hook process is killed,
        and the hook's stand-in is gone from the mailbox.
        """
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        hook = run_script(self, "hook", HOOK_PEER, "alpha", sockets, "hang")
        yield hook.when_line(r"\bhooked$")
        bus = self.client("alpha", sockets)
        pending = bus.send("/system/ping")
        pending.addTimeout(15, reactor)  # far below the hook's 60 s deadline
        box = yield bus.send("/system/mailboxes", {"prefix": "/system/ping"})
        self.assertEqual(len(box[0]["listeners"]), 2)
        self.assertNoResult(pending)
        yield kill(hook)
        result = yield pending
        self.assertEqual(result["process"], "alpha")
        box = yield bus.send("/system/mailboxes", {"prefix": "/system/ping"})
        self.assertEqual([l["tags"] for l in box[0]["listeners"]],
                         [{"owner": "system", "stock": True}])
        self.assertEqual(box[0]["listeners"][0]["counters"]["messages"], 1)

    @inlineCallbacks
    def test_hook_reattaches_after_daemon_restart(self):
        """
        When the daemon is killed and started again, the hook script
        reconnects and re-adds its listener by itself.
        """
        sockets = socket_dir(self)
        daemon = yield start_daemon(self, "alpha", sockets)
        hook = run_script(self, "hook", HOOK_PEER, "alpha", sockets, "stop")
        yield hook.when_line(r"\bhooked$")
        yield restart_daemon(self, daemon, "alpha", sockets)
        yield hook.when_line("lost connection to alpha")
        seen = hook.line_count
        yield hook.when_line("attached 1 listeners", after=seen)
        bus = self.client("alpha", sockets)
        result = yield bus.send("/system/ping", {"after": "restart"})
        self.assertEqual(result["hooked"], True)

    @inlineCallbacks
    def test_disallowed_uid_is_refused(self):
        """
        A peer whose uid is not root, the daemon's, or in bus.allowed_uids is
        disconnected even when the socket's mode lets it connect; listing it
        in bus.allowed_uids lets it in.
        """
        if os.getuid() != 0:
            raise SkipTest("needs root to run a peer under another uid")
        nobody = 65534
        sockets = socket_dir(self)
        refused = write_config(self, '[bus]\nsocket_mode = "0666"\n')
        yield start_daemon(self, "alpha", sockets, refused)
        peer = spawn(self, "nobody", [HOOK_CLI, "--socket-dir", sockets, "send",
                                      "alpha:/system/ping"], uid=nobody, gid=nobody)
        code = yield peer.when_ended()
        self.assertEqual(code, 1, peer.output())
        self.assertIn("closed the connection", peer.output())

        allowed = write_config(self, f'[bus]\nsocket_mode = "0666"\nallowed_uids = [{nobody}]\n')
        yield start_daemon(self, "beta", sockets, allowed)
        peer = spawn(self, "nobody", [HOOK_CLI, "--socket-dir", sockets, "send",
                                      "beta:/system/ping"], uid=nobody, gid=nobody)
        code = yield peer.when_ended()
        self.assertEqual(code, 0, peer.output())
        self.assertIn('"process": "beta"', peer.output())

    @inlineCallbacks
    def test_permission_denied(self):
        """
        A peer the socket's mode keeps out (the default 0660, root's
        socket) is told "permission denied" and who may connect, with exit
        status 4, not that the process is not running.
        """
        if os.getuid() != 0:
            raise SkipTest("needs root to run a peer under another uid")
        nobody = 65534
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        self.assertEqual(os.stat(os.path.join(sockets, "alpha.sock")).st_mode & 0o777, 0o660)
        peer = spawn(self, "nobody", [HOOK_CLI, "--socket-dir", sockets, "list", "alpha"],
                     uid=nobody, gid=nobody)
        code = yield peer.when_ended()
        self.assertEqual(code, 4, peer.output())
        self.assertIn("netsuite-hook: permission denied connecting to process alpha at "
                      f"unix:path={sockets}/alpha.sock", peer.output())
        self.assertIn("bus.allowed_uids", peer.output())
        self.assertNotIn("not running", peer.output())

    @inlineCallbacks
    def test_tcp_endpoint_and_peers(self):
        """
        With bus.listen, a daemon also serves its bus on TCP (loopback
        here): netsuite-hook reaches it with --endpoint, and another daemon
        whose bus.peers maps the name to that endpoint relays to it.
        """
        port = _free_port()
        sockets = socket_dir(self)
        served = write_config(self, f'[bus]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n')
        yield start_daemon(self, "alpha", sockets, served)
        hook = spawn(self, "netsuite-hook", [HOOK_CLI, "--endpoint",
                                             f"tcp:host=127.0.0.1:port={port}", "send",
                                             "alpha:/system/ping"])
        code = yield hook.when_ended()
        self.assertEqual(code, 0, hook.output())
        self.assertIn('"process": "alpha"', hook.output())

        elsewhere = socket_dir(self)
        peering = write_config(
            self, f'[bus.peers]\nalpha = "tcp:host=127.0.0.1:port={port}"\n')
        yield start_daemon(self, "beta", elsewhere, peering)
        beta = self.client("beta", elsewhere)
        result = yield beta.send("/system/relay", {"to": "alpha:/system/ping"})
        self.assertEqual(result["process"], "alpha")

    @inlineCallbacks
    def test_bad_config_refuses_to_start(self):
        """
        A config with an unknown key stops twistd with the file and the key.
        """
        sockets = socket_dir(self)
        bad = write_config(self, "[bus]\nsocket_dri = '/tmp'\n")
        child = spawn(self, "daemon", [os.path.join(os.path.dirname(os.sys.executable), "twistd"),
                                       "-n", "--pidfile=", "netsuite", "--config", bad,
                                       "--socket-dir", sockets])
        code = yield child.when_ended()
        self.assertNotEqual(code, 0)
        self.assertIn(f"{bad}: unknown key 'bus.socket_dri'", child.output())


class HookCommandTests(TestCase):
    """
    netsuite-hook against a real daemon.
    """

    timeout = 60

    @inlineCallbacks
    def run_hook(self, *args):
        child = spawn(self, "netsuite-hook", [HOOK_CLI, *args])
        code = yield child.when_ended()
        return code, child.output()

    @inlineCallbacks
    def test_send_list_and_errors(self):
        """
        send prints the result as JSON; list shows mailboxes and listeners;
        an unknown mailbox and a process that is not running are clear
        errors with distinct exit codes.
        """
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        code, out = yield self.run_hook("--socket-dir", sockets, "send", "alpha:/system/ping",
                                        "mac=aa:bb:cc:dd:ee:ff")
        self.assertEqual(code, 0, out)
        self.assertIn('"process": "alpha"', out)
        code, out = yield self.run_hook("--socket-dir", sockets, "list", "alpha")
        self.assertEqual(code, 0, out)
        self.assertIn("/system/ping  (decision)", out)
        self.assertIn("owner=system stock=True", out)
        code, out = yield self.run_hook("--socket-dir", sockets, "send", "alpha:/dhcp/lookup")
        self.assertEqual((code, out.strip()),
                         (1, "netsuite-hook: process alpha has no mailbox /dhcp/lookup"))
        code, out = yield self.run_hook("--socket-dir", sockets, "send", "gamma:/system/ping")
        self.assertEqual(code, 3, out)
        self.assertIn("process gamma is not running", out)

    @inlineCallbacks
    def test_watch_prints_json_lines(self):
        """
        watch prints every message sent to the mailbox as one JSON line,
        with typed values rendered as plain JSON.
        """
        sockets = socket_dir(self)
        yield start_daemon(self, "alpha", sockets)
        watcher = spawn(self, "watch", [HOOK_CLI, "--socket-dir", sockets, "watch",
                                        "alpha:/system/ping"])
        yield watcher.when_line("^netsuite-hook: watching alpha:/system/ping$")
        yield self.run_hook("--socket-dir", sockets, "send", "alpha:/system/ping",
                            "ip=10.1.2.3", "n=5")
        line = yield watcher.when_line(r"^\{")
        self.assertEqual(line, '{"ip": "10.1.2.3", "n": 5}')


def _free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
