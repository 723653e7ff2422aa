# -*- test-case-name: tests.stats.test_metrics -*-
"""
Prometheus metrics over HTTP (C{/metrics}), with the official
C{prometheus_client}: per-client and uplink counters from the shared
L{Traffic} model, the DHCP server's and the portal's figures, the portal's
logins and logouts, the accounting log's own counters, and the mailbox
counters of every configured process.

A collector must answer at once, so what lives in other processes is
gathered beforehand: L{Gatherer} asks each source once an interval, all at
once, each within a deadline; a source that does not answer is a gap in
the metrics (and C{netsuite_source_up 0}), never a stall. A scrape
(L{netsuite.stats.metricshttp}) takes a snapshot of the figures on the
reactor (a tuple per client: cheap) and renders the text in a thread (at
10,000 clients, 40,000 series, rendering takes some 230 ms); at most
C{max_scrapes} render at once, and the HTTP server holds at most
C{max_connections}.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..config.fields import PORT, POSITIVE_INT, POSITIVE_SECONDS, STR_LIST, ipv4_text
from ..config.schema import Field
from ..registry.interfaces import InvalidAddress, UnknownMailbox, join_address
from .accounting import portal_sessions
from .metricshttp import MetricsResource, MetricsServer, metrics_site
from .model import Traffic

__all__ = ["FIELDS", "Gatherer", "PortalEvents", "Snapshot", "families", "render",
           "MetricsResource", "metrics_site", "part"]

_log = Logger()

FIELDS = {
    "enabled": Field(bool, True, "serve Prometheus metrics (when stats runs)"),
    "address": Field(str, "127.0.0.1", "listen on this address (\"\": all; the metrics "
                     "name every client: keep them on loopback or a management network)",
                     ipv4_text),
    "port": Field(PORT, 9420, "the HTTP port of /metrics"),
    "processes": Field(STR_LIST, [], "the processes whose mailbox counters are exported "
                       "(/system/mailboxes of each; [] or \"\": this one)"),
    "dhcp_process": Field(str, "", "process running the DHCP server, whose /dhcp/counters "
                          "and /dhcp/leases are exported (\"\": this one, if it runs it)"),
    "deadline": Field(POSITIVE_SECONDS, 5.0, "seconds a process has to answer each "
                      "interval's questions (at most [stats] interval)"),
    "max_connections": Field(POSITIVE_INT, 16, "open HTTP connections at once"),
    "max_scrapes": Field(POSITIVE_INT, 2, "scrapes rendered at once; more are answered 503"),
}


class Gatherer:
    """
    Asks each source (a name -> C{(address, message)}, the message a
    dict, or a function that asks and returns a Deferred) every C{interval}
    seconds, all at once, each within C{deadline}; keeps the last answers
    (L{answers}) and whether each source answered the last round (L{up}).
    A round still under way when the next is due is not doubled.
    """

    def __init__(self, registry: Any, clock: Any, sources: Dict[str, Tuple[str, Any]],
                 interval: float, deadline: float) -> None:
        self.registry = registry
        self.clock = clock
        self.sources = sources
        self.interval = interval
        self.deadline = min(deadline, interval)
        self.answers: Dict[str, Any] = {}
        self.up: Dict[str, bool] = {}
        self.rounds = 0
        self._busy = 0
        self._call: Any = None

    def start(self) -> None:
        self.gather()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def gather(self) -> None:
        """One round now, and the next in C{interval} seconds."""
        self._call = self.clock.callLater(self.interval, self.gather)
        if self._busy:
            return
        self.rounds += 1
        for name, (address, message) in self.sources.items():
            self._busy += 1
            try:
                d = message() if callable(message) else self.registry.send(address,
                                                                           dict(message))
            except Exception as e:  # a local mailbox that is not (yet) there
                d = Deferred()
                d.errback(e)
            d.addTimeout(self.deadline, self.clock)
            d.addCallbacks(self._answered, self._failed, (name,), None, (name,))
            d.addBoth(self._settled)

    def _answered(self, answer: Any, name: str) -> None:
        if isinstance(answer, (dict, list)):
            self.answers[name], self.up[name] = answer, True
        else:
            self._failed(None, name)

    def _failed(self, failure: Any, name: str) -> None:
        if self.up.get(name, True):
            _log.info("metrics: {name} ({address}) did not answer: {error}", name=name,
                      address=self.sources[name][0],
                      error=failure.getErrorMessage() if failure else "no answer")
        self.answers.pop(name, None)
        self.up[name] = False

    def _settled(self, _: Any) -> None:
        self._busy -= 1


class PortalEvents:
    """Counts the portal's logins by method and logouts by reason."""

    def __init__(self, registry: Any, portal_process: str = "") -> None:
        self.registry = registry
        self.portal_process = portal_process
        self.logins: Dict[str, int] = {}
        self.logouts: Dict[str, int] = {}
        self._watchers: List[Any] = []

    def start(self) -> None:
        for path, counts in (("/portal/login", self.logins), ("/portal/logout", self.logouts)):
            address = join_address(self.portal_process, path, self.registry.name)
            if address.startswith("/") and not self.registry.describe(address):
                continue  # no portal here
            try:
                self._watchers.append(self.registry.watch(
                    address, lambda message, counts=counts: self._count(counts, message)))
            except (UnknownMailbox, InvalidAddress) as e:
                _log.warn("metrics: cannot watch {address}: {error}", address=address, error=e)

    @staticmethod
    def _count(counts: Dict[str, int], message: Any) -> None:
        reason = str(message.get("reason") or "") if isinstance(message, dict) else ""
        if reason not in counts and len(counts) >= 64:
            reason = "other"
        counts[reason] = counts.get(reason, 0) + 1

    def stop(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.remove()


Client = Tuple[str, str, int, int, int, int]
"""(ip, mac, bytes_up, bytes_down, packets_up, packets_down)."""


class Snapshot:
    """
    The figures of one scrape, copied on the reactor so that rendering
    them in a thread reads nothing that changes.
    """

    def __init__(self, traffic: Traffic, gatherer: Optional[Gatherer] = None,
                 events: Optional[PortalEvents] = None, accounting: Any = None,
                 here: str = "") -> None:
        self.clients: List[Client] = [(u.ip, u.mac) + u.total.values()
                                      for u in traffic.clients.values()]
        self.uplink = traffic.uplink.total.values() if traffic.uplink.sampled else None
        self.samples = traffic.samples
        self.here = here
        self.answers = dict(gatherer.answers) if gatherer else {}
        self.up = dict(gatherer.up) if gatherer else {}
        self.addresses = {name: a for name, (a, _) in gatherer.sources.items()} \
            if gatherer else {}
        self.logins = dict(events.logins) if events else None
        self.logouts = dict(events.logouts) if events else None
        self.accounting: Optional[Dict[str, int]] = None
        if accounting is not None:
            log = accounting.log
            self.accounting = {"written": log.written, "failures": log.failures,
                               "dropped": log.dropped, "pending": log.pending,
                               "rotations": log.rotations, "open": len(accounting.open),
                               "malformed": accounting.malformed}


def _directions(name: str, doc: str, labels: List[str],
                rows: Iterable[Tuple[List[str], int, int]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels + ["direction"])
    for values, up, down in rows:
        family.add_metric(values + ["up"], up)
        family.add_metric(values + ["down"], down)
    return family


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def families(snap: Snapshot) -> List[Metric]:
    """The metric families of a snapshot (pure)."""
    out: List[Metric] = [
        _directions("netsuite_client_bytes", "Bytes of each authorized client since it was "
                    "first seen (up: from the client)", ["ip", "mac"],
                    (([c[0], c[1]], c[2], c[3]) for c in snap.clients)),
        _directions("netsuite_client_packets", "Packets of each authorized client",
                    ["ip", "mac"], (([c[0], c[1]], c[4], c[5]) for c in snap.clients)),
        GaugeMetricFamily("netsuite_clients", "Authorized clients in the last sample",
                          len(snap.clients)),
        CounterMetricFamily("netsuite_stats_samples", "Samples taken", snap.samples),
    ]
    if snap.uplink is not None:
        b_up, b_down, p_up, p_down = snap.uplink
        out.append(_directions("netsuite_uplink_bytes", "Bytes through the uplink "
                               "(up: out of it)", [], [([], b_up, b_down)]))
        out.append(_directions("netsuite_uplink_packets", "Packets through the uplink", [],
                               [([], p_up, p_down)]))
    up = GaugeMetricFamily("netsuite_source_up", "Whether the source answered the last "
                           "round of questions (1) or not (0)", labels=["source", "address"])
    for name in sorted(snap.up):
        up.add_metric([name, snap.addresses.get(name, "")], 1 if snap.up[name] else 0)
    out.append(up)
    out += _dhcp(snap.answers) + _portal(snap) + _mailboxes(snap)
    if snap.accounting is not None:
        a = snap.accounting
        out += [CounterMetricFamily("netsuite_accounting_records", "Session records written",
                                    a["written"]),
                CounterMetricFamily("netsuite_accounting_write_failures", "Writes of the "
                                    "accounting log that failed (kept and tried again)",
                                    a["failures"]),
                CounterMetricFamily("netsuite_accounting_dropped", "Session records dropped "
                                    "(too many waiting to be written)", a["dropped"]),
                GaugeMetricFamily("netsuite_accounting_pending", "Session records waiting "
                                  "to be written", a["pending"]),
                GaugeMetricFamily("netsuite_accounting_open_sessions", "Sessions under way",
                                  a["open"])]
    return out


def _dhcp(answers: Dict[str, Any]) -> List[Metric]:
    out: List[Metric] = []
    counters = answers.get("dhcp_counters")
    if isinstance(counters, dict):
        family = CounterMetricFamily("netsuite_dhcp_counter", "The DHCP server's counters "
                                     "(/dhcp/counters)", labels=["counter"])
        for key in sorted(counters):
            if _number(counters[key]):
                family.add_metric([str(key)], counters[key])
        out.append(family)
    leases = answers.get("dhcp_leases")
    if isinstance(leases, list):
        states: Dict[str, int] = {}
        for lease in leases:
            state = str(lease.get("state")) if isinstance(lease, dict) else "unknown"
            states[state] = states.get(state, 0) + 1
        family = GaugeMetricFamily("netsuite_dhcp_leases", "The DHCP server's leases by "
                                   "state", labels=["state"])
        for state in sorted(states):
            family.add_metric([state], states[state])
        out.append(family)
    return out


def _portal(snap: Snapshot) -> List[Metric]:
    out: List[Metric] = []
    sessions = snap.answers.get("portal_sessions")
    if isinstance(sessions, list):
        out.append(GaugeMetricFamily("netsuite_portal_sessions", "The portal's sessions",
                                     len(sessions)))
    for name, counts, label, doc in (
            ("netsuite_portal_logins", snap.logins, "method", "Logins heard, by method"),
            ("netsuite_portal_logouts", snap.logouts, "reason", "Logouts heard, by reason")):
        if counts is not None:
            family = CounterMetricFamily(name, doc + " (since stats started)", labels=[label])
            for key in sorted(counts):
                family.add_metric([key], counts[key])
            out.append(family)
    return out


MAILBOX_COUNTERS = (("messages", "Messages sent to the mailbox"),
                    ("stops", "Messages a listener answered (stopped the chain)"),
                    ("errors", "Listener failures"), ("timeouts", "Listener time-outs"),
                    ("seconds", "Seconds spent in the mailbox's listeners"))


def _mailboxes(snap: Snapshot) -> List[Metric]:
    found = {name: [(str(m.get("path")), m.get("counters")) for m in answer
                    if isinstance(m, dict) and isinstance(m.get("counters"), dict)]
             for name, answer in snap.answers.items()
             if name.startswith("mailboxes:") and isinstance(answer, list)}
    out: List[Metric] = []
    for key, doc in MAILBOX_COUNTERS:
        family = CounterMetricFamily(f"netsuite_mailbox_{key}", doc + " (/system/mailboxes)",
                                     labels=["process", "mailbox"])
        for name in sorted(found):
            process = name.split(":", 1)[1] or snap.here
            for path, counters in found[name]:
                if _number(counters.get(key)):
                    family.add_metric([process, path], counters[key])
        out.append(family)
    return out


class _Frozen:
    """A collector of one snapshot's families, for C{generate_latest}."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterable[Metric]:
        return families(self.snap)


def render(snap: Snapshot) -> bytes:
    """The text exposition of C{snap} (blocking: in a thread for big ones)."""
    return generate_latest(_Frozen(snap))  # type: ignore[arg-type]


def sources(config: Any, here: str) -> Dict[str, Tuple[str, Any]]:
    """What the gatherer asks, by name: C{name -> (address, message)}."""
    section = config.stats.metrics
    found = {"dhcp_counters": (join_address(section.dhcp_process, "/dhcp/counters", here), {}),
             "dhcp_leases": (join_address(section.dhcp_process, "/dhcp/leases", here), {}),
             "portal_sessions": (join_address(config.stats.portal_process,
                                              "/portal/sessions", here), {})}
    for process in section.processes or [""]:
        found[f"mailboxes:{'' if process == here else process}"] = (
            join_address(process, "/system/mailboxes", here), {"prefix": "/"})
    return found


def part(service: Any, config: Any, registry: Any, reactor: Any) -> None:
    """Add the metrics endpoint to the stats C{service}, if the config enables it."""
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from ..runner import ThreadRunner

    section = config.stats.metrics
    if not section.enabled:
        return
    here = registry.name
    wanted = sources(config, here)
    sessions_at = wanted["portal_sessions"][0]  # a page at a time: thousands outgrow a message
    wanted["portal_sessions"] = (sessions_at, lambda: portal_sessions(
        registry, sessions_at, reactor, min(section.deadline, config.stats.interval)))
    gatherer = Gatherer(registry, reactor, {}, config.stats.interval, section.deadline)
    events = PortalEvents(registry, config.stats.portal_process)
    accounting = getattr(service, "accounting", None)

    def snapshot() -> Snapshot:
        return Snapshot(service.traffic, gatherer, events, accounting, here)

    resource = MetricsResource(snapshot, ThreadRunner(reactor, name="stats-metrics",
                                                      finish=False), section.max_scrapes)
    service.metrics = resource

    class Gathering(Service):
        name = "metrics-gathering"

        def startService(self) -> None:
            Service.startService(self)
            # A local source exists only if that service runs here.
            gatherer.sources = {name: (address, message)
                                for name, (address, message) in wanted.items()
                                if not address.startswith("/") or registry.describe(address)}
            events.start()
            gatherer.start()

        def stopService(self) -> None:
            Service.stopService(self)
            gatherer.stop()
            events.stop()

    Gathering().setServiceParent(service)
    endpoint = TCP4ServerEndpoint(reactor, section.port, interface=section.address or "")
    MetricsServer(endpoint, metrics_site(resource, section.max_connections, reactor),
            f"{section.address or '0.0.0.0'}:{section.port}").setServiceParent(service)
