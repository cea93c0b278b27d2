from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.generator import constant, from_fn, mix
from harness.generator_core import GenContext, worker_rng


def _draw(gen, seed, worker, n=200):
    ctx = GenContext(worker_rng(seed, worker), worker, "n1", 0.0)
    return [gen.op(ctx) for _ in range(n)]


def _register_ops():
    def pick(ctx):
        return ("write", ctx.rng.randrange(5)) if ctx.rng.random() < 0.5 else ("read", None)
    return mix([(3, from_fn(pick)), (1, constant("cas", [0, 1]))])


@given(seed=st.integers(0, 2**63), worker=st.integers(0, 1000))
def test_same_seed_and_worker_give_the_same_ops(seed, worker):
    assert _draw(_register_ops(), seed, worker) == _draw(_register_ops(), seed, worker)


def test_workers_and_seeds_get_different_streams():
    gen = _register_ops()
    assert _draw(gen, 1, 0) != _draw(gen, 1, 1)
    assert _draw(gen, 1, 0) != _draw(gen, 2, 0)


def test_seeded_stream_is_pinned_across_processes_and_hash_seeds():
    # A string seed is hashed with SHA-512, not hash(): pinning the first draw catches
    # a change that would make the seeds of recorded runs unreplayable.
    assert worker_rng(7, 3).random() == 0.6889937336119286


def test_mix_follows_weights():
    counts = Counter(f for f, _ in _draw(
        mix([(3, constant("add", 1)), (1, constant("read"))]), 5, 0, n=8000))
    assert set(counts) == {"add", "read"}
    assert 2.7 < counts["add"] / counts["read"] < 3.3


def test_constant_and_from_fn_see_the_context():
    assert constant("add", 1).op(GenContext(worker_rng(0, 0), 0, "n1", 0.0)) == ("add", 1)
    gen = from_fn(lambda ctx: None if ctx.elapsed > 1 else (ctx.node, ctx.process))
    assert gen.op(GenContext(worker_rng(0, 0), 4, "n2", 0.5)) == ("n2", 4)
    assert gen.op(GenContext(worker_rng(0, 0), 4, "n2", 1.5)) is None


@pytest.mark.parametrize("weighted", [[], [(0, constant("read"))], [(-1, constant("read"))]])
def test_mix_rejects_empty_or_nonpositive_weights(weighted):
    with pytest.raises(ValueError):
        mix(weighted)
