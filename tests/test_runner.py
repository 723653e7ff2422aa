"""
The runners: one contract for the thread runner and the fakes, and the
thread runner's own promises (order with one thread, calls side by side
with more, off the reactor thread, stopped at shutdown).
"""

import sqlite3
import threading

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from netsuite.runner import GroupCommit, IRunner, RunnerStopped, ThreadRunner
from netsuite.testing import HeldRunner, SyncRunner


def boom():
    raise KeyError("boom")


class RunnerContract:
    """
    What every L{IRunner} does. Subclasses make C{self.runner} and say how
    to get a Deferred's outcome (C{self.outcome(d)}: a Deferred).
    """

    def test_interface(self):
        """
        The runner provides L{IRunner}.
        """
        self.assertTrue(verifyObject(IRunner, self.runner))

    @inlineCallbacks
    def test_result(self):
        """
        C{run(fn, *args)} fires with C{fn(*args)}.
        """
        result = yield self.outcome(self.runner.run(divmod, 17, 5))
        self.assertEqual(result, (3, 2))

    @inlineCallbacks
    def test_error(self):
        """
        What C{fn} raises is the Deferred's failure.
        """
        d = self.outcome(self.runner.run(boom))
        yield self.assertFailure(d, KeyError)

    @inlineCallbacks
    def test_stopped(self):
        """
        After C{stop} (twice is harmless), a call fails with L{RunnerStopped}.
        """
        self.runner.stop()
        self.runner.stop()
        yield self.assertFailure(self.outcome(self.runner.run(divmod, 1, 1)), RunnerStopped)


class ThreadRunnerTests(RunnerContract, TestCase):
    timeout = 10

    def setUp(self):
        self.runner = ThreadRunner(reactor, threads=1, name="test-runner")
        self.addCleanup(self.runner.stop)

    def outcome(self, d):
        return d

    @inlineCallbacks
    def test_offReactorThread(self):
        """
        Calls run in a thread of the runner's own, named after it, not in
        the reactor's thread.
        """
        name = yield self.runner.run(lambda: threading.current_thread().name)
        self.assertNotEqual(name, threading.current_thread().name)
        self.assertIn("test-runner", name)

    @inlineCallbacks
    def test_serialOrder(self):
        """
        With one thread, calls run one at a time in call order.
        """
        seen = []
        running = []

        def step(i):
            running.append(i)
            assert len(running) == 1, running
            seen.append(i)
            running.remove(i)
        yield self.runner.run(lambda: None)
        yield gatherResults([self.runner.run(step, i) for i in range(50)])
        self.assertEqual(seen, list(range(50)))

    @inlineCallbacks
    def test_pooled(self):
        """
        With more threads, calls run side by side: two calls that each wait
        for the other both finish.
        """
        pooled = ThreadRunner(reactor, threads=2, name="test-pooled")
        self.addCleanup(pooled.stop)
        barrier = threading.Barrier(2, timeout=5)
        results = yield gatherResults([pooled.run(barrier.wait), pooled.run(barrier.wait)])
        self.assertEqual(sorted(results), [0, 1])

    def stop_in_thread(self, runner):
        """
        Call C{runner.stop()} in a thread of its own; return whether it
        returned (within a generous guard, so that a stop that blocks fails
        the test instead of hanging it).
        """
        stopping = threading.Thread(target=runner.stop, daemon=True)
        stopping.start()
        stopping.join(10)
        return not stopping.is_alive()

    @inlineCallbacks
    def test_stopLeavesRunningReads(self):
        """
        A runner of reads (C{finish=False}) runs its calls in daemon threads
        and its C{stop} returns while a call is still blocked (a hung
        directory): the process's stop and exit do not wait for it.
        """
        reads = ThreadRunner(reactor, threads=2, name="test-reads", finish=False)
        release = threading.Event()
        self.addCleanup(release.set)
        daemon = yield reads.run(lambda: threading.current_thread().daemon)
        self.assertTrue(daemon)
        started = threading.Event()

        def hung():
            started.set()
            release.wait(30)
        blocked = reads.run(hung)
        self.assertTrue(started.wait(10))
        self.assertTrue(self.stop_in_thread(reads))
        self.assertFalse(blocked.called)
        release.set()
        yield blocked

    @inlineCallbacks
    def test_stopFinishesRunningWrites(self):
        """
        A runner of writes (the default) waits in C{stop} for the call that
        is running: a commit is done before the process exits.
        """
        writes = ThreadRunner(reactor, name="test-writes")
        release = threading.Event()
        self.addCleanup(release.set)
        daemon = yield writes.run(lambda: threading.current_thread().daemon)
        self.assertFalse(daemon)
        started = threading.Event()
        done = []

        def commit():
            started.set()
            release.wait(30)
            done.append(True)
        writes.run(commit)
        self.assertTrue(started.wait(10))
        seen = []

        def stop():
            writes.stop()
            seen.append(list(done))  # what was done when stop returned
        stopping = threading.Thread(target=stop, daemon=True)
        stopping.start()
        release.set()
        stopping.join(10)
        self.assertEqual(seen, [[True]])

    def test_atLeastOneThread(self):
        """
        A runner of no threads is refused.
        """
        self.assertRaises(ValueError, ThreadRunner, reactor, threads=0)


