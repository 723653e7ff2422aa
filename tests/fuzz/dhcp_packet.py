# -*- test-case-name: tests.fuzz.test_campaigns -*-
"""
Fuzz target C{dhcp-packet}: any datagram into L{Packet.from_bytes}.

Invariants: decoding raises nothing but L{MalformedPacket}; every derived
field and typed option of a decoded packet reads without raising anything
but L{BadOption}; a decoded packet encodes (or raises L{PacketTooLarge})
within the size asked, and decodes back to an equal packet.
"""

from __future__ import annotations

from netsuite.dhcp.options import BadOption, decode_option
from netsuite.dhcp.packet import IP_UDP_OVERHEAD, MalformedPacket, Packet, PacketTooLarge

from .common import Crash, corpus_dir

NAME = "dhcp-packet"
CORPUS = corpus_dir(NAME)
SIZES = (576, 1500, 65535)


def check(data: bytes) -> None:
    try:
        packet = Packet.from_bytes(data)
    except MalformedPacket:
        return
    (packet.message_type, packet.mac, packet.client_id, packet.client_key,
     packet.requested_ip, packet.server_id, packet.parameter_request_list,
     packet.max_message_size, packet.hostname, packet.broadcast)
    for code, raw in packet.options:
        try:
            decode_option(code, raw)
        except BadOption:
            pass
    for size in SIZES:
        try:
            wire = packet.to_bytes(max_size=size)
        except PacketTooLarge:
            continue
        if len(wire) > size - IP_UDP_OVERHEAD:
            raise Crash(f"{len(wire)} bytes encoded for a {size}-byte datagram")
        again = Packet.from_bytes(wire)
        if again != packet:
            raise Crash(f"round trip at {size} changed {packet!r} into {again!r}")
