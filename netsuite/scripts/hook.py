# -*- test-case-name: tests.test_hook_cli -*-
"""
C{netsuite-hook}: send to, watch and list the mailboxes of a running
netsuite process from a shell.

    netsuite-hook send dhcp:/dhcp/lookup mac=aa:bb:cc:dd:ee:ff
    netsuite-hook send netsuite:/system/log --json '{"text": "hello"}'
    netsuite-hook watch portal:/portal/login
    netsuite-hook list dhcp

Exit status: 0 done, 1 error, 2 bad usage, 3 process not running,
4 permission denied or not permitted (L{EXIT_STATUS}).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional, Sequence, TextIO

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react

from ..bus.client import AccessDenied, BusClient, NotRunning, connect
from ..bus.errors import ERRORS, NotPermitted
from ..registry.interfaces import NO_ANSWER, InvalidAddress, parse_address
from ..registry.values import InvalidValue, Message, guess, to_plain

__all__ = ["main", "parse_pairs", "parse_args"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_ACCESS_DENIED = 4

EXIT_STATUS = """\
exit status:
  0  done
  1  error: unknown mailbox, no answer within --timeout, the connection closed
     (the process refused your uid), ...
  2  bad usage
  3  the process is not running: nothing listens at its socket
  4  permission denied: you may not connect to its socket (the bus serves root,
     the daemon's own uid and bus.allowed_uids, through a socket of mode
     bus.socket_mode, default 0660); or not permitted: your uid may not send
     to or watch that mailbox (no [[bus.grant]] of the daemon gives it; list
     shows only the mailboxes you may use)
