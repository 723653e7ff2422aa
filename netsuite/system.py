# -*- test-case-name: tests.test_system -*-
"""
The C{/system} mailboxes every netsuite process has.

 - C{/system/ping} (decision): answers C{{process, pid, uptime}}.
 - C{/system/mailboxes} (decision): answers the introspection listing of the
   mailboxes under C{prefix} (default C{/}).
 - C{/system/log} (event): a message C{{text, level}} sent here is written to
   the process log; watchers receive the process's log events.
 - C{/system/relay} (decision): sends C{message} on to the address C{to}
   from this process and answers its result, so a peer that reaches one
   process (over TCP, say) reaches every process that one can.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from twisted.logger import ILogObserver, LogLevel, Logger, formatEvent
from zope.interface import implementer

from .registry.interfaces import CONTINUE, NO_ANSWER, IRegistry, Stop
from .registry.registry import Registry, declare_service
from .registry.values import Message

__all__ = ["install_system_mailboxes", "LogToMailbox"]

_log = Logger(namespace="netsuite.system")

_LEVELS = {level.name: level for level in LogLevel.iterconstants()}
_ORDER = {level: rank for rank, level in enumerate(
    [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical])}


def install_system_mailboxes(registry: IRegistry, clock: Any) -> None:
    """
    Declare the C{/system} mailboxes of C{registry} with their stock
    listeners; C{clock} times the uptime from now.
    """
    started = clock.seconds()

    def ping(message: Message) -> Stop:
        return Stop({"process": registry.name, "pid": os.getpid(),
                     "uptime": clock.seconds() - started})

    def mailboxes(message: Message) -> Stop:
        prefix = message.get("prefix", "/")
        return Stop(registry.describe(prefix if isinstance(prefix, str) else "/"))

    def log(message: Message) -> Any:
        level = _LEVELS.get(str(message.get("level", "info")), LogLevel.info)
        _log.emit(level, "{text}", text=str(message.get("text", "")),
                  peer_message=True)
        return CONTINUE

    def relay(message: Message) -> Any:
        inner = message.get("message", {})
        d = registry.send(str(message.get("to", "")), inner)
        return d.addCallback(lambda result: CONTINUE if result is NO_ANSWER else Stop(result))

    declare_service(registry, "system", {
        "/system/ping": "Is the process alive? Answers {process, pid, uptime}.",
        "/system/mailboxes": "Introspection: mailboxes under 'prefix', their listeners "
                             "with tags, and counters.",
        "/system/relay": "Send 'message' on to the address 'to' (process:/path) and "
                         "answer its result.",
    }, {
        "/system/log": "Send {text, level} to log it; watch it to stream the process log.",
    }, {"/system/ping": ping, "/system/mailboxes": mailboxes, "/system/log": log,
        "/system/relay": relay})


@implementer(ILogObserver)
class LogToMailbox:
    """
    A log observer that hands events at or above C{level} to the watchers
    of C{/system/log} (not to its listeners, so logging cannot loop).
    Process plumbing, not a service: it holds the process's own
    L{netsuite.registry.Registry}'s mailbox, since telling watchers alone
    is not something L{IRegistry} offers (nor should: a peer cannot).
    """

    def __init__(self, registry: Registry, level: LogLevel) -> None:
        self._mailbox = registry.mailbox("/system/log")
        self._rank = _ORDER[level]

    def __call__(self, event: Dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if (not self._mailbox.watchers or _ORDER.get(level, 1) < self._rank
                or event.get("peer_message")):  # watchers saw it as a message
            return
        self._mailbox.tell_watchers({
            "time": float(event.get("log_time", 0.0)),
            "level": level.name,
            "namespace": str(event.get("log_namespace", "")),
            "text": formatEvent(event),
        })
