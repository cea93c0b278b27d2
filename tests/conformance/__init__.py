"""The client conformance kit: real servers behind a fault-injecting TCP proxy, in a
private network namespace (see ``tests/test_client_conformance.py``)."""
