"""Open SMTP only for listed mail users: hooks /smtpgate/decide of a running SMTP gate.

    python examples/smtp_allow_users.py PROCESS SOCKET_DIR USER [USER ...]

A login by anyone else keeps SMTP closed; a listed user's goes on to the
gate's own rule (towards the server that authenticated it).
"""
import sys

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from netsuite.bus import CONTINUE, Stop, connect


def main(reactor, process, socket_dir, *users):
    bus = connect(process, socket_dir=socket_dir, reactor=reactor)
    allowed = set(users)

    @bus.listen("/smtpgate/decide", first=True, tags={"script": "smtp_allow_users"})
    def allow(message):
        if message.get("user") not in allowed:
            return Stop({"open": False, "reason": "not an allowed user"}, reason="not-allowed")
        return CONTINUE  # the gate's own rule decides where the window opens

    allow.listener.attached.addCallback(lambda _: print("hooked", flush=True))
    return Deferred()  # run until interrupted


react(main, sys.argv[1:])
