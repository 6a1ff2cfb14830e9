"""Temporal beyond the dev server: our worker and API reach Temporal over mutual TLS, or over TLS with an API key,
and a configuration that Temporal or we refuse stops a process at start with one line naming the setting.

The dev server speaks plaintext only, so a TLS-terminating loopback proxy (tests/support/tls_proxy.py, ALPN h2,
a generated CA) stands in front of the session's dev server as a cluster's or Temporal Cloud's front door; it
records the client certificates it saw, the `authorization` header of each connection and the handshakes it
refused.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from mojaflow.settings import Settings
from mojaflow.temporal import TemporalConnectError, connect, describe_connection, tls_config
from tests.support.process import free_port
from tests.support.stack import ROOT, Stack
from tests.support.tls_proxy import CLIENT_SUBJECT, Certificates, TlsProxy, make_certificates
from tests.support.transfers import account, new_payer, start_async, transfer_body, wait_for_state

API_KEY = "tmprl-test-key-" + base64.urlsafe_b64encode(os.urandom(24)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("temporal-certs"))


def _upstream(temporal: WorkflowEnvironment) -> str:
    return temporal.client.service_client.config.target_host


@pytest.fixture(scope="module")
def mtls_proxy(temporal: WorkflowEnvironment, certs: Certificates) -> Iterator[TlsProxy]:
    """A self-hosted cluster's front door: TLS, and only clients with a certificate our CA signed."""
    with TlsProxy(_upstream(temporal), certs, require_client_cert=True) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def tls_proxy(temporal: WorkflowEnvironment, certs: Certificates) -> Iterator[TlsProxy]:
    """Temporal Cloud's with an API key: TLS, no client certificate."""
    with TlsProxy(_upstream(temporal), certs) as proxy:
        yield proxy


def _mutual_tls(proxy: TlsProxy, certs: Certificates, *, ca: Path | None = None) -> dict[str, str]:
    return {
        "MOJAFLOW_TEMPORAL_ADDRESS": proxy.address,
        "MOJAFLOW_TEMPORAL_TLS_CA": str(ca or certs.ca),
        "MOJAFLOW_TEMPORAL_TLS_CERT": str(certs.client_cert),
        "MOJAFLOW_TEMPORAL_TLS_KEY": str(certs.client_key),
    }


