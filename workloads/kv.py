"""The kv workload: the register workload over many independent keys.

As Jepsen's independent concurrent generator: workers are grouped ``THREADS_PER_KEY`` to
a key, and each worker moves its group to a fresh key after ``OPS_PER_KEY`` ops of its
own (``harness.generator.independent``), so every key sees a short, highly concurrent
history. Each op's value is ``[key, v]`` with register semantics per key: ``read``
returns ``[key, v]``, ``write [key, v]``, ``cas [key, [old, new]]``. The linearizability
checker with the kv model splits the history by key and checks keys independently (in
worker processes when there are several cores); a short history per key keeps every
search small. There are no final reads: each key is done when its group moves on.
"""

from __future__ import annotations

from checkers.base import Compose
from checkers.linearizable import Linearizable
from checkers.models import KV
from harness.generator import from_fn, independent
from workloads.base import UniqueValues, Workload
from workloads.register import OPERATIONS, register_op

THREADS_PER_KEY = 3
OPS_PER_KEY = 40
"""Per worker: a key then has at most 3 x 40 ops, a search of moments."""


def make_workload(options: dict[str, str]) -> Workload:
    values = UniqueValues()
    return Workload(
        name="kv",
        generator=independent(from_fn(lambda ctx: register_op(values, ctx)),
                              threads_per_key=THREADS_PER_KEY, ops_per_key=OPS_PER_KEY),
        final=None,
        checker=Compose({"linearizable": Linearizable(KV())}),
        operations=OPERATIONS,
    )
