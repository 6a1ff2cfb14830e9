"""mojaflow/logs.py in a process of its own (it configures the root logger, as our API and worker do at start):
what each format writes for our lines, uvicorn's, httpx's, a warning and a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from mojaflow.settings import Settings
from tests.support.stack import ROOT

SECRET = "s3cr3t-in-a-local-variable"  # also searched by the session's secret scan (a `…SECRET` constant)

_SCRIPT = textwrap.dedent(
    f"""
    import logging, sys, warnings
    import structlog
    from mojaflow.logs import configure_logging

    configure_logging("INFO", sys.argv[1])
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/parties/MSISDN/25612345678/sub1", "1.1", 200
    )
    logging.getLogger("mojaflow.api").info("naïve %s", "héllo")
    logging.getLogger("httpx").info("HTTP Request: GET http://sdk/parties/MSISDN/25612345678")
    structlog.get_logger("mojaflow.native").warning("with fields", attempt=2)
    warnings.warn("a deprecation")

    def fails(token):
        raise ValueError("refused at /parties/MSISDN/25612345678")

    try:
        fails({SECRET!r})
    except ValueError:
        logging.getLogger("mojaflow.worker").exception("it failed")
    """
)


def _run(log_format: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, log_format], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == ""  # logs go to stderr
    return result.stderr.splitlines()


def test_json_is_one_object_per_line_with_the_fields_and_nothing_personal() -> None:
    lines = _run("json")
    parsed = [json.loads(line) for line in lines]  # every line, the traceback's too

    assert [(line["level"], line["logger"]) for line in parsed] == [
        ("info", "uvicorn.access"),
        ("info", "mojaflow.api"),
        ("warning", "mojaflow.native"),
        ("warning", "py.warnings"),
        ("error", "mojaflow.worker"),
    ]  # httpx's request line silenced
    assert all(list(line)[:4] == ["timestamp", "level", "logger", "event"] for line in parsed)
    assert all(line["timestamp"].endswith("Z") for line in parsed)
    assert parsed[0]["event"] == '127.0.0.1:5000 - "GET /parties/MSISDN/*** HTTP/1.1" 200'
    assert parsed[1]["event"] == "naïve héllo" and "naïve héllo" in lines[1]  # not escaped: a search finds it
    assert parsed[2]["attempt"] == 2
    assert "a deprecation" in parsed[3]["event"]
    failure = parsed[4]
    assert failure["event"] == "it failed"
    assert "ValueError: refused at /parties/MSISDN/***" in failure["exception"]
    text = "\n".join(lines)
    assert "25612345678" not in text
    assert SECRET not in text  # a traceback never shows local variables


def test_console_is_for_people_with_the_same_protections() -> None:
    lines = _run("console")
    text = "\n".join(lines)

    assert not lines[0].startswith("{")
    assert "[info     ] naïve héllo" in text and "[mojaflow.api]" in text
    assert "GET /parties/MSISDN/*** HTTP/1.1" in text
    assert "attempt=2" in text
    assert "Traceback (most recent call last)" in text
    assert "25612345678" not in text
    assert SECRET not in text


@pytest.mark.parametrize("value", ["JSON", "text", ""])
def test_an_unknown_format_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format=value)  # type: ignore[arg-type]
