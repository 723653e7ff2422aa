# -*- test-case-name: tests.config.test_schema -*-
"""
The configuration file: TOML, checked against a schema at start-up.

Every error names the file, the key and what was expected, so the daemon can
refuse to start with a message an operator can act on. Each service adds its
own section (a dict of L{Field}s) to the schema it is loaded with.
"""

from __future__ import annotations

import copy
import os
import pwd
import stat
import tomllib
from types import SimpleNamespace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from twisted.logger import Logger

from ..bus.permissions import TCP, Grant, check_prefix, uid_peer
from ..registry.interfaces import PROCESS_NAME_RE
from .fields import (CLIENT_ENDPOINT_MAP, OPTIONAL_PATH, OPTIONAL_UID, SERVER_ENDPOINT_LIST,
                     kind_of, one_of, path, positive)

__all__ = ["Field", "Table", "TableList", "ConfigError", "BASE_SECTIONS", "load", "parse",
           "defaults", "field_at", "read_toml", "bus_grants"]


_log = Logger()


class ConfigError(ValueError):
    """
    The configuration is unreadable or does not fit the schema.
    """


class Field:
    """
    One key: its kind (a L{netsuite.config.fields.Kind}, or C{str},
    C{int}, C{float}, C{bool}, C{"uid_list"}, C{"str_list"},
    C{"int_list"}, C{"str_map"}), its default (written as in TOML, and
    converted the same way), what it means, and optionally a check of the
    converted value that returns what was expected, or None.
    """

    def __init__(self, kind: Any, default: Any, doc: str,
                 check: Optional[Callable[[Any], Optional[str]]] = None) -> None:
        self.kind = kind_of(kind)
        self.raw_default = default
        self.doc = doc
        self.check = check
        value, expected = self.parse(default)
        if expected is not None:
            raise ValueError(f"the default {default!r} is not {expected}")
        self.default = value

    def parse(self, raw: Any) -> Tuple[Any, Optional[str]]:
        """
        Return (converted value, None), or (None, what was expected).
        """
        try:
            value = self.kind.convert(raw)
        except (TypeError, ValueError):
            return None, self.kind.expected
        if self.check is not None:
            expected = self.check(value)
            if expected is not None:
                return None, expected
        return value, None

    def shown(self, raw: Any) -> str:
        """
        C{raw} as an error message may show it (never a secret).
        """
        return self.kind.shown(raw)


class Table:
    """
    A nested table of a section (C{[dhcp.ldap]}): its own fields.
    """

    def __init__(self, fields: Mapping[str, Any], doc: str = "") -> None:
        self.fields = fields
        self.doc = doc


class TableList:
    """
    An array of tables (C{[[dhcp.subnet]]}), each with these fields.
    """

    def __init__(self, fields: Mapping[str, Any], doc: str = "") -> None:
        self.fields = fields
        self.doc = doc


def _octal(value: Any) -> Optional[str]:
    try:
        mode = int(value, 8)
    except ValueError:
        return "an octal file mode such as \"0660\""
    return None if 0 <= mode <= 0o777 else "an octal file mode such as \"0660\""


def _prefixes(value: Any) -> Optional[str]:
    for prefix in value:
        expected = check_prefix(prefix)
        if expected is not None:
            return f"a list of mailbox path prefixes such as \"/dhcp/\" (not {prefix!r})"
    return None


def _process_name(value: str) -> Optional[str]:
    return None if PROCESS_NAME_RE.match(value) else \
        "a process name (letters, digits, '_', '.', '-')"


BASE_SECTIONS: Dict[str, Dict[str, Field]] = {
    "process": {
        "name": Field(str, "netsuite", "this process's name on the bus", _process_name),
    },
    "bus": {
        "socket_dir": Field(str, "/run/netsuite", "directory of the bus sockets", path),
        "socket_mode": Field(str, "0660", "file mode of this process's socket", _octal),
        "listen": Field(SERVER_ENDPOINT_LIST, [], "extra server endpoints for the bus "
                        "(tcp:, ssl:)"),
        "allowed_uids": Field("uid_list", [], "uids besides root allowed on the socket"),
        "default_deadline": Field(float, 2.0, "seconds a listener may take", positive),
        "peers": Field(CLIENT_ENDPOINT_MAP, {}, "process name -> client endpoint string"),
        "grant": TableList({
            "uid": Field(OPTIONAL_UID, None, "the peer: a uid (also in allowed_uids)"),
            "user": Field(str, "", "the peer: a user name, looked up at start"),
            "peer": Field(str, "", "the peer: \"tcp\" for every peer of bus.listen",
                          lambda value: None if value in ("", TCP) else
                          "\"tcp\" (every peer of bus.listen)"),
            "send": Field("str_list", [], "mailbox prefixes it may send to", _prefixes),
            "hook": Field("str_list", [], "mailbox prefixes it may add listeners to",
                          _prefixes),
            "watch": Field("str_list", [], "mailbox prefixes it may watch", _prefixes),
        }, "what a peer other than root and the daemon's uid may do on the bus"),
    },
    "log": {
        "level": Field(str, "info", "lowest level logged",
                       one_of("debug", "info", "warn", "error", "critical")),
        "json_file": Field(OPTIONAL_PATH, "", "also write JSON lines here ('-': file descriptor 1)"),
    },
}


def defaults(sections: Mapping[str, Mapping[str, Field]] = BASE_SECTIONS) -> SimpleNamespace:
    """
    The configuration with every key at its default.
    """
    return parse({}, "<defaults>", sections)


