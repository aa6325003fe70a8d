"""The parts of tests/harness/servers.py, one module per server kind (see servers.py)."""
