from netsuite.services import ServicePlugin

netsuite_mailproxy = ServicePlugin(
    "mailproxy", "netsuite.mailproxy.tap",
    "netsuite mail proxy: transparent POP3/IMAP proxy announcing mail logins (TPROXY, splice)",
    rank=40)
