"""The run's plain-data description (Spec) and its live context (Test).

``Spec`` is what the user asked for, validated; it is written to ``test.json``.
``Test`` is what every protocol method receives: the spec plus the live remote, the
run directory and a logger.
"""

from __future__ import annotations

import logging
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.schema import Schema, TextAs, no_effect, show

if TYPE_CHECKING:
    from harness.cluster.remote import Remote

MAX_NODES = 100
MAX_TIME_LIMIT = 86_400.0
"""A day of client operations: longer is a typo, or a run nobody will wait for."""
MAX_RATE = 1_000_000.0
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""As the local backend names nodes (a backend with host names widens it)."""


def max_concurrency() -> int:
    """Workers the machine can hold: 1,000, or fewer where the open-file limit is low
    (each worker holds a connection or two, and servers need descriptors too)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1000
    return max(1, min(1000, (soft - 100) // 2))


DEFAULT_NEMESIS = ("partition", "kill")
"""The faults of a run that asks for none; those that cannot act on the system are left
out with a note (``nemeses.package.build_nemesis``)."""


class NemesisSettings(Schema):
    """The ``[nemesis]`` table of a test file (beside its ``faults``): how often faults
    come and how hard they hit. Bounded, so a typo cannot make a fault last a year."""

    interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """Seconds between two steps of each fault's schedule, give or take a quarter."""
    loss: Annotated[float, Field(gt=0, le=1)] = 0.2
    """The ``loss`` fault's probability that a packet between two nodes is dropped."""
    latency: Annotated[float, Field(ge=0, le=10)] = 0.1
    """The ``latency`` fault's delay, seconds each way."""
    jitter: Annotated[float, Field(ge=0, le=10)] = 0.02
    """The ``latency`` fault's jitter, seconds."""


OptionValue = Annotated[str, Field(max_length=4096)] | int | float | bool
"""An option's value: text from ``-o KEY=VALUE``, typed from a TOML ``[options]`` table;
each system and workload checks its own (``harness.systems.options``)."""


class SSHSettings(Schema):
    """The ``[ssh]`` table of a test file (``--backend ssh``); every key optional. Nothing
    here is a secret: a key's passphrase comes from ssh-agent or the environment."""

    user: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    key: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    known_hosts: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    sudo: bool | None = None
    config: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    workdir: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    def settings(self) -> dict[str, Any]:
        """What the backend reads: the keys given, defaults for the rest."""
        return self.model_dump(exclude_none=True)


SSH_NODE = re.compile(r"(?:[A-Za-z0-9._-]{1,64}@)?(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])"
                      r"(?::[0-9]{1,5})?")
"""An ssh backend's node: ``[USER@]HOST[:PORT]`` (an IPv6 host in brackets)."""


class Spec(Schema):
    """What the user asked for, validated (``harness.spec_loader`` builds it from a TOML
    file and flags); written to ``test.json``. A new setting is one field here, with its
    type and bounds: the TOML key, the flag's checks and the error messages follow."""

    system: Annotated[str, Field(min_length=1, max_length=200)] = "counterd"
    workload: Annotated[str, Field(min_length=1, max_length=200)] = "counter"
    nemesis: Annotated[list[Annotated[str, Field(max_length=100)]] | None,
                       Field(max_length=100), TextAs(str)] = None
    """Fault names, ``partition,kill`` or a list; ``none`` (or nothing) for no faults.
    None (not given): ``DEFAULT_NEMESIS``, where faults that cannot act on the system are
    left out with a note rather than refused. Names (bundled, or a user's
    ``package.module:factory``) are resolved by ``nemeses.package``; in a test file they
    may be the ``faults`` of a ``[nemesis]`` table."""
    nemesis_settings: NemesisSettings = Field(default_factory=NemesisSettings)
    """From a ``[nemesis]`` table, whose ``faults`` key is ``nemesis`` (``_nemesis_table``)."""
    backend: Literal["local", "docker", "ssh"] = "local"
    nodes: Annotated[list[str], TextAs(int)] = \
        Field(default_factory=lambda: [f"n{i}" for i in range(1, 6)])
    """A count (``n1`` .. ``nN``) or a list of distinct node names."""
    concurrency: Annotated[int, Field(ge=1)] = 10
    rate: Annotated[float, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)] | None = None
    time_limit: Annotated[float, Field(gt=0, le=MAX_TIME_LIMIT)] = 20.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    store: Annotated[str, Field(min_length=1, max_length=4096)] = "store"
    options: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")],
                            OptionValue],
                       Field(max_length=100)] = Field(default_factory=dict)
    name: Annotated[str, Field(max_length=500)] = ""
    """The test's name as given (kept in test.json); its directory in the store is
    ``harness.names.slug(name)``."""
    image: Annotated[str, Field(max_length=500)] = ""
    """Docker backend: a user's own node image ("" for splitbrain's)."""
    build_image: bool = False
    """Docker backend: build splitbrain's node image when it is missing."""
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    """Ssh backend: the ``[ssh]`` table (users, ports, keys, host key policy, sudo)."""

    @model_validator(mode="before")
    @classmethod
    def _nemesis_table(cls, data: Any) -> Any:
        """A ``[nemesis]`` table holds the faults and their settings: TOML cannot have
        both ``nemesis = "partition"`` and a ``[nemesis]`` table."""
        if isinstance(data, dict) and isinstance(data.get("nemesis"), dict):
            data = dict(data)
            table = dict(data.pop("nemesis"))
            if "faults" in table:
                data["nemesis"] = table.pop("faults")
            data["nemesis_settings"] = table
        return data

    @field_validator("nemesis", mode="before")
    @classmethod
    def _split_nemesis(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [n.strip() for n in value.split(",") if n.strip()]
        if not isinstance(value, list):
            raise ValueError('must be fault names, as "partition,kill" or a list')
        if value == []:
            raise ValueError('names no fault: say "none" for a run without faults')
        if not all(isinstance(n, str) for n in value):
            return value  # the field's type names what is wrong
        if "none" in value and len(value) > 1:
            raise ValueError('"none" means no faults: it goes alone')
        return [] if value == ["none"] else list(dict.fromkeys(value))

    @field_validator("nodes", mode="before")
    @classmethod
    def _count_or_names(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_NODES:
                raise ValueError(f"must be a number of nodes from 1 to {MAX_NODES}")
            return [f"n{i}" for i in range(1, value + 1)]
        if not isinstance(value, list):
            raise ValueError("must be a number of nodes or a list of node names")
        if not 1 <= len(value) <= MAX_NODES:
            raise ValueError(f"must name 1 to {MAX_NODES} nodes")
        if info.data.get("backend") == "ssh":
            for name in value:
                if not isinstance(name, str) or not SSH_NODE.fullmatch(name):
                    raise ValueError(f"has a bad node {show(name)}: expected "
                                     "[USER@]HOST[:PORT]")
        else:
            for name in value:
                if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
                    raise ValueError(f"has a bad node name {show(name)}: use up to 32 "
                                     "letters, digits, '_', '.' and '-'")
        if len(set(value)) != len(value):
            raise ValueError("must name distinct nodes")
        return value

    @field_validator("concurrency")
    @classmethod
    def _capped(cls, value: int) -> int:
        cap = max_concurrency()
        if value > cap:
            raise ValueError(f"must be at most {cap:,} (one client connection per worker, "
                             "within this machine's open-file limit)")
        return value

    @field_validator("store")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return str(Path(value))

    @model_validator(mode="after")
    def _settings_act(self, info: ValidationInfo) -> Spec:
        """A setting of the ``[nemesis]`` table that no requested fault uses is refused,
        as an option that changes nothing is; a user's nemesis may read any of them.
        Not for a file's values alone (context ``file-only``): a flag may add the fault."""
        if (info.context or {}).get("file-only"):
            return self
        faults = DEFAULT_NEMESIS if self.nemesis is None else self.nemesis
        if any(":" in f for f in faults):
            return self
        users = {"interval": "any fault", "loss": "loss", "latency": "latency",
                 "jitter": "latency"}
        for key in sorted(self.nemesis_settings.model_fields_set):
            needed = users[key]
            if not faults or (needed != "any fault" and needed not in faults):
                raise no_effect(f"nemesis.{key}", "without faults" if not faults else
                                f"without the {needed} fault")
        return self

    @model_validator(mode="after")
    def _default_name(self) -> Spec:
        if not self.name:
            variant = self.options.get("variant")
            faults = DEFAULT_NEMESIS if self.nemesis is None else self.nemesis
            parts = [self.system, variant if isinstance(variant, str) else None,
                     self.workload, "+".join(faults) or "none"]
            self.name = "-".join(p for p in parts if p)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


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
    def options(self) -> dict[str, Any]:
        return self.spec.options
