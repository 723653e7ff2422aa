# -*- test-case-name: tests.lab.test_peers -*-
"""
A tiny HTTP server for the lab's upstream: every request gets 200 and a
known body. It prints C{listening on ADDR:PORT} once bound, then one
C{request {json}} line per request (method, path, host, client).

    python -m netsuite.lab.httpd --address 198.51.100.1 --port 80 --body-file F

An IPv6 address (C{--address 2001:db8:100::1}) makes it listen on IPv6;
C{--address ::} on IPv6 and IPv4 both (clients' IPv4 addresses are printed
plain, not as C{::ffff:a.b.c.d}).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional


class Handler(BaseHTTPRequestHandler):
    body = b"hello from the netsuite lab\n"
    protocol_version = "HTTP/1.1"

    def _answer(self, with_body: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        print("request " + json.dumps({
            "method": self.command, "path": self.path,
            "host": self.headers.get("Host"),
            "client": str(self.client_address[0]).removeprefix("::ffff:"),
        }), flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_GET(self) -> None:
        self._answer(True)

    do_POST = do_PUT = do_GET

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one JSON line per request is printed instead


class Server6(ThreadingHTTPServer):
    """On IPv6; bound to C{::}, on IPv4 too."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        if self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m netsuite.lab.httpd")
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--body-file")
    args = parser.parse_args(argv)
    if args.body_file:
        with open(args.body_file, "rb") as f:
            Handler.body = f.read()
    server_class = Server6 if ":" in args.address else ThreadingHTTPServer
    server = server_class((args.address, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
