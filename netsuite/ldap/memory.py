# -*- test-case-name: tests.ldap.test_contract -*-
"""
An in-memory directory for tests: L{LdapDirectory} itself, on ldap3's
C{MOCK_SYNC} connections to one shared in-memory tree instead of sockets,
so that searches, filters, binds, result codes and connection reuse go
through the same code as against a real server.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ldap3 import MOCK_SYNC, NONE, SIMPLE, ANONYMOUS, Connection, Server
from ldap3.core.exceptions import LDAPSocketOpenError

from .directory import LdapDirectory

__all__ = ["MemoryDirectory"]


class MemoryDirectory(LdapDirectory):
    """
    A directory held in memory. Add entries with L{add} (a C{userPassword}
    attribute makes an entry one that can bind, in clear text).

    @ivar opened: every connection opened so far (tests count reuse).
    @ivar refuse: how many of the next connections fail as a server that
        is down would (C{LDAPSocketOpenError}).
    """

    def __init__(self, bind_dn: str = "", password: str = "") -> None:
        self.server = Server("memory", get_info=NONE)
        self.opened: List[Connection] = []
        self.refuse = 0
        self._seed = Connection(self.server, client_strategy=MOCK_SYNC)
        LdapDirectory.__init__(self, "ldap://memory.invalid", bind_dn, password,
                               open_connection=self._connection)

    def add(self, dn: str, attributes: Dict[str, Any]) -> "MemoryDirectory":
        """
        Add an entry; returns the directory, so that adds chain.
        """
        self._seed.strategy.add_entry(dn, attributes)
        return self

    def use_account(self, bind_dn: str, password: str) -> "MemoryDirectory":
        """
        Search as C{bind_dn} from now on, on new connections (a fake's
        knob: the real directory's account is fixed when it is made).
        """
        self.close()
        self.bind_dn, self._password = bind_dn, password
        return self

    def _connection(self, url: str, user: str, password: str, timeout: float) -> Connection:
        if self.refuse:
            self.refuse -= 1
            raise LDAPSocketOpenError("socket connection error while opening: "
                                      "[Errno 111] Connection refused")
        connection = Connection(self.server, user=user or None, password=password or None,
                                authentication=SIMPLE if user else ANONYMOUS,
                                client_strategy=MOCK_SYNC)
        connection.open()
        self.opened.append(connection)
        return connection
