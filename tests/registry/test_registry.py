# -*- test-case-name: tests.registry.test_registry -*-
"""
Tests for L{netsuite.registry.registry}, L{netsuite.registry.mailbox} and
L{netsuite.registry.interfaces}: mailboxes, chains of listeners, verdicts,
watchers, waiters and counters. Time is a L{Clock}; no reactor runs.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Dict, List, Tuple

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite.registry import (CONTINUE, DECISION, EVENT, NO_ANSWER, Continue,
                               IListenerHandle, IRegistry, InvalidAddress, ListenerError, MailboxExists,
                               Registry, Remember, Stop, UnknownMailbox, parse_address)
from netsuite.registry.mailbox import MAX_REASONS
from netsuite.registry.values import MAC, InvalidValue

LEASE = "/dhcp/lease"
SEEN = "/dhcp/seen"


def make_registry(name: str = "dhcp", peers: Any = None,
                  default_deadline: float = 2.0) -> Tuple[Registry, Clock]:
    """
    A registry on a fresh L{Clock}, with the decision mailbox L{LEASE} and
    the event mailbox L{SEEN}.
    """
    clock = Clock()
    registry = Registry(name, clock, peers=peers, default_deadline=default_deadline)
    registry.declare(LEASE, doc="Which address for this client?")
    registry.declare(SEEN, kind=EVENT, doc="A client was seen.")
    return registry, clock


class Recorder:
    """
    A listener that records its messages and answers a fixed verdict.
    """

    def __init__(self, verdict: Any = CONTINUE) -> None:
        self.verdict = verdict
        self.messages: List[Dict[str, Any]] = []

    def __call__(self, message: Dict[str, Any]) -> Any:
        self.messages.append(message)
        return self.verdict


class InterfaceTests(SynchronousTestCase):
    """
    L{Registry} provides L{IRegistry}; its listener handles provide
    L{IListenerHandle}.
    """

    def test_verifyRegistry(self) -> None:
        """
        L{Registry} fully provides L{IRegistry}.
        """
        registry, clock = make_registry()
        self.assertTrue(verifyObject(IRegistry, registry))

    def test_verifyHandle(self) -> None:
        """
        L{Registry.listen} returns an L{IListenerHandle} whose C{attached}
        has already fired with it.
        """
        registry, clock = make_registry()
        handle = registry.listen(LEASE, Recorder())
        self.assertTrue(verifyObject(IListenerHandle, handle))
        self.assertIs(self.successResultOf(handle.attached), handle)
        self.assertEqual(handle.address, LEASE)


class VerdictTests(SynchronousTestCase):
    """
    L{Stop}, L{CONTINUE} and L{NO_ANSWER}.
    """

    def test_stopEquality(self) -> None:
        """
        Two L{Stop}s are equal when their values are, and hash alike.
        """
        self.assertEqual(Stop(1), Stop(1))
        self.assertNotEqual(Stop(1), Stop(2))
        self.assertNotEqual(Stop(1), 1)
        self.assertEqual(hash(Stop([1])), hash(Stop([1])))
        self.assertEqual(repr(Stop("x")), "Stop('x')")

    def test_noAnswerIsFalse(self) -> None:
        """
        L{NO_ANSWER} is false and distinct from C{None}.
        """
        self.assertFalse(NO_ANSWER)
        self.assertIsNot(NO_ANSWER, None)
        self.assertEqual(repr(NO_ANSWER), "NO_ANSWER")
        self.assertEqual(repr(CONTINUE), "CONTINUE")


class AddressTests(SynchronousTestCase):
    """
    L{parse_address} splits C{process:/path}; L{join_address} makes one.
    """

    def test_join(self) -> None:
        """
        A process named gives C{process:/path}; none, or the caller's own,
        gives the bare path.
        """
        from netsuite.registry.interfaces import join_address
        self.assertEqual(join_address("dhcp", "/dhcp/options"), "dhcp:/dhcp/options")
        self.assertEqual(join_address("", "/dhcp/options"), "/dhcp/options")
        self.assertEqual(join_address("ap", "/dhcp/options", "ap"), "/dhcp/options")
        self.assertEqual(join_address("dhcp", "/dhcp/options", "ap"), "dhcp:/dhcp/options")

    def test_local(self) -> None:
        """
        A bare path names this process.
        """
        self.assertEqual(parse_address("/dhcp/lease"), (None, "/dhcp/lease"))

    def test_process(self) -> None:
        """
        C{process:/path} names a process and a path.
        """
        self.assertEqual(parse_address("proc:/path"), ("proc", "/path"))
        self.assertEqual(parse_address("mail-proxy.2:/a/b_c/d.e+f"),
                         ("mail-proxy.2", "/a/b_c/d.e+f"))

    def test_invalid(self) -> None:
        """
        Anything else raises L{InvalidAddress} quoting the address.
        """
        for bad in ("", "/", "path", "/a/", "/a//b", "proc:", "proc:path", ":/a",
                    "-proc:/a", "a b:/c", "/a b", "p:q:/a", None, b"/a"):
            error = self.assertRaises(InvalidAddress, parse_address, bad)
            self.assertIn(repr(bad), str(error))

    def test_registryName(self) -> None:
        """
        A registry's name must be a process name.
        """
        self.assertRaises(InvalidAddress, Registry, "bad name", Clock())
        self.assertRaises(InvalidAddress, Registry, "", Clock())


class DeclareTests(SynchronousTestCase):
    """
    L{Registry.declare} creates mailboxes; unknown ones are errors.
    """

    def test_twice(self) -> None:
        """
        Declaring a path twice raises L{MailboxExists}.
        """
        registry, clock = make_registry()
        self.assertRaises(MailboxExists, registry.declare, LEASE)

    def test_kind(self) -> None:
        """
        A kind other than L{DECISION} or L{EVENT} is refused.
        """
        registry, clock = make_registry()
        error = self.assertRaises(ValueError, registry.declare, "/x", kind="broadcast")
        self.assertIn("'broadcast'", str(error))

    def test_ownName(self) -> None:
        """
        A process may declare C{itself:/path} but not another process's path.
        """
        registry, clock = make_registry("dhcp")
        registry.declare("dhcp:/own")
        self.assertEqual(registry.mailbox("/own").path, "/own")
        self.assertRaises(InvalidAddress, registry.declare, "portal:/theirs")
        self.assertRaises(InvalidAddress, registry.declare, "no-slash")

    def test_sendUnknown(self) -> None:
        """
        Sending to an undeclared mailbox fails with L{UnknownMailbox} naming
        the process and the path.
        """
        registry, clock = make_registry()
        failure = self.failureResultOf(registry.send("/nope", {}), UnknownMailbox)
        self.assertIn("process dhcp has no mailbox /nope", str(failure.value))

    def test_sendInvalidAddress(self) -> None:
        """
        Sending to a malformed address fails with L{InvalidAddress}.
        """
        registry, clock = make_registry()
        self.failureResultOf(registry.send("nope", {}), InvalidAddress)

    def test_listenUnknown(self) -> None:
        """
        Listening or watching on an undeclared mailbox raises L{UnknownMailbox}.
        """
        registry, clock = make_registry()
        self.assertRaises(UnknownMailbox, registry.listen, "/nope", Recorder())
        self.assertRaises(UnknownMailbox, registry.watch, "/nope", Recorder())
        self.failureResultOf(registry.wait_for("/nope"), UnknownMailbox)

    def test_noPeers(self) -> None:
        """
        Without C{peers}, an address naming another process is an
        L{InvalidAddress}.
        """
        registry, clock = make_registry()
        failure = self.failureResultOf(registry.send("portal:/x", {}), InvalidAddress)
        self.assertIn("reaches no other process", str(failure.value))


class ChainTests(SynchronousTestCase):
    """
    A decision mailbox runs its listeners in order until one stops the chain.
    """

    def setUp(self) -> None:
        self.registry, self.clock = make_registry()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_noListeners(self) -> None:
        """
        With no listener, a send fires with L{NO_ANSWER} at once.
        """
        self.assertIs(self.successResultOf(self.registry.send(LEASE)), NO_ANSWER)

    def test_stop(self) -> None:
        """
        The value of the first L{Stop} is the result; later listeners are
        not called.
        """
        later = Recorder(Stop("later"))
        self.registry.listen(LEASE, Recorder(Stop(IPv4Address("10.0.0.9"))))
        self.registry.listen(LEASE, later)
        result = self.successResultOf(self.registry.send(LEASE, {"mac": MAC("aabbccddeeff")}))
        self.assertEqual(result, IPv4Address("10.0.0.9"))
        self.assertEqual(later.messages, [])

    def test_continue(self) -> None:
        """
        L{CONTINUE} passes the message on to the next listener.
        """
        first, second = Recorder(CONTINUE), Recorder(Stop(2))
        self.registry.listen(LEASE, first)
        self.registry.listen(LEASE, second)
        message = {"n": 1}
        self.assertEqual(self.successResultOf(self.registry.send(LEASE, message)), 2)
        self.assertEqual(first.messages, [message])
        self.assertEqual(second.messages, [message])

    def test_noAnswer(self) -> None:
        """
        When every listener continues, the send fires with L{NO_ANSWER}.
        """
        recorders = [Recorder(), Recorder()]
        for recorder in recorders:
            self.registry.listen(LEASE, recorder)
        self.assertIs(self.successResultOf(self.registry.send(LEASE, {"a": 1})), NO_ANSWER)
        self.assertEqual([len(r.messages) for r in recorders], [1, 1])

    def test_defaultMessage(self) -> None:
        """
        A send without a message sends an empty map.
        """
        recorder = Recorder()
        self.registry.listen(LEASE, recorder)
        self.registry.send(LEASE)
        self.assertEqual(recorder.messages, [{}])

    def test_order(self) -> None:
        """
        C{first=True} puts a listener before the others, the default puts it
        last.
        """
        calls: List[str] = []

        def named(name: str) -> Any:
            def listener(message: Any) -> Any:
                calls.append(name)
                return CONTINUE
            return listener

        self.registry.listen(LEASE, named("b"))
        self.registry.listen(LEASE, named("c"))
        self.registry.listen(LEASE, named("a"), first=True)
        self.registry.listen(LEASE, named("0"), first=True)
        self.registry.listen(LEASE, named("d"), first=False)
        self.registry.send(LEASE)
        self.assertEqual(calls, ["0", "a", "b", "c", "d"])

    def test_stopNone(self) -> None:
        """
        C{Stop(None)} is an answer: the send fires with C{None}, not
        L{NO_ANSWER}.
        """
        self.registry.listen(LEASE, Recorder(Stop(None)))
        self.assertIsNone(self.successResultOf(self.registry.send(LEASE)))

    def test_raises(self) -> None:
        """
        A listener that raises is logged, counted as an error and skipped.
        """
        def broken(message: Any) -> Any:
            raise ZeroDivisionError("boom")

        handle = self.registry.listen(LEASE, broken, tags={"owner": "test"})
        self.registry.listen(LEASE, Recorder(Stop("next")))
        self.assertEqual(self.successResultOf(self.registry.send(LEASE)), "next")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        failures = [e for e in self.log if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["listener"], handle.id)
        self.assertEqual(failures[0]["path"], LEASE)
        self.assertEqual(failures[0]["tags"], {"owner": "test"})
        self.assertEqual(handle.counters.errors, 1)
        self.assertEqual(self.registry.mailbox(LEASE).counters.errors, 1)

    def test_bareNone(self) -> None:
        """
        A listener that returns C{None} (or any non-verdict) is counted as
        an error, logged as a L{ListenerError} and skipped.
        """
        none = self.registry.listen(LEASE, Recorder(None))
        other = self.registry.listen(LEASE, Recorder("yes"))
        self.registry.listen(LEASE, Recorder(Stop("fallback")))
        self.assertEqual(self.successResultOf(self.registry.send(LEASE)), "fallback")
        errors = self.flushLoggedErrors(ListenerError)
        self.assertEqual(len(errors), 2)
        self.assertIn("listener returned None", str(errors[0].value))
        self.assertIn("listener returned 'yes'", str(errors[1].value))
        self.assertEqual((none.counters.errors, other.counters.errors), (1, 1))

    def test_stopInvalidValue(self) -> None:
        """
        A L{Stop} whose value is not a netsuite value counts as an error and
        the chain goes on.
        """
        bad = self.registry.listen(LEASE, Recorder(Stop({1, 2})))
        self.registry.listen(LEASE, Recorder(Stop("good")))
        self.assertEqual(self.successResultOf(self.registry.send(LEASE)), "good")
        errors = self.flushLoggedErrors(InvalidValue)
        self.assertEqual(len(errors), 1)
        self.assertIn("result: set is not a netsuite value", str(errors[0].value))
        self.assertEqual((bad.counters.errors, bad.counters.stops), (1, 0))

    def test_invalidMessage(self) -> None:
        """
        A message holding something that is not a netsuite value fails the
        send with L{InvalidValue}; no listener sees it.
        """
        recorder = Recorder()
        self.registry.listen(LEASE, recorder)
        failure = self.failureResultOf(self.registry.send(LEASE, {"a": {1, 2}}), InvalidValue)
        self.assertIn("message['a']", str(failure.value))
        self.failureResultOf(self.registry.send(LEASE, [1]), InvalidValue)  # type: ignore[arg-type]
        self.assertEqual(recorder.messages, [])

    def test_removedDuringDispatch(self) -> None:
        """
        Adding or removing a listener while a message is dispatched leaves
        that dispatch's chain as it was.
        """
        late = Recorder(Stop("late"))

        def adds(message: Any) -> Any:
            self.registry.listen(LEASE, late, first=True)
            victim.remove()
            return CONTINUE

        self.registry.listen(LEASE, adds)
        victim = self.registry.listen(LEASE, Recorder(Stop("victim")))
        self.assertEqual(self.successResultOf(self.registry.send(LEASE)), "victim")
        self.assertEqual(late.messages, [])


class DeferredListenerTests(SynchronousTestCase):
    """
    A listener may answer with a Deferred, bounded by its deadline.
    """

    def setUp(self) -> None:
        self.registry, self.clock = make_registry(default_deadline=2.0)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_answersLater(self) -> None:
        """
        The chain waits for a Deferred answer and resumes with it.
        """
        answer: Deferred[Any] = Deferred()
        after = Recorder(Stop("after"))
        self.registry.listen(LEASE, lambda message: answer)
        self.registry.listen(LEASE, after)
        d = self.registry.send(LEASE, {"x": 1})
        self.assertNoResult(d)
        self.clock.advance(1)
        answer.callback(CONTINUE)
        self.assertEqual(self.successResultOf(d), "after")
        self.assertEqual(after.messages, [{"x": 1}])

    def test_stopsLater(self) -> None:
        """
        A Deferred L{Stop} ends the chain with its value.
        """
        answer: Deferred[Any] = Deferred()
        after = Recorder(Stop("after"))
        self.registry.listen(LEASE, lambda message: answer)
        self.registry.listen(LEASE, after)
        d = self.registry.send(LEASE)
        answer.callback(Stop(b"\x00late"))
        self.assertEqual(self.successResultOf(d), b"\x00late")
        self.assertEqual(after.messages, [])

    def test_alreadyFired(self) -> None:
        """
        A Deferred that has already fired is used at once.
        """
        self.registry.listen(LEASE, lambda message: succeed(CONTINUE))
        self.registry.listen(LEASE, lambda message: succeed(Stop(3)))
        self.assertEqual(self.successResultOf(self.registry.send(LEASE)), 3)

    def test_fails(self) -> None:
        """
        A Deferred that fails is logged, counted as an error and skipped.
        """
        answer: Deferred[Any] = Deferred()
        handle = self.registry.listen(LEASE, lambda message: answer)
        self.registry.listen(LEASE, Recorder(Stop("next")))
        d = self.registry.send(LEASE)
        answer.errback(ZeroDivisionError())
        self.assertEqual(self.successResultOf(d), "next")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual((handle.counters.errors, handle.counters.timeouts), (1, 0))

    def test_deadline(self) -> None:
        """
        A Deferred not answered within the listener's deadline is cancelled,
        logged, counted as a timeout and skipped; the chain goes on.
        """
        answer: Deferred[Any] = Deferred()
        slow = self.registry.listen(LEASE, lambda message: answer, deadline=5.0)
        self.registry.listen(LEASE, Recorder(Stop("next")))
        d = self.registry.send(LEASE)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "next")
        self.assertTrue(answer.called)
        self.assertEqual((slow.counters.timeouts, slow.counters.errors), (1, 0))
        self.assertEqual(self.registry.mailbox(LEASE).counters.timeouts, 1)
        warnings = [e for e in self.log if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["listener"], slow.id)
        self.assertEqual(warnings[0]["deadline"], 5.0)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_defaultDeadline(self) -> None:
        """
        A listener that gave no deadline gets the registry's default.
        """
        handle = self.registry.listen(LEASE, lambda message: Deferred())
        self.assertEqual(handle.deadline, 2.0)
        d = self.registry.send(LEASE)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertIs(self.successResultOf(d), NO_ANSWER)
        self.assertEqual(handle.counters.timeouts, 1)

    def test_lateAnswerIgnored(self) -> None:
        """
        An answer arriving after the deadline changes nothing.
        """
        answer: Deferred[Any] = Deferred()
        self.registry.listen(LEASE, lambda message: answer, deadline=1.0)
        d = self.registry.send(LEASE)
        results: List[Any] = []
        d.addCallback(results.append)
        self.clock.advance(1.0)
        answer.callback(Stop("too late"))
        self.assertEqual(results, [NO_ANSWER])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_seconds(self) -> None:
        """
        The time a Deferred listener takes is added to its counters and the
        mailbox's, measured with the registry's clock.
        """
        answer: Deferred[Any] = Deferred()
        handle = self.registry.listen(LEASE, lambda message: answer)
        d = self.registry.send(LEASE)
        self.clock.advance(1.5)
        answer.callback(Stop(1))
        self.successResultOf(d)
        self.assertEqual(handle.counters.seconds, 1.5)
        self.assertEqual(self.registry.mailbox(LEASE).counters.seconds, 1.5)

    def test_manyPending(self) -> None:
        """
        Several messages may wait on the same listener at once; each gets
        its own answer.
        """
        answers: List[Deferred[Any]] = []

        def slow(message: Any) -> Deferred[Any]:
            answers.append(Deferred())
            return answers[-1]

        self.registry.listen(LEASE, slow)
        first = self.registry.send(LEASE, {"n": 1})
        second = self.registry.send(LEASE, {"n": 2})
        answers[1].callback(Stop(2))
        self.assertEqual(self.successResultOf(second), 2)
        self.assertNoResult(first)
        answers[0].callback(Stop(1))
        self.assertEqual(self.successResultOf(first), 1)


class RememberTests(SynchronousTestCase):
    """
    A listener added with C{remember_by} may answer L{Remember}: the mailbox
    gives the verdict again, without asking, to messages alike in those
    fields, until it expires.
    """

    def setUp(self) -> None:
        self.registry, self.clock = make_registry()
        self.stock = Recorder(Stop("pool"))

    def hook(self, verdict: Any, remember_by: Any = ("mac", "subnet")) -> Recorder:
        hook = Recorder(verdict)
        self.registry.listen(LEASE, hook, first=True, remember_by=remember_by)
        self.registry.listen(LEASE, self.stock)
        return hook

    def send(self, **message: Any) -> Any:
        return self.successResultOf(self.registry.send(LEASE, message))

    def test_stopRemembered(self) -> None:
        """
        A remembered L{Stop} answers the same client again without a call,
        and is counted as remembered.
        """
        hook = self.hook(Remember(Stop("10.0.0.5"), 60))
        self.assertEqual(self.send(mac="a", subnet="lan", requested=None), "10.0.0.5")
        self.assertEqual(self.send(mac="a", subnet="lan", requested="10.0.0.9"), "10.0.0.5")
        self.assertEqual(len(hook.messages), 1)
        listing = self.registry.describe(LEASE)[0]
        hook_counters = listing["listeners"][0]["counters"]
        self.assertEqual((hook_counters["messages"], hook_counters["remembered"],
                          hook_counters["stops"]), (2, 1, 2))
        self.assertEqual(listing["counters"]["remembered"], 1)
        self.assertEqual(listing["listeners"][0]["remember_by"], ["mac", "subnet"])

    def test_continueRemembered(self) -> None:
        """
        A remembered L{CONTINUE} passes the message on to the next listener
        without calling the hook.
        """
        hook = self.hook(Remember(CONTINUE, 60))
        self.assertEqual(self.send(mac="a", subnet="lan"), "pool")
        self.assertEqual(self.send(mac="a", subnet="lan"), "pool")
        self.assertEqual(len(hook.messages), 1)
        self.assertEqual(len(self.stock.messages), 2)

    def test_keyedByFields(self) -> None:
        """
        Another value in any C{remember_by} field is another key.
        """
        hook = self.hook(Remember(Stop("x"), 60))
        self.send(mac="a", subnet="lan")
        self.send(mac="b", subnet="lan")
        self.send(mac="a", subnet="guest")
        self.send(mac=MAC("02:00:00:00:00:01"), subnet="lan")
        self.send(mac=MAC("02:00:00:00:00:01"), subnet="lan")
        self.assertEqual(len(hook.messages), 4)

    def test_expires(self) -> None:
        """
        After its seconds the verdict is forgotten and the listener asked.
        """
        hook = self.hook(Remember(Stop("x"), 30))
        self.send(mac="a", subnet="lan")
        self.clock.advance(29)
        self.send(mac="a", subnet="lan")
        self.assertEqual(len(hook.messages), 1)
        self.clock.advance(1)
        self.send(mac="a", subnet="lan")
        self.assertEqual(len(hook.messages), 2)

    def test_deferredAnswerRemembered(self) -> None:
        """
        A L{Remember} that comes later, in a Deferred, is remembered too.
        """
        answers: List[Deferred[Any]] = []

        def later(message: Any) -> Deferred[Any]:
            answers.append(Deferred())
            return answers[-1]
        self.registry.listen(LEASE, later, first=True, remember_by=["mac"])
        d = self.registry.send(LEASE, {"mac": "a"})
        answers[0].callback(Remember(Stop("x"), 10))
        self.assertEqual(self.successResultOf(d), "x")
        self.assertEqual(self.send(mac="a"), "x")
        self.assertEqual(len(answers), 1)

    def test_notRememberedWithoutKey(self) -> None:
        """
        A listener added without C{remember_by} has its verdict taken and
        is asked every time.
        """
        hook = self.hook(Remember(Stop("x"), 60), remember_by=None)
        self.assertEqual(self.send(mac="a"), "x")
        self.assertEqual(self.send(mac="a"), "x")
        self.assertEqual(len(hook.messages), 2)

    def test_badSecondsNotRemembered(self) -> None:
        """
        Zero, negative, too long or non-numeric seconds: the verdict is
        taken, not remembered.
        """
        for seconds in (0, -1, 86401, float("nan"), "60", None):
            registry, _ = make_registry()
            hook = Recorder(Remember(Stop("x"), seconds))
            registry.listen(LEASE, hook, remember_by=["mac"])
            self.assertEqual(self.successResultOf(registry.send(LEASE, {"mac": "a"})), "x")
            self.assertEqual(self.successResultOf(registry.send(LEASE, {"mac": "a"})), "x")
            self.assertEqual(len(hook.messages), 2, seconds)

    def test_unhashableField(self) -> None:
        """
        A message whose key field holds a list is answered by the listener
        every time, never a crash.
        """
        hook = self.hook(Remember(Stop("x"), 60), remember_by=["names"])
        self.assertEqual(self.send(names=["a"]), "x")
        self.assertEqual(self.send(names=["a"]), "x")
        self.assertEqual(len(hook.messages), 2)

    def test_notAVerdict(self) -> None:
        """
        L{Remember} of something that is not a verdict is an error: the
        listener is skipped and nothing is remembered.
        """
        hook = self.hook(Remember("10.0.0.5", 60))
        self.assertEqual(self.send(mac="a", subnet="lan"), "pool")
        self.assertEqual(self.send(mac="a", subnet="lan"), "pool")
        self.assertEqual(len(hook.messages), 2)
        self.assertEqual(self.registry.describe(LEASE)[0]["listeners"][0]["counters"]["errors"],
                         2)
        self.flushLoggedErrors(ListenerError)

    def test_forgottenOnRemove(self) -> None:
        """
        Removing the listener forgets what it asked to be remembered.
        """
        hook = Recorder(Remember(Stop("x"), 60))
        handle = self.registry.listen(LEASE, hook, remember_by=["mac"])
        self.send(mac="a")
        handle.remove()
        self.assertEqual(handle.remembered, {})
        self.assertEqual(self.send(mac="a"), NO_ANSWER)

    def test_bounded(self) -> None:
        """
        Past L{MAX_REMEMBERED} keys the oldest is forgotten first.
        """
        from netsuite.registry import mailbox
        self.patch(mailbox, "MAX_REMEMBERED", 3)
        hook = self.hook(Remember(Stop("x"), 60), remember_by=["mac"])
        for mac in "abcd":
            self.send(mac=mac)
        self.send(mac="b")
        self.send(mac="a")
        self.assertEqual([m["mac"] for m in hook.messages], ["a", "b", "c", "d", "a"])

    def test_badRememberBy(self) -> None:
        """
        C{remember_by} must be a non-empty list of field names.
        """
        for bad in ("mac", [], [1], {"mac": 1}):
            self.assertRaises(InvalidValue, self.registry.listen, LEASE, Recorder(),
                              remember_by=bad)


class ReasonTests(SynchronousTestCase):
    """
    L{Continue} and L{Stop} may say why; a listener's counters count its
    verdicts by reason, in a bounded map, and describe lists them.
    """

    def setUp(self) -> None:
        self.registry, self.clock = make_registry()
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def reasons(self, index: int = 0) -> Dict[str, int]:
        return self.registry.describe(LEASE)[0]["listeners"][index]["counters"]["reasons"]  # type: ignore[no-any-return]

    def test_verdicts(self) -> None:
        """
        C{Continue(reason)} and C{Stop(value, reason=...)} compare by value
        and reason; C{Stop(value)} has no reason.
        """
        self.assertEqual(Continue("miss"), Continue("miss"))
        self.assertNotEqual(Continue("miss"), Continue("error"))
        self.assertNotEqual(Continue("miss"), CONTINUE)
        self.assertEqual(hash(Continue("a")), hash(Continue("a")))
        self.assertEqual(repr(Continue("busy")), "Continue('busy')")
        self.assertIsNone(Stop(1).reason)
        self.assertEqual(Stop(1, reason="hit"), Stop(1, reason="hit"))
        self.assertNotEqual(Stop(1, reason="hit"), Stop(1))
        self.assertEqual(repr(Stop(1, reason="hit")), "Stop(1, reason='hit')")

    def test_badReason(self) -> None:
        """
        A reason is a short identifier: anything else is refused at once,
        with the rule in the message.
        """
        for bad in ["", "two words", "x" * 33, "-lead", "é", 7, b"miss", None]:
            error = self.assertRaises(ValueError, Continue, bad)
            self.assertIn("reason", str(error))
        for bad in ["", "two words", "x" * 33, 7]:
            self.assertRaises(ValueError, Stop, 1, bad)
        self.assertEqual(Continue("ldap.timeout-2_x").reason, "ldap.timeout-2_x")
        self.assertEqual(Continue("x" * 32).reason, "x" * 32)

    def test_counted(self) -> None:
        """
        Each L{Continue} goes on to the next listener and is counted under
        its reason; a L{Stop} with a reason is counted as a stop and under
        its reason; plain L{CONTINUE} and L{Stop} count no reason.
        """
        verdicts = iter([Continue("miss"), Continue("miss"), Continue("timeout"),
                         Stop("10.0.0.5", reason="hit"), CONTINUE, Stop("10.0.0.6")])
        self.registry.listen(LEASE, lambda m: next(verdicts))
        self.registry.listen(LEASE, Recorder(Stop("pool")))
        results = [self.successResultOf(self.registry.send(LEASE)) for _ in range(6)]
        self.assertEqual(results, ["pool", "pool", "pool", "10.0.0.5", "pool", "10.0.0.6"])
        self.assertEqual(self.reasons(), {"miss": 2, "timeout": 1, "hit": 1})
        counters = self.registry.describe(LEASE)[0]["listeners"][0]["counters"]
        self.assertEqual((counters["stops"], counters["errors"]), (2, 0))
        self.assertEqual(self.reasons(1), {})
        self.assertNotIn("reasons", self.registry.describe(LEASE)[0]["counters"])

    def test_deferred(self) -> None:
        """
        A L{Continue} that comes later, in a Deferred, is counted too.
        """
        answer: Deferred[Any] = Deferred()
        self.registry.listen(LEASE, lambda m: answer)
        self.registry.listen(LEASE, Recorder(Stop("pool")))
        d = self.registry.send(LEASE)
        self.assertNoResult(d)
        answer.callback(Continue("error"))
        self.assertEqual(self.successResultOf(d), "pool")
        self.assertEqual(self.reasons(), {"error": 1})

    def test_remembered(self) -> None:
        """
        A remembered L{Continue} is counted under its reason each time it
        is given again.
        """
        hook = Recorder(Remember(Continue("miss"), 60))
        self.registry.listen(LEASE, hook, remember_by=["mac"])
        self.registry.listen(LEASE, Recorder(Stop("pool")))
        for _ in range(3):
            self.assertEqual(self.successResultOf(self.registry.send(LEASE, {"mac": "a"})),
                             "pool")
        self.assertEqual(len(hook.messages), 1)
        self.assertEqual(self.reasons(), {"miss": 3})

    def test_bounded(self) -> None:
        """
        A listener giving ever new reasons keeps at most L{MAX_REASONS} of
        them; the rest are counted as C{other}.
        """
        serial = iter(range(1000))
        self.registry.listen(LEASE, lambda m: Continue(f"r{next(serial)}"))
        for _ in range(100):
            self.registry.send(LEASE)
        reasons = self.reasons()
        self.assertEqual(len(reasons), MAX_REASONS + 1)
        self.assertEqual(reasons["other"], 100 - MAX_REASONS)
        self.assertEqual(reasons["r0"], 1)
        self.assertNotIn(f"r{MAX_REASONS}", reasons)

    def test_event(self) -> None:
        """
        On an event mailbox, reasons are counted too (verdicts do not
        matter there, what the listener said does).
        """
        self.registry.listen(SEEN, Recorder(Continue("ignored")))
        self.registry.listen(SEEN, Recorder(Stop(1, reason="seen")))
        self.assertIs(self.successResultOf(self.registry.send(SEEN)), NO_ANSWER)
        listeners = self.registry.describe(SEEN)[0]["listeners"]
        self.assertEqual([l["counters"]["reasons"] for l in listeners],
                         [{"ignored": 1}, {"seen": 1}])


class EventTests(SynchronousTestCase):
    """
    An event mailbox tells every listener; none can stop it.
    """

    def test_everyListener(self) -> None:
        """
        Every listener is called even after a L{Stop}, and the send fires
        with L{NO_ANSWER}.
        """
        registry, clock = make_registry()
        recorders = [Recorder(Stop("ignored")), Recorder(CONTINUE), Recorder(Stop("also"))]
        for recorder in recorders:
            registry.listen(SEEN, recorder)
        self.assertIs(self.successResultOf(registry.send(SEEN, {"mac": MAC("aabbccddeeff")})),
                      NO_ANSWER)
        self.assertEqual([len(r.messages) for r in recorders], [1, 1, 1])
        self.assertEqual(registry.mailbox(SEEN).counters.stops, 0)

    def test_noneIsFine(self) -> None:
        """
        An event listener may return C{None}: it is not an error.
        """
        registry, clock = make_registry()
        handle = registry.listen(SEEN, Recorder(None))
        self.assertIs(self.successResultOf(registry.send(SEEN)), NO_ANSWER)
        self.assertEqual(handle.counters.errors, 0)

    def test_raises(self) -> None:
        """
        An event listener that raises is counted and the others still run.
        """
        registry, clock = make_registry()

        def broken(message: Any) -> Any:
            raise ZeroDivisionError()

        registry.listen(SEEN, broken)
        after = Recorder()
        registry.listen(SEEN, after)
        self.assertIs(self.successResultOf(registry.send(SEEN)), NO_ANSWER)
        self.assertEqual(len(after.messages), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class ListenTests(SynchronousTestCase):
    """
    Adding and removing listeners.
    """

    def test_remove(self) -> None:
        """
        A removed listener is no longer called; removing twice is harmless.
        """
        registry, clock = make_registry()
        recorder = Recorder(Stop(1))
        handle = registry.listen(LEASE, recorder)
        handle.remove()
        handle.remove()
        self.assertIs(self.successResultOf(registry.send(LEASE)), NO_ANSWER)
        self.assertEqual(recorder.messages, [])
        self.assertEqual(registry.describe(LEASE)[0]["listeners"], [])

    def test_registryRemove(self) -> None:
        """
        L{Registry.remove} takes a listener off its mailbox.
        """
        registry, clock = make_registry()
        handle = registry.listen(LEASE, Recorder(Stop(1)))
        registry.remove(handle)
        self.assertIs(self.successResultOf(registry.send(LEASE)), NO_ANSWER)

    def test_decorator(self) -> None:
        """
        Without a function, L{Registry.listen} is a decorator that adds the
        function, returns it unchanged and leaves the handle on it.
        """
        registry, clock = make_registry()

        @registry.listen(LEASE, first=True, tags={"owner": "script"})
        def lease(message: Dict[str, Any]) -> Any:
            return Stop(message["n"] + 1)

        self.assertEqual(lease({"n": 1}), Stop(2))
        self.assertEqual(self.successResultOf(registry.send(LEASE, {"n": 41})), 42)
        self.assertEqual(registry.describe(LEASE)[0]["listeners"][0]["tags"],
                         {"owner": "script"})
        self.assertTrue(IListenerHandle.providedBy(lease.listener))  # type: ignore[attr-defined]

    def test_invalidTags(self) -> None:
        """
        Tags must be netsuite values.
        """
        registry, clock = make_registry()
        self.assertRaises(InvalidValue, registry.listen, LEASE, Recorder(),
                          tags={"bad": object()})

    def test_tagsCopied(self) -> None:
        """
        The registry keeps its own copy of the tags.
        """
        registry, clock = make_registry()
        tags = {"owner": "a"}
        registry.listen(LEASE, Recorder(), tags=tags)
        tags["owner"] = "b"
        self.assertEqual(registry.describe(LEASE)[0]["listeners"][0]["tags"], {"owner": "a"})


class WatchTests(SynchronousTestCase):
    """
    L{Registry.watch} copies every message to a function on a later turn.
    """

    def test_heard(self) -> None:
        """
        A mailbox is heard while it has a listener or a watcher.
        """
        registry, _ = make_registry()
        mailbox = registry.mailbox(LEASE)
        self.assertFalse(mailbox.heard)
        watcher = registry.watch(LEASE, lambda message: None)
        self.assertTrue(mailbox.heard)
        watcher.remove()
        listener = registry.listen(LEASE, Recorder(Stop(1)))
        self.assertTrue(mailbox.heard)
        listener.remove()
        self.assertFalse(mailbox.heard)

    def test_heardByAddress(self) -> None:
        """
        L{Registry.heard} answers the same for a path or this process's
        own address, and fails for a mailbox that does not exist.
        """
        registry, _ = make_registry()
        own = f"{registry.name}:{LEASE}"
        self.assertEqual((registry.heard(LEASE), registry.heard(own)), (False, False))
        watcher = registry.watch(LEASE, lambda message: None)
        self.assertEqual((registry.heard(LEASE), registry.heard(own)), (True, True))
        watcher.remove()
        self.assertFalse(registry.heard(LEASE))
        self.assertRaises(UnknownMailbox, registry.heard, "/no/such")

    def test_everyMessage(self) -> None:
        """
        A watcher sees every message, after the send, without answering.
        """
        registry, clock = make_registry()
        seen: List[Any] = []
        registry.watch(LEASE, seen.append)
        registry.listen(LEASE, Recorder(Stop(1)))
        registry.send(LEASE, {"n": 1})
        registry.send(LEASE, {"n": 2})
        registry.send(SEEN, {"n": 3})
        self.assertEqual(seen, [])
        clock.advance(0)
        self.assertEqual(seen, [{"n": 1}, {"n": 2}])

    def test_remove(self) -> None:
        """
        A removed watcher sees no more messages; removing twice is harmless.
        """
        registry, clock = make_registry()
        seen: List[Any] = []
        watcher = registry.watch(SEEN, seen.append)
        registry.send(SEEN, {"n": 1})
        registry.eventual.flush_sync()
        watcher.remove()
        watcher.remove()
        registry.send(SEEN, {"n": 2})
        registry.eventual.flush_sync()
        self.assertEqual(seen, [{"n": 1}])

    def test_raises(self) -> None:
        """
        A watcher that raises is logged; other watchers still see the message.
        """
        registry, clock = make_registry()
        seen: List[Any] = []
        registry.watch(SEEN, lambda message: 1 / 0)
        registry.watch(SEEN, seen.append)
        registry.send(SEEN, {"n": 1})
        registry.eventual.flush_sync()
        self.assertEqual(seen, [{"n": 1}])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_invalidMessageNotWatched(self) -> None:
        """
        Watchers do not see a message that was refused.
        """
        registry, clock = make_registry()
        seen: List[Any] = []
        registry.watch(SEEN, seen.append)
        self.failureResultOf(registry.send(SEEN, {"a": {1}}), InvalidValue)
        registry.eventual.flush_sync()
        self.assertEqual(seen, [])


class WaitForTests(SynchronousTestCase):
    """
    L{Registry.wait_for} gives each caller a fresh Deferred, fired on a
    later turn.
    """

    def setUp(self) -> None:
        self.registry, self.clock = make_registry()

    def test_laterTurn(self) -> None:
        """
        The waiter fires with the message, but not during the send.
        """
        d = self.registry.wait_for(SEEN)
        self.registry.send(SEEN, {"n": 1})
        self.assertNoResult(d)
        self.registry.eventual.flush_sync()
        self.assertEqual(self.successResultOf(d), {"n": 1})

    def test_clockTurn(self) -> None:
        """
        The later turn is the clock's next C{callLater(0)}.
        """
        d = self.registry.wait_for(SEEN)
        self.registry.send(SEEN, {"n": 1})
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), {"n": 1})

    def test_noReentry(self) -> None:
        """
        A callback on the waiter that sends to the registry runs after the
        dispatch that fired it is over.
        """
        order: List[str] = []

        def listener(message: Any) -> Any:
            order.append("listener")
            return CONTINUE

        d = self.registry.wait_for(SEEN)
        d.addCallback(lambda message: order.append("waiter"))
        self.registry.listen(SEEN, listener)
        self.registry.send(SEEN)
        order.append("sent")
        self.registry.eventual.flush_sync()
        self.assertEqual(order, ["listener", "sent", "waiter"])

    def test_dictMatch(self) -> None:
        """
        A dict match waits for a message carrying those tags with equal values.
        """
        mac = MAC("aa:bb:cc:dd:ee:ff")
        d = self.registry.wait_for(SEEN, {"mac": mac, "up": True})
        self.registry.send(SEEN, {"mac": MAC("00:00:00:00:00:01"), "up": True})
        self.registry.send(SEEN, {"mac": mac})
        self.registry.send(SEEN, {"mac": mac, "up": False})
        self.registry.eventual.flush_sync()
        self.assertNoResult(d)
        self.registry.send(SEEN, {"mac": MAC("AABBCCDDEEFF"), "up": True, "extra": 1})
        self.registry.eventual.flush_sync()
        self.assertEqual(self.successResultOf(d)["extra"], 1)

    def test_callableMatch(self) -> None:
        """
        A callable match waits for a message it accepts.
        """
        d = self.registry.wait_for(SEEN, lambda message: message.get("n", 0) > 2)
        for n in range(5):
            self.registry.send(SEEN, {"n": n})
        self.registry.eventual.flush_sync()
        self.assertEqual(self.successResultOf(d), {"n": 3})

    def test_badMatch(self) -> None:
        """
        A match that is neither None, a callable nor a dict fails at once.
        """
        self.failureResultOf(self.registry.wait_for(SEEN, [1]), TypeError)

    def test_freshDeferred(self) -> None:
        """
        Each caller gets its own Deferred, and each fires with the message.
        """
        first = self.registry.wait_for(SEEN)
        second = self.registry.wait_for(SEEN)
        self.assertIsNot(first, second)
        first.addCallback(lambda message: "consumed")
        self.registry.send(SEEN, {"n": 1})
        self.registry.eventual.flush_sync()
        self.assertEqual(self.successResultOf(first), "consumed")
        self.assertEqual(self.successResultOf(second), {"n": 1})

    def test_onlyNextMessage(self) -> None:
        """
        A waiter fires once, with the first matching message, then stops
        watching.
        """
        d = self.registry.wait_for(SEEN)
        self.registry.send(SEEN, {"n": 1})
        self.registry.send(SEEN, {"n": 2})
        self.registry.eventual.flush_sync()
        self.assertEqual(self.successResultOf(d), {"n": 1})
        self.assertEqual(self.registry.mailbox(SEEN).watchers, [])

    def test_timeout(self) -> None:
        """
        With a timeout, the waiter fails with L{TimeoutError} and stops
        watching.
        """
        d = self.registry.wait_for(SEEN, timeout=3)
        self.clock.advance(2.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, TimeoutError)
        self.assertEqual(self.registry.mailbox(SEEN).watchers, [])

    def test_noTimeoutAfterFiring(self) -> None:
        """
        A waiter that fired does not time out later.
        """
        d = self.registry.wait_for(SEEN, timeout=3)
        self.registry.send(SEEN, {"n": 1})
        self.clock.advance(0)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(d), {"n": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling a waiter removes its watcher.
        """
        d = self.registry.wait_for(SEEN)
        self.assertEqual(len(self.registry.mailbox(SEEN).watchers), 1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.registry.mailbox(SEEN).watchers, [])
        self.registry.send(SEEN, {"n": 1})
        self.registry.eventual.flush_sync()


