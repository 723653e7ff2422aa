"""
Tests for L{netsuite.privileges}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from netsuite.capabilities import NUMBERS, UnknownCapability, mask, parse_status
from netsuite.privileges import (ICapabilityCalls, KeepCapabilities, LibcCapabilities,
                                 UidSwitch, twistd_switch)
from netsuite.testing import MemoryCapabilities

FIREWALL = frozenset({"CAP_NET_ADMIN", "CAP_NET_RAW"})
NOBODY = 65534
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        call()
    except OSError as e:
        return f"errno {e.errno}"
    return "ok"


def scenario(name: str, calls: Any, switch: Callable[[], None]) -> List[Any]:
    """
    One scenario of the contract between the kernel and
    L{MemoryCapabilities}, from root: what C{calls} shows after the steps.
    C{switch} makes this thread nobody, as twistd does.
    """
    if name == "keep":
        service = KeepCapabilities(FIREWALL, calls)
        service.privilegedStartService()
        switch()
        service.startService()
        status = calls.status()
        wider = mask(FIREWALL | {"CAP_SYS_ADMIN"})
        return [status.uids, sorted(status.effective), sorted(status.permitted),
                sorted(status.bounding), sorted(status.inheritable), sorted(status.ambient),
                status.no_new_privs,
                _outcome(lambda: calls.set_capabilities(wider, wider, 0)),
                _outcome(lambda: calls.drop_bounding(NUMBERS["CAP_NET_RAW"]))]
    if name == "no keep":
        switch()
        return [list(calls.capabilities())]
    raise AssertionError(name)


def run_libc(name: str) -> None:
    """The scenario C{name} with the real calls (in a process of its own, as root)."""
    def switch() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    print(json.dumps(scenario(name, LibcCapabilities(), switch)))


class CallsTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        The libc calls and the fake provide L{ICapabilityCalls}.
        """
        self.assertTrue(verifyObject(ICapabilityCalls, LibcCapabilities()))
        self.assertTrue(verifyObject(ICapabilityCalls, MemoryCapabilities()))

    def test_libc_reads(self) -> None:
        """
        C{capget} reads this thread's sets as /proc shows them (read only:
        the test process keeps what it has).
        """
        calls = LibcCapabilities()
        effective, permitted, inheritable = calls.capabilities()
        with open("/proc/thread-self/status") as f:
            shown = parse_status(f.read())
        self.assertEqual((effective, permitted, inheritable),
                         (mask(shown.effective), mask(shown.permitted),
                          mask(shown.inheritable)))
        self.assertEqual(calls.status(), shown)
        self.assertGreaterEqual(calls.last_capability(), NUMBERS["CAP_NET_RAW"])
        self.assertGreaterEqual(calls.threads(), 1)

    def test_fake_clears_on_switch(self) -> None:
        """
        The fake, like the kernel, clears every capability when root
        becomes another uid, and keeps the permitted set (only) with
        KEEPCAPS.
        """
        calls = MemoryCapabilities()
        calls.switch(NOBODY, NOBODY)
        self.assertEqual(calls.capabilities(), (0, 0, 0))
        kept = MemoryCapabilities()
        kept.set_keep_capabilities(True)
        kept.switch(NOBODY, NOBODY)
        effective, permitted, _ = kept.capabilities()
        self.assertEqual(effective, 0)
        self.assertEqual(permitted, mask(NUMBERS))


class ContractTests(SynchronousTestCase):
    """
    The fake and the kernel agree, step by step, on the path
    L{KeepCapabilities} takes, and on what they refuse.
    """

    def compare(self, name: str) -> None:
        if os.geteuid() != 0:
            raise SkipTest("switching uid, as twistd --uid does, needs root")
        fake = MemoryCapabilities()
        expected = json.loads(json.dumps(scenario(name, fake, lambda: fake.switch(NOBODY,
                                                                                  NOBODY))))
        done = subprocess.run([sys.executable, "-c", "from tests.test_privileges import "
                               f"run_libc; run_libc({name!r})"], cwd=ROOT, timeout=60,
                              capture_output=True, text=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout.splitlines()[-1]), expected)

    def test_keep(self) -> None:
        """
        Kept across the switch: exactly the declared sets, no more can be
        raised, and the bounding set can no longer be changed (no
        CAP_SETPCAP).
        """
        self.compare("keep")

    def test_no_keep(self) -> None:
        """
        Without KEEPCAPS the switch leaves nothing (what the firewall got
        under twistd --uid before).
        """
        self.compare("no keep")


class KeepCapabilitiesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def run_twistd(self, keep: Any, calls: MemoryCapabilities,
                   switch: Optional[int] = NOBODY) -> KeepCapabilities:
        """
        What twistd does: privilegedStartService, the uid switch (unless
        C{switch} is None), startService.
        """
        service = KeepCapabilities(keep, calls)
        service.privilegedStartService()
        if switch is not None:
            calls.switch(switch, switch)
        service.startService()
        return service

    def messages(self) -> Dict[str, str]:
        from twisted.logger import formatEvent
        return {formatEvent(e): e["log_level"].name for e in self.events}

    def test_keeps_exactly(self) -> None:
        """
        Across the switch the thread keeps exactly the declared
        capabilities: effective, permitted and bounding; nothing
        inheritable or ambient, no new privileges, KEEPCAPS off again; and
        one line says so.
        """
        calls = MemoryCapabilities()
        self.run_twistd(FIREWALL, calls)
        status = calls.status()
        self.assertEqual((status.effective, status.permitted, status.bounding),
                         (FIREWALL, FIREWALL, FIREWALL))
        self.assertEqual((status.inheritable, status.ambient), (frozenset(), frozenset()))
        self.assertTrue(status.no_new_privs)
        self.assertFalse(calls.keep)
        self.assertEqual(calls.calls[:2], ["keep True", f"switch {NOBODY}"])
        self.assertEqual(self.messages(), {
            "privileges: uid 65534 gid 65534, keeping CAP_NET_ADMIN, CAP_NET_RAW "
            "(effective, permitted and bounding; none inheritable or ambient), "
            "no new privileges": "info"})

    def test_keeps_nothing(self) -> None:
        """
        A process whose services need nothing after start (the portal)
        keeps nothing at all, its bounding set included.
        """
        calls = MemoryCapabilities()
        self.run_twistd([], calls)
        status = calls.status()
        self.assertEqual(status.effective | status.permitted | status.bounding, frozenset())
        self.assertIn("keeping none", "".join(self.messages()))

    def test_unprivileged(self) -> None:
        """
        Started as another user (systemd's User= with its ambient
        capabilities), it makes no call at all.
        """
        calls = MemoryCapabilities(uid=999)
        calls.permitted = calls.effective = calls.ambient = mask(FIREWALL)
        self.run_twistd(FIREWALL, calls, switch=None)
        self.assertEqual(calls.calls, [])
        self.assertEqual(calls.status().ambient, FIREWALL)
        self.assertEqual(self.messages(), {})

    def test_root_without_uid(self) -> None:
        """
        Root without --uid stays root with every capability; KEEPCAPS is
        off again, and the log says what --uid would keep.
        """
        calls = MemoryCapabilities()
        self.run_twistd(FIREWALL, calls, switch=None)
        self.assertEqual(calls.calls, ["keep True", "keep False"])
        self.assertEqual(calls.status().effective, frozenset(NUMBERS))
        self.assertEqual(self.messages(), {
            "privileges: running as root (no twistd --uid): every capability kept; "
            "with --uid, only CAP_NET_ADMIN, CAP_NET_RAW": "info"})

    def test_not_kept(self) -> None:
        """
        When the kernel did not keep the permitted set, the process stops
        (SystemExit) and says which capabilities it lacks.
        """
        calls = MemoryCapabilities()
        service = KeepCapabilities(FIREWALL, calls)
        service.privilegedStartService()
        calls.keep = False  # something turned KEEPCAPS off before the switch
        calls.switch(NOBODY, NOBODY)
        self.assertRaises(SystemExit, service.startService)
        [(message, level)] = self.messages().items()
        self.assertEqual(level, "critical")
        self.assertIn("CAP_NET_ADMIN, CAP_NET_RAW not permitted after the uid switch", message)

    def test_older_threads(self) -> None:
        """
        Threads started before the switch are warned about: they keep
        nothing.
        """
        self.run_twistd(FIREWALL, MemoryCapabilities(threads=3))
        self.assertEqual(self.messages()[
            "privileges: 2 thread(s) started before twistd switched uid hold no "
            "capabilities"], "warn")

    def test_unknown(self) -> None:
        """
        A declared name that is no capability's is refused when the
        process is built.
        """
        self.assertRaises(UnknownCapability, KeepCapabilities, ["CAP_NET_ADMINS"],
                          MemoryCapabilities())


class TwistdSwitchTests(SynchronousTestCase):
    class Options(dict):  # a twistd plugin's options: parent is twistd's own
        parent: Any = None

    def options(self, uid: Any, gid: Any) -> Any:
        options = self.Options()
        options.parent = {"uid": uid, "gid": gid}
        return options

    def test_uid_and_gid(self) -> None:
        """
        --uid and --gid as twistd parsed them.
        """
        self.assertEqual(twistd_switch(self.options(NOBODY, 100), euid=0), UidSwitch(NOBODY, 100))

    def test_user_group(self) -> None:
        """
        Without --gid, the user's own group, as twistd takes it.
        """
        import pwd
        self.assertEqual(twistd_switch(self.options(NOBODY, None), euid=0),
                         UidSwitch(NOBODY, pwd.getpwuid(NOBODY).pw_gid))

    def test_none(self) -> None:
        """
        No switch without --uid, when not root, or outside twistd.
        """
        self.assertIsNone(twistd_switch(self.options(None, 100), euid=0))
        self.assertIsNone(twistd_switch(self.options(NOBODY, None), euid=1000))
        self.assertIsNone(twistd_switch(self.Options(), euid=0))
