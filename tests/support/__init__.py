"""Helpers shared by the test suites (real subprocesses, free ports)."""
