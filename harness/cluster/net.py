"""Network faults over any ``Remote``: nodes silently dropping packets from other nodes.

Node X drops what arrives from the nodes in ``grudge[X]`` (all of it, or a random share
of the packets: loss) with iptables rules on its own INPUT, inside a chain that belongs
to splitbrain alone, so ``heal`` removes exactly what ``drop`` added and nothing the
system or the host put there. Partitions and loss use chains of their own, so healing
one leaves the other in place. The kernel's ``statistic`` match draws the lost packets:
it needs no netem, which not every kernel has. Rules match source
addresses of nodes only; the controller's address is never dropped, so the controller
keeps reaching every node during a partition (as in Jepsen).

Commands go through ``Remote.run``: inside a namespace, container or SSH host alike.
Nodes are changed in parallel, so a partition takes effect on all nodes at about the
same moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.cluster.remote import Remote, RemoteError, on_each_node

CHAIN = "SPLITBRAIN-DROP"
LOSS_CHAIN = "SPLITBRAIN-LOSS"
DELAY_CHAIN = "SPLITBRAIN-DELAY"


def _ensure_chain(chain: str) -> str:
    """Shell that creates the chain and the jump to it if missing; both idempotent."""
    return (f"iptables -w -N {chain} 2>/dev/null\n"
            f"iptables -w -C INPUT -j {chain} 2>/dev/null "
            f"|| iptables -w -I INPUT 1 -j {chain} || exit 1\n")


def _remove_chain(chain: str) -> str:
    """Shell that removes the jump (every copy) and the chain; succeeds when they are
    already gone."""
    return (f"while iptables -w -C INPUT -j {chain} 2>/dev/null; "
            f"do iptables -w -D INPUT -j {chain} || exit 1; done\n"
            f"if iptables -w -n -L {chain} >/dev/null 2>&1; then\n"
            f"  iptables -w -F {chain} && iptables -w -X {chain} || exit 1\n"
            "fi\n")


def _sh(remote: Remote, node: str, script: str) -> None:
    result = remote.run(node, ["sh", "-c", script], check=False, timeout=30)
    if result.returncode != 0:
        raise RemoteError(f"{node}: iptables failed: {result.stderr.strip() or result.returncode}")


def drop(remote: Remote, test_nodes: Sequence[str], grudge: Mapping[str, Sequence[str]],
         probability: float | None = None) -> None:
    """Makes each node X drop every packet from the nodes in ``grudge[X]``, or, with a
    ``probability``, each packet with that probability (in the loss chain).

    Adds to whatever is already dropped; ``heal`` undoes it all. Names in the grudge
    must be nodes of the test (a typo would otherwise be a partition that never happens).
    """
    if probability is not None and not 0 < probability <= 1:
        raise ValueError(f"a loss probability must be in (0, 1], got {probability}")
    chain = CHAIN if probability is None else LOSS_CHAIN
    match = "" if probability is None else \
        f"-m statistic --mode random --probability {probability:.6f} "
    known = set(test_nodes)
    unknown = sorted({n for x, ys in grudge.items() for n in (x, *ys)} - known)
    if unknown:
        raise ValueError(f"grudge names unknown nodes {unknown}; nodes are {list(test_nodes)}")

    def block(node: str) -> None:
        rules = "".join(
            f"iptables -w -A {chain} -s {remote.peer_address(other)} {match}-j DROP || exit 1\n"
            for other in grudge[node]
        )
        _sh(remote, node, _ensure_chain(chain) + rules)

    on_each_node((node for node in grudge if grudge[node]), block)


def queue_from_peers(remote: Remote, nodes: Sequence[str], queue: int) -> None:
    """Makes each node hand every packet from the other nodes to NFQUEUE ``queue``
    (where a program on the node decides when to let it through), in the delay chain.
    ``--queue-bypass``: while no program listens, packets pass as usual."""
    def divert(node: str) -> None:
        rules = "".join(
            f"iptables -w -A {DELAY_CHAIN} -s {remote.peer_address(other)} "
            f"-j NFQUEUE --queue-num {queue} --queue-bypass || exit 1\n"
            for other in nodes if other != node)
        _sh(remote, node, _ensure_chain(DELAY_CHAIN) + rules)

    on_each_node(nodes, divert)


def heal(remote: Remote, nodes: Sequence[str], *, chain: str = CHAIN) -> None:
    """Removes every rule of ``chain`` (the partitions', by default) on ``nodes``.
    Idempotent."""
    on_each_node(nodes, lambda node: _sh(remote, node, _remove_chain(chain)))


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
