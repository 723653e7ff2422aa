# -*- test-case-name: tests.lab.test_cli -*-
"""
C{netsuite-lab}: build, inspect, use and remove a namespace lab from a shell.

    netsuite-lab up --name demo --clients 3 --addresses
    netsuite-lab status --name demo
    netsuite-lab exec c1 --name demo -- curl -s http://198.51.100.1/
    netsuite-lab down --name demo

Exit status: 0 done, 1 error (not root, lab exists or missing), 2 bad usage;
C{exec} exits with the command's own status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from .layout import LabError
from .netns import STATE_DIR, Lab
from .nsutil import ns_argv


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="netsuite-lab",
        description="A simulated Wi-Fi access point with N clients and an upstream, "
                    "in network namespaces.")
    top.add_argument("--state-dir", default=STATE_DIR, help=argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="build a lab")
    up.add_argument("--name", default="lab1")
    up.add_argument("--clients", type=int, default=2)
    up.add_argument("--addresses", action="store_true",
                    help="give clients static addresses (.11, .12, ...) and a default route")
    up.add_argument("--lan", default="10.89.0.0/24")
    up.add_argument("--wan", default="192.0.2.0/30")
    up.add_argument("--internet", default="198.51.100.1")
    up.add_argument("--ipv6", action="store_true",
                    help="IPv6 too: 2001:db8:ff::/64 WAN, 2001:db8:100::1 internet, "
                         "2001:db8:89::/64 LAN with router advertisements (radvd)")
    up.add_argument("--json", action="store_true", help="print the status as JSON")

    status = sub.add_parser("status", help="show a lab's namespaces, interfaces, routes")
    status.add_argument("--name", default="lab1")
    status.add_argument("--json", action="store_true")

    run = sub.add_parser("exec", help="run a command inside a lab namespace")
    run.add_argument("role", help="ap, up, c1, c2, ...")
    run.add_argument("--name", default="lab1")
    run.epilog = "the command follows --: netsuite-lab exec c1 -- ip addr"

    down = sub.add_parser("down", help="remove a lab")
    down.add_argument("--name", default="lab1")

    sub.add_parser("list", help="list the labs built on this machine")
    return top


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout,
         err: TextIO = sys.stderr) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: List[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    args = parser().parse_args(argv)
    args.argv = command
    try:
        if args.command == "list":
            for name in Lab.names(args.state_dir):
                print(name, file=out)
            return 0
        if os.geteuid() != 0:
            raise LabError("must run as root (network namespaces need "
                           "CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        return COMMANDS[args.command](args, out)
    except LabError as e:
        print(f"netsuite-lab: {e}", file=err)
        return 1


def _up(args: argparse.Namespace, out: TextIO) -> int:
    lab = Lab(args.name, args.clients, args.lan, args.wan, args.internet,
              state_dir=args.state_dir, ipv6=args.ipv6)
    lab.up(addresses=args.addresses)
    _print_status(lab.status(), args.json, out)
    return 0


def _existing(args: argparse.Namespace) -> Lab:
    try:
        return Lab.load(args.name, args.state_dir)
    except LabError:
        lab = Lab(args.name, clients=0, state_dir=args.state_dir)
        if lab.namespaces():  # a half-built lab without a state file
            return lab
        raise


def _status(args: argparse.Namespace, out: TextIO) -> int:
    _print_status(_existing(args).status(), args.json, out)
    return 0


def _exec(args: argparse.Namespace, out: TextIO) -> int:
    command = args.argv
    if not command:
        raise LabError("exec needs a command after --")
    lab = _existing(args)
    netns = lab.netns(args.role)
    if netns not in lab.namespaces():
        raise LabError(f"namespace {netns} does not exist")
    out.flush()
    argv = ns_argv(netns, command)
    os.execv(argv[0], argv)
    return 127  # not reached


def _down(args: argparse.Namespace, out: TextIO) -> int:
    lab = _existing(args)
    lab.down()
    print(f"lab {lab.name} removed", file=out)
    return 0


COMMANDS = {"up": _up, "status": _status, "exec": _exec, "down": _down}


def _print_status(status: Dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(status, out, indent=2)
        out.write("\n")
        return
    print(f"lab {status['name']}: LAN {status['lan']}, WAN {status['wan']}, "
          f"internet {status['internet']}", file=out)
    if status.get("ipv6"):
        print(f"  IPv6: LAN {status['lan6']} (router advertisements from radvd), "
              f"AP {status['ap_address6']}, internet {status['internet6']}", file=out)
    for role, ns in status["namespaces"].items():
        print(f"  {role:<4} {ns['netns']}", file=out)
        for ifname, info in ns["interfaces"].items():
            if ifname == "lo" and info["addresses"] == ["127.0.0.1/8", "::1/128"]:
                continue
            v4 = [a for a in info["addresses"] if ":" not in a
                  or (status.get("ipv6") and not a.startswith("fe80:"))]
            extra = f" port of {info['master']}" if info["master"] else ""
            print(f"       {ifname:<9} {info['mac']} {info['state']:<7} "
                  f"{' '.join(v4) or '-'}{extra}", file=out)
        for route in ns["routes"] + (ns.get("routes6", []) if status.get("ipv6") else []):
            if route.startswith("default") or " via " in route:
                print(f"       route {route}", file=out)
        if ns["pids"]:
            print(f"       pids {' '.join(map(str, ns['pids']))}", file=out)


__all__ = ["main", "parser"]


if __name__ == "__main__":
    sys.exit(main())
