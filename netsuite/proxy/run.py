# -*- test-case-name: tests.integration.test_proxy_lab -*-
"""
One proxy instance from the command line, for the lab, tests and
benchmarks (the service runs instances from the config):

    python -m netsuite.proxy.run --listen 0.0.0.0:10143 --mode tproxy [--spoof] \\
        [--module imap ...] [--to HOST:PORT] [--queue NUM] [--no-cut-through]

It prints C{listening HOST PORT} once listening, C{open JSON} for each
accepted connection (its original destination), C{event NAME JSON} for
each filter event and C{counters JSON} at exit (SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import List, Optional, Tuple

from .intercept import MODES, destination_for, listen, tcp_outbound, transparent_outbound
from .modules import find_all
from .proxy import Proxy, ProxySettings


def _address(text: str) -> Tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netsuite.proxy.run")
    parser.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--mode", choices=MODES, default="tproxy")
    parser.add_argument("--to", type=_address, metavar="HOST:PORT", help="forward mode's destination")
    parser.add_argument("--queue", type=int, default=0, metavar="NUM",
                        help="nfqueue mode: the queue read")
    parser.add_argument("--module", action="append", default=[], help="protocol module (repeat)")
    parser.add_argument("--spoof", action="store_true",
                        help="TPROXY: connect out from the client's own address")
    parser.add_argument("--no-cut-through", action="store_true")
    parser.add_argument("--idle", type=float, default=ProxySettings.idle)
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    def say(*words: str) -> None:
        print(*words, flush=True)

    modules = find_all(args.module or ["relay"])
    outbound = transparent_outbound(reactor) if args.spoof else tcp_outbound(reactor)
    counters: Counter = Counter()
    if args.mode == "nfqueue":
        from .nfqueue import QueueReader, SynTable
        syns = SynTable(reactor)
        counters = syns.counters
        QueueReader(reactor, syns, args.queue).start()
        destination = destination_for("nfqueue", syn_table=syns)
    else:
        destination = destination_for(args.mode, args.to)
    proxy = Proxy(reactor, list(modules.items()), destination, outbound,
                  ProxySettings(cut_through=not args.no_cut_through, idle=args.idle),
                  on_event=lambda entry, event: say(
                      "event", event.name, json.dumps({"id": entry.id, **event.values})),
                  on_open=lambda entry: say(
                      "open", json.dumps(entry.describe(reactor.seconds()))))
    port = listen(reactor, args.listen[0], args.listen[1], proxy,
                  transparent=args.mode == "tproxy")
    host = port.getHost()
    say("listening", host.host, str(host.port))
    reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: say("counters", json.dumps({**proxy.counters, **counters})))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
