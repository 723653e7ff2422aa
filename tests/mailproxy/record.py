# -*- test-case-name: tests.mailproxy.test_golden -*-
"""
Record the golden transcripts of C{tests/mailproxy/transcripts/} from the
lab's real dovecot (L{netsuite.lab.peers.DovecotPeer}) and SMTP sink, on
loopback (ports 50143, 50110, 50025; a second dovecot with TLS on 50146,
50111, and IMAPS 50993, POP3S 50995):

    sudo .venv/bin/python -m tests.mailproxy.record [NAME ...]

Each scenario is a small client: it sends its commands and reads until the
answer it waits for, and every read is recorded as one chunk, in the order
the bytes crossed (C{tests.mailproxy.session} has the file format); after
STARTTLS, or from the start on IMAPS and POP3S, the chunks are the TLS
records. The C{curl-*} ones run curl through a recording relay (on a port
the kernel picks). The user is alice, her password "secret"; the wrong one
is "wrong".
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import os
import re
import selectors
import socket
import ssl
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import twisted.test

from netsuite.lab.peer import binary
from netsuite.lab.peers import DovecotPeer, SmtpPeer
from netsuite.proxy.filters import CLIENT, SERVER

from .session import HERE, Chunk, dumps

HOST = "127.0.0.1"
IMAP_PORT, POP3_PORT, SMTP_PORT = 50143, 50110, 50025
# a second dovecot, with TLS: STARTTLS and STLS, IMAPS and POP3S
TLS_IMAP_PORT, TLS_POP3_PORT, IMAPS_PORT, POP3S_PORT = 50146, 50111, 50993, 50995
SERVER_NAME = "mail.example.test"  # the name the TLS client asks for (SNI)
USERS = {"alice": "secret"}
CERTIFICATE = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")

MESSAGE = ("From: bob@example.test\nTo: alice@example.test\nSubject: not a login\n\n"
           "a3 OK LOGIN completed\n+OK Logged in.\n.\n.+OK\n")


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


Step = Tuple[str, bytes]
SEND, EXPECT, TLS = "send", "expect", "tls"


def send(data: bytes) -> Step:
    return (SEND, data)


def expect(pattern: bytes) -> Step:
    """Read until what the server sent since the last expect matches C{pattern}."""
    return (EXPECT, pattern)


def tls(server_name: str = SERVER_NAME) -> Step:
    """Start TLS (asking for C{server_name}); what follows goes through it."""
    return (TLS, server_name.encode())


IMAP_OK = rb"(?m)^%s (OK|NO|BAD)[^\r\n]*\r\n"


def tagged(tag: str) -> Step:
    return expect(IMAP_OK % tag.encode())


POP_LINE = rb"(?m)^(\+OK|-ERR|\+)[^\r\n]*\r\n"
POP_DOT = rb"(?m)^\.\r\n"

SCENARIOS: Dict[str, Tuple[int, str, List[Step]]] = {
    "imap-login.txt": (IMAP_PORT, "LOGIN wrong then right, SELECT, FETCH of a message "
                       "holding 'a3 OK LOGIN completed'", [
        expect(rb"\r\n"),
        send(b"a1 CAPABILITY\r\n"), tagged("a1"),
        send(b"a2 LOGIN alice wrong\r\n"), tagged("a2"),
        send(b'a3 LOGIN "alice" "secret"\r\n'), tagged("a3"),
        send(b"a4 SELECT INBOX\r\n"), tagged("a4"),
        send(b"a5 FETCH 1 BODY[]\r\n"), tagged("a5"),
        send(b"a6 LOGOUT\r\n"), tagged("a6")]),
    "imap-literals.txt": (IMAP_PORT, "LOGIN with synchronizing literals (wrong), then "
                          "with LITERAL+ ones (right)", [
        expect(rb"\r\n"),
        send(b"a1 LOGIN {5}\r\n"), expect(rb"^\+[^\r\n]*\r\n"),
        send(b"alice {5}\r\n"), expect(rb"^\+[^\r\n]*\r\n"),
        send(b"wrong\r\n"), tagged("a1"),
        send(b"a2 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n"), tagged("a2"),
        send(b"a3 LOGOUT\r\n"), tagged("a3")]),
    "imap-authenticate.txt": (IMAP_PORT, "AUTHENTICATE PLAIN cancelled, LOGIN wrong, "
                              "PLAIN with SASL-IR right", [
        expect(rb"\r\n"),
        send(b"a1 AUTHENTICATE PLAIN\r\n"), expect(rb"^\+[^\r\n]*\r\n"),
        send(b"*\r\n"), tagged("a1"),
        send(b"a2 AUTHENTICATE LOGIN\r\n"), expect(rb"^\+[^\r\n]*\r\n"),
        send(b64("alice") + b"\r\n"), expect(rb"^\+[^\r\n]*\r\n"),
        send(b64("wrong") + b"\r\n"), tagged("a2"),
        send(b"a3 AUTHENTICATE PLAIN " + b64("\0alice\0secret") + b"\r\n"), tagged("a3"),
        send(b"a4 LOGOUT\r\n"), tagged("a4")]),
    "imap-pipelined.txt": (IMAP_PORT, "NOOP, LOGIN wrong, LOGIN right, SELECT in one write;"
                           " STARTTLS refused first (the lab's dovecot has no TLS)", [
        expect(rb"\r\n"),
        send(b"a0 STARTTLS\r\n"), tagged("a0"),
        send(b"a1 NOOP\r\na2 LOGIN alice wrong\r\na3 LOGIN alice secret\r\n"
             b"a4 SELECT INBOX\r\n"), tagged("a4"),
        send(b"a5 LOGOUT\r\n"), tagged("a5")]),
    "pop3-user.txt": (POP3_PORT, "CAPA, USER/PASS wrong then right, RETR of a message "
                      "holding '+OK' lines", [
        expect(POP_LINE),
        send(b"CAPA\r\n"), expect(POP_DOT),
        send(b"USER alice\r\n"), expect(POP_LINE),
        send(b"PASS wrong\r\n"), expect(POP_LINE),
        send(b"USER alice\r\n"), expect(POP_LINE),
        send(b"PASS secret\r\n"), expect(POP_LINE),
        send(b"RETR 1\r\n"), expect(POP_DOT),
        send(b"QUIT\r\n"), expect(POP_LINE)]),
    "pop3-auth.txt": (POP3_PORT, "AUTH list, AUTH PLAIN cancelled, AUTH LOGIN wrong, "
                      "STLS refused, AUTH PLAIN with initial response right", [
        expect(POP_LINE),
        send(b"AUTH\r\n"), expect(POP_DOT),
        send(b"AUTH PLAIN\r\n"), expect(POP_LINE),
        send(b"*\r\n"), expect(POP_LINE),
        send(b"AUTH LOGIN\r\n"), expect(POP_LINE),
        send(b64("alice") + b"\r\n"), expect(POP_LINE),
        send(b64("wrong") + b"\r\n"), expect(POP_LINE),
        send(b"STLS\r\n"), expect(POP_LINE),
        send(b"AUTH PLAIN " + b64("\0alice\0secret") + b"\r\n"), expect(POP_LINE),
        send(b"QUIT\r\n"), expect(POP_LINE)]),
    "pop3-pipelined.txt": (POP3_PORT, "APOP wrong, then CAPA, USER, PASS, STAT in one write",
                           [expect(POP_LINE)]),  # APOP needs the greeting: see apop()
    "pop3-in-use.txt": (POP3_PORT, "USER/PASS right while another session holds the "
                        "mailbox (pop3_lock_session): -ERR [IN-USE]", [
        expect(POP_LINE),
        send(b"USER alice\r\n"), expect(POP_LINE),
        send(b"PASS secret\r\n"), expect(POP_LINE)]),  # then dovecot closes
    "imap-starttls.txt": (TLS_IMAP_PORT, "STARTTLS accepted, then LOGIN inside TLS", [
        expect(rb"\r\n"),
        send(b"a1 STARTTLS\r\n"), tagged("a1"), tls(),
        send(b"a2 LOGIN alice secret\r\n"), tagged("a2"),
        send(b"a3 LOGOUT\r\n"), tagged("a3")]),
    "pop3-stls.txt": (TLS_POP3_PORT, "STLS accepted, then USER/PASS inside TLS", [
        expect(POP_LINE),
        send(b"STLS\r\n"), expect(POP_LINE), tls(),
        send(b"USER alice\r\nPASS secret\r\n"), expect(rb"(?s)\+OK.*\+OK[^\r\n]*\r\n"),
        send(b"QUIT\r\n"), expect(POP_LINE)]),
    "imaps.txt": (IMAPS_PORT, "IMAPS: TLS from the first byte, LOGIN, SELECT, LOGOUT", [
        tls(), expect(rb"\r\n"),
        send(b"a1 LOGIN alice secret\r\n"), tagged("a1"),
        send(b"a2 SELECT INBOX\r\n"), tagged("a2"),
        send(b"a3 LOGOUT\r\n"), tagged("a3")]),
    "pop3s.txt": (POP3S_PORT, "POP3S: TLS from the first byte, AUTH PLAIN, STAT, QUIT", [
        tls(), expect(POP_LINE),
        send(b"AUTH PLAIN " + b64("\0alice\0secret") + b"\r\n"), expect(POP_LINE),
        send(b"STAT\r\n"), expect(POP_LINE),
        send(b"QUIT\r\n"), expect(POP_LINE)]),
    "smtp-greeting.txt": (SMTP_PORT, "the SMTP sink's greeting: not IMAP, not POP3", [
        expect(rb"\r\n"), send(b"QUIT\r\n"), expect(rb"^221[^\r\n]*\r\n")]),
}


CURL = ["curl", "--silent", "--show-error", "--max-time", "10"]

CURL_SCENARIOS: Dict[str, Tuple[int, str, List[str]]] = {
    "curl-imap-plain.txt": (IMAP_PORT, "curl fetching INBOX message 1 (AUTHENTICATE PLAIN)",
                            ["-u", "alice:secret", "imap://{host}:{port}/INBOX/;UID=1"]),
    # (curl uses the LOGIN command only when no SASL mechanism it knows is offered)
    "curl-imap-plain-wrong.txt": (IMAP_PORT, "curl with AUTHENTICATE PLAIN (curl sends "
                                  "the initial response), wrong password",
                                  ["-u", "alice:wrong", "imap://{host}:{port}/INBOX"]),
    "curl-imap-sasl-ir.txt": (IMAP_PORT, "curl with AUTHENTICATE LOGIN and SASL-IR",
                              ["-u", "alice:secret", "--sasl-ir", "--login-options",
                               "AUTH=LOGIN", "imap://{host}:{port}/INBOX"]),
    "curl-pop3-plain.txt": (POP3_PORT, "curl retrieving message 1 (AUTH PLAIN, SASL-IR)",
                            ["-u", "alice:secret", "--sasl-ir", "pop3://{host}:{port}/1"]),
    "curl-pop3-login-wrong.txt": (POP3_PORT, "curl with AUTH LOGIN, wrong password",
                                  ["-u", "alice:wrong", "--login-options", "AUTH=LOGIN",
                                   "pop3://{host}:{port}/"]),
    "curl-pop3-apop.txt": (POP3_PORT, "curl with APOP, listing",
                           ["-u", "alice:secret", "--login-options", "AUTH=+APOP",
                            "pop3://{host}:{port}/"]),
}


def relay(upstream: int, argv: Sequence[str], timeout: float = 15.0) -> List[Chunk]:
    """
    Run C{argv} (a client, C{{port}} in its arguments replaced by the
    relay's port, one the kernel picks) through a recording relay to
    C{upstream}: every read either way is one chunk, in the order the relay
    read them, as the proxy would see them. Half-closes are passed on;
    bounded by C{timeout} seconds.
    """
    chunks: List[Chunk] = []
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(timeout)
        port = listener.getsockname()[1]
        process = subprocess.Popen([a.format(host=HOST, port=port) for a in argv],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            accepted, _ = listener.accept()
            upstream_socket = socket.create_connection((HOST, upstream), timeout)
            with accepted, upstream_socket, selectors.DefaultSelector() as selector:
                peer = {accepted: upstream_socket, upstream_socket: accepted}
                direction = {accepted: CLIENT, upstream_socket: SERVER}
                for sock in peer:
                    selector.register(sock, selectors.EVENT_READ)
                end = time.monotonic() + timeout
                while selector.get_map() and time.monotonic() < end:
                    for key, _ in selector.select(1.0):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(65536)
                        if data:
                            chunks.append((direction[sock], data))
                            peer[sock].sendall(data)
                        else:
                            selector.unregister(sock)
                            try:
                                peer[sock].shutdown(socket.SHUT_WR)
                            except OSError:
                                pass
            process.wait(timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
    return chunks


class RecordingDovecot(DovecotPeer):
    """The lab's dovecot with APOP and POP3 session locks (for IN-USE)."""

    def prepare(self, directory: str) -> List[str]:
        argv = super().prepare(directory)
        path = f"{directory}/dovecot.conf"
        with open(path) as f:
            conf = f.read()
        conf = conf.replace("auth_mechanisms = plain login", "auth_mechanisms = plain login apop")
        conf += "protocol pop3 {\n  pop3_lock_session = yes\n}\n"
        with open(path, "w") as f:
            f.write(conf)
        return argv


class TlsDovecot(RecordingDovecot):
    """
    The recording dovecot with TLS (Twisted's test certificate): STARTTLS
    and STLS on its IMAP and POP3 ports, and IMAPS and POP3S listeners.
    """

    def __init__(self, *args: Any, imaps_port: int, pop3s_port: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.imaps_port = imaps_port
        self.pop3s_port = pop3s_port

    def prepare(self, directory: str) -> List[str]:
        argv = super().prepare(directory)
        path = f"{directory}/dovecot.conf"
        with open(path) as f:
            conf = f.read()
        conf = conf.replace("ssl = no", f"ssl = yes\nssl_cert = <{CERTIFICATE}\n"
                                        f"ssl_key = <{CERTIFICATE}")
        for name, port in (("imaps", self.imaps_port), ("pop3s", self.pop3s_port)):
            conf = conf.replace(f"inet_listener {name} {{\n    port = 0\n",
                                f"inet_listener {name} {{\n    port = {port}\n    ssl = yes\n")
        with open(path, "w") as f:
            f.write(conf)
        return argv


class Client:
    """
    A recording client: every read and every write on the socket is one
    chunk (after L{start_tls}, the TLS records: what a proxy sees).
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.chunks: List[Chunk] = []
        self.deadline = timeout
        self.tls: Optional[ssl.SSLObject] = None
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.chunks.append((CLIENT, data))

    def _read(self, pattern: bytes, seen: bytes) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"closed before {pattern!r}: {seen!r}")
        self.chunks.append((SERVER, data))
        return data

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._write(data)

    def start_tls(self, server_name: str) -> None:
        """The TLS handshake (certificates unchecked: the lab's is a test one)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.tls = context.wrap_bio(self._in, self._out, server_hostname=server_name)
        end = time.monotonic() + self.deadline
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if time.monotonic() > end:
                    raise TimeoutError("TLS handshake")
                self._in.write(self._read(b"handshake", b""))

    def send(self, data: bytes) -> None:
        if self.tls is None:
            self._write(data)
        else:
            self.tls.write(data)
            self._flush()

    def expect(self, pattern: bytes) -> bytes:
        seen = b""
        end = time.monotonic() + self.deadline
        while not re.search(pattern, seen):
            if time.monotonic() > end:
                raise TimeoutError(f"no {pattern!r} in {seen!r}")
            if self.tls is None:
                seen += self._read(pattern, seen)
                continue
            try:
                seen += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._flush()
                self._in.write(self._read(pattern, seen))
        return seen

    def run(self, steps: Sequence[Step]) -> bytes:
        last = b""
        for kind, data in steps:
            if kind == SEND:
                self.send(data)
            elif kind == TLS:
                self.start_tls(data.decode())
            else:
                last = self.expect(data)
        return last

    def close(self) -> None:
        self.sock.close()


def apop(client: Client) -> None:
    """APOP wrong (the digest of the greeting's timestamp), then a pipelined login."""
    greeting = client.expect(POP_LINE)
    stamp = re.search(rb"<[^>]*>", greeting)
    if stamp is None:
        raise RuntimeError(f"no APOP timestamp in {greeting!r}")
    digest = hashlib.md5(stamp.group(0) + b"wrong").hexdigest().encode()
    client.run([send(b"APOP alice " + digest + b"\r\n"), expect(POP_LINE),
                send(b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n"),
                expect(rb"(?m)^\+OK \d+ \d+\r\n"),  # STAT's answer, the last
                send(b"QUIT\r\n"), expect(POP_LINE)])


class Recorder:
    """
    The lab's dovecot (one without TLS, one with), and its SMTP sink, on
    loopback, and the scenarios run against them: C{with Recorder() as r:
    chunks = r.capture(name)}. Every port is the recording's plus
    C{offset} (so a test can run beside a recording).
    """

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        port = self.port
        self.dovecot = RecordingDovecot(None, HOST, users=USERS, imap_port=port(IMAP_PORT),
                                        pop3_port=port(POP3_PORT), auth_failure_delay=0)
        self.tls_dovecot = TlsDovecot(None, HOST, users=USERS, imap_port=port(TLS_IMAP_PORT),
                                      pop3_port=port(TLS_POP3_PORT), auth_failure_delay=0,
                                      imaps_port=port(IMAPS_PORT), pop3s_port=port(POP3S_PORT))
        self.smtp = SmtpPeer(None, HOST, port=port(SMTP_PORT))
        self._stack = contextlib.ExitStack()

    def port(self, recorded: int) -> int:
        return recorded + self.offset

    def __enter__(self) -> "Recorder":
        with contextlib.ExitStack() as stack:
            for peer in (self.dovecot, self.tls_dovecot, self.smtp):
                stack.enter_context(peer)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def capture(self, name: str) -> List[Chunk]:
        """Run scenario C{name}; return its chunks in the order they crossed."""
        if name in CURL_SCENARIOS:
            port, _, args = CURL_SCENARIOS[name]
            self.dovecot.add_message("alice", MESSAGE)
            return relay(self.port(port), [binary("curl")] + CURL[1:] + args)
        port, _, steps = SCENARIOS[name]
        (self.dovecot if port in (IMAP_PORT, POP3_PORT) else self.tls_dovecot).add_message(
            "alice", MESSAGE)
        port = self.port(port)
        holder = None
        if name == "pop3-in-use.txt":  # a first session holds the mailbox
            holder = Client(self.port(POP3_PORT))
            holder.run([expect(POP_LINE), send(b"USER alice\r\nPASS secret\r\n"),
                        expect(rb"(?s)\+OK.*\+OK[^\r\n]*\r\n")])
        # dovecot answers IN-USE once its lock wait (about 10 s) is over
        client = Client(port, timeout=30.0 if holder else 5.0)
        try:
            if name == "pop3-pipelined.txt":
                apop(client)
            else:
                client.run(steps)
        finally:
            client.close()
            if holder is not None:
                holder.close()
        return client.chunks


def record(names: Sequence[str]) -> None:
    version = subprocess.run([binary("dovecot"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    curl = subprocess.run([binary("curl"), "--version"], capture_output=True,
                          text=True).stdout.split("\n")[0].split(" (")[0]
    today = datetime.date.today().isoformat()
    with Recorder() as recorder:
        for name in names:
            if name in CURL_SCENARIOS:
                port, what, args = CURL_SCENARIOS[name]
                line = " ".join(args).format(host=HOST, port="RELAY")
                what += f" ({curl}: curl {line}, through the relay)"
            else:
                port, what, _ = SCENARIOS[name]
            chunks = recorder.capture(name)
            server = ("smtp sink (netsuite.lab.smtpsink)" if port == SMTP_PORT
                      else f"dovecot {version}")
            text = dumps(chunks, [
                f"{name}: {what}",
                f"recorded {today} by tests/mailproxy/record.py from {server} on "
                f"{HOST}:{port}; alice's password is 'secret'"])
            with open(f"{HERE}/{name}", "w") as f:
                f.write(text)
            print(f"{name}: {len(chunks)} chunks")


if __name__ == "__main__":
    record(sys.argv[1:] or sorted(list(SCENARIOS) + list(CURL_SCENARIOS)))
