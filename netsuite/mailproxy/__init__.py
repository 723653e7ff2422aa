"""
netsuite-mailproxy: a transparent proxy that watches a client's POP3 and
IMAP sessions with its own mail server and announces its logins (for the
SMTP gate), on the framework of L{netsuite.proxy}.

The protocol modules are pure filters for L{netsuite.proxy.filters}:
L{netsuite.mailproxy.imap.imap} and L{netsuite.mailproxy.pop3.pop3} read
the logins of a clear-text session, L{netsuite.mailproxy.tls.tls_login}
the server name of a TLS one (see C{docs/mailproxy.md}, "Login detection").
"""
