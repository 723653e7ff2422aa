# -*- test-case-name: tests.stats.test_guard -*-
"""
Extrusion detection in the stats service (C{[stats.extrusion]}): the
firewall queues the SYN of every TCP connection forwarded from the LAN
(C{[firewall] extrusion_queue}, with bypass); a L{QueueReader} on the
reactor reads them, L{Guard} gives the verdict at once (accept, or drop
while the client is quarantined) and, once the read's verdicts are all
given, feeds them to the L{Detectors}. A detection is the event
C{/stats/extrusion}; the configured actions follow: close the client's
SMTP windows (the SMTP gate's C{/smtpgate/close}), log it out (the
portal's C{/portal/deauthorize}) or quarantine it (its new connections
dropped by verdict for C{quarantine_seconds}). An action that fails or is
late is logged and counted, never waited for by the reader.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from ..config.fields import PORT_LIST, POSITIVE_INT, POSITIVE_SECONDS, SECONDS, at_least, between
from ..config.schema import ConfigError, Field
from ..nfqueue import ISynSink
from ..registry.interfaces import Stop, join_address
from ..registry.registry import declare_service
from ..registry.values import Message
from .extrusion import DETECTORS, Detection, Detectors, Thresholds

__all__ = ["SECTION", "Guard", "GuardService", "ACTIONS", "REASONS", "check", "add_extrusion",
           "MAILBOXES", "EVENTS"]

_log = Logger()

ACTIONS = ("close-smtp", "deauthorize", "quarantine")
REASONS = {"destinations": "scan", "ports": "port-scan", "smtp": "smtp-burst",
           "rate": "connection-rate"}
"""The reason an action gives, by detector."""


def _actions(value: List[str]) -> Optional[str]:
    for item in value:
        detector, _, action = item.partition(":")
        if detector not in DETECTORS + ("*",) or action not in ACTIONS:
            return (f"a list of \"DETECTOR:ACTION\" (DETECTOR one of {', '.join(DETECTORS)} "
                    f"or *; ACTION one of {', '.join(ACTIONS)}), not {item!r}")
    return None


def _threshold(doc: str, default: int) -> Field:
    return Field(int, default, doc + " (0: off)", at_least(0))


SECTION = {
    "enabled": Field(bool, False, "read the firewall's extrusion queue and run the detectors"),
    "queue": Field(int, 1, "the NFQUEUE read (firewall.extrusion_queue)",
                   between(0, 65535, "a queue number")),
    "queue_length": Field(POSITIVE_INT, 1024, "SYNs the kernel holds for the reader at most "
                          "(beyond, they pass unseen: bypass)"),
    "destinations": _threshold("distinct hosts a client may connect to per "
                               "destinations_window (a scan)", 100),
    "destinations_window": Field(POSITIVE_SECONDS, 60.0, "seconds"),
    "ports": _threshold("distinct ports of one host per ports_window (a port scan)", 30),
    "ports_window": Field(POSITIVE_SECONDS, 60.0, "seconds"),
    "smtp": _threshold("connection attempts to smtp_ports per smtp_window, SMTP open or "
                       "not (a spam burst)", 20),
    "smtp_window": Field(POSITIVE_SECONDS, 60.0, "seconds"),
    "smtp_ports": Field(PORT_LIST, [25, 465, 587], "the SMTP ports"),
    "rate": _threshold("new connections per rate_window", 200),
    "rate_window": Field(POSITIVE_SECONDS, 1.0, "seconds"),
    "hold_off": Field(SECONDS, 300.0, "seconds a client's detection is not repeated (by the "
                      "same detector)"),
    "max_clients": Field(POSITIVE_INT, 1024, "clients followed at once (the idlest goes "
                         "first)"),
    "actions": Field("str_list", ["smtp:close-smtp"], "what a detection does: "
                     "\"DETECTOR:ACTION\" (* for any detector); actions: close-smtp "
                     "(/smtpgate/close), deauthorize (/portal/deauthorize), quarantine "
                     "(its new connections dropped)", _actions),
    "quarantine_seconds": Field(POSITIVE_SECONDS, 600.0, "seconds a quarantined client's new "
                                "connections are dropped"),
    "quarantine_mac": Field(bool, True, "a quarantine holds the client's MAC too (its "
                            "other addresses: IPv6, a new lease); off where clients share a "
                            "MAC (behind a repeater that rewrites it)"),
    "action_deadline": Field(POSITIVE_SECONDS, 5.0, "seconds an action (a message to "
                             "another service) may take"),
    "smtpgate_process": Field(str, "", "process running the SMTP gate (\"\": this one); the "
                              "portal's is stats.portal_process"),
}

MAILBOXES = {
    "/stats/extrusion/counters": "What the detectors saw and did: answers {connections, "
                                 "detections, destinations, ports, smtp, rate, clients, "
                                 "clients_dropped, quarantined, quarantine_dropped, actions, "
                                 "action_errors, actions_skipped, queue_dropped, queue_errors, "
                                 "sink_errors}.",
    "/stats/extrusion/quarantine": "Quarantine {ip, seconds?} (0: release); answers {ip, "
                                   "seconds}.",
}
EVENTS = {
    "/stats/extrusion": "Event: a client crossed a detector's threshold {ip, mac, detector, "
                        "count, window, threshold, samples: [{ip, port}...]}.",
}


def check(config: Any) -> None:
    """The queue read is the firewall's, when the file sets both."""
    section = config.stats.extrusion
    queue = config.firewall.extrusion_queue
    if section.enabled and queue >= 0 and queue != section.queue:
        raise ConfigError(f"{config.source}: [stats.extrusion] queue ({section.queue}) is not "
                          f"[firewall] extrusion_queue ({queue})")


