"""The live status line: drawn only on a terminal, with phase, clock and ops recorded."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

from rich.console import Console

from harness.progress import run_progress


@dataclass
class _Writer:
    count: int = 0


def test_on_a_terminal_it_shows_the_phase_its_clock_and_the_ops_recorded():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    writer = _Writer()
    with run_progress(writer, console) as progress:
        progress.phase("clients and faults", 20)
        writer.count = 12_345
        time.sleep(0.3)  # the live display redraws itself a few times a second
        progress.phase("final reads")
        time.sleep(0.3)
    text = out.getvalue()
    assert "clients and faults" in text and "/ 20 s" in text
    assert "12,345 history entries" in text and "final reads" in text


def test_elsewhere_it_draws_nothing():
    out = io.StringIO()
    with run_progress(_Writer(), Console(file=out, force_terminal=False)) as progress:
        progress.phase("clients and faults", 20)
        time.sleep(0.2)
    assert out.getvalue() == ""
