"""
Tests for L{netsuite.process} and the all-in-one plugin L{netsuite.tap}.
"""

import faulthandler
import ipaddress
import json
import os
import signal
import sys
from types import SimpleNamespace

from twisted.application.service import IServiceMaker, Service
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netsuite import tap
from netsuite.process import LogService, SocketDirectory, StackDumps, bus_endpoint, \
    json_log_line


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

    def test_refuses_sticky(self):
        """
        A directory others may write to is refused even when sticky: any
        user could put a socket there before the daemon does.
        """
        path = self.mktemp()
        os.makedirs(path)
        os.chmod(path, 0o1777)
        error = self.assertRaises(RuntimeError, SocketDirectory(path).privilegedStartService)
        self.assertIn("writable by group or others", str(error))

    def test_refuses_other_owner(self):
        """
        A directory owned by another user (not root, not the daemon's uid)
        is refused, naming the owner.
        """
        if os.geteuid() != 0:
            raise SkipTest("needs root to chown a directory to nobody")
        path = self.mktemp()
        os.makedirs(path, mode=0o755)
        os.chown(path, 65534, 65534)
        error = self.assertRaises(RuntimeError, SocketDirectory(path).privilegedStartService)
        self.assertIn("is owned by uid 65534; it must be owned by root or by the daemon",
                      str(error))

    def test_switch_refuses_other_owner(self):
        """
        Under twistd --uid a directory the daemon's later uid does not own
        is refused: it writes there after the switch.
        """
        from netsuite.privileges import UidSwitch
        path = self.mktemp()
        os.makedirs(path, mode=0o755)
        later = os.getuid() + 1
        error = self.assertRaises(RuntimeError, SocketDirectory(
            path, UidSwitch(later, later)).privilegedStartService)
        self.assertIn(f"is owned by uid {os.getuid()}; twistd --uid runs the daemon as uid "
                      f"{later} after start", str(error))

    def test_switch_gives_made(self):
        """
        Under twistd --uid a directory the daemon makes is given to that
        uid and gid, and its socket too once bound.
        """
        from netsuite.privileges import UidSwitch
        from netsuite.process import BusListener
        if os.geteuid() != 0:
            raise SkipTest("needs root to chown a directory to nobody")
        path = os.path.join(self.mktemp(), "sockets")
        switch = UidSwitch(65534, 65533)
        SocketDirectory(path, switch).privilegedStartService()
        info = os.stat(path)
        self.assertEqual((info.st_uid, info.st_gid, info.st_mode & 0o7777),
                         (65534, 65533, 0o755))
        socket_path = os.path.join(path, "p.sock")
        open(socket_path, "w").close()  # MemoryReactorClock binds nothing
        factory = SimpleNamespace(registry=SimpleNamespace(name="p"))
        listener = BusListener(MemoryReactorClock(), f"unix:{socket_path}", factory, switch)
        listener.privilegedStartService()
        info = os.stat(socket_path)
        self.assertEqual((info.st_uid, info.st_gid), (65534, 65533))

    def test_accepts_own(self):
        """
        A new directory is made 0755 and accepted.
        """
        path = os.path.join(self.mktemp(), "sockets")
        SocketDirectory(path).privilegedStartService()
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o755)


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


    def test_dash_is_the_standard_output_descriptor(self):
        """
        C{json_file = "-"} writes to file descriptor 1 itself, not to
        C{sys.stdout}: under twistd that is the log, and each JSON line
        written there would be logged, and written, again without end.
        """
        from netsuite.registry import Registry
        from netsuite.system import install_system_mailboxes
        clock = MemoryReactorClock()
        registry = Registry("alpha", clock)
        install_system_mailboxes(registry, clock)
        written = []
        self.patch(sys, "stdout", type("Log", (), {"write": written.append,
                                                   "flush": lambda self: None})())
        path = self.mktemp()
        saved = os.dup(1)
        try:
            with open(path, "w") as out:
                os.dup2(out.fileno(), 1)
            service = LogService(registry, "info", "-")
            service.startService()
            Logger(namespace="test.json").info("to the descriptor")
            service.stopService()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        with open(path) as f:
            [event] = [json.loads(line) for line in f]
        self.assertEqual(event["log_format"], "to the descriptor")
        self.assertEqual(written, [])


