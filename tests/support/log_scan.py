"""Reading our processes' JSON logs (MOJAFLOW_LOG_FORMAT=json) as a log pipeline would, and searching them for
personal data.

    lines = json_lines(stack.data_dir / "worker.log")   # fails naming the first line that is not one JSON object
    warned = [r for r in records(api_log) if (r["level"], r["logger"]) == ("warning", "mojaflow.api")]  # while it runs
    assert personal_data_in([path], [msisdn, "Test Payer"]) == []

A value is looked for in the raw text and in every string the lines decode to (so an escaped form, `\\u00e9` or
`\\"`, hides nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["json_lines", "personal_data_in", "records"]


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of `path`, each parsed as one JSON object; an AssertionError names the first that is not."""
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise AssertionError(f"{path.name}:{number} is not JSON ({error}): {line[:200]}") from None
        assert isinstance(value, dict), f"{path.name}:{number} is JSON but not an object: {line[:200]}"
        parsed.append(value)
    return parsed


def records(path: Path) -> list[dict[str, Any]]:
    """The lines of a running process's JSON log written so far, parsed (a line still being written is left out)."""
    text = path.read_text(errors="replace")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines()]


def personal_data_in(paths: Iterable[Path], values: Iterable[str]) -> list[str]:
    """Where each of `values` (party ids, names, account ids) shows in the logs at `paths`: `file:line: value`."""
    wanted = [value for value in values if value]
    found = []
    for path in paths:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                decoded = "\0".join(_strings(json.loads(line)))
            except json.JSONDecodeError:
                decoded = ""
            found += [f"{path.name}:{number}: {value}" for value in wanted if value in line or value in decoded]
    return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    else:
        yield str(value)
