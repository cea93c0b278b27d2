"""Choosing a free IPv4 subnet for a run's nodes, shared by the backends that make a
network of their own (a bridge of namespaces, a Docker network).

A subnet is free when no other run's ledger holds it and the host routes nothing that
overlaps it; callers hold ``harness.cluster.ledger.locked`` while choosing and recording.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from harness.cluster.ledger import all_ledgers
from harness.errors import UsageError

DEFAULT_POOL = ipaddress.IPv4Network("10.213.0.0/16")
"""Where runs take their /24 from when no subnet is given (clear of Docker's 172.17/16)."""


def routed_networks() -> list[ipaddress.IPv4Network]:
    """Networks the host already routes (except the default route): a subnet must avoid them."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                         capture_output=True, text=True, timeout=10)
    nets = []
    for route in json.loads(out.stdout or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return nets


def choose_subnet(state_dir: Path, n_nodes: int,
                  requested: ipaddress.IPv4Network | None = None,
                  taken_elsewhere: list[ipaddress.IPv4Network] | None = None,
                  ) -> ipaddress.IPv4Network:
    """A subnet with room for a gateway and ``n_nodes`` nodes that clashes with nothing."""
    taken = [ipaddress.IPv4Network(led.data["subnet"]) for led in all_ledgers(state_dir)
             if "subnet" in led.data]
    taken += routed_networks() + (taken_elsewhere or [])
    if requested is not None:
        if requested.num_addresses - 2 < n_nodes + 1:
            raise UsageError(f"subnet {requested} is too small for {n_nodes} nodes")
        if clash := next((t for t in taken if requested.overlaps(t)), None):
            raise UsageError(f"subnet {requested} overlaps {clash}, already in use on this host")
        return requested
    prefix = 24 if n_nodes <= 250 else 16
    for candidate in DEFAULT_POOL.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise UsageError(f"no free subnet left in {DEFAULT_POOL}; run `splitbrain cleanup`")
