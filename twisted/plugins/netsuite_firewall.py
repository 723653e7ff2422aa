from twisted.application.service import ServiceMaker

netsuite_firewall = ServiceMaker(
    "netsuite-firewall", "netsuite.firewall.tap",
    "netsuite firewall adapter: access control, SMTP windows and rate limits, as mailboxes",
    "netsuite-firewall")
