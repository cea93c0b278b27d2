"""The registry of cluster backends: ``--backend NAME`` -> the module that builds it.

A backend module provides ``from_spec(spec) -> Remote`` (a Remote whose
``check_environment`` says in one line what is missing), ``check_cleanup()`` (what
``splitbrain cleanup`` needs to remove its resources: root, an engine), and registers its
removers with ``harness.cluster.cleanup`` when imported. Modules load on demand, so a run
on one backend never imports another's libraries.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.cluster.remote import Remote
    from harness.context import Spec

BACKENDS: dict[str, str] = {
    "local": "harness.cluster.backends.local",
    "docker": "harness.cluster.backends.docker",
    "ssh": "harness.cluster.backends.ssh",
}


def load_backend(name: str) -> ModuleType:
    module = BACKENDS.get(name)
    if module is None:
        raise UsageError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return importlib.import_module(module)


def load_all_backends() -> None:
    """Imports every backend, so every kind of resource has its remover."""
    for name in BACKENDS:
        load_backend(name)


def make_remote(spec: Spec) -> Remote:
    """The spec's backend, its environment checked (UsageError in one line)."""
    remote: Remote = load_backend(spec.backend).from_spec(spec)
    remote.check_environment()
    return remote


def check_cleanup(name: str) -> None:
    load_backend(name).check_cleanup()
