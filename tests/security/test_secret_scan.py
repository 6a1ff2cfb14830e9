"""The session's secret scan (tests/support/secret_scan.py) finds what it looks for: a secret planted in a log
line, in a history in clear (a memo) and inside an encrypted payload, anything shaped like an API key or a JWT;
it names where, never the whole secret; a clean log gives nothing; the one line `make run` shows its development
key on is allowed, the same key anywhere else is not.

The plants use a scanner of their own: what this test plants is no secret of the session's scan, and its logs
live outside the run's temporary directory, so the session's scan still passes.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.support.secret_scan import Scanner


async def test_the_scan_finds_planted_secrets_in_logs_and_histories(
    skipping_temporal: WorkflowEnvironment, payload_key: bytes
) -> None:
    planted = f"planted-{secrets.token_urlsafe(24)}"
    in_payload = f"sealed-{secrets.token_urlsafe(24)}"
    api_key_shape = f"mf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    jwt_shape = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0." + secrets.token_urlsafe(64)
    dev_key = f"mf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    scan = Scanner()
    scan.remember_secret("planted password", planted)
    scan.remember_secret("sealed client secret", in_payload)
    scan.remember_secret("the session's payload key", payload_key)

    # a workflow with the planted secret in clear (a memo, written without our codec) and one with the other in
    # its encrypted input; no worker runs them
    plain_client = Client(skipping_temporal.client.service_client, namespace=skipping_temporal.client.namespace)
    queue = f"nobody-{uuid.uuid4()}"
    await plain_client.start_workflow("NoSuchWorkflow", id=f"memo-{uuid.uuid4()}", task_queue=queue,
                                      memo={"note": planted})  # fmt: skip
    sealed = await skipping_temporal.client.start_workflow(
        "NoSuchWorkflow", {"note": in_payload}, id=f"sealed-{uuid.uuid4()}", task_queue=queue
    )
    await scan.collect_histories(skipping_temporal.client, "test server")

    with tempfile.TemporaryDirectory() as outside:  # not under the run's temporary directory
        log = Path(outside) / "api.log"
        log.write_text(
            "INFO started\n"
            f"WARNING refused {planted} from 127.0.0.1\n"
            f"DEBUG Authorization: Bearer {api_key_shape}\n"
            f"DEBUG token {jwt_shape}\n"
            f"mojaflow: development API key (client_key bank1, operator), also in {outside}/dev-api-key (0600): "
            f"{dev_key}\n"
            f"INFO the same key again {dev_key}\n"
        )
        clean = Path(outside) / "worker.log"
        clean.write_text("INFO nothing to see\n" * 100)
        scan.remember_log(log)
        scan.remember_log(clean)
        found = [str(finding) for finding in scan.findings()]

    assert f"planted password ({planted[:6]}…) in {log}:2" in found
    assert f"something shaped like an API key ({api_key_shape[:6]}…) in {log}:3" in found
    assert f"something shaped like a signed JWT (eyJhbG…) in {log}:4" in found
    assert not any(f"{log}:5" in finding for finding in found)  # the development key's one line
    assert f"something shaped like an API key ({dev_key[:6]}…) in {log}:6" in found
    assert not any(str(clean) in finding for finding in found)
    memo = [finding for finding in found if finding.startswith("planted password") and "history" in finding]
    assert len(memo) == 1 and "workflow_execution_started_event_attributes" in memo[0], found
    sealed_found = [finding for finding in found if finding.startswith("sealed client secret")]
    assert len(sealed_found) == 1 and sealed.id in sealed_found[0], found  # found only once decrypted
    for secret in (planted, in_payload, api_key_shape, jwt_shape, dev_key, payload_key.hex()):
        assert not any(secret in finding for finding in found)  # named, never shown
    assert scan.problems == [] and os.path.exists(log) is False  # the plants are gone with their directory


def test_a_secret_is_found_as_a_json_log_line_escapes_it() -> None:
    """MOJAFLOW_LOG_FORMAT=json writes `"` as `\\"` (and a logger may escape non-ASCII as `\\u00e9`)."""
    secret = f'pa"ss\\wörd-{secrets.token_urlsafe(12)}'
    scan = Scanner()
    scan.remember_secret("planted password", secret)
    with tempfile.TemporaryDirectory() as outside:
        log = Path(outside) / "api.log"
        log.write_text(
            json.dumps({"event": f"refused {secret}"}, ensure_ascii=False) + "\n"
            + json.dumps({"event": f"refused {secret}"}) + "\n"
            + json.dumps({"event": "nothing to see"}) + "\n",
            encoding="utf-8",
        )  # fmt: skip
        scan.remember_log(log)
        found = [str(finding) for finding in scan.findings()]

    assert found == [f"planted password ({secret[:6]}…) in {log}:1", f"planted password ({secret[:6]}…) in {log}:2"]
