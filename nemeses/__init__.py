"""Faults: partitions, kills, pauses, clock skew, latency; schedules and composition."""
