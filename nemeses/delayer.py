"""Holds every packet queued to it for a while, then lets it through: network latency
without netem, for kernels that lack it.

Shipped to a node and run there as a daemon (standard library only). An iptables rule
on the node sends packets from the other nodes to NFQUEUE queue ``--queue``; this
program receives each one's id over netfilter's netlink socket and, ``--delay`` seconds
(plus up to ``--jitter``) later, answers ACCEPT, so the kernel delivers it. Packets
stay in the kernel; only ids travel. The rule uses ``--queue-bypass``, so if this
program dies the packets pass undelayed instead of vanishing.

The netlink messages are nfnetlink_queue's (``linux/netfilter/nfnetlink_queue.h``): a
``CONFIG`` to bind the queue and ask for metadata only, ``PACKET`` messages in, and
``VERDICT`` messages out.
"""

from __future__ import annotations

import argparse
import collections
import random
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SUBSYS_QUEUE = 3 << 8
MSG_PACKET, MSG_VERDICT, MSG_CONFIG = SUBSYS_QUEUE | 0, SUBSYS_QUEUE | 1, SUBSYS_QUEUE | 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
ATTR_CFG_CMD, ATTR_CFG_PARAMS, ATTR_CFG_QUEUE_MAXLEN = 1, 2, 3
ATTR_PACKET_HDR, ATTR_VERDICT_HDR = 1, 2
CMD_BIND, COPY_META, NF_ACCEPT = 1, 1, 1
QUEUE_MAXLEN = 65536


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attrs: list[bytes], flags: int = NLM_F_REQUEST,
             seq: int = 0) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _configure(sock: socket.socket, queue: int, attrs: list[bytes], seq: int) -> None:
    """Sends a CONFIG message and raises if the kernel's acknowledgement is an error."""
    sock.send(_message(MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
    reply = sock.recv(65536)
    _, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR:
        error, = struct.unpack_from("=i", reply, 16)
        if error:
            raise OSError(-error, f"netlink refused queue configuration (seq {seq})")


def packet_ids(data: bytes) -> list[int]:
    """The ids of the packets announced in one buffer of netlink messages."""
    ids, offset = [], 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == MSG_PACKET:
            a = offset + 20  # after the netlink header and the nfgenmsg
            while a + 4 <= offset + length:
                attr_length, attr_kind = struct.unpack_from("=HH", data, a)
                if attr_length < 4:
                    break
                if attr_kind & 0x7FFF == ATTR_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (attr_length + 3) & ~3
        offset += (length + 3) & ~3
    return ids


def serve(queue: int, delay: float, jitter: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    _configure(sock, queue, [_attr(ATTR_CFG_CMD, struct.pack("!BBH", CMD_BIND, 0,
                                                             socket.AF_INET))], 1)
    _configure(sock, queue, [_attr(ATTR_CFG_PARAMS, struct.pack("!IB", 0, COPY_META)),
                             _attr(ATTR_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))], 2)
    print(f"delaying queue {queue} by {delay * 1000:g} ms (+ up to {jitter * 1000:g} ms)",
          flush=True)
    due: collections.deque[tuple[float, int]] = collections.deque()
    while True:
        wait = max(0.0, due[0][0] - time.monotonic()) if due else None
        if select.select([sock], [], [], wait)[0]:
            now = time.monotonic()
            for packet in packet_ids(sock.recv(1 << 20)):
                # Release times never go backwards, so packets keep their order.
                release = now + delay + random.uniform(0, jitter)
                due.append((max(release, due[-1][0]) if due else release, packet))
        now = time.monotonic()
        while due and due[0][0] <= now:
            verdict = struct.pack("!II", NF_ACCEPT, due.popleft()[1])
            sock.send(_message(MSG_VERDICT, queue, [_attr(ATTR_VERDICT_HDR, verdict)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="seconds, uniform")
    args = parser.parse_args()
    try:
        serve(args.queue, args.delay, args.jitter)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
