# -*- test-case-name: tests.test_services -*-
"""
The services netsuite can run, found by name as plugins.

A service is a L{ServicePlugin} in C{twisted/plugins/}: one object that is
both the twistd plugin C{netsuite-NAME} and the service C{NAME} the
all-in-one process may run, found with C{getPlugins(IServicePlugin)}. Its
code is a module (C{netsuite.NAME.tap}) exporting C{SECTION} (its config
section, with an C{enabled} key) and C{serviceFromConfig(config,
registry, reactor)}, and optionally C{check(config)} (checks across keys,
made when the process starts), C{OPTIONS} (command-line overrides of
its keys) and C{CAPABILITIES} (what it needs once started, see
L{IServicePlugin.capabilities}; none if absent). The module is imported only when the service is used, so
finding the plugins stays cheap.

Which services a process runs: C{twistd netsuite-NAME} runs exactly the
service NAME, whatever its section's C{enabled} says; C{twistd netsuite}
runs every service whose section says C{enabled = true}, in L{rank}
order. Either way the process has its bus, C{/system} and logging.
"""

from __future__ import annotations

from importlib import import_module
from typing import (Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.plugin import IPlugin, getPlugins
from zope.interface import Attribute, implementer

from .config.options import Override, ProcessOptions
from .config.schema import BASE_SECTIONS, Field

__all__ = ["IServicePlugin", "ServicePlugin", "UnknownService", "Readiness", "installed",
           "find_service", "all_sections", "enabled_services"]


class UnknownService(LookupError):
    """
    No installed service has that name.
    """


class Readiness:
    """
    When a service is ready to serve (the firewall's rules in place, the
    DHCP pool loaded, the portal listening): L{when} gives a Deferred that
    fires then, at once if it already is. A service's C{when_ready()}
    returns C{self.readiness.when()}; the process starts the next service
    only then (L{netsuite.process.StartInOrder}).
    """

    def __init__(self) -> None:
        self.ready = False
        self._waiting: List["Deferred[None]"] = []

    def fire(self) -> None:
        if self.ready:
            return
        self.ready = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def when(self) -> "Deferred[None]":
        if self.ready:
            return succeed(None)
        d: "Deferred[None]" = Deferred(lambda d: self._waiting.remove(d))
        self._waiting.append(d)
        return d


class IServicePlugin(IPlugin):
    """
    A netsuite service, found by name.
    """

    name = Attribute("The service's name: its config section, and its twistd plugin's "
                     "netsuite-NAME.")
    description = Attribute("One line saying what it does.")
    rank = Attribute("Services in one process are built and started in rank order, lowest "
                     "first (the firewall first: the others use its mailboxes).")
    section = Attribute("Its config section: key -> L{netsuite.config.schema.Field}.")
    capabilities = Attribute(
        "The Linux capabilities (C{CAP_NET_ADMIN} names) it needs once started: what "
        "a process under C{twistd --uid} keeps (L{netsuite.privileges}). Its ports are "
        "bound before twistd switches uid, so binding one needs none of them.")

    def service_from_config(config: Any, registry: Any, reactor: Any) -> Any:
        """
        Build (not start) the service from the checked configuration, on
        C{registry} (an L{netsuite.registry.IRegistry}).
        """

    def check(config: Any) -> None:
        """
        Checks across keys, made before a process that runs the service
        starts; raises L{netsuite.config.schema.ConfigError}.
        """


@implementer(IPlugin, IServiceMaker, IServicePlugin)
class ServicePlugin:
    """
    A service whose code is the module C{module} (imported on first use).
    It is also the twistd plugin C{netsuite-NAME}, which runs this service
    alone.
    """

    def __init__(self, name: str, module: str, description: str, rank: int) -> None:
        self.name = name
        self.module = module
        self.description = description
        self.rank = rank
        self.tapname = f"netsuite-{name}"

    def __repr__(self) -> str:
        return f"<ServicePlugin {self.name} ({self.module})>"

    def _code(self) -> Any:
        return import_module(self.module)

    @property
    def section(self) -> Mapping[str, Field]:
        return self._code().SECTION  # type: ignore[no-any-return]

    @property
    def capabilities(self) -> FrozenSet[str]:
        return frozenset(getattr(self._code(), "CAPABILITIES", ()))

    def service_from_config(self, config: Any, registry: Any, reactor: Any) -> Any:
        return self._code().serviceFromConfig(config, registry, reactor)

    def check(self, config: Any) -> None:
        check = getattr(self._code(), "check", None)
        if check is not None:
            check(config)

    # IServiceMaker: twistd netsuite-NAME

    @property
    def options(self) -> type:
        """
        The twistd options of C{netsuite-NAME}: the common ones and the
        module's C{OPTIONS}.
        """
        plugin = self
        extra: Sequence[Override] = getattr(self._code(), "OPTIONS", ())

        class Options(ProcessOptions):
            synopsis = "[--config PATH] [--name NAME] [--socket-dir DIR]" + "".join(
                f" [--{o.long} {o.long.upper()}]" for o in extra)
            overrides = ProcessOptions.overrides + tuple(extra)

            def services(self) -> List[IServicePlugin]:
                return [plugin]

            def postOptions(self) -> None:
                ProcessOptions.postOptions(self)
                getattr(self.config, plugin.name).enabled = True  # what it runs, it says
        Options.optParameters = ProcessOptions.optParameters + [
            [o.long, o.short, None, o.help] for o in extra]
        Options.__name__ = f"{self.name.capitalize()}Options"
        return Options

    def makeService(self, options: Any, reactor: Any = None) -> MultiService:
        if reactor is None:  # under twistd (a test gives its reactor)
            from .process import stdout_apart
            stdout_apart()
        return build_process(options, reactor)


def build_process(options: Any, reactor: Any = None) -> MultiService:
    """
    The process the parsed C{options} describe: its bus, C{/system},
    logging and C{options.services()}.
    """
    from .privileges import twistd_switch
    from .process import make_process_service
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    return make_process_service(options.config, reactor, options.services(),
                                switch=twistd_switch(options))


def installed(plugins: Optional[Iterable[IServicePlugin]] = None) -> Dict[str, IServicePlugin]:
    """
    The installed services by name (or C{plugins}, given by a test).
    """
    if plugins is None:
        plugins = getPlugins(IServicePlugin)
    found: Dict[str, IServicePlugin] = {}
    for plugin in plugins:
        found.setdefault(plugin.name, plugin)
    return found


def find_service(name: str, plugins: Optional[Iterable[IServicePlugin]] = None
                 ) -> IServicePlugin:
    """
    The service called C{name}.

    @raise UnknownService: none is installed; the message names those that are.
    """
    known = installed(plugins)
    try:
        return known[name]
    except KeyError:
        raise UnknownService(f"no netsuite service named {name!r} (installed: "
                             f"{', '.join(sorted(known)) or 'none'})") from None


def all_sections(plugins: Optional[Iterable[IServicePlugin]] = None
                 ) -> Dict[str, Mapping[str, Any]]:
    """
    The whole config schema: the process's sections and every installed
    service's, so that one file serves every process of an access point.
    """
    sections: Dict[str, Mapping[str, Any]] = dict(BASE_SECTIONS)
    for name, plugin in sorted(installed(plugins).items()):
        if name in sections:
            raise ValueError(f"service {name!r} has the name of a config section of its own")
        sections[name] = plugin.section
    return sections


def enabled_services(config: Any, plugins: Optional[Iterable[IServicePlugin]] = None
                     ) -> List[IServicePlugin]:
    """
    The services whose section says C{enabled = true}, in rank order (a
    configuration made without a service's section runs none of it).
    """
    return by_rank(p for name, p in installed(plugins).items()
                   if getattr(getattr(config, name, None), "enabled", False))


def by_rank(plugins: Iterable[IServicePlugin]) -> List[IServicePlugin]:
    """
    C{plugins} in the order a process builds and starts them.
    """
    ranked: List[Tuple[int, str, IServicePlugin]] = sorted(
        (p.rank, p.name, p) for p in plugins)
    return [p for _, _, p in ranked]
