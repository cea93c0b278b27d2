"""The errors splitbrain means to raise, and what each one costs the run.

Everything splitbrain raises on purpose derives from ``SplitbrainError``; anything else
that escapes is a bug in splitbrain (exit 255, with its traceback). The command line
prints a ``SplitbrainError`` as one line and exits with its ``exit_code``:

- ``UsageError``: the input or the command line is wrong (exit 254), found before
  anything was started wherever possible.
- ``EnvironmentFailure``: the input was fine but the machine was not (a server that
  would not start, a binary missing on a node, a host that cannot be reached, a full
  disk). The run tears down, says why in ``results.json`` and ends "unknown" (exit 2).
"""

from __future__ import annotations

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 254, 255
"""The exit codes, as Jepsen's: valid, invalid, unknown, bad usage, a bug in splitbrain."""


class SplitbrainError(Exception):
    """The root of every error splitbrain raises on purpose."""

    exit_code = EXIT_UNKNOWN


class UsageError(SplitbrainError):
    """Bad usage or input: printed as one line, exit 254."""

    exit_code = EXIT_USAGE


class NotRootError(UsageError):
    """The local backend needs root for namespaces and iptables."""


class EnvironmentFailure(SplitbrainError):
    """The environment failed the run: it ends "unknown" (exit 2) with this as its reason.

    The message is one line. ``node`` and ``log_file`` name the node and its log that
    explain more (the runner points ``log_file`` at the copy it collected into the store,
    since the node's own is gone after teardown); ``detail`` holds what is too long for
    one line (a server's last log lines), written to the run's ``splitbrain.log`` with
    the traceback.
    """

    def __init__(self, message: str, *, node: str | None = None,
                 log_file: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.log_file = log_file
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}; read {self.log_file}" if self.log_file else self.message


class StoreError(EnvironmentFailure):
    """The store could not be written (full, read-only, gone): names it and the file.

    ``exit_code`` is the verdict's when the run reached one before the write failed: the
    verdict is printed and stands, only its record is missing. ``path`` is the file that
    could not be written, when there is one.
    """

    def __init__(self, message: str, *, path: object = None,
                 exit_code: int = EXIT_UNKNOWN) -> None:
        super().__init__(message)
        self.path = path
        self.exit_code = exit_code