class SyncRunnerTests(RunnerContract, TestCase):
    def setUp(self):
        self.runner = SyncRunner()

    def outcome(self, d):
        return d

    def test_atOnce(self):
        """
        The Deferred has fired when C{run} returns.
        """
        self.assertEqual(self.successResultOf(self.runner.run(divmod, 7, 2)), (3, 1))


class HeldRunnerTests(RunnerContract, TestCase):
    def setUp(self):
        self.runner = HeldRunner()

    def outcome(self, d):
        while self.runner.calls:
            self.runner.run_next()
        return d

    def test_waits(self):
        """
        Nothing runs until the test says so, then the oldest call runs.
        """
        calls = []
        first = self.runner.run(calls.append, 1)
        second = self.runner.run(calls.append, 2)
        self.assertNoResult(first)
        self.runner.run_next()
        self.assertEqual(calls, [1])
        self.successResultOf(first)
        self.assertNoResult(second)
        self.runner.run_next(fail_with=KeyError("x"))
        self.failureResultOf(second, KeyError)
        self.assertEqual(calls, [1])


class Store:
    """
    Queued writes, committed in batches.
    """

    def __init__(self):
        self.queued = []
        self.committed = []

    def take(self):
        writes, self.queued = self.queued, []
        return writes

    def commit(self, writes, durable):
        if "bad" in writes:
            raise OSError("disk full")
        self.committed.append((writes, durable))


class GroupCommitTests(SynchronousTestCase):
    """
    L{GroupCommit}: one commit at a time; what is queued meanwhile goes
    into the next; a waiter learns whether its writes are on disk.
    """

    def setUp(self):
        self.store = Store()
        self.runner = HeldRunner()
        self.group = GroupCommit(self.store.take, self.store.commit, self.runner, "writes")

    def test_batches(self):
        """
        Writes queued while a commit runs share the next commit; every
        waiter fires once its writes are committed, durable when waited on.
        """
        self.store.queued.append("a")
        first = self.group.durable()
        self.store.queued += ["b", "c"]
        second = self.group.durable()
        self.group.flush()
        self.assertEqual(len(self.runner.calls), 1)
        self.runner.run_next()
        self.assertTrue(self.successResultOf(first))
        self.assertNoResult(second)
        self.runner.run_next()
        self.assertTrue(self.successResultOf(second))
        self.assertEqual(self.store.committed, [(["a"], True), (["b", "c"], True)])

    def test_flushNotDurable(self):
        """
        A flush nobody waits on commits without asking for an fsync; with
        nothing queued it does nothing.
        """
        self.group.flush()
        self.assertEqual(self.runner.calls, [])
        self.store.queued.append("a")
        self.group.flush()
        self.runner.run_next()
        self.assertEqual(self.store.committed, [(["a"], False)])

    def test_failure(self):
        """
        A failed commit is logged and its waiters get False; the next
        commit goes on.
        """
        self.store.queued.append("bad")
        failed = self.group.durable()
        self.runner.run_next()
        self.assertFalse(self.successResultOf(failed))
        self.store.queued.append("good")
        ok = self.group.durable()
        self.runner.run_next()
        self.assertTrue(self.successResultOf(ok))


class FullDisk:
    """
    A store on a disk that fills and empties: C{commit} raises what
    sqlite3 raises on a full disk while C{full}; C{give_back} queues a
    failed commit's writes under the newer ones (keyed writes, as the
    lease and session stores keep them).
    """

    def __init__(self):
        self.queued = {}
        self.committed = []
        self.full = False

    def take(self):
        writes, self.queued = self.queued, {}
        return writes

    def give_back(self, writes):
        for key, value in writes.items():
            self.queued.setdefault(key, value)

    def commit(self, writes, durable):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        self.committed.append(dict(writes))


