"""Knossos's own test histories: each must get the verdict its folder names.

These are real histories recorded by other people's tools (see
``../shared/corpus/README.md``); the folder gives the model and the expected verdict.
The corpus lives outside the repository, so a fresh clone skips these tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checkers import linearizable
from checkers.models import make_model
from harness.formats import read_history
from harness.history import Op

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "knossos"

MODELS = {  # folder -> (model, initial state)
    "cas-register": ("cas-register", 0),
    "multi-register": ("multi-register", {"x": 0, "y": 0}),
    "mutex": ("mutex", None),
}


def _cases() -> list:
    if not CORPUS.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason=f"no corpus at {CORPUS} (it is outside the repository)"))]
    cases = []
    for path in sorted(CORPUS.glob("*/*/*.edn")):
        folder, verdict = path.parent.parent.name, path.parent.name
        cases.append(pytest.param(path, verdict == "good",
                                  id=f"{folder}/{verdict}/{path.stem}"))
    return cases


def nil_reads_unknown(history: list[Op]) -> list[Op]:
    """Knossos's register models take a read that returned nil as "value unknown" (it
    matches any state); ours take nil as a value. Such a read carries no information,
    which in our contract is a read that completed ``info``."""
    for op in history:
        if op.type == "ok" and op.f == "read" and op.value is None:
            op.type = "info"
    return history


@pytest.mark.parametrize("path,expected", _cases())
def test_corpus_history_gets_its_folders_verdict(path: Path, expected: bool) -> None:
    name, initial = MODELS[path.parent.parent.name]
    history = read_history(path, fmt="edn")
    if name == "cas-register":
        history = nil_reads_unknown(history)
    result = linearizable.check(make_model(name, initial), history, time_limit=60)
    assert result["valid"] is expected, linearizable.render(result)
    if not expected:
        assert result["counterexample"]["explanation"]
