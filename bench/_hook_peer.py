"""
The hook-client process of bench/bus.py: connects to the bench's registry
over its Unix socket with netsuite.bus.connect, prepends a listener on the
mailbox that answers Stop("allow"), and prints "ready" once the owner holds
the listener. It exits when its stdin closes (the bench has gone).

    python bench/_hook_peer.py NAME SOCKET_DIR MAILBOX
"""

import sys

from twisted.internet import reactor, stdio
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Protocol

from netsuite.bus import Stop, connect

ANSWER = Stop("allow")


def hook(message):
    return ANSWER


class _ParentGone(Protocol):
    def connectionLost(self, reason=None):
        if reactor.running:
            reactor.stop()


async def main(name, socket_dir, mailbox):
    client = connect(name, socket_dir=socket_dir, reactor=reactor)
    handle = client.listen(mailbox, hook, first=True, deadline=1.0)
    await handle.attached
    print("ready", flush=True)


def failed(failure):
    print(f"failed: {failure.getTraceback()}", file=sys.stderr, flush=True)
    reactor.stop()


if __name__ == "__main__":
    name, socket_dir, mailbox = sys.argv[1:4]
    stdio.StandardIO(_ParentGone())
    reactor.callWhenRunning(
        lambda: ensureDeferred(main(name, socket_dir, mailbox)).addErrback(failed))
    reactor.run()
