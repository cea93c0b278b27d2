"""Knossos's own test histories: each must get the verdict its folder names.

These are real histories recorded by other people's tools (see
``../shared/corpus/README.md``); the folder gives the model and the expected verdict.
The corpus lives outside the repository, so a fresh clone skips these tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from checkers import linearizable
from checkers.models import make_model
from harness.formats import read_history

CORPUS = Path(os.environ.get("SPLITBRAIN_CORPUS", "")
              or Path(__file__).resolve().parents[2] / "shared" / "corpus") / "knossos"

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


@pytest.mark.parametrize("path,expected", _cases())
def test_corpus_history_gets_its_folders_verdict(path: Path, expected: bool) -> None:
    name, initial = MODELS[path.parent.parent.name]
    history = read_history(path, fmt="edn")
    result = linearizable.check(make_model(name, initial), history, time_limit=60)
    assert result["valid"] is expected, linearizable.render(result)
    if not expected:
        assert result["counterexample"]["explanation"]


@pytest.mark.parametrize("path,expected", [
    c for c in _cases() if c.values[0] is None or c.values[0].parent.parent.name != "multi-register"
][::10])
def test_splitbrain_check_agrees_as_the_corpus_readme_says_to_run_it(path, expected, capsys):
    """Through `splitbrain check`'s own path, with the model and initial state the corpus
    README gives (cas-register from 0, mutex free): Knossos's conventions must hold."""
    from harness.check_command import check_file

    name, initial = MODELS[path.parent.parent.name]
    result = check_file(str(path), model=name,
                        initial=None if initial is None else json.dumps(initial))
    assert result["valid"] is expected
