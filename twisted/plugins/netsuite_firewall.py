from netsuite.services import ServicePlugin

netsuite_firewall = ServicePlugin(
    "firewall", "netsuite.firewall.tap",
    "netsuite firewall adapter: access control, SMTP windows and rate limits, as mailboxes",
    rank=10)
