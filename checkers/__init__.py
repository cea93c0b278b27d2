"""Checkers: counter bounds and lost updates, linearizability and its models, stats."""
