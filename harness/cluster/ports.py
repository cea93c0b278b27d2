"""Is a port free on a node, before a server is started there?

On a real host a port may already be taken: Debian's redis-server, postgresql and etcd
packages start their own services on 6379, 5432 and 2379. A server of ours that cannot
bind would fail with a log line at best; one whose clients reach the host's own service
instead would be tested without the user noticing. So each system names its ports and
they are checked on the node first.

The node's listening sockets are read from ``/proc/net/tcp`` and ``tcp6`` through
``Remote.run`` (no ``ss`` or ``netstat`` assumed) and parsed here. A port counts as taken
when something listens on it at the node's peer address (where our server binds) or at
a wildcard address; a listener on another address (such as Debian's redis on
127.0.0.1) does not collide.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from harness.cluster.remote import Remote
from harness.errors import EnvironmentFailure

_LISTEN = "0A"


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The kernel prints addresses as 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def listeners(proc_net_tcp: str) -> list[tuple[str, int]]:
    """(address, port) of every listening socket in ``/proc/net/tcp{,6}`` text."""
    out = []
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[3] != _LISTEN or ":" not in fields[1]:
            continue
        address, _, port = fields[1].partition(":")
        try:
            out.append((str(_address(address)), int(port, 16)))
        except ValueError:
            continue
    return out


def busy_ports(remote: Remote, node: str, ports: Sequence[int]) -> list[int]:
    """The ``ports`` something already listens on at the node's peer address or at a
    wildcard address."""
    text = remote.run(node, ["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"],
                      check=False).stdout
    ours = {remote.peer_address(node), "0.0.0.0", "::"}
    taken = {port for address, port in listeners(text) if address in ours}
    return [p for p in ports if p in taken]


def require_free_ports(remote: Remote, node: str, ports: Sequence[int], server: str) -> None:
    """EnvironmentFailure naming the node, the server and the ports already in use."""
    if busy := busy_ports(remote, node, ports):
        listed = ", ".join(map(str, busy))
        raise EnvironmentFailure(
            f"node {node}: port{'s' * (len(busy) > 1)} {listed} already in use, so "
            f"{server} cannot start there (stop the host's own service, e.g. "
            f"`systemctl stop {server}`, or choose other ports with -o port=...)")
