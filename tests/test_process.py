"""
Tests for L{netsuite.process} and the all-in-one plugin L{netsuite.tap}.
"""

import faulthandler
import json
import os
import signal
import sys

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from netsuite import tap
from netsuite.process import LogService, SocketDirectory, StackDumps, bus_endpoint


class MakeServiceTests(SynchronousTestCase):
    def options(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_plugin_found(self):
        """
        twistd finds the C{netsuite} plugin, which points at L{netsuite.tap}.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("netsuite", makers)
        self.assertEqual(makers["netsuite"].module, "netsuite.tap")

    def test_listens_on_socket(self):
        """
        The process's bus listens on <socket_dir>/<name>.sock with the
        configured mode, and on every extra endpoint of bus.listen; services
        start nothing before the reactor runs.
        """
        sockets = self.mktemp()
        config = self.mktemp()
        with open(config, "w") as f:
            f.write('[bus]\nsocket_mode = "0600"\nlisten = ["tcp:7070:interface=127.0.0.1"]\n')
        reactor = MemoryReactorClock()
        service = tap.makeService(self.options("--config", config, "--name", "ap1",
                                               "--socket-dir", sockets), reactor)
        self.assertEqual(reactor.unixServers, [])
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [(path, factory, backlog, mode, want_pid)] = reactor.unixServers
        self.assertEqual((path, mode, want_pid), (os.path.join(sockets, "ap1.sock"), 0o600, True))
        [(port, tcp_factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (7070, "127.0.0.1"))
        self.assertEqual(os.stat(sockets).st_mode & 0o777, 0o755)
        self.assertEqual(service.registry.name, "ap1")
        self.assertIn("/system/ping", [b["path"] for b in service.registry.describe()])

    def test_endpoint_escapes(self):
        """
        A socket directory with a colon is escaped in the endpoint string.
        """
        options = self.options("--socket-dir", "/run/a:b", "--name", "x")
        self.assertEqual(bus_endpoint(options.config),
                         "unix:/run/a\\:b/x.sock:mode=0660:lockfile=1")


class SocketDirectoryTests(SynchronousTestCase):
    def test_refuses_writable(self):
        """
        A socket directory others may write to is refused at start-up.
        """
        path = self.mktemp()
        os.makedirs(path)
        os.chmod(path, 0o777)
        error = self.assertRaises(RuntimeError, SocketDirectory(path).privilegedStartService)
        self.assertIn("writable by group or others", str(error))


class LogServiceTests(SynchronousTestCase):
    def test_json_lines(self):
        """
        With log.json_file set, events at or above log.level are appended
        to it as JSON lines; the observer is removed on stop.
        """
        from netsuite.registry import Registry
        from netsuite.system import install_system_mailboxes
        clock = MemoryReactorClock()
        registry = Registry("alpha", clock)
        install_system_mailboxes(registry, clock)
        path = self.mktemp()
        service = LogService(registry, "warn", path)
        service.startService()
        log = Logger(namespace="test.json")
        log.info("not written")
        log.warn("lease {ip} declined", ip="10.0.0.9")
        service.stopService()
        log.warn("after stop")
        with open(path) as f:
            events = [json.loads(line) for line in f]
        self.assertEqual([e["log_format"] for e in events], ["lease {ip} declined"])
        self.assertEqual(events[0]["ip"], "10.0.0.9")


class SettleHeapTests(SynchronousTestCase):
    def test_freezes_and_raises_threshold(self):
        """
        settle_heap puts what is alive out of the collector's reach and
        collects the young generation less often.
        """
        import gc
        from netsuite.process import settle_heap
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        kept = [[] for _ in range(10)]
        settle_heap()
        self.assertGreaterEqual(gc.get_freeze_count(), len(kept))
        self.assertEqual(gc.get_threshold()[0], 10000)


class StackDumpsTests(SynchronousTestCase):
    def test_usr1_dumps_every_thread(self):
        """
        Once started, SIGUSR1 writes the stacks of the process's threads to
        its real standard error; once stopped, the signal is no longer taken.
        """
        path = self.mktemp()
        with open(path, "w") as out:
            self.patch(sys, "__stderr__", out)
            service = StackDumps()
            service.privilegedStartService()
            service.startService()
            self.addCleanup(faulthandler.unregister, signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR1)
            service.stopService()
        with open(path) as f:
            dump = f.read()
        self.assertIn("test_usr1_dumps_every_thread", dump)
        self.assertIn("Current thread", dump)
        self.assertFalse(faulthandler.unregister(signal.SIGUSR1))
