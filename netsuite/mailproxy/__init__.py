"""
netsuite-mailproxy: a transparent proxy that watches a client's POP3 and
IMAP sessions with its own mail server and announces its logins (for the
SMTP gate), on the framework of L{netsuite.proxy}.
"""
