"""Time to bring a 5-node cluster up and to tear it down, per backend.

    python3 bench/cluster.py [--backend local|docker ...] [--repeat N] [--nodes N]

Targets: up in under 3 s on local and under 5 s on Docker (with the node image already
built). Each figure is the median of ``--repeat`` cycles; the worst is shown too. A
backend that cannot run here (no engine, no image, not root) is reported in one line.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.cluster.backends import load_backend
from harness.context import Spec
from harness.errors import UsageError

TARGETS = {"local": 3.0, "docker": 5.0}


def cycle(backend: str, nodes: list[str]) -> tuple[float, float]:
    remote = load_backend(backend).from_spec(Spec(backend=backend, nodes=nodes))
    remote.check_environment()
    began = time.monotonic()
    try:
        remote.setup(nodes)
        up = time.monotonic() - began
    finally:
        began = time.monotonic()
        remote.teardown()
    return up, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=sorted(TARGETS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=5)
    args = parser.parse_args()
    nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
    for backend in args.backend or sorted(TARGETS):
        try:
            times = [cycle(backend, nodes) for _ in range(args.repeat)]
        except UsageError as e:
            print(f"{backend}: cannot run here: {e}")
            continue
        ups, downs = [t[0] for t in times], [t[1] for t in times]
        up = statistics.median(ups)
        verdict = "meets" if up < TARGETS[backend] else "MISSES"
        print(f"{backend}: {len(nodes)} nodes up in {up:.2f} s (worst {max(ups):.2f}), "
              f"down in {statistics.median(downs):.2f} s (worst {max(downs):.2f}); "
              f"{verdict} the {TARGETS[backend]:g} s target")


if __name__ == "__main__":
    main()
