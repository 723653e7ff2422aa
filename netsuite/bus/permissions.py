# -*- test-case-name: tests.bus.test_permissions -*-
"""
Who may do what on the bus (docs/bus-protocol.md, section 1): pure
decisions, no I/O.

A peer is named by a string: C{uid:N} for a Unix-socket peer whose
SO_PEERCRED uid is N, C{tcp} for any peer of a C{bus.listen} endpoint
(certificate names will join them). Root and the daemon's own uid may do
everything; any other peer only what a grant (C{[[bus.grant]]}) gives it:
the mailbox prefixes it may C{send} to, C{hook} (add listeners) and
C{watch}. Every served peer may send to C{/system/ping}, to tell that it is
served. C{Describe} shows a peer only the mailboxes it may do something with.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Optional, Sequence, Tuple

from ..registry.interfaces import InvalidAddress, parse_address

__all__ = ["SEND", "HOOK", "WATCH", "VERBS", "TCP", "Grant", "Permissions", "uid_peer",
           "check_prefix", "RELAY"]

SEND = "send"
HOOK = "hook"
WATCH = "watch"
VERBS = (SEND, HOOK, WATCH)

TCP = "tcp"
"""The peer name of every peer of a C{bus.listen} (tcp:, ssl:) endpoint."""

RELAY = "/system/relay"
"""A send there is a send to its C{to} address too: checked as one."""

ANYONE_SENDS = frozenset({"/system/ping"})
"""Paths every served peer may send to."""

_MOST_RELAYS = 4
"""How deep relays within relays are followed before a send is refused."""


def uid_peer(uid: int) -> str:
    """
    The peer name of a Unix-socket peer running as C{uid}.
    """
    return f"uid:{uid}"


def check_prefix(prefix: Any) -> Optional[str]:
    """
    None if C{prefix} is a mailbox path prefix (C{/}, C{/dhcp},
    C{/dhcp/}, C{/dhcp/lookup}), else what was expected.
    """
    expected = "a mailbox path prefix such as \"/dhcp/\" or \"/portal/login\" (no process name)"
    if not isinstance(prefix, str):
        return expected
    if prefix == "/":
        return None
    try:
        process, _ = parse_address(prefix[:-1] if prefix.endswith("/") else prefix)
    except InvalidAddress:
        return expected
    return None if process is None else expected


def _normal(prefix: str) -> str:
    """
    C{prefix} without its trailing C{/}: C{""} for C{/} (every path).
    """
    return prefix.rstrip("/")


def _under(path: str, prefixes: Tuple[str, ...]) -> bool:
    """
    Whether C{path} is one of C{prefixes} or below one, on a path
    boundary (C{/dhcp} covers C{/dhcp/lookup}, not C{/dhcpx}).
    """
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix + "/"):
            return True
    return False


class Grant:
    """
    What one peer may do: the (normalised) prefixes of each verb.
    """

    def __init__(self, peer: str, send: Sequence[str] = (), hook: Sequence[str] = (),
                 watch: Sequence[str] = ()) -> None:
        for prefix in (*send, *hook, *watch):
            expected = check_prefix(prefix)
            if expected is not None:
                raise ValueError(f"{prefix!r}: expected {expected}")
        self.peer = peer
        self.prefixes: Dict[str, Tuple[str, ...]] = {
            SEND: tuple(_normal(p) for p in send), HOOK: tuple(_normal(p) for p in hook),
            WATCH: tuple(_normal(p) for p in watch)}

    def __repr__(self) -> str:
        return f"<Grant {self.peer} {self.prefixes!r}>"


class Permissions:
    """
    The bus's decisions: L{allows}, L{may_send}, L{shows}.

    @param grants: what peers other than C{trusted_uids} may do (several
        grants for one peer add up).
    @param trusted_uids: uids that may do everything (root and the
        daemon's own uid).
    """

    def __init__(self, grants: Iterable[Grant] = (), trusted_uids: Iterable[int] = (0,),
                 everyone: bool = False) -> None:
        self.trusted: FrozenSet[str] = frozenset(uid_peer(uid) for uid in trusted_uids)
        self._everyone = everyone
        merged: Dict[str, Dict[str, Tuple[str, ...]]] = {}
        for grant in grants:
            mine = merged.setdefault(grant.peer, {verb: () for verb in VERBS})
            for verb in VERBS:
                mine[verb] += grant.prefixes[verb]
        self._grants = merged

    @classmethod
    def everyone(cls) -> "Permissions":
        """
        Everything for every served peer, TCP peers included: what the bus
        did before it had permissions (tests, benchmarks).
        """
        return cls(everyone=True)

    def unrestricted(self, peer: str) -> bool:
        """
        Whether C{peer} may do everything (no check need be made).
        """
        if self._everyone or peer in self.trusted:
            return True
        prefixes = self._grants.get(peer)
        return prefixes is not None and all("" in prefixes[verb] for verb in VERBS)

    def allows(self, peer: str, verb: str, address: str) -> bool:
        """
        Whether C{peer} may C{verb} the mailbox at C{address}
        (C{/path} or C{process:/path}; the path decides, whichever
        process the address names).

        @raise InvalidAddress: C{address} is not a mailbox address.
        """
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}")
        if self._everyone or peer in self.trusted:
            return True
        _, path = parse_address(address)
        if verb == SEND and path in ANYONE_SENDS:
            return True
        prefixes = self._grants.get(peer)
        return prefixes is not None and _under(path, prefixes[verb])

    def may_send(self, peer: str, address: str, message: Any) -> Optional[str]:
        """
        None if C{peer} may send C{message} to C{address}, else the address
        it may not send to: C{address} itself, or the C{to} of a
        C{/system/relay} message (which sends on from this process).

        @raise InvalidAddress: C{address} is not a mailbox address.
        """
        for _ in range(_MOST_RELAYS):
            if not self.allows(peer, SEND, address):
                return address
            if parse_address(address)[1] != RELAY or self.unrestricted(peer):
                return None
            to = message.get("to") if isinstance(message, dict) else None
            inner = message.get("message", {}) if isinstance(message, dict) else None
            try:
                parse_address(to if isinstance(to, str) else "")
            except InvalidAddress:
                return f"{address} to {to!r}"
            address, message = to, inner
        return address

    def shows(self, peer: str, path: str) -> bool:
        """
        Whether C{Describe} shows C{peer} the mailbox C{path}: whether it
        may send to, hook or watch it.
        """
        return any(self.allows(peer, verb, path) for verb in VERBS)
