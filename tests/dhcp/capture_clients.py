# -*- test-case-name: tests.dhcp.test_packet -*-
"""
Capture the DHCPDISCOVERs that real DHCP clients send, for the golden packets
in L{tests.dhcp.test_packet}.

Run as root from the checkout::

    python3 tests/dhcp/capture_clients.py

It builds two network namespaces joined by a veth pair, listens on UDP port
67 in one of them, runs each client once in the other, prints the first
packet each client sent as hex with the client's version, and removes the
namespaces. The clients get C{-s /bin/true} or C{-sf /bin/true} so they never
touch C{/etc/resolv.conf}, which namespaces share with the host.

With C{--listen IFNAME} the script is the listener instead: it binds
0.0.0.0:67 on that interface, prints one JSON line C{{"ready": true}} once
bound, one JSON line C{{"hex": ...}} per datagram, and exits when its stdin
closes.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
from typing import Dict, List, Sequence

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


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


def capture(server_ns: str, server_if: str, client_ns: str,
            client_argv: Sequence[str]) -> List[bytes]:
    """
    Run one client in C{client_ns} and return the datagrams the listener in
    C{server_ns} received meanwhile.
    """
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, os.path.abspath(__file__),
         "--listen", server_if],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert listener.stdin is not None and listener.stdout is not None
    try:
        ready = json.loads(listener.stdout.readline())
        assert ready == {"ready": True}, ready
        subprocess.run(["ip", "netns", "exec", client_ns, *client_argv],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        listener.stdin.close()
        output = listener.stdout.read()
        listener.wait(timeout=10)
    return [bytes.fromhex(json.loads(line)["hex"]) for line in output.splitlines()]


def main() -> None:
    pid = os.getpid()
    server_ns, client_ns = f"nscap{pid}a", f"nscap{pid}b"
    server_if, client_if = f"vcap{pid}a", f"vcap{pid}b"
    scratch = tempfile.mkdtemp(prefix="nscap")
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
    run("ip", "netns", "add", server_ns)
    try:
        run("ip", "netns", "add", client_ns)
        try:
            run("ip", "link", "add", server_if, "netns", server_ns, "type", "veth",
                "peer", "name", client_if, "netns", client_ns)
            run("ip", "-n", server_ns, "addr", "add", "192.0.2.1/24", "dev", server_if)
            for ns, ifname in ((server_ns, server_if), (client_ns, client_if)):
                run("ip", "-n", ns, "link", "set", "lo", "up")
                run("ip", "-n", ns, "link", "set", ifname, "up")
            mac = run("ip", "-n", client_ns, "-br", "link", "show", client_if).split()[2]
            print(f"# client MAC {mac}")
            for name, argv in clients.items():
                packets = capture(server_ns, server_if, client_ns, argv)
                print(f"# {name}: {versions[name]}")
                print(f"# {' '.join(argv)}")
                print(f"# {len(packets)} packets captured; the first:")
                if packets:
                    text = packets[0].hex()
                    for i in range(0, len(text), 64):
                        print(f'    "{text[i:i + 64]}"')
        finally:
            subprocess.run(["ip", "netns", "del", client_ns])
    finally:
        subprocess.run(["ip", "netns", "del", server_ns])
        for path in (lease_file, pid_file):
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(scratch)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--listen"]:
        listen(sys.argv[2])
    else:
        main()
