from netsuite.services import ServicePlugin

netsuite_dhcp = ServicePlugin(
    "dhcp", "netsuite.dhcp.tap",
    "netsuite DHCPv4 server: leases, relays, option 114, hook points, LDAP lookup",
    rank=20)
