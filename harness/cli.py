"""The ``splitbrain`` command line.

Each command is a thin shell over a module that does the work, so the work can be
called from Python and tested without the CLI. Exit codes follow Jepsen's: 0 valid,
1 invalid, 2 unknown, 254 bad usage or input (one line on stderr), 255 internal error.

``main`` owns how the process ends: splitbrain's own errors (``SplitbrainError``) are
one line and their exit code, a signal at any moment means exit 2 (``harness.stop``),
and anything else is a bug, shown with its traceback (255).
"""

from __future__ import annotations

from harness.stop import STOP, started_as_command

if started_as_command():  # a signal while the rest loads is remembered; main() ends it
    STOP.install(starting=True)

import os  # noqa: E402 (the contract must begin before these load)
import sys  # noqa: E402
import traceback  # noqa: E402
from contextlib import suppress  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import click  # noqa: E402

from harness.errors import (  # noqa: E402
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    EXIT_VALID,
    EnvironmentFailure,
    SplitbrainError,
    UsageError,
)
from harness.history import HistoryError  # noqa: E402


def exit_code(valid: Any) -> int:
    return {True: EXIT_VALID, False: EXIT_INVALID}.get(valid, EXIT_UNKNOWN)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-o expects KEY=VALUE, got {p!r}")
        out[key.strip()] = value.strip()
    return out


