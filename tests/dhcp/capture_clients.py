# -*- test-case-name: tests.dhcp.test_packet -*-
"""
Capture the DHCP messages that real DHCP clients send, for the golden packets
in L{tests.dhcp.test_packet}.

Run as root from the checkout::

    python3 tests/dhcp/capture_clients.py              # DHCPDISCOVERs
    python3 tests/dhcp/capture_clients.py --exchange   # DHCPREQUESTs, DHCPRELEASEs

Both build two network namespaces joined by a veth pair (the client end gets
the fixed MAC L{CLIENT_MAC}, so all fixtures share it), run each client in
one and capture in the other, print packets as hex (44 bytes a line, ready
to paste) with the client's version, and remove the namespaces.

Without arguments nothing answers: a UDP socket bound to 0.0.0.0:67 records
what arrives and the first packet each client sent is printed. The clients
get C{-s /bin/true} or C{-sf /bin/true} so they never touch
C{/etc/resolv.conf}, which namespaces share with the host.

With C{--exchange} busybox C{udhcpd} serves 192.0.2.100-199 in the server
namespace, so the clients get as far as a lease; an C{AF_PACKET} socket on
the server's veth records every UDP datagram to port 67 as it arrived off
the wire, whatever the server does with it (broadcasts, and the unicast
RELEASEs a second UDP socket would not reliably get). C{udhcpc -q -R}
discovers, requests, and releases as it exits; C{dhclient -1} takes a lease
and goes to the background, and C{dhclient -r} stops it and releases. Their
script is a small one of ours that only puts the leased address on the
interface and takes it off again (both clients send the unicast RELEASE
from that address), never touching C{/etc/resolv.conf}. The first
DHCPREQUEST (selecting state: after the OFFER) and the first DHCPRELEASE of
each client are printed.

With C{--listen IFNAME} the script is the UDP listener instead: it binds
0.0.0.0:67 on that interface, prints one JSON line C{{"ready": true}} once
bound, one JSON line C{{"hex": ...}} per datagram, and exits when its stdin
closes. C{--sniff IFNAME} does the same with an C{AF_PACKET} socket, printing
the UDP payload of every IPv4 datagram to port 67 that the interface
receives.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
CLIENT_MAC = "d2:a4:7f:3f:79:cd"
"""The client's MAC in every capture (a random one from the first run)."""

MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK",
                 6: "NAK", 7: "RELEASE", 8: "INFORM"}

UDHCPD_CONF = """\
interface {interface}
start 192.0.2.100
end 192.0.2.199
lease_file {scratch}/udhcpd.leases
pidfile {scratch}/udhcpd.pid
option subnet 255.255.255.0
option lease 600
"""

CLIENT_SCRIPT = """\
#!/bin/sh
# Put the leased address on the interface and take it off again; nothing
# else. udhcpc passes the event as $1 with $ip and $subnet, dhclient as
# $reason with $new_ip_address and $new_subnet_mask.
case "$1$reason" in
    bound|renew|BOUND|RENEW|REBIND|REBOOT)
        ip addr flush dev "$interface"
        ip addr add "$ip$new_ip_address/$subnet$new_subnet_mask" dev "$interface";;
    deconfig|RELEASE|EXPIRE|FAIL|STOP|PREINIT)
        ip addr flush dev "$interface";;
esac
case "$1" in bound) echo bound;; esac
exit 0
"""


def listen(ifname: str) -> None:
    """
    Print every datagram that reaches port 67 on C{ifname} until stdin closes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode("ascii"))
    sock.bind(("0.0.0.0", 67))
    print(json.dumps({"ready": True}), flush=True)
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([sock, stdin], [], [])
        if sock in readable:
            data, _ = sock.recvfrom(65535)
            print(json.dumps({"hex": data.hex()}), flush=True)
        elif stdin in readable and not os.read(stdin, 4096):
            break
    # Drain what arrived while we were told to stop.
    sock.setblocking(False)
    while True:
        try:
            data, _ = sock.recvfrom(65535)
        except BlockingIOError:
            break
        print(json.dumps({"hex": data.hex()}), flush=True)


def sniff(ifname: str) -> None:
    """
    Print the payload of every IPv4 UDP datagram to port 67 that C{ifname}
    receives, until stdin closes.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((ifname, ETH_P_IP))
    print(json.dumps({"ready": True}), flush=True)

    def report() -> None:
        frame, address = sock.recvfrom(65535)
        if address[2] == PACKET_OUTGOING or len(frame) < 20 or frame[9] != 17:
            return
        header = (frame[0] & 0x0F) * 4
        sport, dport, length = struct.unpack("!HHH", frame[header:header + 6])
        if dport != 67:
            return
        payload = frame[header + 8:header + length]
        print(json.dumps({"hex": payload.hex(), "src": socket.inet_ntoa(frame[12:16]),
                          "dst": socket.inet_ntoa(frame[16:20])}), flush=True)

    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([sock, stdin], [], [])
        if sock in readable:
            report()
        elif stdin in readable and not os.read(stdin, 4096):
            break
    sock.setblocking(False)
    while True:
        try:
            report()
        except BlockingIOError:
            break


