"""
Print the exact bytes of one Send box and its answer, as made by the real
netsuite implementation (the hex example in docs/bus-protocol.md).

The request is what L{netsuite.bus.client.BusClient.send} puts on the wire for
C{send("/system/ping", {})}; the answer is what a real
L{netsuite.bus.server.BusServerProtocol} serving a registry with the stock
C{/system} mailboxes writes back. To make the output reproducible the
registry is called C{demo}, its clock reads 12.5 s after start-up and its pid
is pretended to be 4242; everything else is the production code path.

Run from the project root: C{.venv/bin/python examples/bus_hexdump.py}
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.protocols import amp  # noqa: E402

from netsuite.bus.ownercommands import Send  # noqa: E402
from netsuite.bus.server import BusServerProtocol  # noqa: E402
from netsuite.registry import values  # noqa: E402
from netsuite.registry.registry import Registry  # noqa: E402
from netsuite.system import install_system_mailboxes  # noqa: E402


def hexdump(data: bytes) -> str:
    """
    C{xxd}-style lines: offset, 16 bytes in hex, the printable ones as text.
    """
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset:offset + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    return "\n".join(lines)


def fields(data: bytes) -> List[str]:
    """
    The box decoded field by field, lengths first, for the document.
    """
    out = []
    pos = 0
    while True:
        klen = int.from_bytes(data[pos:pos + 2], "big")
        if klen == 0:
            out.append(f"{pos:04x}: 00 00  (empty key: end of box)")
            return out
        key = data[pos + 2:pos + 2 + klen]
        vpos = pos + 2 + klen
        vlen = int.from_bytes(data[vpos:vpos + 2], "big")
        value = data[vpos + 2:vpos + 2 + vlen]
        out.append(f"{pos:04x}: key   len {klen:5d}  {key.decode()!s}")
        out.append(f"{vpos:04x}: value len {vlen:5d}  {value.decode()!s}")
        pos = vpos + 2 + vlen


def main() -> None:
    # The peer's side: exactly what BusClient.send does.
    client_transport = StringTransport()
    client = amp.AMP()
    client.makeConnection(client_transport)
    message = values.dumps(values.check_message({}))
    answer = client.callRemote(Send, mailbox="/system/ping", message=message)
    request = client_transport.value()

    # The owner's side: a real server protocol on a registry with /system.
    clock = Clock()
    registry = Registry("demo", clock)
    install_system_mailboxes(registry, clock)
    clock.advance(12.5)
    server_transport = StringTransport()
    server = BusServerProtocol(registry, (), lambda transport: None)
    server.makeConnection(server_transport)
    with mock.patch("netsuite.system.os.getpid", return_value=4242):
        server.dataReceived(request)
    reply = server_transport.value()

    # And the reply parses back on the peer's side.
    client.dataReceived(reply)
    parsed: Dict[str, object] = {}
    answer.addCallback(parsed.update)
    assert parsed["answered"] is True, parsed

    for title, data in (("Send (peer -> owner)", request), ("answer (owner -> peer)", reply)):
        print(f"{title}: {len(data)} bytes")
        print(hexdump(data))
        print()
        print("\n".join(fields(data)))
        print()
    print("decoded result:", values.loads(parsed["result"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
