"""
A bounded TCP throughput meter for the shaping tests, run inside network
namespaces as a separate process (so sender and receiver do not share a GIL).

    tcpmeter.py recv <bind-address> <port> <seconds>
        listens, prints "ready", accepts one connection, counts the bytes it
        receives for <seconds> after the first one, prints the rate in bit/s
        and closes (which stops the sender).
    tcpmeter.py send <address> <port> <seconds>
        connects and sends as fast as it can, for at most <seconds>.
"""

import socket
import sys
import time

CHUNK = 256 * 1024


def recv(address: str, port: int, seconds: float) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(1)
    listener.settimeout(10)
    print("ready", flush=True)
    conn, _ = listener.accept()
    conn.settimeout(10)
    buf = bytearray(CHUNK)
    first = conn.recv_into(buf)
    start = time.monotonic()
    deadline = start + seconds
    total = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        conn.settimeout(deadline - now)
        try:
            n = conn.recv_into(buf)
        except socket.timeout:
            break
        if not n:
            break
        total += n
    elapsed = time.monotonic() - start
    print(f"{total * 8 / elapsed:.0f} {first}", flush=True)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    listener.close()


def send(address: str, port: int, seconds: float) -> None:
    conn = socket.create_connection((address, port), timeout=10)
    data = b"\x00" * CHUNK
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            conn.sendall(data)
    except OSError:
        pass  # the receiver closed: done
    conn.close()


if __name__ == "__main__":
    mode, address, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    {"recv": recv, "send": send}[mode](address, port, seconds)
