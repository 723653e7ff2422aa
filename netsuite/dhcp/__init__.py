"""
The DHCP server: a pure DHCPv4 codec (L{netsuite.dhcp.packet},
L{netsuite.dhcp.options}), address pools, leases and the Twisted service.
"""

from typing import List

__all__: List[str] = []
