"""`cbs-contract.openapi.yaml` and the CBS simulator describe the same API: same paths, same methods.

No YAML parser is installed, so the paths are read with a line scan that relies on the file's layout:
path keys indented by 2 spaces under `paths:`, methods by 4.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from simulators.cbs import create_app
from tests.simulators._sims import REPO_ROOT

CONTRACT = REPO_ROOT / "cbs-contract.openapi.yaml"
_METHODS = {"get", "post", "put", "patch", "delete"}


def contract_operations(text: str) -> set[tuple[str, str]]:
    operations: set[tuple[str, str]] = set()
    in_paths, path = False, None
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_paths = line.startswith("paths:")
            continue
        if not in_paths:
            continue
        if m := re.match(r"^  (/\S*):\s*$", line):
            path = m.group(1)
        elif (m := re.match(r"^    (\w+):", line)) and m.group(1) in _METHODS and path:
            operations.add((m.group(1).upper(), path))
    return operations


def test_contract_lists_exactly_the_simulator_routes(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    routes = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}
    documented = contract_operations(CONTRACT.read_text())
    assert len(documented) == 22
    assert documented == routes


def test_contract_header() -> None:
    text = CONTRACT.read_text()
    assert text.startswith("openapi: 3.1.0\n")
    for code in (
        "insufficient_funds",
        "idempotency_conflict",
        "limit_exceeded",
        "unsupported_id_type",
        "hold_released",
        "reservation_committed",
        "currency_mismatch",
        "unsupported_currency",
    ):
        assert f"- {code}" in text