def _limit(param: click.Parameter, text: str | None, kind: type[float] | type[int],
           cap: int) -> Any:
    """A check budget: a finite, positive number up to ``cap``, checked by the same
    schema mechanism as ``run``'s flags (NaN or inf would never run out)."""
    if text is None:
        return None
    from pydantic import Field, TypeAdapter, ValidationError

    from harness.schema import describe

    try:
        return TypeAdapter(Annotated[kind, Field(gt=0, le=cap, allow_inf_nan=False)],
                           config={"strict": False}).validate_python(text)
    except ValidationError as e:
        raise click.UsageError(f"{param.opts[0]} {describe(e.errors()[0])}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """splitbrain: Jepsen-style consistency testing with real clusters and real faults."""


@cli.command()
@click.argument("test_file", required=False, type=click.Path(dir_okay=False))
# Flags reach the spec as text: the spec's schema parses and checks them exactly as it
# checks a TOML file's values, so both read the same one-line errors.
@click.option("--system", help="system under test (see `splitbrain list`)")
@click.option("--workload", help="what clients do and what is checked")
@click.option("--nemesis", help="faults, comma separated: partition,kill, none, or a "
              "package.module:factory of your own (see `splitbrain list`)")
@click.option("--backend", metavar="local|docker|ssh", help="where the nodes run")
@click.option("--nodes", metavar="N", help="number of nodes n1..nN")
@click.option("--node", "node_names", multiple=True, help="a node host (repeatable)")
@click.option("--concurrency", metavar="C", help="concurrent client workers")
@click.option("--rate", metavar="OPS_PER_S", help="overall ops per second (default: unlimited)")
@click.option("--time-limit", metavar="SECONDS", help="seconds of client operations")
@click.option("--seed", metavar="N", help="random seed (default: random)")
@click.option("--store", metavar="DIR", help="store directory")
@click.option("-o", "options", multiple=True, metavar="KEY=VALUE", help="system option")
@click.option("--image", help="docker backend: the node image (default: splitbrain's)")
@click.option("--build-image", is_flag=True, default=None,
              help="docker backend: build splitbrain's node image if it is missing")
def run(test_file: str | None, options: tuple[str, ...], **flags: Any) -> None:
    """Start a cluster, drive clients, inject faults, check the history."""
    from harness.runner import run_from_cli

    result = run_from_cli(test_file, _parse_options(options), flags)
    sys.exit(exit_code(result["valid"]))


@cli.command()
@click.argument("history", type=click.Path(dir_okay=False))
@click.option("--model", default="counter", show_default=True)
@click.option("--format", "fmt", default="auto", show_default=True,
              type=click.Choice(["auto", "jsonl", "edn", "jepsen-log", "porcupine"]))
@click.option("--initial", help="initial model state as JSON")
@click.option("--time-limit", callback=lambda ctx, param, text: _limit(param, text, float, 86_400),
              metavar="SECONDS", help="seconds before giving up (unknown)")
@click.option("--memory-limit", callback=lambda ctx, param, text: _limit(param, text, int, 1 << 20),
              metavar="MIB", help="MiB before giving up (unknown)")
def check(history: str, model: str, fmt: str, initial: str | None,
          time_limit: float | None, memory_limit: int | None) -> None:
    """Check a recorded history for linearizability against a model."""
    from harness.check_command import check_file

    result = check_file(history, model=model, fmt=fmt, initial=initial,
                        time_limit=time_limit, memory_limit_mb=memory_limit)
    sys.exit(exit_code(result["valid"]))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
def report(run_dir: str) -> None:
    """Draw a run's report.html again from its files (e.g. store/latest)."""
    from harness.report import write_report

    click.echo(write_report(run_dir))


@cli.command()
@click.argument("store", required=False, default="store", type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="port on 127.0.0.1 (0: any free one)")
def serve(store: str, port: int) -> None:
    """Browse a store's runs and reports (on 127.0.0.1 only)."""
    from harness.serve import make_server

    server = make_server(store, port)
    host, bound = server.server_address[:2]
    if isinstance(host, bytes):
        host = host.decode()
    click.echo(f"serving {store} on http://{host}:{bound}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@cli.command()
def cleanup() -> None:
    """Remove what a crashed or killed run left behind (from splitbrain's own records)."""
    from harness.cluster.cleanup import cleanup_all

    for line in cleanup_all():
        click.echo(line)


@cli.group()
def image() -> None:
    """The Docker backend's node image."""


@image.command()
def build() -> None:
    """Build splitbrain's node image from Debian packages (a few minutes, no registry)."""
    from harness.cluster.backends.docker import connect
    from harness.cluster.image import build_image, default_image, image_exists

    client = connect()
    if image_exists(client, default_image()):
        click.echo(f"{default_image()} is built and up to date")
        return
    build_image(client, progress=lambda line: click.echo(line, err=True))


@cli.command(name="list")
def list_() -> None:
    """Systems, workloads, nemeses and models."""
    from harness.registry import catalogue

    for kind, names in catalogue().items():
        click.echo(f"{kind}: {', '.join(names)}")
    from harness.pairing import matrix_table

    click.echo("\nclients (system x workload):")
    for line in matrix_table():
        click.echo(f"  {line}")


def main() -> None:
    STOP.install()  # first of all: from here on every signal ends the process with exit 2
    code = _command() if not STOP.signals else EXIT_UNKNOWN
    STOP.exiting()
    if STOP.signals:
        _say(f"interrupted ({STOP.describe()})")
        code = EXIT_UNKNOWN
    # The process ends here, with this code: the interpreter's own shutdown would reset
    # the signal handlers first, and a signal then would kill it or be lost.
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe: nothing more can reach it
            stream.flush()
    os._exit(code)


_EXIT_CODES = frozenset((EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_USAGE, EXIT_INTERNAL))


def _say(line: str) -> None:
    click.echo(f"splitbrain: {line}", err=True)


def _command() -> int:
    """Runs the command line; returns the exit code, having said why if it is not a
    verdict's."""
    try:
        returned = cli.main(standalone_mode=False)  # the code of --help's exit, say
    except (click.exceptions.Abort, KeyboardInterrupt):
        if not STOP.signals:
            _say("interrupted")
        return EXIT_UNKNOWN
    except click.ClickException as e:
        _say(e.format_message())
        return EXIT_USAGE
    except EnvironmentFailure as e:
        lines = str(e).strip().splitlines()
        _say(lines[0] if lines else type(e).__name__)
        return e.exit_code
    except (SplitbrainError, HistoryError) as e:
        _say(str(e))
        return getattr(e, "exit_code", EXIT_USAGE)
    except SystemExit as e:
        if e.code is None or e.code in _EXIT_CODES:
            return int(e.code or 0)
        # Not one of ours: code splitbrain ran (a user's system) asked the process to exit.
        _say(f"something splitbrain ran asked to exit ({e.code!r}); the outcome is unknown")
        return EXIT_UNKNOWN
    except BaseException:
        traceback.print_exc()
        _say("internal error (the traceback above is a bug)")
        return EXIT_INTERNAL
    return returned if isinstance(returned, int) else EXIT_VALID
