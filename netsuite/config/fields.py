# -*- test-case-name: tests.config.test_fields -*-
"""
The kinds of config values and their checks, in one place: each kind turns
what TOML gives (a string, a number, a list) into the value the code uses
(an L{IPv4Address}, an L{IPv4Network}, a L{Secret}...) once, when the file
is loaded, or says what it expected.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Optional

from ..registry.values import MAC

__all__ = ["Kind", "Secret", "kind_of", "STR", "INT", "FLOAT", "BOOL", "STR_LIST",
           "INT_LIST", "UID_LIST", "OPTIONAL_UID", "STR_MAP", "IPV4", "IPV4_OR_NONE",
           "IPV4_LIST",
           "NETWORK", "NETWORK_LIST", "INTERFACE", "PORT", "PORT_OR_ZERO", "PORT_LIST",
           "SECONDS", "POSITIVE_SECONDS", "PATH", "OPTIONAL_PATH", "SECRET",
           "SERVER_ENDPOINT_LIST", "CLIENT_ENDPOINT_MAP", "MAC_OR_NONE", "CLIENT_ID",
           "RATE_MAP", "MAX_KBIT",
           "one_of", "between", "positive", "at_least", "positive_at_most", "not_empty",
           "ipv4_text", "path"]

Check = Callable[[Any], Optional[str]]
"""A check of a converted value: None if fine, else what was expected."""


class Secret:
    """
    A value that must not be shown: its C{str} and C{repr} hide it, so it
    never reaches an error message or a log line by accident. L{reveal}
    gives it to the one caller that needs it (a bind, a hash check).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return "Secret(<hidden>)" if self._value else "Secret('')"

    __str__ = __repr__


class Kind:
    """
    A kind of value: C{convert(raw)} returns the value the code uses, or
    raises L{ValueError} (or L{TypeError}); C{expected} says what a good
    value looks like.
    """

    def __init__(self, expected: str, convert: Callable[[Any], Any], secret: bool = False) -> None:
        self.expected = expected
        self._convert = convert
        self.secret = secret

    def convert(self, raw: Any) -> Any:
        return self._convert(raw)

    def shown(self, raw: Any) -> str:
        """
        C{raw} as an error message may show it.
        """
        return "a hidden value" if self.secret else repr(raw)


def _typed(*types: type) -> Callable[[Any], Any]:
    def convert(raw: Any) -> Any:
        if type(raw) not in types:  # bool is an int to Python, not to a config
            raise TypeError(raw)
        return raw
    return convert


