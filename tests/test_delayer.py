"""The packet delayer's netlink parsing, on messages built as the kernel lays them out
(``linux/netfilter/nfnetlink_queue.h``); the real queue is exercised in
``test_nemeses.py::test_latency_delays_packets_between_nodes_only_and_heals``."""

from __future__ import annotations

import struct

from nemeses.delayer import ATTR_PACKET_HDR, MSG_PACKET, NLMSG_ERROR, packet_ids


def _nlattr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _packet(packet_id: int, extra: bytes = b"") -> bytes:
    header = struct.pack("!IHB", packet_id, 0x0800, 1)  # id, hw protocol, hook
    body = struct.pack("!BBH", 2, 0, 0) + extra + _nlattr(ATTR_PACKET_HDR, header)
    return struct.pack("=IHHII", 16 + len(body), MSG_PACKET, 0, 0, 0) + body


def test_ids_of_every_packet_in_a_buffer_in_order():
    other_attr = _nlattr(9, b"\x01\x02\x03")  # an attribute that is not the header, odd size
    buffer = _packet(7) + _packet(8, other_attr) + _packet(2**32 - 1)
    assert packet_ids(buffer) == [7, 8, 2**32 - 1]


def test_other_messages_and_truncated_tails_are_skipped():
    error = struct.pack("=IHHII", 20, NLMSG_ERROR, 0, 0, 0) + struct.pack("=i", 0)
    assert packet_ids(error + _packet(5) + _packet(6)[:10]) == [5]
    assert packet_ids(b"") == []