def parse(data: Mapping[str, Any], source: str,
          sections: Mapping[str, Mapping[str, Any]] = BASE_SECTIONS) -> SimpleNamespace:
    """
    Check parsed TOML against C{sections}; return attribute access to it
    (C{config.bus.socket_dir}), defaults filled in.
    """
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section [{section}] "
                              f"(known: {', '.join(sorted(sections))})")
    config = _table(data, sections, "", source)
    config.source = source
    return config


def _table(table: Any, fields: Mapping[str, Any], where: str, source: str) -> SimpleNamespace:
    """
    One table: every key known, every value of its kind; nested L{Table}s
    and L{TableList}s checked the same way.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{where}] must be a table")
    for key in table:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{where}{'.' if where else ''}{key}' "
                              f"(known in [{where}]: {', '.join(sorted(fields))})")
    values = {}
    for key, field in fields.items():
        name = f"{where}.{key}" if where else key
        if isinstance(field, (Table, dict)):  # a section is a plain dict of fields
            subfields = field.fields if isinstance(field, Table) else field
            values[key] = _table(table.get(key, {}), subfields, name, source)
        elif isinstance(field, TableList):
            items = table.get(key, [])
            if not isinstance(items, list):
                raise ConfigError(f"{source}: key '{name}': expected a list of tables "
                                  f"([[{name}]]), got {items!r}")
            values[key] = [_table(item, field.fields, f"{name}[{i}]", source)
                           for i, item in enumerate(items)]
        elif key not in table:
            # A copy: a list or table default must not be shared by configs.
            values[key] = copy.deepcopy(field.default)
        else:
            raw = table[key]
            if field.kind.secret:
                raw = _secret_text(raw, name, source)
            value, expected = field.parse(raw)
            if expected is not None:
                raise ConfigError(f"{source}: key '{name}': expected {expected}, "
                                  f"got {field.shown(table[key])}")
            values[key] = value
    return SimpleNamespace(**values)


def _readable_by_others(mode: int) -> bool:
    return bool(mode & stat.S_IROTH)


def _secret_text(raw: Any, name: str, source: str) -> Any:
    """
    A secret key's TOML value: the secret itself, or C{{ file = "/path" }}
    for the contents of that file (its trailing newline dropped). Warns
    when a file others may read holds a secret.
    """
    if not isinstance(raw, dict):
        if raw and os.path.isfile(source) and _readable_by_others(os.stat(source).st_mode):
            _log.warn("{source}: key '{name}' holds a secret in a file every user may read: "
                      "make it 0640 or 0600, or put the secret in a file of its own: "
                      "{name} = {{ file = \"/etc/netsuite/...\" }}", source=source, name=name)
        return raw
    path = raw.get("file")
    if set(raw) != {"file"} or not isinstance(path, str) or not os.path.isabs(path):
        raise ConfigError(f"{source}: key '{name}': expected a string or "
                          f"{{ file = \"/absolute/path\" }}")
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{source}: key '{name}': cannot read the secret file "
                          f"{path}: {reason}") from None
    if _readable_by_others(mode):
        _log.warn("{path} (the secret of {source} key '{name}') may be read by every user: "
                  "make it 0640 or 0600", path=path, source=source, name=name)
    return text.rstrip("\r\n")


def _user_uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def bus_grants(config: SimpleNamespace,
               user_uid: Callable[[str], int] = _user_uid) -> "list[Grant]":
    """
    The L{Grant}s of C{[[bus.grant]]}, each naming exactly one peer
    (C{uid}, C{user} looked up with C{user_uid}, or C{peer}).

    @raise ConfigError: a grant names no peer or several, or an unknown user.
    """
    grants = []
    for index, table in enumerate(config.bus.grant):
        where = f"bus.grant[{index}]"
        named = [key for key, unset in (("uid", None), ("user", ""), ("peer", ""))
                 if getattr(table, key) != unset]
        if len(named) != 1:
            raise ConfigError(f"{config.source}: [[bus.grant]] number {index + 1} ('{where}'): "
                              f"expected exactly one of the keys uid, user, peer, got "
                              f"{', '.join(named) or 'none'}")
        if table.uid is not None:
            peer = uid_peer(table.uid)
        elif table.user:
            try:
                peer = uid_peer(user_uid(table.user))
            except KeyError:
                raise ConfigError(f"{config.source}: key '{where}.user': expected a user "
                                  f"name of this system, got {table.user!r}") from None
        else:
            peer = table.peer
        grants.append(Grant(peer, table.send, table.hook, table.watch))
    return grants


def field_at(sections: Mapping[str, Mapping[str, Any]], key: str) -> Field:
    """
    The L{Field} of a dotted key (C{"process.name"}, C{"dhcp.interface"}).
    """
    node: Any = sections
    for part in key.split("."):
        node = node.fields if isinstance(node, Table) else node
        node = node[part]
    if not isinstance(node, Field):
        raise KeyError(key)
    return node


def read_toml(path: str) -> Dict[str, Any]:
    """
    The TOML file at C{path}, parsed (not checked).

    @raise ConfigError: unreadable, or not TOML; the message names the file.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load(path: str, sections: Mapping[str, Mapping[str, Field]] = BASE_SECTIONS) -> SimpleNamespace:
    """
    Read and check the TOML file at C{path}.
    """
    return parse(read_toml(path), path, sections)
