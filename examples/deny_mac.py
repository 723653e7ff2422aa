"""Refuse to authorize listed MAC addresses: hooks /firewall/authorize of a running netsuite.

    python examples/deny_mac.py PROCESS SOCKET_DIR MAC [MAC ...]
"""
import sys

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from netsuite.bus import CONTINUE, MAC, Stop, connect


def main(reactor, process, socket_dir, *banned):
    bus = connect(process, socket_dir=socket_dir, reactor=reactor)
    banned = {MAC(mac) for mac in banned}

    @bus.listen("/firewall/authorize", first=True, tags={"script": "deny_mac"})
    def deny(message):
        if MAC(message["mac"]) in banned:
            return Stop({"authorized": False, "reason": "banned by deny_mac.py"})
        return CONTINUE  # everyone else: the firewall authorizes as usual

    deny.listener.attached.addCallback(lambda _: print("hooked", flush=True))
    return Deferred()  # run until interrupted


react(main, sys.argv[1:])