class DescribeTests(SynchronousTestCase):
    """
    L{Registry.describe} lists mailboxes, listeners, tags and counters.
    """

    def test_listing(self) -> None:
        """
        Each mailbox under the prefix is listed in path order with its kind,
        doc, listeners with tags and deadline, watchers and counters.
        """
        registry, clock = make_registry()
        registry.declare("/dhcpx/other")
        stock = registry.listen(LEASE, Recorder(CONTINUE), tags={"owner": "dhcp"},
                                deadline=0.5)
        registry.listen(LEASE, Recorder(Stop(1)), first=True, tags={"owner": "hook"})
        registry.watch(LEASE, lambda message: None)
        registry.send(LEASE)
        registry.send(LEASE)
        listing = registry.describe("/dhcp")
        self.assertEqual([m["path"] for m in listing], [LEASE, SEEN])
        lease = listing[0]
        self.assertEqual(lease["kind"], DECISION)
        self.assertEqual(lease["doc"], "Which address for this client?")
        self.assertEqual(lease["watchers"], 1)
        self.assertEqual(lease["counters"], {"messages": 2, "stops": 2, "errors": 0,
                                             "timeouts": 0, "seconds": 0.0, "remembered": 0})
        self.assertEqual(lease["listeners"][0]["remember_by"], None)
        self.assertEqual([l["tags"] for l in lease["listeners"]],
                         [{"owner": "hook"}, {"owner": "dhcp"}])
        self.assertEqual(lease["listeners"][1]["id"], stock.id)
        self.assertEqual(lease["listeners"][1]["deadline"], 0.5)
        self.assertEqual(lease["listeners"][0]["counters"]["stops"], 2)
        self.assertEqual(lease["listeners"][0]["counters"]["reasons"], {})
        self.assertEqual(lease["listeners"][1]["counters"]["messages"], 0)
        self.assertEqual(listing[1]["kind"], EVENT)

    def test_prefixes(self) -> None:
        """
        C{/} lists everything; a prefix matches whole path segments; an
        exact path lists that mailbox.
        """
        registry, clock = make_registry()
        registry.declare("/dhcpx/other")
        self.assertEqual(len(registry.describe()), 3)
        self.assertEqual([m["path"] for m in registry.describe("/dhcp/")], [LEASE, SEEN])
        self.assertEqual([m["path"] for m in registry.describe(SEEN)], [SEEN])
        self.assertEqual(registry.describe("/nothing"), [])

    def test_isValue(self) -> None:
        """
        The listing is a netsuite value, so it can travel on the bus.
        """
        from netsuite.registry.values import dumps, loads
        registry, clock = make_registry()
        registry.listen(LEASE, Recorder(), tags={"ip": IPv4Address("10.0.0.1")})
        listing = registry.describe()
        self.assertEqual(loads(dumps(listing)), listing)

    def test_countersSeconds(self) -> None:
        """
        The seconds counters advance with the clock for Deferred listeners,
        and timeouts are counted per listener and per mailbox.
        """
        registry, clock = make_registry()
        answer: Deferred[Any] = Deferred()
        registry.listen(LEASE, lambda message: answer, deadline=10)
        registry.listen(LEASE, lambda message: Deferred(), deadline=1)
        d = registry.send(LEASE)
        clock.advance(2)
        answer.callback(CONTINUE)
        clock.advance(1)
        self.assertIs(self.successResultOf(d), NO_ANSWER)
        lease = registry.describe(LEASE)[0]
        self.assertEqual([l["counters"]["seconds"] for l in lease["listeners"]], [2.0, 1.0])
        self.assertEqual([l["counters"]["timeouts"] for l in lease["listeners"]], [0, 1])
        self.assertEqual(lease["counters"]["seconds"], 3.0)
        self.assertEqual(lease["counters"]["timeouts"], 1)
        self.assertEqual(lease["counters"]["messages"], 1)


