"""The end-to-end scenarios' stack (`make e2e`): mojaflow against the real SDK and TTK (e2e/harness/), once per
session, on the session's Temporal dev server, with the main suite's session checks (tests/conftest.py): no
workflow ended Failed or Terminated, no secret in any log or history. Every process is stopped by PID when the
session ends, also when a test failed; and the Node processes must have tried no destination but 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from temporalio.testing import WorkflowEnvironment

from e2e.harness.mojaloop import Mojaloop
from e2e.harness.stack import e2e_stack
from tests.conftest import http, no_secret_in_any_log_or_history, payload_key, temporal
from tests.support.stack import Stack

__all__ = ["E2E", "http", "no_secret_in_any_log_or_history", "payload_key", "temporal"]


@dataclass
class E2E:
    stack: Stack  # our API, worker, CBS simulator: as tests/ knows them
    mojaloop: Mojaloop  # the SDK, TTK, the switch front, Redis


@pytest.fixture(scope="session")
def e2e(temporal: WorkflowEnvironment, payload_key: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with e2e_stack(temporal, payload_key, tmp_path_factory.mktemp("e2e")) as (stack, mojaloop):
        yield E2E(stack, mojaloop)
    assert not mojaloop.guard_refusals(), mojaloop.guard_refusals()
