"""Hook /system/ping of a running netsuite process, in front of the stock listener.

    python examples/ping_hook.py [PROCESS [SOCKET_DIR]]
"""
import sys

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from netsuite.bus import CONTINUE, Stop, connect


def main(reactor, process="netsuite", socket_dir=None):
    bus = connect(process, socket_dir=socket_dir, reactor=reactor)

    @bus.listen("/system/ping", first=True, tags={"script": "ping_hook"})
    def ping(message):
        if message.get("who") == "operator":
            return Stop({"greeting": "hello operator", "hooked_by": "ping_hook"})
        return CONTINUE  # anyone else falls through to the stock answer

    ping.listener.attached.addCallback(lambda _: print("hooked", flush=True))
    return Deferred()  # run until interrupted; re-attaches by itself after a restart


react(main, sys.argv[1:])
