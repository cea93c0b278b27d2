"""Errors the command line turns into one-line messages and exit codes."""


class UsageError(Exception):
    """Bad usage or input: printed as one line, exit 254."""


class NotRootError(UsageError):
    """The local backend needs root for namespaces and iptables."""
