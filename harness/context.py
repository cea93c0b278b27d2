"""The run's plain-data description (Spec) and its live context (Test).

``Spec`` is what the user asked for, validated; it is written to ``test.json``.
``Test`` is what every protocol method receives: the spec plus the live remote, the
run directory and a logger.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.cluster.remote import Remote


@dataclass
class Spec:
    system: str = "counterd"
    workload: str = "counter"
    nemesis: list[str] = field(default_factory=lambda: ["partition", "kill"])
    backend: str = "local"
    nodes: list[str] = field(default_factory=lambda: [f"n{i}" for i in range(1, 6)])
    concurrency: int = 10
    rate: float | None = None
    time_limit: float = 20.0
    seed: int = 0
    store: str = "store"
    options: dict[str, str] = field(default_factory=dict)
    name: str = ""
    image: str = ""  # docker backend: a user's own node image ("" for splitbrain's)
    build_image: bool = False  # docker backend: build splitbrain's node image if missing
    ssh: dict[str, Any] = field(default_factory=dict)  # ssh backend: the [ssh] table

    def __post_init__(self) -> None:
        if not self.name:
            variant = self.options.get("variant")
            parts = [self.system, variant, self.workload, "+".join(self.nemesis) or "none"]
            self.name = "-".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Test:
    spec: Spec
    remote: Remote
    run_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("splitbrain"))

    @property
    def nodes(self) -> list[str]:
        return self.spec.nodes

    @property
    def options(self) -> dict[str, str]:
        return self.spec.options
