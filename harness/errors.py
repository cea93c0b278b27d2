"""Errors the command line turns into one-line messages and exit codes."""


class SplitbrainError(Exception):
    """The root of splitbrain's own errors."""


class UsageError(SplitbrainError):
    """Bad usage or input: printed as one line, exit 254."""


class EnvironmentFailure(SplitbrainError):
    """The environment failed (a binary missing on a node, a server that would not
    start): the run ends "unknown", exit 2."""


class NotRootError(UsageError):
    """The local backend needs root for namespaces and iptables."""
