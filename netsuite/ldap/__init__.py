"""
LDAP for every service: parsing C{ldap://} URLs, escaping, connections set
up, reused and bounded by a deadline that covers the whole request
(L{LdapDirectory}), its interface (L{IDirectory}) and its in-memory fake
(L{MemoryDirectory}). The DHCP lookup searches with it, the portal's login
binds with it.
"""

from .directory import (LdapDirectory, escape_dn_value, escape_filter_value, open_connection,
                        server_address, url_error)
from .interfaces import DirectoryError, IDirectory
from .memory import MemoryDirectory

__all__ = ["IDirectory", "DirectoryError", "LdapDirectory", "MemoryDirectory",
           "open_connection", "server_address", "url_error", "escape_filter_value",
           "escape_dn_value"]