def thresholds_from_config(section: Any) -> Thresholds:
    return Thresholds(**{key: getattr(section, key) for key in (
        "destinations", "destinations_window", "ports", "ports_window", "smtp", "smtp_window",
        "rate", "rate_window", "hold_off", "max_clients")},
        smtp_ports=tuple(section.smtp_ports))


def _ip(text: str) -> Any:
    """An address as the bus carries it: typed IPv4/IPv6."""
    return ipaddress.ip_address(text)


@implementer(ISynSink)
class Guard:
    """
    The queue reader's sink (L{ISynSink}) and the detections' actions.

    @param actions: detector -> the actions its detections take.
    """

    def __init__(self, registry: Any, clock: Any, detectors: Detectors,
                 actions: Dict[str, List[str]], quarantine_seconds: float = 600.0,
                 deadline: float = 5.0, smtpgate_process: str = "",
                 portal_process: str = "", quarantine_mac: bool = True) -> None:
        self.registry = registry
        self.clock = clock
        self.detectors = detectors
        self.actions = actions
        self.quarantine_seconds = quarantine_seconds
        self.quarantine_mac = quarantine_mac
        self.deadline = deadline
        self.smtpgate_process = smtpgate_process
        self.portal_process = portal_process
        self.counters: "Counter[str]" = Counter()
        # ip (str) or MAC (6 bytes) -> until
        self.quarantined: Dict[Any, float] = {}
        self.max_quarantined = 2 * detectors.thresholds.max_clients
        self._pending: List[Tuple[str, Optional[str], str, int]] = []
        declare_service(registry, "stats", MAILBOXES, EVENTS, {
            "/stats/extrusion/counters": self._counters,
            "/stats/extrusion/quarantine": self._quarantine,
        })

    # the reader's sink: the verdict now, the detectors after the read

    def syn(self, client: Tuple[str, int], server: Tuple[str, int], packet: Any) -> bool:
        ip = client[0]
        hw = packet.get_hw()
        if self.quarantined:
            # by address, and by MAC (its other addresses: IPv6, a new lease)
            for key in (ip, hw[:6] if hw else None):
                until = self.quarantined.get(key)
                if until is not None:
                    if until > self.clock.seconds():
                        self.counters["quarantine_dropped"] += 1
                        return False
                    del self.quarantined[key]
        self._pending.append((ip, hw[:6].hex(":") if hw else None, server[0], server[1]))
        return True

    def read_done(self) -> None:
        pending, self._pending = self._pending, []
        now = self.clock.seconds()
        connection = self.detectors.connection
        for ip, mac, host, port in pending:
            for detection in connection(now, ip, mac, host, port):
                self.detected(detection)

    # detections

    def detected(self, d: Detection) -> None:
        _log.warn("extrusion: {ip} ({mac}) {detector}: {count} in {window} s (threshold "
                  "{threshold})", ip=d.ip, mac=d.mac or "?", detector=d.detector,
                  count=d.count, window=d.window, threshold=d.threshold,
                  netsuite_event="extrusion")
        message = {"ip": _ip(d.ip), "mac": d.mac or "", "detector": d.detector,
                   "count": d.count, "window": d.window, "threshold": d.threshold,
                   "samples": [{"ip": _ip(h), "port": p} for h, p in d.samples]}
        self._send("/stats/extrusion", message, "event")
        reason = REASONS[d.detector]
        # the SMTP gate's and the portal's clients are IPv4: an IPv6 client
        # is acted on by the IPv4 address of its MAC, if one is known
        ipv4 = d.ip if ":" not in d.ip else (d.mac and self.detectors.ipv4_of(d.mac))
        for action in self.actions.get(d.detector, []):
            self.counters["actions"] += 1
            if action == "quarantine":
                self.quarantine(d.ip, self.quarantine_seconds,
                                d.mac if self.quarantine_mac else None)
            elif not ipv4:
                self.counters["actions_skipped"] += 1
                _log.warn("extrusion: {action} skipped for {ip}: no IPv4 address known for "
                          "it", action=action, ip=d.ip)
            elif action == "close-smtp":
                self._send(join_address(self.smtpgate_process, "/smtpgate/close",
                                        self.registry.name),
                           {"ip": _ip(ipv4), "reason": reason}, action, "closed")
            elif action == "deauthorize":
                self._send(join_address(self.portal_process, "/portal/deauthorize",
                                        self.registry.name),
                           {"ip": _ip(ipv4), "reason": reason}, action, "deauthorized")

    def quarantine(self, ip: str, seconds: float, mac: Optional[str] = None) -> None:
        """
        Drop the new connections of C{ip} (and of C{mac}, whatever its
        address) for C{seconds}; 0 releases them.
        """
        keys: List[Any] = [ip] + ([bytes.fromhex(mac.replace(":", ""))] if mac else [])
        if seconds <= 0:
            for key in keys:
                self.quarantined.pop(key, None)
            return
        until = self.clock.seconds() + seconds
        for key in keys:
            if key not in self.quarantined and len(self.quarantined) >= self.max_quarantined:
                self.expire()
                if len(self.quarantined) >= self.max_quarantined:  # the one ending first goes
                    del self.quarantined[min(self.quarantined, key=self.quarantined.__getitem__)]
            self.quarantined[key] = until
        _log.warn("extrusion: {ip} ({mac}) quarantined for {seconds} s", ip=ip,
                  mac=mac or "?", seconds=seconds)

    def _send(self, address: str, message: Message, what: str,
              answer_key: Optional[str] = None) -> None:
        def answered(answer: Any) -> None:
            if answer_key is not None and not (isinstance(answer, dict) and answer_key in answer):
                raise ValueError(f"no answer ({answer!r}): refused, or nobody there")

        def failed(failure: Any) -> None:
            self.counters["action_errors"] += 1
            _log.warn("extrusion: {what} ({address}) failed: {error}", what=what,
                      address=address, error=failure.getErrorMessage() or failure.type.__name__)

        try:
            sent = self.registry.send(address, message)
        except Exception as e:  # an unknown mailbox, a process not configured
            self.counters["action_errors"] += 1
            _log.warn("extrusion: {what} ({address}) failed: {error}", what=what,
                      address=address, error=e)
            return
        sent.addTimeout(self.deadline, self.clock)
        sent.addCallback(answered).addErrback(failed)

    def expire(self) -> None:
        """Forget idle clients and ended quarantines."""
        now = self.clock.seconds()
        self.detectors.expire(now)
        for ip in [ip for ip, until in self.quarantined.items() if until <= now]:
            del self.quarantined[ip]

    # mailboxes

    def _counters(self, message: Message) -> Stop:
        counters = dict(self.detectors.counters)
        counters.update({"clients": len(self.detectors), "quarantined": sum(
            1 for key in self.quarantined if isinstance(key, str))})
        for key in ("quarantine_dropped", "actions", "action_errors", "actions_skipped",
                    "queue_dropped", "queue_errors", "sink_errors"):
            counters[key] = self.counters[key]
        return Stop(counters)

    def _quarantine(self, message: Message) -> Stop:
        ip = str(_ip(str(message.get("ip"))))
        seconds = message.get("seconds", self.quarantine_seconds)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError("seconds must be a number >= 0")
        self.quarantine(ip, float(seconds))
        return Stop({"ip": _ip(ip), "seconds": float(seconds)})