def _list(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(raw: Any) -> Any:
        if not isinstance(raw, list):
            raise TypeError(raw)
        return [item(value) for value in raw]
    return convert


def _str(check: Callable[[str], Any]) -> Callable[[Any], Any]:
    """
    A string kind: C{raw} must be a string, then C{check(raw)} converts it.
    """
    def convert(raw: Any) -> Any:
        if type(raw) is not str:
            raise TypeError(raw)
        return check(raw)
    return convert


def _number(raw: Any) -> float:
    if type(raw) not in (int, float):
        raise TypeError(raw)
    return float(raw)


def _uid(raw: Any) -> int:
    if type(raw) is not int or raw < 0:
        raise ValueError(raw)
    return raw


def _str_map(raw: Any) -> Any:
    if not isinstance(raw, dict) or not all(type(v) is str for v in raw.values()):
        raise TypeError(raw)
    return dict(raw)


MAX_KBIT = 10_000_000
"""The largest rate in kbit/s (10 gbit/s), the shaper's."""


def _rates(raw: Any) -> Any:
    """
    C{{ up_kbit = N, down_kbit = N }} (either may be left out: None) as
    C{(up, down)}.
    """
    if not isinstance(raw, dict) or not raw or set(raw) - {"up_kbit", "down_kbit"}:
        raise ValueError(raw)
    for value in raw.values():
        if type(value) is not int or not 0 <= value <= MAX_KBIT:
            raise ValueError(raw)
    return (raw.get("up_kbit"), raw.get("down_kbit"))


def _rate_map(raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise TypeError(raw)
    return {MAC(key): _rates(value) for key, value in raw.items()}


def _port(low: int) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        if type(raw) is not int or not low <= raw <= 65535:
            raise ValueError(raw)
        return raw
    return convert


def _positive_int(raw: Any) -> int:
    if type(raw) is not int or raw < 1:
        raise ValueError(raw)
    return raw


def _seconds(strict: bool) -> Callable[[Any], float]:
    def convert(raw: Any) -> float:
        value = _number(raw)
        if value != value or value in (float("inf"), float("-inf")) or value < 0 or (
                strict and value == 0):
            raise ValueError(raw)
        return value
    return convert


_INTERFACE = re.compile(r"^[^/:\s]{1,15}\Z")


def _interface(raw: str) -> str:
    if not _INTERFACE.match(raw) or raw in (".", ".."):
        raise ValueError(raw)
    return raw


def _path(raw: str) -> str:
    if not raw or "\0" in raw:
        raise ValueError(raw)
    return raw


def _endpoint(parse: Callable[[Any, str], Any]) -> Callable[[str], str]:
    """
    An endpoint string, checked by building (not using) the endpoint on a
    memory reactor; the string is kept, as Twisted takes it.
    """
    def convert(raw: str) -> str:
        from twisted.internet.testing import MemoryReactor
        try:
            parse(MemoryReactor(), raw)
        except Exception as e:
            raise ValueError(raw) from e
        return raw
    return convert


def _server(reactor: Any, text: str) -> Any:
    from twisted.internet.endpoints import serverFromString
    return serverFromString(reactor, text)


def _client(reactor: Any, text: str) -> Any:
    from twisted.internet.endpoints import clientFromString
    return clientFromString(reactor, text)


def _client_map(raw: Any) -> Any:
    check = _endpoint(_client)
    return {name: check(value) for name, value in _str_map(raw).items()}


def _client_id(raw: str) -> Optional[bytes]:
    if not raw:
        return None
    value = bytes.fromhex(raw.replace(":", "").replace("-", ""))
    if len(value) < 2:
        raise ValueError(raw)
    return value


STR = Kind("a string", _typed(str))
INT = Kind("an integer", _typed(int))
FLOAT = Kind("a number", _number)
BOOL = Kind("true or false", _typed(bool))
STR_LIST = Kind("a list of strings", _list(_typed(str)))
INT_LIST = Kind("a list of integers", _list(_typed(int)))
POSITIVE_INT = Kind("an integer greater than 0", _positive_int)
UID_LIST = Kind("a list of user ids (integers >= 0)", _list(_uid))
OPTIONAL_UID = Kind("a user id (an integer >= 0)",
                    lambda raw: None if raw is None else _uid(raw))
STR_MAP = Kind("a table of strings", _str_map)
IPV4 = Kind("an IPv4 address", _str(ipaddress.IPv4Address))
IPV4_OR_NONE = Kind("an IPv4 address, or \"\" for none",
                    _str(lambda raw: ipaddress.IPv4Address(raw) if raw else None))
IPV4_LIST = Kind("a list of IPv4 addresses", _list(_str(ipaddress.IPv4Address)))
NETWORK = Kind("an IPv4 network such as \"10.89.0.0/24\"", _str(ipaddress.IPv4Network))
NETWORK_LIST = Kind("a list of IPv4 networks such as \"10.89.0.0/24\"",
                    _list(_str(ipaddress.IPv4Network)))
INTERFACE = Kind("an interface name (1 to 15 characters, no '/', ':' or space)",
                 _str(_interface))
PORT = Kind("a port number", _port(1))
PORT_OR_ZERO = Kind("a port number (0 for none)", _port(0))
PORT_LIST = Kind("a list of port numbers", _list(_port(1)))
SECONDS = Kind("seconds (0 or more)", _seconds(strict=False))
POSITIVE_SECONDS = Kind("a number of seconds greater than 0", _seconds(strict=True))
PATH = Kind("a file path", _str(_path))
OPTIONAL_PATH = Kind("a file path, or \"\" for none", _str(lambda raw: raw and _path(raw)))
SECRET = Kind("a string", _str(Secret), secret=True)
SERVER_ENDPOINT_LIST = Kind("a list of Twisted server endpoint strings (tcp:7070:...)",
                            _list(_str(_endpoint(_server))))
CLIENT_ENDPOINT_MAP = Kind("a table of Twisted client endpoint strings (tcp:host=...)",
                           _client_map)
MAC_OR_NONE = Kind("a MAC address such as \"02:00:00:00:00:01\", or \"\" for none",
                   _str(lambda raw: MAC(raw) if raw else None))
RATE_MAP = Kind("a table of MAC address -> { up_kbit = N, down_kbit = N } (kbit/s from 0, "
                "no limit, to 10000000; either may be left out)", _rate_map)
CLIENT_ID = Kind("option 61 as hex bytes (two or more), such as \"01:02:00:00:00:00:01\", "
                 "or \"\" for none", _str(_client_id))

_PLAIN = {str: STR, int: INT, float: FLOAT, bool: BOOL, "str_list": STR_LIST,
          "int_list": INT_LIST, "uid_list": UID_LIST, "str_map": STR_MAP}


def kind_of(kind: Any) -> Kind:
    """
    The L{Kind} a field names: a Kind, or C{str}, C{int}, C{float},
    C{bool}, C{"str_list"}, C{"int_list"}, C{"uid_list"}, C{"str_map"}.
    """
    return kind if isinstance(kind, Kind) else _PLAIN[kind]


# checks of converted values

def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def between(low: float, high: float, what: str = "a number") -> Check:
    return lambda value: None if low <= value <= high else f"{what} from {low:g} to {high:g}"


def positive(value: Any) -> Optional[str]:
    return None if value > 0 else "a number greater than 0"


def at_least(low: float, what: str = "") -> Check:
    return lambda value: None if value >= low else (what or f"{low:g} or more")


def path(value: str) -> Optional[str]:
    """
    A check for a string that must be a file path.
    """
    return None if value and "\0" not in value else "a file path"


def positive_at_most(high: float) -> Check:
    return lambda value: None if 0 < value <= high else f"a number above 0, at most {high:g}"


def not_empty(what: str) -> Check:
    return lambda value: None if value.strip() else f"a non-empty {what}"


def ipv4_text(value: str) -> Optional[str]:
    """
    An IPv4 address or \"\" kept as text (what a listen address is to
    Twisted).
    """
    try:
        if value:
            ipaddress.IPv4Address(value)
        return None
    except ValueError:
        return "an IPv4 address, or \"\" for all"
