# -*- test-case-name: tests.ldap.test_contract -*-
"""
What netsuite asks of a directory: searches and simple binds, blocking,
each within a deadline for the whole request.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

from zope.interface import Interface

__all__ = ["IDirectory", "DirectoryError", "Entry", "REFUSED_BIND_CODES"]

Entry = Tuple[str, Dict[str, Tuple[str, ...]]]
"""A found entry: its DN and its attributes (lower-case names) as text."""

REFUSED_BIND_CODES = frozenset({32, 34, 48, 49, 53})
"""Result codes that mean "these credentials do not log in" (noSuchObject,
invalidDNSyntax, inappropriateAuthentication, invalidCredentials,
unwillingToPerform), not "the directory failed"."""


class DirectoryError(Exception):
    """
    The directory answered with an error (bad service credentials, no such
    base, an unusable filter).
    """


class IDirectory(Interface):
    """
    A directory reached with ldap3. Every method blocks (run it through an
    L{netsuite.runner.IRunner}) and may be called from several threads.
    """

    def search(base: str, filter: str, attributes: Sequence[str], limit: int,
               budget: float) -> Tuple[Entry, ...]:
        """
        The entries under C{base} (subtree) matching C{filter}, at most
        C{limit} (more is not an error: the first C{limit} come back), with
        the values of C{attributes}; referrals are not followed. Searches
        are made as the directory's own account (or anonymously), on a
        connection reused by the calling thread.

        @param budget: seconds for connect, bind and search together.
        @raise DirectoryError: the directory answered with an error.
        @raise TimeoutError: C{budget} ran out.
        @raise Exception: the directory could not be reached (ldap3's
            errors, L{OSError}).
        """

    def bind(dn: str, password: str, budget: float) -> bool:
        """
        Whether a simple bind as C{dn} with C{password} succeeds: True;
        refused credentials (L{REFUSED_BIND_CODES}) and an empty password
        (which would be an unauthenticated bind) are False. A fresh
        connection each time, never reused.

        @param budget: seconds for connect and bind together.
        @raise TimeoutError: C{budget} ran out.
        @raise Exception: the directory failed or could not be reached.
        """

    def bind_read(dn: str, password: str, attributes: Sequence[str],
                  budget: float) -> Optional[Dict[str, Tuple[str, ...]]]:
        """
        L{bind}, and then, as that user on the same connection, the values
        of C{attributes} of the entry C{dn} (names lower-cased; absent
        ones left out): None where L{bind} is False, C{{}} for no
        attributes asked.

        @param budget: seconds for connect, bind and read together.
        @raise DirectoryError: the entry could not be read.
        @raise TimeoutError: C{budget} ran out.
        @raise Exception: the directory failed or could not be reached.
        """

    def close() -> None:
        """
        Close every reused connection; call once no request runs.
        """


def result_code(connection: Any) -> Any:
    """
    The result code of a connection's last operation, or None.
    """
    return (connection.result or {}).get("result")
