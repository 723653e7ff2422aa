"""
A bounded TCP throughput meter for the fair-share lab test
(L{tests.integration.test_fairshare_lab}), run as separate processes in
network namespaces. The receiver counts, always: what arrived, not what
was written into a socket buffer.

    pullmeter.py serve <port>
        listens on every address, prints "listening", serves each
        connection in a thread for at most 30 seconds.
    pullmeter.py pull|push <address> <port> <start> <end>
        connects and says "pull <start> <end>" or "push <start> <end>"
        (wall-clock times: the namespaces share the clock). pull: the
        server sends as fast as it can and the client counts the bytes
        that arrive between start and end. push: the client sends and the
        server counts, then answers with the count. Either way the client
        prints the rate in bit/s over [start, end].
"""

import select
import socket
import sys
import threading
import time

CHUNK = 64 * 1024
LIMIT = 30.0


def count(conn, start, end):
    """
    Bytes received on C{conn} between C{start} and C{end} (wall clock).
    """
    buf = bytearray(CHUNK)
    total = 0
    while True:
        now = time.time()
        if now >= end:
            return total
        conn.settimeout(max(0.01, end - now))
        try:
            n = conn.recv_into(buf)
        except socket.timeout:
            return total
        if not n:
            return total
        if time.time() >= start:
            total += n


def serve_one(conn):
    conn.settimeout(10)
    try:
        hello = b""
        while not hello.endswith(b"\n") and len(hello) < 100:
            data = conn.recv(1)
            if not data:
                return
            hello += data
        mode, start, end = hello.decode().split()
        start, end = float(start), float(end)
        if end - time.time() > LIMIT:
            return
        if mode == "pull":
            data = b"\0" * CHUNK
            while time.time() < end + 1:
                conn.sendall(data)
        else:
            total = count(conn, start, end)
            conn.sendall(f"{total}\n".encode())
    except OSError:
        pass  # the client closed: done
    finally:
        conn.close()


def serve(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def client(mode, address, port, start, end):
    conn = socket.create_connection((address, port), timeout=10)
    conn.sendall(f"{mode} {start} {end}\n".encode())
    if mode == "pull":
        total = count(conn, start, end)
    else:
        conn.setblocking(False)
        data = b"\0" * CHUNK
        answer = b""
        deadline = end + 10
        while not answer.endswith(b"\n") and time.time() < deadline:
            readable, writable, _ = select.select([conn], [conn], [], 1.0)
            if readable:
                got = conn.recv(100)
                if not got:
                    break
                answer += got
            elif writable:
                try:
                    conn.send(data)
                except BlockingIOError:
                    pass
        total = int(answer)
    conn.close()
    print(f"{total * 8 / (end - start):.0f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
               float(sys.argv[5]))
