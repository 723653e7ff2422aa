"""
The hook process of bench/soak.py: connects to the all-in-one netsuite
over its Unix socket, puts a listener first on each mailbox named that
answers CONTINUE (so every DISCOVER's /dhcp/lookup and every login's
/firewall/authorize makes a bus round trip here and goes on to the stock
listener), prints "ready" once the owner holds them all, and when its
stdin closes prints one JSON line, the calls per mailbox, and exits.

    python bench/_soak_hook.py NAME SOCKET_DIR MAILBOX...
"""

import json
import sys

from twisted.internet import reactor, stdio
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.protocol import Protocol

from netsuite.bus import CONTINUE, connect

CALLS = {}


class _ParentGone(Protocol):
    def connectionLost(self, reason=None):
        print(json.dumps({"calls": CALLS}), flush=True)
        if reactor.running:
            reactor.stop()


def hook(mailbox):
    def seen(message):
        CALLS[mailbox] += 1
        return CONTINUE
    return seen


async def main(name, socket_dir, mailboxes):
    client = connect(name, socket_dir=socket_dir, reactor=reactor)
    handles = []
    for mailbox in mailboxes:
        CALLS[mailbox] = 0
        handles.append(client.listen(mailbox, hook(mailbox), first=True, deadline=1.0))
    await gatherResults([h.attached for h in handles])
    print("ready", flush=True)


def failed(failure):
    print(f"failed: {failure.getTraceback()}", file=sys.stderr, flush=True)
    reactor.stop()


if __name__ == "__main__":
    name, socket_dir, *mailboxes = sys.argv[1:]
    stdio.StandardIO(_ParentGone())
    reactor.callWhenRunning(
        lambda: ensureDeferred(main(name, socket_dir, mailboxes)).addErrback(failed))
    reactor.run()
