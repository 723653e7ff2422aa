"""
Tests for netsuite.lab.child.Child: real child processes on the host (no
namespace, no root), their lines awaited blocking and as Deferreds, the
stacks of a daemon that does not answer, and a stop that leaves nothing.
"""

import os
import select
import signal
import sys
import textwrap

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netsuite.lab.child import PACKAGE_ROOT, STACK_MARKER, Child, ChildError

# Prints its argv's lines, then one line per line read on stdin, and exits
# at EOF with status 3 (or stays with "hang").
ECHO = textwrap.dedent("""
    import sys
    for word in sys.argv[1:]:
        if word != "hang":
            print(word, flush=True)
    for line in sys.stdin:
        print("got " + line.strip(), flush=True)
    if "hang" in sys.argv:
        import signal
        while True:
            signal.pause()  # until a signal ends it
    sys.exit(3)
""")

# A process that dumps its threads' stacks on SIGUSR1, as netsuite daemons do.
DUMPS = textwrap.dedent("""
    import faulthandler, signal, sys
    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    print("up", flush=True)
    while True:
        signal.pause()  # a dump (SIGUSR1) comes back here; SIGTERM ends it
""")

# Starts a grandchild (sleep) in its process group, prints its pid, ignores SIGTERM.
PARENT = textwrap.dedent("""
    import signal, subprocess, sys
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleeper = subprocess.Popen(["sleep", "600"])  # a grandchild that outlives a SIGTERM
    print("grandchild", sleeper.pid, flush=True)
    while True:
        signal.pause()  # SIGTERM is ignored: only SIGKILL ends it
""")


