"""
The echo server of bench/bus.py's transport floor: plain blocking Unix
sockets, no framework. Listens on PATH, prints "ready", serves one
connection by sending back whatever it reads, exits when it closes.

    python bench/_echo_peer.py PATH
"""

import socket
import sys


def main(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    server.close()
    recv, sendall = conn.recv, conn.sendall
    while True:
        data = recv(65536)
        if not data:
            break
        sendall(data)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