class GroupCommitFullDiskTests(SynchronousTestCase):
    """
    L{GroupCommit} on a full disk: nothing queued is lost, one error line
    per run of failures, and commits work again by themselves once there
    is space.
    """

    def setUp(self):
        self.clock = Clock()
        self.store = FullDisk()
        self.runner = HeldRunner()
        self.group = GroupCommit(self.store.take, self.store.commit, self.runner, "writes",
                                 give_back=self.store.give_back, clock=self.clock,
                                 retry_after=5.0)
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def lines(self, level):
        return [formatEvent(e) for e in self.logged if e.get("log_level") == level]

    def test_failedWritesKept(self):
        """
        The writes of a failed commit go back in the queue, under a newer
        change of the same key, and are in the next commit.
        """
        self.store.full = True
        self.store.queued.update(a=1, b=1)
        self.assertFalse(self.outcome(self.group.durable()))
        self.store.full = False
        self.store.queued.update(b=2)
        self.assertTrue(self.outcome(self.group.durable()))
        self.assertEqual(self.store.committed, [{"a": 1, "b": 2}])

    def test_oneErrorLine(self):
        """
        Three failed commits in a row log one error, naming the reason;
        the first commit that works logs that it works again, with the
        count; failures counts all three.
        """
        self.store.full = True
        for n in range(3):
            self.store.queued[n] = n
            self.assertFalse(self.outcome(self.group.durable()))
        [error] = self.lines(LogLevel.error)
        self.assertIn("could not store 1 writes: OperationalError: database or disk is full",
                      error)
        self.assertEqual((self.group.failures, self.group.failing), (3, True))
        self.store.full = False
        self.assertTrue(self.outcome(self.group.durable()))
        self.assertEqual(self.group.failing, False)
        self.assertEqual(self.store.committed, [{0: 0, 1: 1, 2: 2}])
        self.assertIn("stored writes again, after 3 failed commits",
                      self.lines(LogLevel.info)[-1])
        self.store.full = True
        self.store.queued["c"] = 1
        self.outcome(self.group.durable())
        self.assertEqual(len(self.lines(LogLevel.error)), 2)  # a new run of failures

    def test_noBusyLoop(self):
        """
        While commits fail, writes nobody waits for are not retried at
        once (no loop of failing commits): a flush does nothing until the
        retry time, which commits them once there is space.
        """
        self.store.full = True
        self.store.queued["a"] = 1
        self.group.flush()
        self.runner.run_next()
        self.assertEqual(self.runner.calls, [])
        self.store.queued["b"] = 1
        self.group.flush()
        self.assertEqual(self.runner.calls, [])
        self.clock.advance(5)
        self.runner.run_next()  # still full: fails, and is retried later
        self.assertEqual(self.runner.calls, [])
        self.store.full = False
        self.clock.advance(5)
        self.runner.run_next()
        self.assertEqual(self.store.committed, [{"a": 1, "b": 1}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiterRetriesAtOnce(self):
        """
        A waiter does not wait for the retry time: its durable() commits
        at once, with the failed writes.
        """
        self.store.full = True
        self.store.queued["a"] = 1
        self.outcome(self.group.durable())
        self.store.full = False
        self.store.queued["b"] = 1
        self.assertTrue(self.outcome(self.group.durable()))
        self.assertEqual(self.store.committed, [{"a": 1, "b": 1}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stoppedRunnerNoRetry(self):
        """
        A commit refused by a stopped runner (shutdown) is not retried.
        """
        self.runner.stop()
        self.store.queued["a"] = 1
        self.assertFalse(self.successResultOf(self.group.durable()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def outcome(self, d):
        while self.runner.calls:
            self.runner.run_next()
        return self.successResultOf(d)


class ThreadRunnerShutdownTests(SynchronousTestCase):
    def test_stopsAtShutdown(self):
        """
        The runner stops its threads at the reactor's shutdown: a trigger
        is added on first use and removed by an explicit stop.
        """
        triggers = []

        class FakeReactor(Clock):
            def addSystemEventTrigger(self, phase, event, fn):
                triggers.append((phase, event, fn))
                return len(triggers)

            def removeSystemEventTrigger(self, handle):
                triggers.pop(handle - 1)

            def callFromThread(self, fn, *args):
                fn(*args)

        runner = ThreadRunner(FakeReactor(), name="test-shutdown")
        runner.run(lambda: None)
        self.assertEqual([(p, e) for p, e, _ in triggers], [("during", "shutdown")])
        triggers[0][2]()  # the shutdown: stops the pool
        self.failureResultOf(runner.run(lambda: None), RunnerStopped)