def gone(pid):
    """Whether C{pid} has exited (reaped, or a zombie nobody reaps)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def python(*args, **kw):
    return Child([sys.executable, "-c", *args], label="test child", **kw)


class BlockingTests(SynchronousTestCase):
    """
    Child without a reactor: start, wait_for_line, stop.
    """

    def start(self, child):
        self.addCleanup(child.stop, 0)
        return child.start()

    def test_line(self):
        """
        wait_for_line returns the matching lines, from a line number on;
        lines and line_count tell what was printed.
        """
        child = self.start(python(ECHO, "one", "ready 1", "ready 2", stdin=True))
        self.assertEqual(child.wait_for_line("^ready"), ["ready 1"])
        self.assertEqual(child.wait_for_line("^ready", count=2), ["ready 1", "ready 2"])
        self.assertEqual(child.wait_for_line("^ready", after=2), ["ready 2"])
        child.send("more\n")
        self.assertEqual(child.wait_for_line("^got"), ["got more"])
        self.assertEqual(child.line_count, 4)
        self.assertEqual(child.lines(after=3), ["got more"])
        self.assertEqual(child.output(), "one\nready 1\nready 2\ngot more")

    def test_cpu_seconds(self):
        """
        cpu_seconds is the CPU time the process has used: more than none
        after a busy loop, NaN before the start and once it is gone.
        """
        child = python("import sys, time\nend = time.process_time() + 0.2\n"
                       "while time.process_time() < end: pass\nprint('busy', flush=True)\n"
                       "sys.stdin.readline()\n", stdin=True)
        self.assertNotEqual(child.cpu_seconds(), child.cpu_seconds())  # NaN
        self.start(child)
        child.wait_for_line("^busy$")
        self.assertGreaterEqual(child.cpu_seconds(), 0.1)
        child.stop(5)
        self.assertNotEqual(child.cpu_seconds(), child.cpu_seconds())

    def test_exited_first(self):
        """
        A child that exits before printing the line fails the wait with its
        exit status and its last lines.
        """
        child = self.start(python(ECHO, "oops"))
        error = self.assertRaises(ChildError, child.wait_for_line, "never", 30)
        self.assertIn("test child exited (3) before printing 'never'", str(error))
        self.assertIn("oops", str(error))
        self.assertEqual(child.returncode, 3)

    def test_deadline(self):
        """
        A wait in vain fails at its deadline with the child's output.
        """
        child = self.start(python(ECHO, "hello", "hang"))
        error = self.assertRaises(ChildError, child.wait_for_line, "never", 0.2, 0, 2)
        self.assertIn("stayed silent for 0.2 s before printing 'never' (0/2)", str(error))
        self.assertIn("hello", str(error))

    def test_stacks_on_deadline(self):
        """
        A child that dumps its stacks on SIGUSR1 (a netsuite daemon) is
        asked to before a wait fails: the stacks are in the error.
        """
        child = self.start(python(DUMPS, dumps_stacks=True))
        child.wait_for_line("^up")
        error = self.assertRaises(ChildError, child.wait_for_line, "never", 0.1)
        self.assertIn(STACK_MARKER, str(error))
        self.assertIn("in <module>", str(error))

    def test_twistd_dumps_stacks(self):
        """
        A twistd child is taken for a netsuite daemon, anything else not.
        """
        self.assertTrue(Child(["ip", "netns", "exec", "x", "/v/bin/twistd", "-n"]).dumps_stacks)
        self.assertFalse(Child(["udhcpc", "-f"]).dumps_stacks)

    def test_stop(self):
        """
        stop() ends a child that ignores SIGTERM (SIGKILL after the grace
        time) with what it started in its process group, reaps it, and can
        be called again; before start it does nothing.
        """
        self.assertIsNone(python(ECHO).stop())
        child = self.start(python(PARENT))
        grandchild = os.pidfd_open(int(child.wait_for_line("^grandchild")[0].split()[1]))
        self.addCleanup(os.close, grandchild)
        self.assertEqual(child.stop(0.2), -signal.SIGKILL)
        self.assertFalse(child.running)
        # A pidfd is readable once its process has exited.
        self.assertEqual(select.select([grandchild], [], [], 10)[0], [grandchild])
        self.assertEqual(child.stop(), -signal.SIGKILL)

    def test_stop_terminates(self):
        """
        A child that honours SIGTERM ends with it.
        """
        child = self.start(python(ECHO, "hello", "hang"))
        child.wait_for_line("hello")
        self.assertEqual(child.stop(), -signal.SIGTERM)

    def test_signal(self):
        """
        signal() takes a number or a name; sent to an exited child it does
        nothing; to a child never started it fails.
        """
        child = self.start(python(ECHO, "hello", "hang"))
        child.wait_for_line("hello")
        child.signal("KILL")
        self.assertEqual(child.stop(), -signal.SIGKILL)
        child.signal(signal.SIGTERM)
        self.assertRaises(ChildError, python(ECHO).signal, "TERM")

    def test_environment(self):
        """
        The child has the checkout first on PYTHONPATH, unbuffered output,
        the extra variables and the working directory asked for.
        """
        child = self.start(python(
            "import os; print(os.environ['PYTHONPATH'].split(os.pathsep)[0], "
            "os.environ['PYTHONUNBUFFERED'], os.environ['EXTRA'], os.getcwd())",
            env={"EXTRA": "yes"}, cwd="/"))
        child.wait_for_line(".")
        self.assertEqual(child.lines(), [f"{PACKAGE_ROOT} 1 yes /"])

    def test_keep(self):
        """
        With keep, only about the last lines are kept; line numbers count
        them all.
        """
        child = self.start(python("for i in range(1000): print(i)\nprint('end')", keep=10))
        child.wait_for_line("^end")
        self.assertEqual(child.line_count, 1001)
        kept = child.lines()
        self.assertLessEqual(len(kept), 20)
        self.assertEqual(kept[-2:], ["999", "end"])
        self.assertEqual(child.lines(after=999), ["999", "end"])

    def test_no_reactor(self):
        """
        A child made without a reactor cannot give Deferreds.
        """
        child = self.start(python(ECHO, "hang"))
        self.assertRaises(ChildError, child.when_line, ".")
        self.assertRaises(ChildError, child.when_ended)


class DeferredTests(TestCase):
    """
    Child with the reactor: when_line and when_ended.
    """

    timeout = 60

    def start(self, *args, **kw):
        child = python(*args, reactor=reactor, **kw)
        self.addCleanup(child.stop, 0)
        return child.start()

    @inlineCallbacks
    def test_when_line(self):
        """
        when_line fires with a line printed later, or at once with one
        printed already; each call gets a Deferred of its own.
        """
        child = self.start(ECHO, "hello", stdin=True)
        first = yield child.when_line("^hello")
        later = child.when_line("^got")
        self.assertNoResult(later)
        child.send("go\n")
        self.assertEqual((yield later), "got go")
        self.assertEqual(first, "hello")
        again = child.when_line("^hello")
        self.assertEqual(self.successResultOf(again), "hello")
        self.assertIsNot(again, child.when_line("^hello"))

    @inlineCallbacks
    def test_when_line_after(self):
        """
        when_line from a line number on skips the matching lines before it.
        """
        child = self.start(ECHO, "tick", stdin=True)
        yield child.when_line("tick")
        waiting = child.when_line("^got", after=child.line_count + 1)
        child.send("1\n")
        yield child.when_line("^got 1")
        self.assertNoResult(waiting)
        child.send("2\n")
        self.assertEqual((yield waiting), "got 2")

    @inlineCallbacks
    def test_exited_first(self):
        """
        A child that exits first fails the Deferred with its status and its
        output; asked after it ended, too.
        """
        child = self.start(ECHO, "oops", stdin=True)
        waiting = child.when_line("never")
        yield child.when_line("oops")
        child.process.stdin.close()
        error = yield self.assertFailure(waiting, ChildError)
        self.assertIn("exited (3) before printing 'never'", str(error))
        self.assertIn("oops", str(error))
        self.assertEqual((yield child.when_ended()), 3)
        self.failureResultOf(child.when_line("never"), ChildError)

    @inlineCallbacks
    def test_deadline_with_stacks(self):
        """
        At its deadline a Deferred fails; a daemon's stacks are in the error.
        """
        child = self.start(DUMPS, dumps_stacks=True)
        yield child.when_line("^up")
        error = yield self.assertFailure(child.when_line("never", timeout=0.1), ChildError)
        self.assertIn("stayed silent for 0.1 s before printing 'never'", str(error))
        self.assertIn(STACK_MARKER, str(error))

    @inlineCallbacks
    def test_cancel(self):
        """
        A cancelled wait is withdrawn: its timer goes with it.
        """
        child = self.start(ECHO, "hang")
        waiting = child.when_line("never", timeout=600)
        waiting.cancel()
        yield self.assertFailure(waiting, CancelledError)
        self.assertEqual([c for c in reactor.getDelayedCalls() if c.active()
                          and c.func == child._expire], [])

    def test_no_blocking_in_the_reactor(self):
        """
        A child made with the reactor refuses to block its thread.
        """
        child = self.start(ECHO, "hello", "hang")
        error = self.assertRaises(ChildError, child.wait_for_line, "hello")
        self.assertIn("use when_line", str(error))

    @inlineCallbacks
    def test_when_ended(self):
        """
        when_ended fires with the exit status, negative for a signal, for
        every caller, always on a later reactor turn.
        """
        child = self.start(ECHO, "hang")
        first, second = child.when_ended(), child.when_ended()
        child.signal("KILL")
        self.assertEqual((yield first), -signal.SIGKILL)
        self.assertEqual((yield second), -signal.SIGKILL)
        self.assertTrue(gone(child.pid))
        late = child.when_ended()
        self.assertNoResult(late)  # on a later turn, even now: the reactor polls first
        self.assertEqual((yield late), -signal.SIGKILL)