def message_type(data: bytes) -> Optional[int]:
    """
    Option 53 of a DHCP message, read from the options field only.
    """
    options, at = data[240:], 0
    while at < len(options) and options[at] != 255:
        if options[at] == 0:
            at += 1
            continue
        if at + 1 >= len(options):
            break
        code, size = options[at], options[at + 1]
        if code == 53 and size == 1 and at + 2 < len(options):
            return options[at + 2]
        at += 2 + size
    return None


def print_hex(data: bytes) -> None:
    """
    Print C{data} as lines of a C{bytes.fromhex(...)} call, 44 bytes a line.
    """
    text = data.hex()
    for i in range(0, len(text), 88):
        print(f'    "{text[i:i + 88]}"')


def run(*argv: str) -> str:
    """
    Run a command, fail loudly, return its output.
    """
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def version(argv: Sequence[str]) -> str:
    """
    The first line a command prints about itself.
    """
    done = subprocess.run(argv, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def capture(server_ns: str, server_if: str, clients: Callable[[], None],
            mode: str = "--listen") -> List[Dict[str, str]]:
    """
    Call C{clients}, which runs clients, and return the records (C{hex}, and
    for C{--sniff} C{src} and C{dst}) of the datagrams the listener (C{mode}
    C{--listen}) or sniffer (C{--sniff}) in C{server_ns} received meanwhile.
    """
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, os.path.abspath(__file__),
         mode, server_if],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert listener.stdin is not None and listener.stdout is not None
    try:
        ready = json.loads(listener.stdout.readline())
        assert ready == {"ready": True}, ready
        # When clients() returns, its clients have exited: a veth hands a
        # datagram over within the send, so all are in the listener's
        # socket, and it drains that once its stdin closes.
        clients()
    finally:
        listener.stdin.close()
        output = listener.stdout.read()
        listener.wait(timeout=10)
    return [json.loads(line) for line in output.splitlines()]


