# -*- test-case-name: tests.integration.test_demo -*-
"""
The demo: a simulated access point in network namespaces with netsuite in
it (firewall, DHCP server, captive portal, DNS resolver, mail proxy and
SMTP gate in one process), two clients and an upstream "internet" (a web
server, an SMTP sink and dovecot). Client c1 gets its address from
netsuite-dhcp, is redirected to the portal, logs in and reaches the
internet; a hook script in another process refuses client c2 at the
firewall, so its login fails until the script exits. c1's SMTP is refused
until it logs in to IMAP through the mail proxy; then the SMTP gate opens
SMTP for c1 towards that server (the events are shown as netsuite-hook
watch prints them) and its message reaches the sink, while c1's SMTP to
another server and c2's stay refused. The operator logs c1 out over the
bus and it is captive again. Everything is removed at the end.

    python -m netsuite.lab.demo [--name NAME]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from typing import List, Optional, Union

from .child import PACKAGE_ROOT, PYTHON, TWISTD, Child, ChildError
from .netns import Lab
from .peer import Peer, PeerError
from .peers import DovecotPeer, HttpPeer, SmtpPeer

BIN = os.path.dirname(sys.executable)
PORTAL_PORT = 5280
PROXY_PORT = 10143
MAIL_USER, MAIL_PASSWORD = "alice", "secret"  # the demo's mail account upstream

CONFIG = """
[process]
name = "ap"

[firewall]
enabled = true
lan_network = "10.89.0.0/24"
portal_port = {portal_port}
check_interval = 2.0
tproxy_port = {proxy_port}

[mailproxy]
enabled = true
port = {proxy_port}

[smtpgate]
enabled = true

[dhcp]
enabled = true
interface = "br-lan"
lease_file = "{work}/leases.sqlite"

[[dhcp.subnet]]
name = "lan"
network = "10.89.0.0/24"
first = "10.89.0.100"
last = "10.89.0.199"
server = "10.89.0.1"
router = "10.89.0.1"
dns = ["10.89.0.1"]
interface = "br-lan"

[portal]
enabled = true
port = {portal_port}
interface_address = "10.89.0.1"
session_file = "{work}/sessions.sqlite"

