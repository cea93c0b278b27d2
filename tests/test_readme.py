"""The README's two set-up commands stay true: CI runs exactly the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_readme_opens_with_two_setup_commands_that_ci_uses():
    blocks = shell_blocks((ROOT / "README.md").read_text())
    main_job, tests = blocks[0], blocks[1]
    assert main_job.endswith("pip install . && splitbrain run")
    assert "apt-get install" in main_job and "iptables" in main_job
    ci = (ROOT / ".ci" / "run").read_text()
    setup, pytest_cmd = (part.strip() for part in tests.split("&&"))
    assert setup in ci and pytest_cmd in ci
    assert ci.index(setup) < ci.index(pytest_cmd)


def test_every_readme_example_names_real_commands_and_variants():
    from harness.cli import cli
    from harness.systems.counterd import VARIANTS

    text = "\n".join(shell_blocks((ROOT / "README.md").read_text()))
    for command in re.findall(r"splitbrain (\w+)", text):
        assert command in cli.commands, command
    for variant in re.findall(r"variant=([\w-]+)", text):
        assert variant in VARIANTS, variant