"""


class CommandError(Exception):
    """
    A problem to report in one line, with an exit code.
    """

    def __init__(self, text: str, code: int = EXIT_ERROR) -> None:
        super().__init__(text)
        self.code = code


def parse_pairs(pairs: Sequence[str]) -> Message:
    """
    Turn C{key=value} and C{key:type=value} arguments into a message; values
    are typed by L{netsuite.registry.values.guess}.
    """
    message: Message = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{pair!r}: expected key=value or key:type=value", EXIT_USAGE)
        key, _, kind = key.partition(":")
        try:
            message[key] = guess(text, kind)
        except InvalidValue as e:
            raise CommandError(f"{pair!r}: {e}", EXIT_USAGE) from None
    return message


def split_target(target: str, want_path: bool) -> tuple[str, str]:
    """
    C{PROC:/path} (or C{PROC} for C{list}) into (process, path).
    """
    if not want_path:
        process, _, prefix = target.partition(":")
        return process, prefix or "/"
    try:
        process, path = parse_address(target)
    except InvalidAddress as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if process is None:
        raise CommandError(f"{target!r}: name the process, as PROC:/path", EXIT_USAGE)
    return process, path


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="netsuite-hook",
        description="Send to, watch or list the mailboxes of a running netsuite process.",
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket-dir", help="bus socket directory "
                        "(default $NETSUITE_SOCKET_DIR or /run/netsuite)")
    parser.add_argument("--endpoint", help="client endpoint string instead of the socket "
                        "(e.g. tcp:host=10.0.0.1:port=7070)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for an answer (default 10)")
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send a message, print the result as JSON")
    send.add_argument("target", metavar="PROC:/path")
    send.add_argument("pairs", nargs="*", metavar="key[:type]=value",
                      help="types: str int float bool none bytes(hex) ip ipv4 ipv6 mac")
    send.add_argument("--json", dest="json_message", metavar="JSON",
                      help="the message as a JSON object (strings stay strings)")
    watch = commands.add_parser("watch", help="print each message sent there as a JSON line")
    watch.add_argument("target", metavar="PROC:/path")
    listing = commands.add_parser("list", help="mailboxes, listeners and counters")
    listing.add_argument("target", metavar="PROC[:/prefix]")
    listing.add_argument("--json", action="store_true", help="print JSON")
    return parser.parse_args(argv)


def _message(args: argparse.Namespace) -> Message:
    message = parse_pairs(args.pairs)
    if args.json_message is not None:
        try:
            loaded = json.loads(args.json_message)
        except ValueError as e:
            raise CommandError(f"--json: not JSON: {e}", EXIT_USAGE) from None
        if not isinstance(loaded, dict):
            raise CommandError("--json: the message must be a JSON object", EXIT_USAGE)
        message = {**loaded, **message}
    return message


def format_listing(process: str, mailboxes: List[Any], out: TextIO) -> None:
    out.write(f"process {process}: {len(mailboxes)} mailboxes\n")
    for box in mailboxes:
        c = box["counters"]
        out.write(f"{box['path']}  ({box['kind']})  messages={c['messages']} "
                  f"stops={c['stops']} errors={c['errors']} timeouts={c['timeouts']} "
                  f"seconds={c['seconds']:.6f}\n")
        if box["doc"]:
            out.write(f"    {box['doc']}\n")
        for listener in box["listeners"]:
            lc = listener["counters"]
            tags = " ".join(f"{k}={to_plain(v)}" for k, v in listener["tags"].items())
            # reasons: what the listener said of its verdicts (an older
            # daemon does not count them).
            reasons = " ".join(f"{name}={count}" for name, count
                               in sorted(lc.get("reasons", {}).items()))
            out.write(f"    listener {listener['id']} [{tags}] deadline={listener['deadline']}s "
                      f"messages={lc['messages']} stops={lc['stops']} errors={lc['errors']} "
                      f"timeouts={lc['timeouts']}"
                      f"{'  reasons: ' + reasons if reasons else ''}\n")


async def run(reactor: Any, args: argparse.Namespace, out: TextIO) -> None:
    want_path = args.command != "list"
    process, path = split_target(args.target, want_path)
    client: BusClient = connect(process, socket_dir=args.socket_dir, endpoint=args.endpoint,
                                reactor=reactor)
    try:
        await _command(reactor, args, client, process, path, out)
    except Exception:
        await client.close()
        raise
    await client.close()


async def _command(reactor: Any, args: argparse.Namespace, client: BusClient, process: str,
                   path: str, out: TextIO) -> None:
    if args.command == "send":
        message = _message(args)
        result = await _bounded(reactor, client.send(path, message), args.timeout)
        if result is NO_ANSWER:
            sys.stderr.write("netsuite-hook: no listener answered\n")
        else:
            out.write(json.dumps(to_plain(result)) + "\n")
    elif args.command == "list":
        mailboxes = await _bounded(reactor, client.describe(path), args.timeout)
        if args.json:
            out.write(json.dumps(to_plain(mailboxes), indent=2) + "\n")
        else:
            format_listing(process, mailboxes, out)
    else:
        def show(message: Message) -> None:
            out.write(json.dumps(to_plain(message)) + "\n")
            out.flush()
        handle = client.watch(path, show)
        await _bounded(reactor, client.connected(), args.timeout)
        await handle.when_attached()  # NotPermitted, UnknownMailbox... end it here
        sys.stderr.write(f"netsuite-hook: watching {args.target}\n")
        sys.stderr.flush()
        await Deferred()  # until interrupted


def _bounded(reactor: Any, d: "Deferred[Any]", timeout: float) -> "Deferred[Any]":
    return d.addTimeout(timeout, reactor)


def _explain(failure_value: BaseException, args: argparse.Namespace) -> CommandError:
    if isinstance(failure_value, CommandError):
        return failure_value
    if isinstance(failure_value, (AccessDenied, NotPermitted)):
        return CommandError(str(failure_value), EXIT_ACCESS_DENIED)
    if isinstance(failure_value, NotRunning):
        return CommandError(str(failure_value), EXIT_NOT_RUNNING)
    if isinstance(failure_value, tuple(ERRORS)):
        return CommandError(str(failure_value))
    from twisted.internet.defer import TimeoutError
    from twisted.internet.error import ConnectionClosed
    if isinstance(failure_value, TimeoutError):
        return CommandError(f"no answer within {args.timeout}s")
    if isinstance(failure_value, ConnectionClosed):
        return CommandError(f"{args.target}: the process closed the connection "
                            "(is your uid in its bus.allowed_uids?)")
    return CommandError(f"{type(failure_value).__name__}: {failure_value}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    async def start(reactor: Any) -> None:
        try:
            await run(reactor, args, sys.stdout)
        except Exception as e:
            error = _explain(e, args)
            sys.stderr.write(f"netsuite-hook: {error}\n")
            raise SystemExit(error.code) from None

    react(lambda reactor: ensureDeferred(start(reactor)))


if __name__ == "__main__":
    main()
