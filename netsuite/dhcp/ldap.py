# -*- test-case-name: tests.dhcp.test_ldap -*-
"""
The LDAP lookup: answer C{/dhcp/lookup} from a directory (RFC 2307
C{ieee802Device}/C{ipHost} entries), falling through to the pool.

The lookup never fails and never blocks the reactor. ldap3 runs in a small
thread pool, one connection per thread, re-made after any error; at most
C{threads} searches run at once and a lookup that finds every thread busy
falls through at once, so a hung server costs a bounded number of threads
and no waiting. A reactor-side timer answers C{Continue("timeout")} at the
deadline even if a thread never returns; a late answer still fills the
cache. Every verdict says why (L{REASONS}), so the listener's counters
show hits, misses, errors, time-outs and busy fall-throughs.

Used in the DHCP process (L{install}) or as a hook process
(L{netsuite.dhcp.ldaphook}).
"""

from __future__ import annotations

import functools
import ipaddress
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from twisted.internet.defer import Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..clock import clock_watch
from ..config.fields import SECRET, between, not_empty, positive_at_most
from ..config.schema import ConfigError, Field, Table, parse
from ..registry.interfaces import Continue, Remember, Stop
from ..registry.values import MAC, InvalidValue
from ..ldap import DirectoryError, IDirectory, LdapDirectory, escape_filter_value, url_error
from ..runner import IRunner, ThreadRunner

__all__ = ["LDAP_SECTION", "DEFAULT_FILTER", "LOOKUP_MAILBOX", "BUS_MARGIN", "REMEMBER_BY",
           "REASONS", "MAX_ENTRIES", "LdapLookup", "LdapHook", "install", "parse_settings",
           "settings_from_toml", "search_filter"]

_log = Logger()

LOOKUP_MAILBOX = "/dhcp/lookup"
DEFAULT_FILTER = "(&(objectClass=ieee802Device)(macAddress={mac}))"
BUS_MARGIN = 0.25
"""Seconds a listener's registry deadline exceeds the LDAP deadline."""
REMEMBER_BY = ("mac", "subnet")
"""The fields of a C{/dhcp/lookup} message a lookup's answer depends on."""
MAX_ENTRIES = 8
"""Entries asked for per search: enough to see that a MAC is ambiguous."""
REASONS = {"hits": "hit", "misses": "miss", "errors": "error", "timeouts": "timeout",
           "busy": "busy"}
"""The reason each verdict gives (C{Continue("miss")}, C{Stop(..., reason="hit")}),
by the counter of L{LdapLookup} it counts in: the listener's counters in
C{netsuite-hook list} show them."""

Entry = Tuple[str, Tuple[str, ...], Optional[str]]
"""One host entry: DN, its address values, its host name or None."""


def search_filter(template: str, mac: Any) -> str:
    """
    The search filter for C{mac} (a L{MAC} or its text): C{{mac}} in
    C{template} becomes the lower-case colon form (C{aa:bb:cc:dd:ee:ff},
    RFC 2307's), escaped.
    """
    return template.format(mac=escape_filter_value(str(MAC(mac))))


# settings

def _filter_error(value: str) -> Optional[str]:
    expected = "an LDAP filter using {mac}, such as \"" + DEFAULT_FILTER + "\""
    if "{mac}" not in value:
        return expected
    try:
        text = search_filter(value, MAC(b"\0" * 6))
        parse_filter(text, None, True, True, None, False)
    except Exception:
        return expected
    return None


LDAP_SECTION: Dict[str, Field] = {
    "enabled": Field(bool, False, "answer /dhcp/lookup from LDAP inside the DHCP process"),
    "url": Field(str, "ldap://127.0.0.1:389", "the directory: ldap://host[:port] or "
                 "ldaps://host[:port]", url_error),
    "base": Field(str, "", "DN searched (subtree), e.g. ou=hosts,dc=example,dc=org"),
    "filter": Field(str, DEFAULT_FILTER, "search filter; {mac} is the client's MAC "
                    "(aa:bb:cc:dd:ee:ff), escaped", _filter_error),
    "address_attribute": Field(str, "ipHostNumber", "attribute holding the IPv4 address",
                               not_empty("attribute name")),
    "hostname_attribute": Field(str, "cn", "attribute holding the host name ('' for none)"),
    "bind_dn": Field(str, "", "DN to bind as ('' for anonymous)"),
    "password": Field(SECRET, "", "password of bind_dn"),
    "deadline": Field(float, 1.0, "seconds the whole lookup may take, connect included; "
                      "then the pool answers", positive_at_most(60.0)),
    "cache_ttl": Field(float, 300.0, "seconds a directory entry is remembered (0: never)",
                       between(0.0, 86400.0)),
    "negative_ttl": Field(float, 60.0, "seconds an absent MAC is remembered (0: never)",
                          between(0.0, 86400.0)),
    "threads": Field(int, 4, "LDAP searches at once (worker threads)",
                     between(1, 64, "an integer")),
    "remember": Field(bool, True, "let the DHCP server reuse a cached answer for the rest "
                      "of its TTL without asking again (for the hook process, a bus round "
                      "trip saved per DISCOVER)"),
}
"""The keys of the C{[dhcp.ldap]} table."""


