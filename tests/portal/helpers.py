"""
The portal tests' fixture: L{netsuite.portal.testing} (a portal with an
in-memory firewall and a Clock, and fake web requests), and a second
client with no known MAC.
"""

import ipaddress

from netsuite.portal.testing import A, HOST, LAN, MAC_A, FakeRequest, PortalFixture

B = ipaddress.IPv4Address("10.89.0.12")

__all__ = ["A", "B", "HOST", "LAN", "MAC_A", "FakeRequest", "PortalFixture"]