async def test_worker_and_api_over_mutual_tls_complete_a_transfer(
    stack: Stack, mtls_proxy: TlsProxy, certs: Certificates, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    seen_before = len(mtls_proxy.peer_subjects)
    with stack.sibling(tmp_path, **_mutual_tls(mtls_proxy, certs)) as tls_stack:  # up: its /health said ok
        payer, payer_account = await new_payer(http, stack.cbs_url)
        transfer, workflow_id = await start_async(http, tls_stack.api_url, transfer_body(payer=payer, amount="7"))
        done = await wait_for_state(http, tls_stack.api_url, transfer["transferId"], {"COMPLETED", "ABORTED"})
        assert done["currentState"] == "COMPLETED", done
        assert Decimal((await account(http, stack.cbs_url, payer_account))["balance"]) == Decimal("993")
        # run by the worker behind the proxy: the session's worker polls another task queue
        described = await stack.client.get_workflow_handle(workflow_id).describe()
        assert described.task_queue == tls_stack.env["MOJAFLOW_TASK_QUEUE"]

    subjects = mtls_proxy.peer_subjects[seen_before:]
    assert len(subjects) >= 2, subjects  # the API's connection and the worker's
    assert set(subjects) == {CLIENT_SUBJECT}
    where = f"Temporal at {mtls_proxy.address}, namespace default (mutual TLS: CA {certs.ca}, client certificate"
    for log in ("api.log", "worker.log"):
        assert where in (tmp_path / log).read_text(), log


async def test_over_tls_with_an_api_key_the_key_is_sent_and_never_logged(
    stack: Stack, tls_proxy: TlsProxy, certs: Certificates, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    seen_before = len(tls_proxy.authorizations)
    env = {
        "MOJAFLOW_TEMPORAL_ADDRESS": tls_proxy.address,
        "MOJAFLOW_TEMPORAL_TLS_CA": str(certs.ca),
        "MOJAFLOW_TEMPORAL_API_KEY": API_KEY,
        "MOJAFLOW_LOG_LEVEL": "DEBUG",
    }
    with stack.sibling(tmp_path, **env) as key_stack:  # the worker polls through the proxy: /health says ok
        health = await http.get(f"{key_stack.api_url}/health")
        assert health.status_code == 200, health.text

    authorizations = tls_proxy.authorizations[seen_before:]
    assert len(authorizations) >= 2, authorizations  # the API's connection and the worker's
    assert set(authorizations) == {f"Bearer {API_KEY}"}
    assert tls_proxy.peer_subjects == []  # no client certificate: the key alone authenticates
    for log in ("api.log", "worker.log"):
        text = (tmp_path / log).read_text()
        assert f"Temporal at {tls_proxy.address}, namespace default (TLS: CA {certs.ca}, API key)" in text
        assert API_KEY not in text and API_KEY[-16:] not in text, log


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        payload_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        **values,
    )


@pytest.mark.parametrize(
    ("case", "setting", "refused_by_proxy"),
    [
        ("plaintext", "MOJAFLOW_TEMPORAL_TLS: ", "WRONG_VERSION_NUMBER"),
        ("no client certificate", "MOJAFLOW_TEMPORAL_TLS_CERT: ", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("wrong server name", "MOJAFLOW_TEMPORAL_TLS_SERVER_NAME: ", "BAD_CERTIFICATE"),
    ],
)
async def test_the_proxy_refuses_and_connect_names_the_setting(
    mtls_proxy: TlsProxy, certs: Certificates, tmp_path: Path, case: str, setting: str, refused_by_proxy: str
) -> None:
    values: dict[str, object] = {
        "plaintext": {"temporal_tls": "false"},
        "no client certificate": {"temporal_tls_ca": certs.ca},
        "wrong server name": {
            "temporal_tls_ca": certs.ca,
            "temporal_tls_cert": certs.client_cert,
            "temporal_tls_key": certs.client_key,
            "temporal_tls_server_name": "temporal.example.com",
        },
    }[case]
    refused_before = len(mtls_proxy.refused)

    with pytest.raises(TemporalConnectError) as refused:
        await connect(_settings(tmp_path, temporal_address=mtls_proxy.address, **values))

    message = str(refused.value)
    assert message.startswith(setting) and "\n" not in message, message
    # The proxy records a failed handshake from its own thread, which may come after the client has given up.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(refused_by_proxy in why for why in mtls_proxy.refused[refused_before:]):
            break
        await asyncio.sleep(0.05)
    assert any(refused_by_proxy in why for why in mtls_proxy.refused[refused_before:]), mtls_proxy.refused


async def test_tls_to_a_plaintext_server_names_the_tls_setting(
    temporal: WorkflowEnvironment, certs: Certificates, tmp_path: Path
) -> None:
    with pytest.raises(TemporalConnectError) as refused:
        await connect(_settings(tmp_path, temporal_address=_upstream(temporal), temporal_tls_ca=certs.ca))
    assert str(refused.value).startswith("MOJAFLOW_TEMPORAL_TLS: ")
    assert "does not speak TLS" in str(refused.value)


async def test_the_api_starts_while_temporal_is_unreachable_and_health_says_so(
    certs: Certificates, tmp_path: Path
) -> None:
    """Lazy as without TLS: only a refused configuration stops the API, not a Temporal that is still starting."""
    from api.health import HealthCheck

    client = await connect(
        _settings(tmp_path, temporal_address=f"127.0.0.1:{free_port()}", temporal_tls_ca=certs.ca), lazy=True
    )
    problem = await HealthCheck(client, "default", "any-queue").problem()
    assert problem is not None and problem.startswith("Temporal did not answer"), problem
    with pytest.raises(TemporalConnectError) as refused:  # the worker is not lazy
        await connect(_settings(tmp_path, temporal_address=f"127.0.0.1:{free_port()}", temporal_tls_ca=certs.ca))
    assert str(refused.value).startswith("MOJAFLOW_TEMPORAL_ADDRESS: cannot reach Temporal at 127.0.0.1:")
    assert str(refused.value).endswith(": Connection refused")


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()  # our own child, by its handle
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "wrong CA",
            "MOJAFLOW_TEMPORAL_TLS_CA: the certificate of Temporal at {address} is not trusted by the CA in "
            "{other_ca} (UnknownIssuer)",
        ),
        (
            "API key without TLS",
            "MOJAFLOW_TEMPORAL_API_KEY is only ever sent over TLS, but MOJAFLOW_TEMPORAL_TLS=false",
        ),
    ],
)
async def test_worker_and_api_refuse_to_start_with_one_line(
    stack: Stack, mtls_proxy: TlsProxy, certs: Certificates, tmp_path: Path, case: str, expected: str
) -> None:
    env = {
        **stack.env,
        "MOJAFLOW_DATA_DIR": str(tmp_path),
        "MOJAFLOW_CLIENT_API_PORT": str(free_port()),
        "MOJAFLOW_BACKEND_API_PORT": str(free_port()),
        **(
            _mutual_tls(mtls_proxy, certs, ca=certs.other_ca)
            if case == "wrong CA"
            else {"MOJAFLOW_TEMPORAL_API_KEY": API_KEY, "MOJAFLOW_TEMPORAL_TLS": "false"}
        ),
    }
    line = expected.format(address=env["MOJAFLOW_TEMPORAL_ADDRESS"], other_ca=certs.other_ca)

    (worker_code, worker_out), (api_code, api_out) = await asyncio.gather(
        _run([sys.executable, "worker.py"], env), _run([sys.executable, "-m", "api"], env)
    )

    for name, code, output in (("worker", worker_code, worker_out), ("API", api_code, api_out)):
        assert code == 1, output
        assert output.splitlines()[-1] == f"mojaflow {name} cannot start: {line}", output
        assert "Traceback" not in output, output
        assert API_KEY not in output and API_KEY[-16:] not in output


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"cert": "client.pem"}, "MOJAFLOW_TEMPORAL_TLS_CERT and MOJAFLOW_TEMPORAL_TLS_KEY go together"),
        ({"ca": "missing.pem"}, "MOJAFLOW_TEMPORAL_TLS_CA: cannot read {dir}/missing.pem: No such file"),
        ({"ca": "client-key.pem"}, "MOJAFLOW_TEMPORAL_TLS_CA: {dir}/client-key.pem holds no PEM certificate"),
        ({"cert": "client.pem", "key": "client.pem"}, "MOJAFLOW_TEMPORAL_TLS_KEY: {dir}/client.pem holds no PEM"),
    ],
)
def test_tls_files_that_cannot_work_are_refused_before_connecting(
    certs: Certificates, files: dict[str, str], error: str
) -> None:
    directory = certs.ca.parent
    settings = _settings(directory, **{f"temporal_tls_{name}": directory / file for name, file in files.items()})
    with pytest.raises(TemporalConnectError) as refused:
        tls_config(settings)
    assert str(refused.value).startswith(error.format(dir=directory)), str(refused.value)