def parse_settings(table: Any = None, source: str = "<settings>") -> SimpleNamespace:
    """
    Check a C{[dhcp.ldap]} table (a dict, as TOML gives it); errors name
    C{source} and the key (C{dhcp.ldap.url}).
    """
    schema = {"dhcp": {"ldap": Table(LDAP_SECTION)}}
    return parse({"dhcp": {"ldap": {} if table is None else table}}, source,
                 schema).dhcp.ldap  # type: ignore[no-any-return]


def settings_from_toml(data: Dict[str, Any], source: str) -> SimpleNamespace:
    """
    The C{[dhcp.ldap]} settings of a whole parsed TOML file; other tables
    and other keys of C{[dhcp]} are not looked at.
    """
    dhcp = data.get("dhcp", {})
    if not isinstance(dhcp, dict):
        raise ConfigError(f"{source}: [dhcp] must be a table")
    return parse_settings(dhcp.get("ldap", {}), source)


# the reactor side

class _Cache:
    """
    Values by key for C{ttl} seconds of C{clock}. Every entry lives as long,
    so the oldest are first: inserting sweeps the expired off the front.
    Expiry times move with a step of the wall clock (L{netsuite.clock}):
    an entry keeps the time it had left.
    """

    def __init__(self, clock: Any, ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self._items: Dict[Any, Tuple[float, Any]] = {}
        clock_watch(clock).observe(self.shift)

    def shift(self, seconds: float) -> None:
        self._items = {key: (end + seconds, value) for key, (end, value) in self._items.items()}

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock.seconds():
            return None
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        self._items.pop(key, None)
        if self._ttl <= 0:
            return
        now = self._clock.seconds()
        self._items[key] = (now + self._ttl, value)
        while True:
            oldest = next(iter(self._items))
            if self._items[oldest][0] > now:
                break
            del self._items[oldest]

    def discard(self, key: Any) -> None:
        self._items.pop(key, None)

    def left(self, key: Any) -> float:
        """
        Seconds before the entry for C{key} expires (0 if there is none).
        """
        item = self._items.get(key)
        return 0.0 if item is None else max(0.0, item[0] - self._clock.seconds())

    def __len__(self) -> int:
        return len(self._items)


class _Busy(Exception):
    pass


def _subnet(value: Any) -> Optional[ipaddress.IPv4Network]:
    return _network(value) if isinstance(value, str) and value else None


@functools.lru_cache(maxsize=256)
def _network(text: str) -> Optional[ipaddress.IPv4Network]:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:  # a subnet's name, say
        return None


def _valid(address: ipaddress.IPv4Address, subnet: Optional[ipaddress.IPv4Network]) -> bool:
    if (address.is_unspecified or address.is_multicast or address.is_loopback
            or address.is_reserved):
        return False
    if subnet is not None and subnet.prefixlen < 31:
        return address not in (subnet.network_address, subnet.broadcast_address)
    return True


class LdapLookup:
    """
    Answers C{/dhcp/lookup} messages from the directory.

    @param settings: the C{[dhcp.ldap]} settings (L{parse_settings}).
    @param clock: times deadlines and cache entries; default the reactor.
    @param runner: where the blocking searches run; default a
        L{ThreadRunner} of C{settings.threads}.
    @param directory: the directory searched; default an
        L{LdapDirectory} on C{settings.url} as C{settings.bind_dn}.
    @ivar remember_by: with C{settings.remember}, L{REMEMBER_BY}: the
        lookup answers from the directory (fresh or cached) as L{Remember}
        for the time its cache entry has left, so a mailbox it is added to
        with this C{remember_by} need not ask again meanwhile (errors and
        time-outs are never remembered); else None.
    @ivar counters: lookups, hits, misses, errors, timeouts, cache_hits and
        busy (fell through because every thread was taken).
    """

    def __init__(self, settings: Any, reactor: Any, clock: Any = None,
                 runner: Optional[IRunner] = None,
                 directory: Optional[IDirectory] = None) -> None:
        self.settings = settings
        self.remember_by = REMEMBER_BY if settings.remember else None
        self._clock = clock if clock is not None else reactor
        self._runner = runner if runner is not None else ThreadRunner(
            reactor, settings.threads, name="netsuite-ldap", finish=False)
        self.directory = directory if directory is not None else LdapDirectory(
            settings.url, settings.bind_dn, settings.password.reveal())
        self.counters = dict.fromkeys(
            ("lookups", "hits", "misses", "errors", "timeouts", "cache_hits", "busy"), 0)
        self._found = _Cache(self._clock, settings.cache_ttl)
        self._absent = _Cache(self._clock, settings.negative_ttl)
        self._pending: Dict[MAC, List["Deferred[Tuple[Entry, ...]]"]] = {}
        self._running = 0
        self._idle: List["Deferred[None]"] = []

    def lookup(self, message: Dict[str, Any]) -> "Deferred[Any]":
        """
        C{Stop({"ip", "hostname"?, "source": "ldap"}, reason="hit")} for a
        MAC the directory knows, else C{Continue} with why (L{REASONS}:
        miss, error, timeout, busy); never fails, and answers within
        C{settings.deadline}.
        """
        self.counters["lookups"] += 1
        try:
            mac = message["mac"]
            if type(mac) is not MAC:
                mac = MAC(mac)
        except (KeyError, TypeError, InvalidValue) as e:
            return succeed(self._fall("errors", message.get("mac"), f"no usable MAC: {e}"))
        # The server sends the network; older senders put it in "subnet"
        # (the server's "subnet" is the subnet's name, which does not parse).
        subnet = _subnet(message.get("network")) or _subnet(message.get("subnet"))
        cached = self._found.get(mac)
        if cached is None:
            cached = self._absent.get(mac)
        if cached is not None:
            return succeed(self._remembered(mac, cached,
                                            self._decide(mac, cached, subnet, cached=True)))
        try:
            answer = self._ask(mac)
        except _Busy:
            return succeed(self._fall("busy", mac, f"all {self.settings.threads} LDAP threads "
                                      "are busy (is the server hung?)"))
        answer.addTimeout(self.settings.deadline, self._clock)
        answer.addCallback(lambda entries: self._remembered(
            mac, entries, self._decide(mac, entries, subnet)))
        return answer.addErrback(self._failed, mac)

    def _remembered(self, mac: MAC, entries: Tuple[Entry, ...], verdict: Any) -> Any:
        """
        The directory's verdict, as L{Remember} for the time its cache
        entry has left when remembering is on.
        """
        if self.remember_by is None:
            return verdict
        left = (self._found if entries else self._absent).left(mac)
        return Remember(verdict, left) if left > 0 else verdict

    def _ask(self, mac: MAC) -> "Deferred[Tuple[Entry, ...]]":
        """
        A fresh Deferred of the entries for C{mac}; a search already under
        way for it (a client repeating itself) is shared, not repeated.
        """
        waiter: Deferred[Tuple[Entry, ...]] = Deferred()
        waiters = self._pending.get(mac)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        if self._running >= self.settings.threads:
            raise _Busy()
        self._pending[mac] = [waiter]
        self._running += 1
        try:
            work = self._runner.run(self._search, mac)
        except Exception:
            work = Deferred()
            work.errback(Failure())
        work.addBoth(self._finished, mac)  # may run now: the runner may be synchronous
        return waiter

    def _search(self, mac: MAC) -> Tuple[Entry, ...]:
        """
        Blocking: the host entries of C{mac}, within the deadline.
        """
        settings = self.settings
        wanted = [settings.address_attribute]
        if settings.hostname_attribute:
            wanted.append(settings.hostname_attribute)
        found = self.directory.search(settings.base, search_filter(settings.filter, mac),
                                      wanted, MAX_ENTRIES, settings.deadline)
        address, name = settings.address_attribute.lower(), settings.hostname_attribute.lower()
        entries = []
        for dn, values in found:
            names = values.get(name, ()) if name else ()
            entries.append((dn, values.get(address, ()), names[0] if names else None))
        return tuple(entries)

    def _finished(self, result: Any, mac: MAC) -> None:
        self._running -= 1
        waiters = self._pending.pop(mac, [])
        if not isinstance(result, Failure):
            (self._found if result else self._absent).put(mac, result)
            (self._absent if result else self._found).discard(mac)
        late = all(w.called for w in waiters)
        for waiter in waiters:
            if waiter.called:
                continue  # timed out
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        if late:
            _log.debug("late LDAP answer for {mac}: {result}", mac=str(mac),
                       result=result.getErrorMessage() if isinstance(result, Failure)
                       else f"{len(result)} entries, cached")
        if self._running == 0:
            idle, self._idle = self._idle, []
            for done in idle:
                done.callback(None)

    def _failed(self, failure: Failure, mac: MAC) -> Any:
        if failure.check(DeferredTimeout, TimeoutError):
            return self._fall("timeouts", mac, f"no LDAP answer within "
                              f"{self.settings.deadline:g} s")
        if not failure.check(LDAPException, DirectoryError, OSError):
            _log.failure("LDAP lookup for {mac} failed unexpectedly", failure, mac=str(mac))
        return self._fall("errors", mac, f"{failure.type.__name__}: "
                          f"{failure.getErrorMessage()}")

    def _fall(self, kind: str, mac: Any, reason: str, cached: bool = False) -> Any:
        """
        Count a fall-through of C{kind} (C{misses}, C{errors}, ...; a cached
        one as a cache hit), log it when fresh; its verdict says C{kind}.
        """
        verdict = Continue(REASONS[kind])
        if cached:  # said when it was first seen; the counter goes on counting
            self.counters["cache_hits"] += 1
            return verdict
        self.counters[kind] += 1
        if kind == "misses":
            level = _log.info
        else:
            level = _log.warn
        level("LDAP lookup for {mac} falls through: {reason}", mac=str(mac), reason=reason)
        return verdict

    def _decide(self, mac: MAC, entries: Tuple[Entry, ...],
                subnet: Optional[ipaddress.IPv4Network], cached: bool = False) -> Any:
        """
        The verdict for these entries: the one valid address (in C{subnet}
        when known), or L{Continue} with the reason.
        """
        if not entries:
            return self._fall("misses", mac, "no entry in the directory", cached)
        found: Dict[ipaddress.IPv4Address, Tuple[str, Optional[str]]] = {}
        invalid = []
        outside = []
        for dn, values, hostname in entries:
            for value in values:
                try:
                    address = ipaddress.IPv4Address(value.strip())
                except ValueError:
                    address = None
                if address is None or not _valid(address, subnet):
                    invalid.append(f"{value!r} in {dn}")
                elif subnet is not None and address not in subnet:
                    outside.append(str(address))
                else:
                    found.setdefault(address, (dn, hostname))
        if len(found) > 1:
            return self._fall("errors", mac, "ambiguous: the directory gives "
                              + ", ".join(f"{a} ({dn})" for a, (dn, _) in found.items()),
                              cached)
        if not found:
            if outside:
                return self._fall("misses", mac, f"directory address "
                                  f"{', '.join(outside)} is not in {subnet}", cached)
            if invalid:
                return self._fall("errors", mac, "invalid address "
                                  + ", ".join(invalid), cached)
            return self._fall("misses", mac, "entry has no "
                              f"{self.settings.address_attribute}", cached)
        (address, (dn, hostname)), = found.items()
        self.counters["cache_hits" if cached else "hits"] += 1
        answer: Dict[str, Any] = {"ip": address, "source": "ldap"}
        if hostname and hostname.strip():
            answer["hostname"] = hostname.strip()
        _log.debug("LDAP lookup for {mac}: {ip} ({dn}){how}", mac=str(mac), ip=str(address),
                   dn=dn, how=" (cached)" if cached else "")
        return Stop(answer, reason=REASONS["hits"])

    @property
    def running(self) -> int:
        """
        How many searches run now (each holds a thread).
        """
        return self._running

    def idle(self) -> "Deferred[None]":
        """
        A fresh Deferred that fires once no search runs (at once if none
        does): searches outlive the lookups they timed out.
        """
        waiter: Deferred[None] = Deferred()
        if self._running == 0:
            waiter.callback(None)
        else:
            self._idle.append(waiter)
        return waiter

    def close(self) -> None:
        """
        Stop the threads (not waiting for running searches: their answers
        are no longer wanted) and close the connections.
        """
        self._runner.stop()
        self.directory.close()


class LdapHook:
    """
    What L{install} did: the lookup and its listener.
    """

    def __init__(self, lookup: LdapLookup, listener: Any) -> None:
        self.lookup = lookup
        self.listener = listener

    def remove(self) -> None:
        """
        Take the listener off C{/dhcp/lookup} and stop the lookup's threads.
        """
        self.listener.remove()
        self.lookup.close()


def install(registry: Any, settings: Any, reactor: Any, **options: Any) -> LdapHook:
    """
    Put an L{LdapLookup} first on C{/dhcp/lookup} of C{registry}, tagged
    C{{"hook": "ldap"}}. C{options} go to L{LdapLookup} (C{clock},
    C{runner}, C{directory}).
    """
    lookup = LdapLookup(settings, reactor, **options)
    listener = registry.listen(LOOKUP_MAILBOX, lookup.lookup, first=True,
                               tags={"hook": "ldap"}, deadline=settings.deadline + BUS_MARGIN,
                               remember_by=lookup.remember_by)
    return LdapHook(lookup, listener)
