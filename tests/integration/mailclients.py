"""
Mail clients the end-to-end lab test (test_mail_e2e_lab) runs inside a
client's namespace, one action per run: C{python mailclients.py ACTION
ARGS...}. Each prints one JSON line (what it saw) and exits 0, or fails
with the error on stderr. Standard library only; every socket has a
time-out.
"""

import hashlib
import imaplib
import json
import poplib
import re
import smtplib
import socket
import ssl
import sys
import time

TIMEOUT = 10


def out(**values):
    print(json.dumps(values), flush=True)


def imap_login(host, user, password):
    """LOGIN (imaplib): "ok", or the server's refusal."""
    client = imaplib.IMAP4(host, 143, timeout=TIMEOUT)
    try:
        client.login(user, password)
    except imaplib.IMAP4.error as e:
        out(outcome="failure", error=str(e))
        return
    client.logout()
    out(outcome="success")


def imap_connect(host, wait):
    """A bare connect to port 143 (C{wait} s at most): the greeting, a reset, or a time-out."""
    start = time.monotonic()
    try:
        s = socket.create_connection((host, 143), timeout=float(wait))
        data = s.recv(64)
        out(got="greeting" if data else "closed", first=data.decode(errors="replace"),
            seconds=round(time.monotonic() - start, 3))
    except ConnectionRefusedError:
        out(got="refused", seconds=round(time.monotonic() - start, 3))
    except ConnectionResetError:
        out(got="reset", seconds=round(time.monotonic() - start, 3))
    except socket.timeout:
        out(got="timeout", seconds=round(time.monotonic() - start, 3))


def smtp_send(host, tag):
    """A message through host:25 (smtplib)."""
    s = smtplib.SMTP(host, 25, timeout=TIMEOUT)
    s.sendmail("a@lan.test", ["b@upstream.test"], f"Subject: e2e\r\n\r\nhello from {tag}\r\n")
    s.quit()
    out(sent=tag)


def _fetch(client, uid):
    typ, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    return data[0][1]


def imap_session(host, user, password, size):
    """
    SELECT, FETCH of every message (sha256 each), APPEND of C{size} bytes
    and FETCH of it back (sha256 of both).
    """
    client = imaplib.IMAP4(host, 143, timeout=TIMEOUT)
    client.login(user, password)
    typ, data = client.select("INBOX")
    assert typ == "OK", (typ, data)
    exists = int(data[0])
    typ, data = client.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    fetched = {uid.decode(): hashlib.sha256(_fetch(client, uid)).hexdigest() for uid in uids}
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/0123456789abcd\r\n"
    head = b"From: e2e@lan.test\r\nSubject: a big one\r\n\r\n"
    body = (line * (size // len(line) + 1))[: size - len(head)]
    message = head + body
    typ, data = client.append("INBOX", None, None, message)
    assert typ == "OK", (typ, data)
    appended = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1)
    back = _fetch(client, appended)
    client.logout()
    out(exists=exists, fetched=fetched, appended=len(message),
        sent=hashlib.sha256(message).hexdigest(), back=hashlib.sha256(back).hexdigest())


def _line(sock, buffer, pattern, deadline):
    while True:
        match = re.search(pattern, buffer[0])
        if match:
            buffer[0] = buffer[0][match.end():]
            return match.group(0)
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise EOFError(f"closed waiting for {pattern!r}")
        buffer[0] += data


def imap_idle(host, user, password):
    """
    IDLE on one connection; APPEND on another; the first is told (EXISTS)
    within 5 s.
    """
    sock = socket.create_connection((host, 143), timeout=TIMEOUT)
    buffer = [b""]
    deadline = time.monotonic() + TIMEOUT
    _line(sock, buffer, rb"\* OK[^\r]*\r\n", deadline)
    sock.sendall(f"i1 LOGIN {user} {password}\r\n".encode())
    _line(sock, buffer, rb"i1 OK[^\r]*\r\n", deadline)
    sock.sendall(b"i2 SELECT INBOX\r\n")
    exists = int(_line(sock, buffer, rb"\* (\d+) EXISTS", deadline).split()[1])
    _line(sock, buffer, rb"i2 OK[^\r]*\r\n", deadline)
    sock.sendall(b"i3 IDLE\r\n")
    _line(sock, buffer, rb"\+ [^\r]*\r\n", deadline)
    other = imaplib.IMAP4(host, 143, timeout=TIMEOUT)
    other.login(user, password)
    start = time.monotonic()
    other.append("INBOX", None, None, b"Subject: while idling\r\n\r\nhello\r\n")
    other.logout()
    told = _line(sock, buffer, rb"\* \d+ EXISTS", time.monotonic() + 5)
    announced = round(time.monotonic() - start, 3)
    sock.sendall(b"DONE\r\n")
    _line(sock, buffer, rb"i3 OK[^\r]*\r\n", time.monotonic() + 5)
    sock.sendall(b"i4 LOGOUT\r\n")
    sock.close()
    out(before=exists, after=int(told.split()[1]), seconds=announced)


def pop3_login(host, user, password):
    """USER/PASS (poplib), then STAT."""
    client = poplib.POP3(host, 110, timeout=TIMEOUT)
    client.user(user)
    try:
        client.pass_(password)
    except poplib.error_proto as e:
        out(outcome="failure", error=str(e))
        return
    count, _ = client.stat()
    client.quit()
    out(outcome="success", messages=count)


def _unverified(server_name):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imaps_session(host, user, password, server_name):
    """IMAPS (993): LOGIN, SELECT, FETCH every message (sha256 each)."""
    client = imaplib.IMAP4_SSL(host, 993, ssl_context=_unverified(server_name), timeout=TIMEOUT)
    client.login(user, password)
    client.select("INBOX")
    typ, data = client.uid("SEARCH", None, "ALL")
    fetched = {uid.decode(): hashlib.sha256(_fetch(client, uid)).hexdigest()
               for uid in data[0].split()}
    client.logout()
    out(fetched=fetched)


def pop3s_session(host, user, password, server_name):
    """POP3S (995): USER/PASS, RETR 1 (sha256 of its lines, CRLF-joined)."""
    client = poplib.POP3_SSL(host, 995, context=_unverified(server_name), timeout=TIMEOUT)
    client.user(user)
    client.pass_(password)
    _, lines, _ = client.retr(1)
    client.quit()
    out(retr=hashlib.sha256(b"\r\n".join(lines) + b"\r\n").hexdigest())


ACTIONS = {f.__name__: f for f in (imap_login, imap_connect, smtp_send, imap_session, imap_idle,
                                   pop3_login, imaps_session, pop3s_session)}

if __name__ == "__main__":
    action, *args = sys.argv[1:]
    function = ACTIONS[action]
    if action == "imap_session":
        args[-1] = int(args[-1])
    function(*args)