class JsonLogLineTests(SynchronousTestCase):
    def event(self, **fields):
        events = []
        log = Logger(namespace="test.json", observer=events.append)
        log.info(fields.pop("format", "event"), **fields)
        return events[0]

    def test_typed_values_as_text(self):
        """
        Addresses and MACs, alone or inside lists and maps, are in the JSON
        line as their text (Twisted's own writes C{{"unpersistable": true}}).
        """
        from netsuite.registry.values import MAC
        ip, mac = ipaddress.IPv4Address("10.89.0.11"), MAC("02:00:00:00:00:0b")
        line = json_log_line(self.event(format="portal login {ip} {mac}", ip=ip, mac=mac,
                                        net=ipaddress.IPv4Network("10.89.0.0/24"),
                                        seen=[ip], by_ip={"a": mac}, raw=b"\xff\x00"))
        self.assertTrue(line.endswith("\n"))
        self.assertNotIn("unpersistable", line)
        event = json.loads(line)
        self.assertEqual((event["ip"], event["mac"], event["net"]),
                         ("10.89.0.11", "02:00:00:00:00:0b", "10.89.0.0/24"))
        self.assertEqual((event["seen"], event["by_ip"]), (["10.89.0.11"], {"a": "02:00:00:00:00:0b"}))
        self.assertEqual(event["raw"], "\\xff\x00")
        self.assertEqual(event["log_level"]["name"], "info")
        self.assertEqual(event["log_namespace"], "test.json")

    def test_formats_from_the_objects(self):
        """
        The flattened text uses the objects themselves (attributes, repr),
        so the line still formats to what the text log shows.
        """
        from twisted.logger import eventFromJSON, formatEvent
        ip = ipaddress.IPv4Address("10.0.0.9")
        original = self.event(format="{ip.version} {ip!r} {ip}", ip=ip)
        event = eventFromJSON(json_log_line(original))
        self.assertEqual(formatEvent(event), "4 IPv4Address('10.0.0.9') 10.0.0.9")
        self.assertIs(original["ip"], ip)
        self.assertNotIn("log_flattened", original)

    def test_failure_kept(self):
        """
        A failure is written as Twisted writes one (its traceback readable).
        """
        from twisted.logger import eventFromJSON
        events = []
        log = Logger(namespace="test.json", observer=events.append)
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("it broke")
        event = eventFromJSON(json_log_line(events[0]))
        self.assertIn("ZeroDivisionError", event["log_failure"].getTraceback())

    def test_nan_and_deep_nesting(self):
        """
        Non-finite floats become text (JSON has none), and nesting deeper
        than 8 levels is cut to text rather than recursing.
        """
        deep = []
        for _ in range(20):
            deep = [deep]
        event = json.loads(json_log_line(self.event(nan=float("nan"), deep=deep)))
        self.assertEqual(event["nan"], "nan")
        level = event["deep"]
        for _ in range(8):
            level = level[0]
        self.assertIsInstance(level, str)


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


class _Waits(Service):
    """A service that is ready when the test says so."""

    def __init__(self, name, events):
        self.name = name
        self.events = events
        from netsuite.services import Readiness
        self.readiness = Readiness()

    def startService(self):
        Service.startService(self)
        self.events.append(f"start {self.name}")

    def stopService(self):
        Service.stopService(self)
        self.events.append(f"stop {self.name}")

    def when_ready(self):
        return self.readiness.when()


class _Plain(_Waits):
    when_ready = None


class StartInOrderTests(SynchronousTestCase):
    def build(self):
        from netsuite.process import StartInOrder
        self.events = []
        top = StartInOrder()
        self.firewall, self.log, self.dhcp, self.portal = (
            _Waits("firewall", self.events), _Plain("log", self.events),
            _Waits("dhcp", self.events), _Waits("portal", self.events))
        for service in (self.firewall, self.log, self.dhcp, self.portal):
            service.setServiceParent(top)
        return top

    def test_each_after_the_one_before_is_ready(self):
        """
        A service starts only once the one before it is ready: nothing
        answers clients before the firewall is in place. One without
        when_ready() does not hold back the next.
        """
        top = self.build()
        top.startService()
        self.assertEqual(self.events, ["start firewall"])
        self.firewall.readiness.fire()
        self.assertEqual(self.events, ["start firewall", "start log", "start dhcp"])
        self.dhcp.readiness.fire()
        self.assertEqual(self.events[-1], "start portal")
        self.portal.readiness.fire()
        self.assertTrue(all(s.running for s in top))

    def test_already_ready(self):
        """
        A service ready as soon as it starts lets the next start at once.
        """
        top = self.build()
        for service in (self.firewall, self.dhcp):
            service.readiness.fire()
        top.startService()
        self.assertEqual(self.events, ["start firewall", "start log", "start dhcp",
                                       "start portal"])

    def test_stop_before_ready(self):
        """
        Stopped while one is not ready yet, it stops those that started
        (last first) and starts no more.
        """
        top = self.build()
        top.startService()
        self.firewall.readiness.fire()
        d = top.stopService()
        self.successResultOf(d)
        self.assertEqual(self.events, ["start firewall", "start log", "start dhcp",
                                       "stop dhcp", "stop log", "stop firewall"])
        self.dhcp.readiness.fire()
        self.assertFalse(self.portal.running)


STDOUT_APART = """
import os, sys
sys.path.insert(0, sys.argv[1])
from netsuite.process import stdout_apart
if sys.argv[2] == "apart":
    stdout_apart()
# what python-iptables does to read a rule's parameters: fd 1 a pipe for a moment
saved = os.dup(1)
pipe = os.pipe()
os.dup2(pipe[1], 1)
sys.stdout.write("a log line\\n")
sys.stdout.flush()
os.close(pipe[1])
os.dup2(saved, 1)
os.set_blocking(pipe[0], False)
try:
    captured = os.read(pipe[0], 1024)
except BlockingIOError:
    captured = b""
sys.stderr.write(repr(captured))
"""


class StdoutApartTests(SynchronousTestCase):
    def run_child(self, mode):
        import subprocess
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        done = subprocess.run([sys.executable, "-c", STDOUT_APART, root, mode],
                              capture_output=True, timeout=60)
        return done.stdout, done.stderr

    def test_log_lines_miss_iptc_pipe(self):
        """
        With stdout_apart, a line written while python-iptables has fd 1
        pointed at its pipe reaches the real standard output, not the
        pipe (where it garbled the rule read back, or failed with
        BrokenPipeError once the pipe was closed).
        """
        out, captured = self.run_child("apart")
        self.assertEqual((out, captured), (b"a log line\n", b"b''"))

    def test_without(self):
        """
        Without it, the line lands in python-iptables' pipe (the soak's
        "chain ... has other rules" and BrokenPipeError).
        """
        out, captured = self.run_child("plain")
        self.assertEqual((out, captured), (b"", b"b'a log line\\n'"))
