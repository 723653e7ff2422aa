# -*- test-case-name: tests.stats.test_sampler -*-
"""
The sampler: every C{interval} seconds (on the reactor's clock, at whole
multiples of the interval) it asks the firewall for every authorized
client's MAC and counters (C{/firewall/counters} in its compact form: one
message for 10,000 clients) and reads the uplink interface's counters
(netlink, through a runner), then feeds them to the L{Traffic} model,
whose subscribers (the store, the metrics, ...) take it from there.

A sample still under way when the next is due is skipped and counted,
never queued. A failing or late firewall (the bus's deadline) or uplink
read is counted, and logged once per run of failures; the sample goes on
without the part that failed (no uplink reading: the clients still
count; no firewall answer: no sample).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from ..firewall.compact import unpack_rows
from ..registry.interfaces import join_address
from .model import Totals, Traffic

__all__ = ["Sampler", "read_link", "parse_compact"]

_log = Logger()

COUNTERS = "/firewall/counters"


def read_link(interface: str) -> Totals:
    """
    The counters of C{interface} (netlink's 64-bit link stats), blocking:
    up is what it sent (towards the Internet), down what it received.

    @raise LookupError: there is no such interface.
    """
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        links = ipr.get_links(ifname=interface)
        if not links:
            raise LookupError(f"no interface {interface!r}")
        stats = links[0].get_attr("IFLA_STATS64") or links[0].get_attr("IFLA_STATS")
    if stats is None:
        raise LookupError(f"{interface!r} has no link counters")
    return Totals(int(stats["tx_bytes"]), int(stats["rx_bytes"]), int(stats["tx_packets"]),
                  int(stats["rx_packets"]))


def parse_compact(answer: Any) -> Dict[str, Tuple[str, Totals]]:
    """
    The firewall's compact answer as the model's readings (C{ip -> (mac,
    counters)}).

    @raise ValueError: it is not one (a refusal, no answer, an old firewall).
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("rows"), bytes):
        raise ValueError(f"{COUNTERS} gave no compact counters ({str(answer)[:80]}): an old "
                         "firewall, or none listening")
    return {ip: (mac, Totals(bu, bd, pu, pd))
            for ip, mac, bu, bd, pu, pd in unpack_rows(answer["rows"])}


class _Failures:
    """Logs the first failure of a run of them, and the recovery."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, reason: str) -> None:
        if not self.failing:
            self.failing = True
            _log.error("stats: {what} failed: {reason} (further failures are counted, not "
                       "logged, until it works again)", what=self.what, reason=reason)

    def worked(self) -> None:
        if self.failing:
            self.failing = False
            _log.info("stats: {what} works again", what=self.what)


class Sampler(Service):
    """
    @param traffic: the model fed.
    @param registry: the way to the firewall.
    @param clock: times the samples (the reactor).
    @param runner: where the uplink's netlink read runs.
    @param interval: seconds between samples.
    @param firewall_process: where the firewall is (C{""}: this process).
    @param uplink_interface: whose counters are the uplink's (C{""}: none).
    @param read_uplink: C{(interface) -> Totals}, blocking (L{read_link}).
    @param timer: a monotonic clock, for how long a sample takes.

    @ivar counters: samples (done), skipped (due while one was under way),
        errors (firewall answers missing or malformed), uplink_errors,
        clients (in the last sample), last_sample_seconds (how long it
        took, from due to the model's update).
    """

    def __init__(self, traffic: Traffic, registry: Any, clock: Any, runner: Any,
                 interval: int, firewall_process: str = "", uplink_interface: str = "",
                 read_uplink: Callable[[str], Totals] = read_link,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.traffic = traffic
        self.registry = registry
        self.clock = clock
        self.runner = runner
        self.interval = interval
        self.address = join_address(firewall_process, COUNTERS, getattr(registry, "name", None))
        self.uplink_interface = uplink_interface
        self.read_uplink = read_uplink
        self.timer = timer
        self.counters: Dict[str, Any] = dict.fromkeys(
            ("samples", "skipped", "errors", "uplink_errors", "clients"), 0)
        self.counters["last_sample_seconds"] = 0.0
        self._busy = False
        self._call: Any = None
        self._firewall = _Failures(f"reading {self.address}")
        self._uplink = _Failures(f"reading {uplink_interface or 'the uplink'}'s counters")

    # scheduling

    def startService(self) -> None:
        Service.startService(self)
        _log.info("stats sampling {address} and {uplink} every {interval} s",
                  address=self.address, uplink=self.uplink_interface or "no uplink",
                  interval=self.interval, netsuite_event="stats-sampling")
        self._schedule()

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        # A sample under way ends (its model update is harmless).
        return succeed(None)

    def _schedule(self) -> None:
        now = self.clock.seconds()
        due = (math.floor(now / self.interval) + 1) * self.interval
        self._call = self.clock.callLater(due - now, self._due)

    def _due(self) -> None:
        self._call = None
        if self.running:
            self._schedule()
        self.sample()

    # one sample

    def sample(self) -> "Deferred[None]":
        """
        Take one sample now, unless one is under way (then skipped,
        counted); fires when the model has it (or it failed, counted).
        """
        if self._busy:
            self.counters["skipped"] += 1
            return succeed(None)
        now = self.clock.seconds()
        started = self.timer()
        firewall = self.registry.send(self.address, {"compact": True}).addCallback(parse_compact)
        if self.uplink_interface:
            uplink = self.runner.run(self.read_uplink, self.uplink_interface)
        else:
            uplink = succeed(None)

        def uplink_failed(failure: Any) -> None:
            self.counters["uplink_errors"] += 1
            self._uplink.failed(f"{failure.type.__name__}: {failure.getErrorMessage()}")
            return None

        def uplink_read(totals: Optional[Totals]) -> Optional[Totals]:
            if totals is not None:
                self._uplink.worked()
            return totals

        uplink.addCallbacks(uplink_read, uplink_failed)

        def got(results: Any) -> None:
            clients, totals = results
            self._firewall.worked()
            self.counters["samples"] += 1
            self.counters["clients"] = len(clients)
            try:
                self.traffic.update(now, clients, uplink=totals)
            finally:
                self.counters["last_sample_seconds"] = round(self.timer() - started, 6)

        def failed(failure: Any) -> None:
            failure = getattr(failure.value, "subFailure", failure)
            self.counters["errors"] += 1
            self._firewall.failed(f"{failure.type.__name__}: {failure.getErrorMessage()}")

        def done(_: Any) -> None:
            self._busy = False

        d = gatherResults([firewall, uplink], consumeErrors=True)
        d.addCallbacks(got, failed)
        d.addErrback(lambda f: _log.failure("stats: a subscriber of the traffic failed", f))
        d.addBoth(done)
        if not d.called:
            self._busy = True
        return d