class GuardService(Service):
    """
    Binds the queue in privilegedStartService (as root), reads it once
    started if it may give verdicts (CAP_NET_ADMIN), forgets idle clients
    every minute.
    """

    def __init__(self, guard: Guard, reader: Any, clock: Any,
                 can_give_verdicts: Optional[Any] = None) -> None:
        self.guard = guard
        self.reader = reader
        self.clock = clock
        if can_give_verdicts is None:
            from ..nfqueue import can_give_verdicts
        self.can_give_verdicts = can_give_verdicts
        self.sweep = LoopingCall(guard.expire)
        self.sweep.clock = clock

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        try:
            self.reader.start()
        except (OSError, ImportError) as e:
            _log.critical("stats: cannot read the extrusion queue {num}: {error}",
                          num=self.reader.num, error=e)
            raise SystemExit(1) from None

    def startService(self) -> None:
        Service.startService(self)
        if self.reader.running and not self.can_give_verdicts():
            # every SYN would wait in the queue: unbound, they pass (bypass)
            _log.critical("stats: extrusion detection needs CAP_NET_ADMIN once started (its "
                          "verdicts); the queue is not read")
            self.reader.stop()
        else:
            _log.info("stats: extrusion detection reading queue {num}", num=self.reader.num,
                      netsuite_event="extrusion-ready")
        self.sweep.start(60.0, now=False)

    def stopService(self) -> None:
        Service.stopService(self)
        if self.sweep.running:
            self.sweep.stop()
        self.reader.stop()


def actions_from_config(items: List[str]) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {}
    for item in items:
        detector, _, action = item.partition(":")
        for name in DETECTORS if detector == "*" else (detector,):
            if action not in found.setdefault(name, []):
                found[name].append(action)
    return found


def add_extrusion(service: Any, config: Any, registry: Any, reactor: Any,
                  make_queue: Optional[Any] = None) -> None:
    """
    The stats service's extrusion part (L{netsuite.stats.tap.PARTS}): a
    L{GuardService} child when C{[stats.extrusion]} is enabled.
    """
    section = config.stats.extrusion
    if not section.enabled:
        return
    from ..nfqueue import QueueReader
    guard = Guard(registry, reactor, Detectors(thresholds_from_config(section)),
                  actions_from_config(section.actions), section.quarantine_seconds,
                  section.action_deadline, section.smtpgate_process, config.stats.portal_process,
                  section.quarantine_mac)
    extra = {} if make_queue is None else {"make_queue": make_queue}
    reader = QueueReader(reactor, guard, section.queue, max_len=section.queue_length, **extra)
    GuardService(guard, reader, reactor).setServiceParent(service)