def test_tls_off_with_a_tls_file_is_a_contradiction(certs: Certificates, tmp_path: Path) -> None:
    with pytest.raises(TemporalConnectError) as refused:
        tls_config(_settings(tmp_path, temporal_tls="false", temporal_tls_ca=certs.ca))
    assert str(refused.value) == "MOJAFLOW_TEMPORAL_TLS=false, but MOJAFLOW_TEMPORAL_TLS_CA is set"


def test_tls_is_on_as_soon_as_a_tls_setting_or_a_key_is_given(certs: Certificates, tmp_path: Path) -> None:
    assert tls_config(_settings(tmp_path)) is None  # the dev server
    with_key = _settings(tmp_path, temporal_api_key=SecretStr(API_KEY))
    assert tls_config(with_key) is not None  # the system's CAs: Temporal Cloud
    assert describe_connection(with_key) == (
        "Temporal at 127.0.0.1:7233, namespace default (TLS: the system's CAs, API key)"
    )
    assert tls_config(_settings(tmp_path, temporal_tls="TRUE")) is not None
    empty = Settings(_env_file=None, temporal_tls_ca="", temporal_api_key="")  # type: ignore[call-arg]
    assert tls_config(empty) is None  # compose's `${VAR:-}`: unset, not a file named ""


async def test_make_run_refuses_its_plaintext_dev_server_when_tls_is_configured(
    certs: Certificates, tmp_path: Path
) -> None:
    code, output = await _run(
        [sys.executable, "-m", "mojaflow.launcher"],
        {"MOJAFLOW_DATA_DIR": str(tmp_path), "MOJAFLOW_TEMPORAL_TLS_CA": str(certs.ca)},
    )
    assert code == 2, output
    assert output.strip() == (
        "mojaflow cannot start: MOJAFLOW_TEMPORAL_DEV_SERVER=true starts a plaintext dev server, but Temporal TLS or "
        "an API key is set: set MOJAFLOW_TEMPORAL_DEV_SERVER=false to use your cluster"
    )
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
