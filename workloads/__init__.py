"""Workloads: what clients do, what is read at the end, and which checkers judge it."""