[dns]
enabled = true
listen = ["10.89.0.1"]
upstreams = ["192.0.2.1"]
local_names = {{ "internet.test" = "198.51.100.1" }}
"""

# The clients' DHCP script: configure the address and the route, and never
# touch resolv.conf.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"; ip addr add "$ip/24" dev "$interface"
    ip route replace default via "$router" dev "$interface"
    echo "   -> $interface got $ip from netsuite-dhcp (router $router, lease $lease s)" ;;
esac
"""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(child: Union[Child, Peer], text: str, seconds: float = 60.0) -> str:
    """
    Wait until C{child} printed C{text} and return that line; if it does not
    in time (a netsuite daemon then shows its threads' stacks) or exits,
    stop the demo with its last lines.
    """
    try:
        return child.wait_for_line(re.escape(text), seconds)[0]
    except ChildError as e:
        raise SystemExit(f"demo: {e}") from None


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


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
        f.write(CONFIG.format(work=work, portal_port=PORTAL_PORT, proxy_port=PROXY_PORT))
    script = os.path.join(work, "udhcpc.sh")
    with open(script, "w") as f:
        f.write(UDHCPC_SCRIPT)
    os.chmod(script, 0o755)
    lab = Lab(args.name, clients=2)
    web = HttpPeer(lab.netns("up"), None, 80, "hello from the internet\n")
    sink = SmtpPeer(lab.netns("up"), None, 25)
    mail = DovecotPeer(lab.netns("up"), None, {MAIL_USER: MAIL_PASSWORD})
    children: List[Child] = []
    try:
        say(f"building the lab: access point, upstream, 2 clients "
            f"(netsuite-lab status --name {args.name})")
        lab.up(addresses=False)
        internet = f"http://{lab.internet}/"
        portal = f"http://{lab.ap_address}:{PORTAL_PORT}"
        try:
            for peer in (web, sink, mail):
                peer.start(10)
        except (ChildError, PeerError) as e:
            raise SystemExit(f"demo: {e}") from None

        say("starting netsuite in the access point: firewall, DHCP server, captive portal, "
            "DNS resolver, mail proxy, SMTP gate")
        daemon = Child([TWISTD, "-n", "--pidfile=", "netsuite", "--config", config,
                        "--socket-dir", sockets], label="netsuite", netns=lab.netns("ap"),
                       cwd=PACKAGE_ROOT)
        children.append(daemon.start())
        for ready in ("firewall ready", "dhcp ready", "dns ready", "mailproxy ready",
                      "smtpgate ready"):
            wait_for(daemon, ready)

        def curl(role: str, url: str, *extra: str, seconds: int = 3) -> str:
            print(f"   {role}$ curl {' '.join(extra + (url,))}", flush=True)
            done = lab.exec(role, ["curl", "-sS", "--max-time", str(seconds), *extra, url])
            return done.stdout or done.stderr

        def dhcp(role: str) -> None:
            print(f"   {role}$ udhcpc -i eth0", flush=True)
            done = lab.exec(role, ["udhcpc", "-f", "-q", "-n", "-t", "3", "-T", "1",
                                   "-i", "eth0", "-s", script])
            print(done.stdout.rstrip(), flush=True)

        def dig(role: str, *query: str) -> None:
            print(f"   {role}$ dig {' '.join(query)}", flush=True)
            out = lab.exec(role, ["dig", "+tries=1", "+time=2", "+noall", "+comments",
                                  "+answer", *query]).stdout
            status = re.search(r"status: (\w+)", out)
            answers = [line.split()[-1] for line in out.splitlines()
                       if line and not line.startswith(";")]
            print(f"   -> {status.group(1) if status else 'no answer'} {' '.join(answers)}"
                  .rstrip(), flush=True)

        def login(role: str) -> None:
            jar = os.path.join(work, f"{role}.jar")
            page = lab.exec(role, ["curl", "-sS", "-c", jar, "-b", jar,
                                   f"{portal}/login"]).stdout
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            out = lab.exec(role, [
                "curl", "-sS", "-c", jar, "-b", jar, "-o", "/dev/null",
                "-w", "%{http_code} %{redirect_url}", "--data",
                f"csrf={token.group(1) if token else ''}&accept=1"
                f"&url=http%3A%2F%2F{lab.internet}%2F", f"{portal}/login"]).stdout
            print(f"   {role}$ (accepts the usage policy on {portal}/login)\n"
                  f"   -> {out.strip()}", flush=True)

        def smtp(role: str, server: str) -> None:
            # curl sends the message (its file in the work directory).
            message = f"{role}.eml"
            with open(os.path.join(work, message), "w") as f:
                f.write(f"From: {role}@lan.test\r\nTo: bob@upstream.test\r\n"
                        f"Subject: hello from {role}\r\n\r\nsent from the hotspot\r\n")
            argv = ["curl", "-sS", "--max-time", "10", f"smtp://{server}/", "--mail-from",
                    f"{role}@lan.test", "--mail-rcpt", "bob@upstream.test", "-T", message]
            print(f"   {role}$ {' '.join(argv[:1] + argv[4:])}", flush=True)
            done = lab.exec(role, argv, cwd=work)
            print(f"   -> {first_line(done.stderr).strip() or 'sent'}", flush=True)

        def watch(path: str) -> Child:
            print(f"   $ netsuite-hook watch ap:{path} &", flush=True)
            child = Child([os.path.join(BIN, "netsuite-hook"), "--socket-dir", sockets,
                           "watch", f"ap:{path}"], label=f"watch {path}")
            children.append(child.start())
            wait_for(child, "netsuite-hook: watching")
            return child

        def hook(*args: str) -> None:
            argv = [os.path.join(BIN, "netsuite-hook"), "--socket-dir", sockets, *args]
            print(f"   $ netsuite-hook {' '.join(args)}", flush=True)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            print(f"   -> {(done.stdout + done.stderr).strip()}", flush=True)

        say("client c1 asks for an address")
        dhcp("c1")

        say("c1 is not logged in: its web request is redirected to the portal")
        out = curl("c1", internet, "-i")
        location = next((line.strip() for line in out.splitlines()
                         if line.lower().startswith("location:")), "")
        print(f"   -> {first_line(out).strip()}; {location}", flush=True)
        print(f"   -> {first_line(curl('c1', f'https://{lab.internet}/'))}", flush=True)

        say("c1 is not logged in: whichever resolver it asks, netsuite-dns answers, "
            "and it refuses what a DNS tunnel needs")
        dig("c1", f"@{lab.wan_up_address}", "internet.test")
        dig("c1", f"@{lab.wan_up_address}", "TXT", "internet.test")

        say("c1 logs in (click-through) and reaches the internet")
        login("c1")
        print(f"   -> {curl('c1', internet).strip()}", flush=True)

        say("a ten-line hook script in another process refuses c2's MAC at the firewall")
        deny = Child([PYTHON, os.path.join(PACKAGE_ROOT, "examples", "deny_mac.py"), "ap",
                      sockets, lab.client_mac(2)], label="deny_mac.py")
        children.append(deny.start())
        wait_for(deny, "hooked")
        dhcp("c2")
        login("c2")
        print(f"   -> {first_line(curl('c2', internet, '-i')).strip()} (still captive)",
              flush=True)
        hook("list", "ap:/firewall/authorize")

        say("the hook script exits, and its listener with it: c2's login goes through")
        deny.stop()
        login("c2")

        say("SMTP stays closed until a mail login: c1 logs in to IMAP through the mail "
            "proxy, and the SMTP gate opens SMTP for c1, towards that server only")
        watches = {path: watch(path) for path in ("/mailproxy/login", "/smtpgate/opened")}
        smtp("c1", lab.internet)
        out = curl("c1", f"imap://{lab.internet}/", "-u", f"{MAIL_USER}:{MAIL_PASSWORD}",
                   seconds=10)
        print(f"   -> {first_line(out).strip()}", flush=True)
        for path, child in watches.items():
            print(f"   -> ap:{path} {wait_for(child, '{', 10).strip()}", flush=True)
        smtp("c1", lab.internet)
        stored = wait_for(sink, "stored ", 5)
        subject = re.search(rb"Subject: [^\r\n]*", sink.messages()[-1]["data"])
        print(f"   -> the SMTP sink upstream {stored.strip()} "
              f"({subject.group().decode() if subject else 'no subject'})", flush=True)
        smtp("c1", lab.wan_up_address)
        smtp("c2", lab.internet)

        say("the operator logs c1 out over the bus: captive again")
        hook("send", "ap:/portal/deauthorize", f"ip={_address(lab, 'c1')}")
        print(f"   -> {first_line(curl('c1', internet, '-i')).strip()}", flush=True)
        say("done; cleaning up")
    finally:
        for child in reversed(children):
            child.stop(10)
        mail.stop()
        sink.stop()
        web.stop()
        lab.down()
        subprocess.run(["rm", "-rf", work], check=False)


def _address(lab: Lab, role: str) -> str:
    """
    The IPv4 address DHCP gave the client C{role}.
    """
    out = lab.exec(role, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)", out)
    return match.group(1) if match else ""


if __name__ == "__main__":
    main()
