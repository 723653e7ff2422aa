# -*- test-case-name: tests.lab.test_peers -*-
"""
An SMTP sink for the lab's upstream, on twisted.mail: it accepts every
sender and recipient and stores each message (one per DATA, whatever the
number of recipients) as C{NNNN.eml} with its envelope in C{NNNN.json}.
It prints C{listening on ADDR:PORT} once bound and C{stored NNNN} after
each message is on disk.

    python -m netsuite.lab.smtpsink --address 0.0.0.0 --port 25 --spool DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ServerFactory
from twisted.mail import smtp
from zope.interface import implementer


class Transaction:
    """One MAIL FROM .. DATA exchange."""

    def __init__(self, spool: str, helo: bytes, mail_from: str, client: str) -> None:
        self.spool = spool
        self.envelope: Dict[str, Any] = {"helo": helo.decode("utf-8", "replace"),
                                         "mail_from": mail_from, "rcpt_to": [],
                                         "client": client}
        self.lines: List[bytes] = []
        self.message: Optional["Message"] = None

    def message_factory(self) -> Callable[[], "smtp.IMessage"]:
        def make() -> "smtp.IMessage":
            if self.message is None:
                self.message = Message(self)
                return self.message
            return Discard()
        return make

    def store(self) -> str:
        number = 1 + sum(1 for f in os.listdir(self.spool) if f.endswith(".json"))
        base = os.path.join(self.spool, f"{number:04d}")
        for suffix, data in ((".eml", b"\r\n".join(self.lines) + b"\r\n"),
                             (".json", json.dumps(self.envelope).encode())):
            with open(base + suffix + ".tmp", "wb") as f:
                f.write(data)
            os.replace(base + suffix + ".tmp", base + suffix)
        print(f"stored {number:04d} from={self.envelope['mail_from']} "
              f"to={','.join(self.envelope['rcpt_to'])}", flush=True)
        return base


@implementer(smtp.IMessage)
class Message:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    def lineReceived(self, line: bytes) -> None:
        self.transaction.lines.append(line)

    def eomReceived(self) -> "Deferred[str]":
        return succeed(self.transaction.store())

    def connectionLost(self) -> None:
        self.transaction.lines.clear()


@implementer(smtp.IMessage)
class Discard:
    """The copies Twisted asks for the second and later recipients."""

    def lineReceived(self, line: bytes) -> None:
        pass

    def eomReceived(self) -> "Deferred[None]":
        return succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Delivery:
    def __init__(self, protocol: "SinkSMTP", spool: str) -> None:
        self.protocol = protocol
        self.spool = spool
        self.transaction: Optional[Transaction] = None

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None  # store the message exactly as sent

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        peer = self.protocol.transport.getPeer()
        self.transaction = Transaction(self.spool, helo[0] or b"", str(origin),
                                       getattr(peer, "host", ""))
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], "smtp.IMessage"]:
        assert self.transaction is not None
        self.transaction.envelope["rcpt_to"].append(str(user.dest))
        return self.transaction.message_factory()


class SinkSMTP(smtp.ESMTP):
    def connectionMade(self) -> None:
        self.host = self.factory.hostname
        self.delivery = Delivery(self, self.factory.spool)
        smtp.ESMTP.connectionMade(self)


class SinkFactory(ServerFactory):
    protocol = SinkSMTP

    def __init__(self, spool: str, hostname: bytes) -> None:
        self.spool = spool
        self.hostname = hostname


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netsuite.lab.smtpsink")
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--hostname", default="upstream.test")
    args = parser.parse_args(argv)
    from twisted.internet import reactor
    port = reactor.listenTCP(args.port, SinkFactory(args.spool, args.hostname.encode()),
                             interface=args.address)
    host = port.getHost()
    print(f"listening on {host.host}:{host.port}", flush=True)
    reactor.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