def in_netns(ns: str, argv: Sequence[str]) -> None:
    """
    Run a command in a namespace to its end, quietly.
    """
    subprocess.run(["ip", "netns", "exec", ns, *argv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def until_bound(ns: str, argv: Sequence[str], seconds: float = 20.0) -> None:
    """
    Start a udhcpc in a namespace, wait until its script says C{bound}, then
    stop it with SIGTERM and wait for it. (udhcpc takes signals in its main
    loop, once the script has returned and it is bound, so a C{-R} udhcpc
    releases on the way out.)
    """
    process = subprocess.Popen(["ip", "netns", "exec", ns, *argv],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
                raise RuntimeError(f"{argv[0]} was not bound within {seconds:g} s")
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} exited before it was bound")
            if line.strip() == "bound":
                break
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


def discovers(server_ns: str, server_if: str, client_ns: str, client_if: str,
              scratch: str) -> None:
    """
    Print the first packet each client sends when nothing answers.
    """
    lease_file = os.path.join(scratch, "dhclient.leases")
    pid_file = os.path.join(scratch, "dhclient.pid")
    clients: Dict[str, List[str]] = {
        "udhcpc": ["timeout", "10", "udhcpc", "-i", client_if, "-n", "-q", "-t", "2",
                   "-T", "1", "-s", "/bin/true"],
        "udhcpc-hostname": ["timeout", "10", "udhcpc", "-i", client_if, "-n", "-q", "-t", "2",
                            "-T", "1", "-s", "/bin/true", "-x", "hostname:capture-host",
                            "-V", "netsuite-capture"],
        "dhclient": ["timeout", "5", "dhclient", "-1", "-v", "-sf", "/bin/true",
                     "-lf", lease_file, "-pf", pid_file, client_if],
    }
    versions = {
        "udhcpc": version(["busybox"]),
        "udhcpc-hostname": version(["busybox"]),
        "dhclient": version(["dhclient", "--version"]),
    }
    for name, argv in clients.items():
        packets = [bytes.fromhex(record["hex"]) for record in
                   capture(server_ns, server_if, lambda: in_netns(client_ns, argv))]
        print(f"# {name}: {versions[name]}")
        print(f"# {' '.join(argv)}")
        print(f"# {len(packets)} packets captured; the first:")
        if packets:
            print_hex(packets[0])


def exchanges(server_ns: str, server_if: str, client_ns: str, client_if: str,
              scratch: str) -> None:
    """
    Serve leases with busybox udhcpd; print each client's first REQUEST and
    first RELEASE.
    """
    conf = os.path.join(scratch, "udhcpd.conf")
    with open(conf, "w") as f:
        f.write(UDHCPD_CONF.format(interface=server_if, scratch=scratch))
    open(os.path.join(scratch, "udhcpd.leases"), "wb").close()
    script = os.path.join(scratch, "client-script")
    with open(script, "w") as f:
        f.write(CLIENT_SCRIPT)
    os.chmod(script, 0o755)
    lease_file = os.path.join(scratch, "dhclient.leases")
    pid_file = os.path.join(scratch, "dhclient.pid")
    udhcpc = ["udhcpc", "-i", client_if, "-f", "-n", "-R", "-t", "5", "-T", "2", "-s", script]
    dhclient = ["timeout", "20", "dhclient", "-1", "-v", "-sf", script,
                "-lf", lease_file, "-pf", pid_file, client_if]
    dhclient_r = ["timeout", "20", "dhclient", "-r", "-v", "-sf", script,
                  "-lf", lease_file, "-pf", pid_file, client_if]

    def run_udhcpc() -> None:
        until_bound(client_ns, udhcpc)

    def run_dhclient() -> None:
        in_netns(client_ns, dhclient)
        in_netns(client_ns, dhclient_r)

    clients: Dict[str, Callable[[], None]] = {"udhcpc": run_udhcpc, "dhclient": run_dhclient}
    commands = {
        "udhcpc": [" ".join(udhcpc) + "  # until bound, then SIGTERM"],
        "dhclient": [" ".join(dhclient), " ".join(dhclient_r)],
    }
    versions = {"udhcpc": version(["busybox"]), "dhclient": version(["dhclient", "--version"])}
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "busybox", "udhcpd", "-f", conf],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # No wait for udhcpd to bind: a DISCOVER it misses is sent again
        # (-t/-T, dhclient's own retries), and only the first REQUEST and
        # RELEASE are printed.
        for name, clients_run in clients.items():
            try:
                records = capture(server_ns, server_if, clients_run, mode="--sniff")
            finally:
                # dhclient -r stops the background dhclient; make sure.
                if os.path.exists(pid_file):
                    with open(pid_file) as f:
                        text = f.read().strip()
                    os.unlink(pid_file)
                    try:
                        os.kill(int(text), signal.SIGTERM)
                    except (ValueError, ProcessLookupError):
                        pass
            print(f"# {name}: {versions[name]}")
            for command in commands[name]:
                print(f"# {command}")
            packets = [bytes.fromhex(record["hex"]) for record in records]
            kinds = [MESSAGE_TYPES.get(message_type(data) or 0, "?") for data in packets]
            print(f"# {len(packets)} packets captured: {' '.join(kinds)}")
            for kind in ("REQUEST", "RELEASE"):
                if kind in kinds:
                    record, data = records[kinds.index(kind)], packets[kinds.index(kind)]
                    print(f"# the first {kind} ({len(data)} bytes, "
                          f"{record['src']} -> {record['dst']}):")
                    print_hex(data)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(exchange: bool) -> None:
    pid = os.getpid()
    server_ns, client_ns = f"nscap{pid}a", f"nscap{pid}b"
    server_if, client_if = f"vcap{pid}a", f"vcap{pid}b"
    scratch = tempfile.mkdtemp(prefix="nscap")
    run("ip", "netns", "add", server_ns)
    try:
        run("ip", "netns", "add", client_ns)
        try:
            run("ip", "link", "add", server_if, "netns", server_ns, "type", "veth",
                "peer", "name", client_if, "netns", client_ns)
            run("ip", "-n", client_ns, "link", "set", client_if, "address", CLIENT_MAC)
            run("ip", "-n", server_ns, "addr", "add", "192.0.2.1/24", "dev", server_if)
            for ns, ifname in ((server_ns, server_if), (client_ns, client_if)):
                run("ip", "-n", ns, "link", "set", "lo", "up")
                run("ip", "-n", ns, "link", "set", ifname, "up")
            mac = run("ip", "-n", client_ns, "-br", "link", "show", client_if).split()[2]
            print(f"# client MAC {mac}")
            if exchange:
                exchanges(server_ns, server_if, client_ns, client_if, scratch)
            else:
                discovers(server_ns, server_if, client_ns, client_if, scratch)
        finally:
            subprocess.run(["ip", "netns", "del", client_ns])
    finally:
        subprocess.run(["ip", "netns", "del", server_ns])
        for name in os.listdir(scratch):
            os.unlink(os.path.join(scratch, name))
        os.rmdir(scratch)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--listen"]:
        listen(sys.argv[2])
    elif sys.argv[1:2] == ["--sniff"]:
        sniff(sys.argv[2])
    else:
        main(exchange=sys.argv[1:] == ["--exchange"])
