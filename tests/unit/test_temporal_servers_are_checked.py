"""Every Temporal server the tests start is checked for workflows that ended Failed or Terminated: so every test
starts its server through tests/support/temporal_env.py (or its fixtures), never with WorkflowEnvironment alone."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
HELPER = TESTS / "support" / "temporal_env.py"
STARTS = re.compile(r"\b(start_local|start_time_skipping|WorkflowEnvironment\.from_client)\s*\(")


def test_no_test_starts_a_temporal_server_that_is_not_checked() -> None:
    unchecked = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != HELPER
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if STARTS.search(line)
    ]
    assert unchecked == [], "start Temporal servers with tests/support/temporal_env.py, which checks them"


def test_the_helper_starts_both_kinds_of_server() -> None:
    found = {match.group(1) for match in STARTS.finditer(HELPER.read_text())}
    assert found == {"start_local", "start_time_skipping"}
