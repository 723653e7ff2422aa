"""
netsuite-dns: the access point's forwarding resolver, its policy before
login and its walled garden by name (docs/dns.md).
"""
