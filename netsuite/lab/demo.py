# -*- test-case-name: tests.integration.test_demo -*-
"""
The demo: a simulated access point in network namespaces with netsuite in
it, two clients and an upstream "internet"; a client is blocked, then let
through by an authorization sent over the bus; a hook script in another
process refuses the other client. Everything is removed at the end.

    python -m netsuite.lab.demo
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from .netns import Lab
from .peers import HttpPeer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

CONFIG = """
[process]
name = "ap"

[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = 8080
check_interval = 2.0
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(path: str, text: str, seconds: float = 20.0) -> None:
    """
    Wait until the file at C{path} contains C{text}.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(path) as f:
            if text in f.read():
                return
        time.sleep(0.1)
    with open(path) as f:
        raise SystemExit(f"demo: '{text}' did not appear in {path}:\n{f.read()}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="netsuite demo in a namespace lab")
    parser.add_argument("--name", default="demo", help="lab name (default: demo)")
    args = parser.parse_args(argv)
    if os.getuid() != 0:
        raise SystemExit("demo: run as root (it builds network namespaces)")
    work = tempfile.mkdtemp(prefix="netsuite-demo-")
    sockets = os.path.join(work, "sockets")
    config = os.path.join(work, "netsuite.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    lab = Lab(args.name, clients=2)
    children: List["subprocess.Popen[str]"] = []
    try:
        say(f"building the lab: access point, upstream, 2 clients "
            f"(netsuite-lab status --name {args.name})")
        lab.up(addresses=True)
        internet = f"http://{lab.internet}/"
        for role, address, port, body in (("up", None, 80, "hello from the internet\n"),
                                          ("ap", lab.ap_address, 8080, "the captive portal\n")):
            HttpPeer(lab.netns(role), address, port, body).start()

        say("starting netsuite in the access point, firewall enabled")
        log = os.path.join(work, "netsuite.log")
        children.append(subprocess.Popen(
            ["ip", "netns", "exec", lab.netns("ap"), os.path.join(BIN, "twistd"), "-n",
             "--pidfile=", "netsuite", "--config", config, "--socket-dir", sockets],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT))
        wait_for(log, "firewall ready")

        def curl(role: str, url: str) -> None:
            done = lab.exec(role, ["curl", "-sS", "--max-time", "3", url])
            shown = done.stdout.strip() or done.stderr.strip()
            print(f"   {role}$ curl {url}\n   -> {shown}", flush=True)

        def hook(*args: str) -> None:
            argv = [os.path.join(BIN, "netsuite-hook"), "--socket-dir", sockets, *args]
            print(f"   $ netsuite-hook {' '.join(args)}", flush=True)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            print(f"   -> {(done.stdout + done.stderr).strip()}", flush=True)

        say("client c1 is not authorized: its web request lands on the portal")
        curl("c1", internet)
        curl("c1", f"https://{lab.internet}/")

        say("authorize c1 over the bus")
        hook("send", "ap:/firewall/authorize", f"ip={lab.client_address(1)}",
             f"mac={lab.client_mac(1)}")
        curl("c1", internet)

        say("a ten-line hook script in another process refuses c2's MAC")
        hook_log = os.path.join(work, "hook.log")
        children.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "deny_mac.py"), "ap", sockets,
             lab.client_mac(2)], stdout=open(hook_log, "w"), stderr=subprocess.STDOUT))
        wait_for(hook_log, "hooked")
        hook("send", "ap:/firewall/authorize", f"ip={lab.client_address(2)}",
             f"mac={lab.client_mac(2)}")
        curl("c2", internet)
        hook("list", "ap:/firewall/authorize")

        say("de-authorize c1: blocked again")
        hook("send", "ap:/firewall/deauthorize", f"ip={lab.client_address(1)}")
        curl("c1", internet)
        say("done; cleaning up")
    finally:
        for child in reversed(children):
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        lab.down()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
