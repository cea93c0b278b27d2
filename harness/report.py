"""``report.html``: one self-contained page that explains a run to a person.

It is made from the run directory alone (test.json, results.json, history.jsonl and the
node logs), so ``splitbrain report RUN_DIR`` can draw it again at any time, for runs
recorded by older versions too. The page leads with the verdict and what made it, then
shows the counterexample as a picture, the operations around what the checkers blamed,
the operations and their latencies over time under the faults that were active, and
links to every file of the run.

This module reads the run's files and writes the page; what the page shows, as data,
is ``harness.report_view``'s. The history is read once, as a stream
(``harness.report_history``), and every part of the page is capped and says what it left
out, so a run of millions of operations gets a page of a few hundred KB. The run's files
are input like any other: one that cannot be read at all, or that is not a regular file
of the run (a FIFO, a device, a symbolic link), is one line of error. Every link is
relative and percent-encoded, so no name in the run can become a ``javascript:`` (or any
other scheme's) link.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from harness.errors import UsageError
from harness.history import HistoryError, iter_records
from harness.report_history import Anchors, HistorySummary, short, summarize
from harness.report_view import blamed_ops, checker_results, report_data

MAX_JSON = 64 << 20
"""test.json and results.json larger than this are refused (64 MiB)."""
MAX_FILES = 300
"""Files of the run the page links to; it says how many more there are."""
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("harness", "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)


def write_report(run_dir: Path | str) -> Path:
    """Renders ``run_dir/report.html`` from the run's files and returns its path."""
    return save_report(Path(run_dir), render_report(run_dir))


def save_report(run_dir: Path, html: str) -> Path:
    """Writes ``run_dir/report.html`` atomically (a UsageError when it cannot)."""
    return _write_atomically(run_dir / "report.html", html)


def render_report(run_dir: Path | str) -> str:
    """The page for a run directory, from its files (UsageError when they cannot be
    read)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    test = read_json_object(run_dir / "test.json")
    if (run_dir / "results.json").exists() or (run_dir / "results.json").is_symlink():
        results = read_json_object(run_dir / "results.json")
    else:  # a controller killed mid-run: its history is still worth a look
        results = {"valid": "unknown", "reason": "the run did not finish (no results.json)"}
    checkers = checker_results(results)
    history = _summarize(run_dir / "history.jsonl", blamed_ops(checkers, results))
    files, more_files = _files(run_dir)
    return TEMPLATES.get_template("report.html.j2").render(
        **report_data(run_dir, test, results, checkers, history),
        files=files, more_files=more_files)


def read_json_object(path: Path, limit: int = MAX_JSON) -> dict[str, Any]:
    """A small JSON file that must hold an object; any other content is a UsageError
    (a FIFO, a device, a directory or a symbolic link in its place is refused before it
    is read: a run's files are its own, and a link could lead anywhere)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise UsageError(f"{path.parent}: no {path.name}; is this a run directory?") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path}: a symbolic link, not a file of the run") from None
        raise UsageError(f"{path}: cannot be read ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError(f"{path}: not a regular file")
    with open(fd, "rb") as f:
        if st.st_size > limit:
            raise UsageError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} "
                             f"this file can sensibly hold")
        try:
            data = json.loads(f.read(limit + 1))
        except OSError as e:
            raise UsageError(f"{path}: cannot be read ({e.strerror})") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: not valid JSON (not UTF-8 text)") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
        except (ValueError, RecursionError) as e:  # huge integers, deep nesting
            raise UsageError(f"{path}: not valid JSON ({short(str(e) or 'too deep', 80)})"
                             ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def relative_href(path: str) -> str:
    """A link to ``path`` (relative, with forward slashes) that a browser can only read as
    relative: each segment percent-encoded (so ``:`` cannot start a scheme), after
    ``./``."""
    return "./" + "/".join(quote(part, safe="", errors="surrogateescape")
                           for part in path.split("/"))


def _summarize(path: Path, anchors: Anchors) -> HistorySummary:
    """The one pass over the history, with every way reading it can fail as one line.
    ``summarize`` itself accepts any op, so what is caught here comes from reading."""
    try:
        mode = os.lstat(path).st_mode  # a run's files are its own: no link leads out
        if stat.S_ISLNK(mode):
            raise UsageError(f"{path}: a symbolic link, not a file of the run")
        if not stat.S_ISREG(mode):
            raise UsageError(f"{path}: not a regular file")
        return summarize(iter_records(path, tolerate_torn_tail=True), anchors)
    except FileNotFoundError:
        raise UsageError(f"{path.parent}: no history.jsonl; is this a run directory?"
                         ) from None
    except HistoryError as e:
        raise UsageError(short(str(e), 300)) from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror})") from None
    except (ValueError, TypeError, RecursionError) as e:
        raise UsageError(f"{path}: an operation that cannot be read "
                         f"({short(str(e) or type(e).__name__, 120)})") from None


def _write_atomically(out: Path, text: str) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".report.", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    try:
        # Names from the file system or JSON may hold lone surrogates: written as "?".
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the report from other users
        with open(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
        os.replace(tmp, out)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    return out


def _files(run_dir: Path) -> tuple[list[tuple[str, str, int]], int]:
    """The run's regular files (symlinks are not followed): (link, name, size) of the
    first MAX_FILES, and how many more there are."""
    found: list[tuple[str, str, int]] = []
    more = 0
    for root, dirs, names in os.walk(run_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            rel = path.relative_to(run_dir).as_posix()
            if rel == "report.html" or name.startswith(".report."):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if len(found) < MAX_FILES:
                found.append((relative_href(rel), short(rel, 200), st.st_size))
            else:
                more += 1
    return found, more
