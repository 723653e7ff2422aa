"""
Config files the lab's benchmarks and integration tests share (format them
with their own values).
"""

__all__ = ["AP_WITH_SLAPD"]

AP_WITH_SLAPD = """
[firewall]
enabled = true
lan_interface = "br-lan"
wan_interface = "wan0"
portal_port = 5280

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{state}/leases.sqlite"

[[dhcp.subnet]]
interface = "br-lan"

[dhcp.ldap]
enabled = {in_process}
url = "{ldap}"
base = "{base}"
deadline = {deadline}

[portal]
enabled = true
session_file = "{state}/sessions.sqlite"
firewall_process = "{firewall}"
dhcp_process = "{dhcp}"

[portal.auth]
ldap_url = "{portal_ldap}"
ldap_deadline = {deadline}
"""
"""
An access point's firewall, DHCP server and portal, as one process or as
several (C{firewall_process}, C{dhcp_process}), with DHCP's LDAP lookup
(C{in_process}: true, or a hook process) and the portal's LDAP login both
against slapd at C{ldap}/C{portal_ldap} with a C{deadline}. Fields:
C{state}, C{in_process}, C{ldap}, C{base}, C{deadline}, C{firewall},
C{dhcp}, C{portal_ldap}.
"""
