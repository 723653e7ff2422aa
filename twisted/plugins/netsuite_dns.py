from netsuite.services import ServicePlugin

netsuite_dns = ServicePlugin(
    "dns", "netsuite.dns.tap",
    "netsuite DNS resolver: forwarding, cache, limits before login, garden by name, hooks",
    rank=25)
