"""Deterministic orchestration only: one module per flow. All I/O is in `activities`."""
