"""
A hook process for integration tests.

    hook_peer.py PROCESS SOCKET_DIR MODE [MAILBOX]

MODE "stop": answers Stop({"hooked": True, ...}) for every message.
MODE "hang": never answers (its Deferred never fires), with a 60 s deadline.
Logs to stdout, so a test can wait for "hooked" (first attach) and for
"attached 1 listeners" (every attach, re-attaches included).
"""

import os
import sys

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import globalLogBeginner, textFileLogObserver

from netsuite.bus import Stop, connect


def main(reactor, process, socket_dir, mode, mailbox="/system/ping"):
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    bus = connect(process, socket_dir=socket_dir, reactor=reactor)

    def answer(message):
        if mode == "hang":
            return Deferred()
        return Stop({"hooked": True, "hook_pid": os.getpid(), "seen": message})

    handle = bus.listen(mailbox, answer, first=True, tags={"test": mode},
                        deadline=60.0 if mode == "hang" else 5.0)
    handle.attached.addCallback(lambda _: print("hooked", flush=True))
    return Deferred()


react(main, sys.argv[1:])
