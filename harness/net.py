"""Network faults over any ``Remote``: nodes silently dropping packets from other nodes.

Node X drops what arrives from the nodes in ``grudge[X]`` with iptables rules on its own
INPUT, inside a chain that belongs to splitbrain alone, so ``heal`` removes exactly what
``drop`` added and nothing the system or the host put there. Rules match source
addresses of nodes only; the controller's address is never dropped, so the controller
keeps reaching every node during a partition (as in Jepsen).

Commands go through ``Remote.run``: inside a namespace, container or SSH host alike.
Nodes are changed in parallel, so a partition takes effect on all nodes at about the
same moment.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Mapping, Sequence

from harness.remote import Remote, RemoteError

CHAIN = "SPLITBRAIN-DROP"

# Creates the chain and the jump to it if missing; both idempotent.
_ENSURE_CHAIN = (
    f"iptables -w -N {CHAIN} 2>/dev/null\n"
    f"iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN} || exit 1\n"
)

# Removes the jump (every copy) and the chain; succeeds when they are already gone.
_REMOVE_CHAIN = (
    f"while iptables -w -C INPUT -j {CHAIN} 2>/dev/null; do iptables -w -D INPUT -j {CHAIN} || exit 1; done\n"
    f"if iptables -w -n -L {CHAIN} >/dev/null 2>&1; then\n"
    f"  iptables -w -F {CHAIN} && iptables -w -X {CHAIN} || exit 1\n"
    "fi\n"
)


def _on_each(nodes: Iterable[str], action: Callable[[str], None]) -> None:
    """Runs ``action`` for every node in parallel; raises the first failure after all ran."""
    nodes = list(nodes)
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        futures = [pool.submit(action, node) for node in nodes]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


def _sh(remote: Remote, node: str, script: str) -> None:
    result = remote.run(node, ["sh", "-c", script], check=False, timeout=30)
    if result.returncode != 0:
        raise RemoteError(f"{node}: iptables failed: {result.stderr.strip() or result.returncode}")


def drop(remote: Remote, test_nodes: Sequence[str], grudge: Mapping[str, Sequence[str]]) -> None:
    """Makes each node X drop every packet from the nodes in ``grudge[X]``.

    Adds to whatever is already dropped; ``heal`` undoes it all. Names in the grudge
    must be nodes of the test (a typo would otherwise be a partition that never happens).
    """
    known = set(test_nodes)
    unknown = sorted({n for x, ys in grudge.items() for n in (x, *ys)} - known)
    if unknown:
        raise ValueError(f"grudge names unknown nodes {unknown}; nodes are {list(test_nodes)}")

    def block(node: str) -> None:
        rules = "".join(
            f"iptables -w -A {CHAIN} -s {remote.address(other)} -j DROP || exit 1\n"
            for other in grudge[node]
        )
        _sh(remote, node, _ENSURE_CHAIN + rules)

    _on_each((node for node in grudge if grudge[node]), block)


def heal(remote: Remote, nodes: Sequence[str]) -> None:
    """Removes every rule ``drop`` added on ``nodes``. Idempotent."""
    _on_each(nodes, lambda node: _sh(remote, node, _REMOVE_CHAIN))


def dropped(remote: Remote, node: str) -> list[str]:
    """Source addresses ``node`` currently drops (for reports and tests)."""
    result = remote.run(node, ["iptables", "-w", "-S", CHAIN], check=False, timeout=30)
    if result.returncode != 0:
        return []
    sources = []
    for line in result.stdout.splitlines():
        words = line.split()
        if words[:2] == ["-A", CHAIN] and "-s" in words:
            sources.append(words[words.index("-s") + 1].removesuffix("/32"))
    return sources
