# -*- test-case-name: tests.stats.test_tap -*-
"""
C{twistd netsuite-stats}, and the C{[stats]} section of the config: the
sampler and its store (the core keys), the accounting log, the Prometheus
endpoint, the operator's graphs and the extrusion detectors (a table
each).
"""

from __future__ import annotations

from typing import Any, Callable, List

from twisted.application.service import MultiService

from ..config.fields import INTERFACE, PATH, Kind
from ..config.schema import ConfigError, Field, Table
from ..services import Readiness
from . import guard, layout
from .model import Traffic

__all__ = ["SECTION", "CAPABILITIES", "check", "serviceFromConfig", "StatsService"]

# It reads the firewall's counters over the bus and an interface's from
# netlink (unprivileged). The extrusion detectors' queue needs CAP_NET_ADMIN
# once started: the kernel takes each verdict only from a process that has
# it (netsuite.nfqueue.can_give_verdicts). Declared whether or not
# [stats.extrusion] is enabled: a unit cannot know the config.
CAPABILITIES: "frozenset[str]" = frozenset({"CAP_NET_ADMIN"})


def _interval(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not layout.valid_step(raw):
        raise ValueError(raw)
    return raw


INTERVAL = Kind("seconds that divide 300 (1, 2, 5, 10, 15, 20, 30, 60, ... 300)", _interval)
OPTIONAL_INTERFACE = Kind('an interface name, or "" for the firewall\'s wan_interface',
                          lambda raw: raw if raw == "" else INTERFACE.convert(raw))

SECTION = {
    "enabled": Field(bool, False, "run the stats service in this process"),
    "interval": Field(INTERVAL, 10, "seconds between samples of the kernel's counters (the "
                      "series' step; it must divide 300)"),
    "directory": Field(PATH, "/var/lib/netsuite/stats", "the round-robin files: "
                       f"uplink.rrd and clients/MAC.rrd (about {layout.BYTES_PER_FILE // 1000} "
                       "KB a client at a 10 s interval, whatever the history)"),
    "uplink_interface": Field(OPTIONAL_INTERFACE, "", "the interface whose counters are the "
                              "uplink's (\"\": firewall.wan_interface)"),
    "firewall_process": Field(str, "", "process running the firewall, whose /firewall/counters "
                              "are sampled (\"\": this one)"),
    "portal_process": Field(str, "", "process running the portal, whose /portal/login and "
                            "/portal/logout events make the accounting log (\"\": this one)"),
    "extrusion": Table(guard.SECTION, "the extrusion detectors (netsuite.stats.guard)"),
}

# The operator's graphs (netsuite.stats.operator).
from .operator import OPERATOR_SECTION  # noqa: E402
SECTION["operator"] = Table(OPERATOR_SECTION, "the operator's traffic graphs over HTTPS, "
                            "behind [portal.operator]'s credentials")


def check(config: Any) -> None:
    """Checks across keys, made when a process that runs stats starts."""
    section = config.stats
    if section.directory in ("", "/"):
        raise ConfigError(f"{config.source}: stats.directory must be a directory of its own")
    if section.operator.enabled:
        from .operator import check as check_operator
        check_operator(config)
    guard.check(config)


class StatsService(MultiService):
    """
    The sampler and whatever of the rest the config enables, as child
    services, around one L{Traffic} model they share; ready once its
    children are started.
    """

    def __init__(self, traffic: Traffic) -> None:
        MultiService.__init__(self)
        self.traffic = traffic
        self.readiness = Readiness()

    def startService(self) -> None:
        MultiService.startService(self)
        self.readiness.fire()

    def when_ready(self) -> Any:
        return self.readiness.when()


def serviceFromConfig(config: Any, registry: Any, reactor: Any) -> StatsService:
    service = StatsService(Traffic())
    # Each part adds its child services and mailboxes (one function each).
    for part in PARTS:
        part(service, config, registry, reactor)
    return service


def _sampler(service: StatsService, config: Any, registry: Any, reactor: Any) -> None:
    """The core: the sampler, the store and their mailboxes (docs/stats.md)."""
    from ..runner import ThreadRunner
    from .sampler import Sampler
    from .store import Store, StoreService
    from .usage import declare_core
    section = config.stats
    store = Store(section.directory, section.interval,
                  ThreadRunner(reactor, name="netsuite-stats-store"))
    store.subscribe(service.traffic)
    StoreService(store, reactor).setServiceParent(service)
    sampler = Sampler(service.traffic, registry, reactor,
                      ThreadRunner(reactor, name="netsuite-stats-netlink", finish=False),
                      section.interval, section.firewall_process,
                      section.uplink_interface or config.firewall.wan_interface)
    sampler.setServiceParent(service)
    declare_core(registry, service.traffic, sampler, store)


PARTS: "List[Callable[[StatsService, Any, Any, Any], None]]" = [_sampler]
"""The parts of the service, in the order they are built and started."""


def _operator(service: StatsService, config: Any, registry: Any, reactor: Any) -> None:
    """C{[stats.operator]}: the operator's graphs over HTTPS (L{netsuite.stats.operator})."""
    if config.stats.operator.enabled:
        from .operator import add_operator
        add_operator(service, config, reactor)


PARTS.append(_operator)


# The accounting log and the Prometheus metrics: a sub-table and a part each
# (netsuite/stats/accounting.py, metrics.py; metrics reads the accounting's
# counters, so it comes after it).
from . import accounting, metrics  # noqa: E402

SECTION["accounting"] = Table(accounting.FIELDS, "the accounting log of sessions")
SECTION["metrics"] = Table(metrics.FIELDS, "Prometheus metrics over HTTP")
PARTS += [accounting.part, metrics.part]

PARTS.append(guard.add_extrusion)
