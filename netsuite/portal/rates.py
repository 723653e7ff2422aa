# -*- test-case-name: tests.portal.test_rates -*-
"""
A user's rate limits from the login back ends: the C{up_kbit} and
C{down_kbit} that an answer on C{/portal/authenticate} may carry, which the
portal passes on to C{/firewall/authorize} (and keeps in the session, for
a restore). Pure: parsing and checking only.

In the users file, a third field after the hash::

    alice:scrypt$16384$8$1$...$...:up_kbit=1000,down_kbit=4000

In LDAP, an attribute per direction of the user's entry (named in
C{[portal.auth]} C{ldap_up_attribute}, C{ldap_down_attribute}), a whole
number of kbit/s.

A direction left out gets the firewall's choice (C{[firewall.rates]} by
MAC, then its default); 0 is no limit of its own.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ..config.fields import MAX_KBIT

__all__ = ["RATE_KEYS", "Rates", "parse_rates", "check_rate", "answer_rates",
           "attribute_rates", "session_rates"]

RATE_KEYS = ("up_kbit", "down_kbit")

Rates = Dict[str, int]
"""Some of C{up_kbit}, C{down_kbit} -> kbit/s (0 to 10,000,000)."""


def check_rate(name: str, value: Any) -> int:
    """
    C{value} as a rate of C{name}, or C{ValueError} saying what is wrong.
    """
    if type(value) is str and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 0 <= value <= MAX_KBIT:
        raise ValueError(f"{name} must be a whole number of kbit/s from 0 (no limit) to "
                         f"{MAX_KBIT}, not {value!r}")
    return value


def parse_rates(text: str) -> Rates:
    """
    C{"up_kbit=1000,down_kbit=4000"} (either may be left out; commas or
    spaces between) as L{Rates}; C{ValueError} saying what is wrong.
    """
    rates: Rates = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or name not in RATE_KEYS:
            raise ValueError(f"{item!r} is not up_kbit=N or down_kbit=N")
        if name in rates:
            raise ValueError(f"{name} is given twice")
        rates[name] = check_rate(name, value)
    if not rates:
        raise ValueError("no rate after the last ':' (up_kbit=N,down_kbit=N)")
    return rates


def answer_rates(answer: Mapping[str, Any]) -> Rates:
    """
    The rates an answer on C{/portal/authenticate} carries (none: {});
    C{ValueError} for a bad one (a back end's bug: the login is refused
    rather than let in without the limit meant for it).
    """
    return {name: check_rate(name, answer[name]) for name in RATE_KEYS
            if answer.get(name) is not None}


def attribute_rates(attributes: Mapping[str, Sequence[str]], up: str, down: str) -> Rates:
    """
    The rates in a directory entry's C{attributes} (lower-case names, as
    L{netsuite.ldap.IDirectory} gives them) named C{up} and C{down} ("":
    none); an absent attribute is no rate; C{ValueError} for a value that is
    not one.
    """
    rates: Rates = {}
    for key, name in zip(RATE_KEYS, (up, down)):
        values = attributes.get(name.lower()) if name else None
        if values:
            rates[key] = check_rate(name, values[0])
    return rates


def session_rates(up_kbit: Optional[int], down_kbit: Optional[int]) -> Rates:
    """
    The rates kept in a session (None: not given), as L{Rates}.
    """
    return {name: value for name, value in zip(RATE_KEYS, (up_kbit, down_kbit))
            if value is not None}
