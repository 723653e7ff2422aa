from twisted.application.service import ServiceMaker

netsuite_dhcp = ServiceMaker(
    "netsuite-dhcp", "netsuite.dhcp.tap",
    "netsuite DHCPv4 server: leases, relays, option 114, hook points, LDAP lookup",
    "netsuite-dhcp")