class FakePeers:
    """
    Records which process registries were asked for, and what was asked of
    them.
    """

    def __init__(self) -> None:
        self.asked: List[str] = []
        self.calls: List[Tuple[str, str, Tuple[Any, ...], Dict[str, Any]]] = []

    def registry_for(self, name: str) -> "FakePeers._Remote":
        self.asked.append(name)
        return FakePeers._Remote(self, name)

    class _Remote:
        def __init__(self, peers: "FakePeers", name: str) -> None:
            self._peers = peers
            self._name = name

        def __getattr__(self, method: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                self._peers.calls.append((self._name, method, args, kwargs))
                return succeed(f"{method} from {self._name}")
            return call


class RemoteTests(SynchronousTestCase):
    """
    An address naming another process goes to C{peers.registry_for(name)}.
    """

    def setUp(self) -> None:
        self.peers = FakePeers()
        self.registry, self.clock = make_registry("dhcp", peers=self.peers)

    def test_send(self) -> None:
        """
        A send to C{portal:/path} is the portal registry's send of C{/path}.
        """
        message = {"ip": IPv4Address("10.0.0.1")}
        result = self.successResultOf(self.registry.send("portal:/session/open", message))
        self.assertEqual(result, "send from portal")
        self.assertEqual(self.peers.asked, ["portal"])
        self.assertEqual(self.peers.calls,
                         [("portal", "send", ("/session/open", message), {})])

    def test_listen(self) -> None:
        """
        Listening on another process passes the path, function and options on.
        """
        def fn(message: Any) -> Any:
            return CONTINUE

        self.registry.listen("portal:/a", fn, first=True, tags={"t": 1}, deadline=3,
                             remember_by=["mac"])
        self.assertEqual(self.peers.calls, [
            ("portal", "listen", ("/a", fn), {"first": True, "tags": {"t": 1}, "deadline": 3,
                                              "remember_by": ["mac"]})])

    def test_watchAndWaitFor(self) -> None:
        """
        Watching and waiting on another process go to its registry.
        """
        def fn(message: Any) -> None:
            return None

        def again() -> None:
            return None

        self.registry.watch("portal:/a", fn, on_attach=again)
        self.registry.wait_for("portal:/b", {"x": 1}, 4)
        self.assertEqual(self.peers.calls, [
            ("portal", "watch", ("/a", fn), {"on_attach": again}),
            ("portal", "wait_for", ("/b", {"x": 1}, 4), {})])

    def test_localOnAttach(self) -> None:
        """
        A watch of a mailbox of this process is held at once: its
        C{on_attach} is called once, before C{watch} returns.
        """
        attached: List[int] = []
        self.registry.watch(LEASE, lambda message: None, on_attach=lambda: attached.append(1))
        self.assertEqual(attached, [1])

    def test_self(self) -> None:
        """
        An address naming this process stays local.
        """
        self.registry.listen("dhcp:" + LEASE, Recorder(Stop("local")))
        self.assertEqual(self.successResultOf(self.registry.send("dhcp:" + LEASE)), "local")
        self.assertEqual(self.peers.asked, [])


class FailClosedTests(SynchronousTestCase):
    """
    A listener added with C{fail_closed}: its error or time-out ends the
    chain with the mailbox's refusal, instead of being skipped.
    """

    REFUSAL = {"authorized": False, "reason": "a required check failed"}

    def setUp(self) -> None:
        self.registry, self.clock = make_registry(default_deadline=2.0)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.registry.declare("/guard", refusal=self.REFUSAL)
        self.stock = Recorder(Stop({"authorized": True}))
        self.registry.listen("/guard", self.stock)

    def counters(self) -> Dict[str, Any]:
        [box] = self.registry.describe("/guard")
        return box["listeners"][0]

    def test_error_refuses(self) -> None:
        """
        A fail-closed listener that raises refuses the message: the stock
        listener is not asked, the error is counted.
        """
        def deny_list(message: Any) -> Any:
            raise RuntimeError("deny list unreadable")
        self.registry.listen("/guard", deny_list, first=True, fail_closed=True)
        result = self.successResultOf(self.registry.send("/guard", {"ip": "10.0.0.5"}))
        self.assertEqual(result, self.REFUSAL)
        self.assertEqual(self.stock.messages, [])
        listener = self.counters()
        self.assertTrue(listener["fail_closed"])
        self.assertEqual((listener["counters"]["errors"],
                          listener["counters"]["reasons"]), (1, {"failed-closed": 1}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_timeout_refuses(self) -> None:
        """
        A fail-closed listener that gives no answer within its deadline
        refuses the message once the deadline passes.
        """
        self.registry.listen("/guard", lambda message: Deferred(), first=True,
                             fail_closed=True, deadline=1.0)
        d = self.registry.send("/guard", {})
        self.assertNoResult(d)
        self.clock.advance(1.0)
        self.assertEqual(self.successResultOf(d), self.REFUSAL)
        self.assertEqual(self.stock.messages, [])
        self.assertEqual(self.counters()["counters"]["timeouts"], 1)

    def test_bad_verdict_refuses(self) -> None:
        """
        A verdict that is not one (or a Stop of a value that cannot be
        carried) counts as the listener's error, so it refuses too.
        """
        self.registry.listen("/guard", lambda message: "yes", first=True, fail_closed=True)
        self.assertEqual(self.successResultOf(self.registry.send("/guard", {})), self.REFUSAL)
        self.flushLoggedErrors()

    def test_answers_pass(self) -> None:
        """
        A fail-closed listener that answers is like any other; the refusal
        given is a copy, so a caller changing it changes nothing.
        """
        self.registry.listen("/guard", lambda message: CONTINUE, first=True, fail_closed=True)
        self.assertEqual(self.successResultOf(self.registry.send("/guard", {})),
                         {"authorized": True})
        self.registry.listen("/guard", lambda message: 1 / 0, first=True, fail_closed=True)
        refused = self.successResultOf(self.registry.send("/guard", {}))
        refused["authorized"] = True
        self.assertEqual(self.successResultOf(self.registry.send("/guard", {})), self.REFUSAL)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_open_listener_still_skipped(self) -> None:
        """
        Without fail_closed a failing listener is skipped, as before.
        """
        self.registry.listen("/guard", lambda message: 1 / 0, first=True)
        self.assertEqual(self.successResultOf(self.registry.send("/guard", {})),
                         {"authorized": True})
        self.flushLoggedErrors(ZeroDivisionError)

    def test_needs_a_refusal(self) -> None:
        """
        A mailbox that defines no refusal takes no fail-closed listener; a
        refusal must be a value netsuite can carry.
        """
        self.registry.declare("/open")
        self.assertRaises(InvalidValue, self.registry.listen, "/open", lambda m: CONTINUE,
                          fail_closed=True)
        self.assertRaises(InvalidValue, self.registry.declare, "/bad", refusal=object())
