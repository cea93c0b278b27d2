"""The workloads' generators and the system x workload seam, without a cluster."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.errors import UsageError
from harness.generator_core import GenContext, worker_rng
from harness.history import FAIL, INFO, INVOKE, OK, Op
from harness.pairing import client_factory, clients_of, matrix
from harness.registry import load_workload
from workloads.kv import OPS_PER_KEY, THREADS_PER_KEY, KeyTable


def draw(workload, workers=6, n=300, seed=3):
    ops = {}
    for w in range(workers):
        ctx = GenContext(worker_rng(seed, w), w, "n1", 0.0, w, workers)
        ops[w] = [workload.generator.op(ctx) for _ in range(n)]
    return ops


@pytest.mark.parametrize("name", ["counter", "register", "kv", "set"])
def test_a_workload_draws_only_the_operations_it_declares(name):
    workload = load_workload(name, {})
    drawn = [spec for seq in draw(workload).values() for spec in seq]
    assert {f for f, _ in drawn} == workload.operations
    if workload.final is not None:
        assert workload.final[0] in workload.operations


def test_register_values_are_unique_and_cas_guesses_own_writes():
    ops = draw(load_workload("register", {}))
    written = [v for seq in ops.values() for f, v in seq if f == "write"]
    written += [v[1] for seq in ops.values() for f, v in seq if f == "cas"]
    assert len(written) == len(set(written)) and None not in written
    for seq in ops.values():
        mine = set()
        for f, v in seq:
            if f == "cas":
                assert v[0] is None or v[0] in mine
                mine.add(v[1])
            elif f == "write":
                mine.add(v)


def test_kv_groups_threads_per_key_and_moves_them_to_fresh_keys():
    ops = draw(load_workload("kv", {}), workers=7, n=3 * OPS_PER_KEY)
    keys_of = {w: [v[0] for _, v in seq] for w, seq in ops.items()}
    for w, keys in keys_of.items():
        # A fresh key every OPS_PER_KEY ops of the worker's own.
        assert keys == [f"{w // THREADS_PER_KEY}.{i // OPS_PER_KEY}" for i in range(len(keys))]
    groups = {}
    for w, keys in keys_of.items():
        for k in set(keys):
            groups.setdefault(k, set()).add(w // THREADS_PER_KEY)
    assert all(len(g) == 1 for g in groups.values())  # no key shared by two groups
    assert max(Counter(k for keys in keys_of.values() for k in keys).values()) \
        <= THREADS_PER_KEY * OPS_PER_KEY


def test_key_table_counts_each_keys_completions():
    history = [Op(INVOKE, "write", ["a", 1], 0), Op(INVOKE, "read", ["b", None], 1),
               Op(OK, "write", ["a", 1], 0), Op(FAIL, "read", None, 1),
               Op(INVOKE, "cas", ["a", [1, 2]], 0), Op(INFO, "cas", None, 0),
               Op(INVOKE, "start-partition", None, "nemesis")]
    result = KeyTable().check(None, history)
    assert result["per_key"] == {"a": {"ok": 1, "info": 1}, "b": {"fail": 1}}
    assert result["summary"] == "2 keys, 2 ops per key (median), 2 at most"


class _OnlyOpenClient:
    """A system of the original protocol: a DB and open_client, no ``clients``."""

    async def open_client(self, test, node):
        raise AssertionError("not opened in this test")


def test_a_system_without_clients_serves_the_counter_alone():
    system = _OnlyOpenClient()
    assert list(clients_of(system)) == ["counter"]
    assert client_factory("mine", system, "counter") == system.open_client
    with pytest.raises(UsageError) as refused:
        client_factory("mine", system, "set")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("system mine has no client for workload set")
    assert "redis: counter, register, set" in message


def test_the_matrix_comes_from_the_systems():
    assert matrix() == {"counterd": ["counter"], "etcd": ["counter", "kv", "register"],
                        "postgres": ["counter", "register", "set"],
                        "redis": ["counter", "register", "set"]}
