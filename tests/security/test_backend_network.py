"""The backend API (SDK-facing) is reachable only as configured: its own interface, a client allow-list judged on
the TCP peer address, optional mutual TLS. Each test starts its own API process (same Temporal, worker, CBS and
database as the session's stack) with the settings under test, and calls it over real sockets."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from api.backend.network import client_allowed
from mojaflow.settings import Settings
from tests.conftest import Stack
from tests.inbound.flow import new_payee
from tests.support.api_process import api_process
from tests.support.tls_proxy import make_certificates


async def test_a_client_outside_the_allow_list_gets_403_and_one_security_log_line(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    payee = await new_payee(http, stack.cbs_url)
    with api_process(stack, tmp_path, MOJAFLOW_BACKEND_ALLOWED_CLIENTS="10.0.0.0/8") as api:
        backend = f"http://127.0.0.1:{api.backend_port}"

        response = await http.get(f"{backend}/parties/MSISDN/{payee.msisdn}")
        # a forwarding header does not make a loopback client one of 10.0.0.0/8: the TCP peer is what counts
        forwarded = await http.get(f"{backend}/health", headers={"X-Forwarded-For": "10.1.2.3"})
        client_api = await http.get(f"{api.client_url}/openapi.json")  # the client API is not the backend's list

        assert response.status_code == 403
        assert response.json() == {
            "statusCode": "3000",
            "message": "forbidden: this client may not call the backend API",
        }
        assert (forwarded.status_code, forwarded.json()["statusCode"]) == (403, "3000")
        assert client_api.status_code == 200
        lines = api.security_lines()
        assert len(lines) == 2, lines
        assert "client=127.0.0.1 GET /parties/MSISDN/***" in lines[0]
        assert "client=127.0.0.1 GET /health" in lines[1]
        assert payee.msisdn not in api.process.log_path.read_text()


async def test_a_client_inside_the_allow_list_is_served(stack: Stack, http: httpx.AsyncClient, tmp_path: Path) -> None:
    payee = await new_payee(http, stack.cbs_url)
    with api_process(stack, tmp_path, MOJAFLOW_BACKEND_ALLOWED_CLIENTS="10.0.0.0/8,127.0.0.1/32") as api:
        response = await http.get(f"http://127.0.0.1:{api.backend_port}/parties/MSISDN/{payee.msisdn}")

        assert response.status_code == 200, response.text
        assert response.json()["idValue"] == payee.msisdn
        assert api.security_lines() == []


async def test_by_default_only_loopback_127_0_0_1_is_served(stack: Stack, http: httpx.AsyncClient) -> None:
    """The session's API runs on the defaults: a client whose source address is 127.0.0.2 (still loopback, but
    not 127.0.0.1/32) is refused; the same request from 127.0.0.1 is served."""
    payee = await new_payee(http, stack.cbs_url)
    url = f"{stack.backend_url}/parties/MSISDN/{payee.msisdn}"
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
        refused = await other.get(url)
    served = await http.get(url)

    assert (refused.status_code, refused.json()["statusCode"]) == (403, "3000")
    assert served.status_code == 200


async def test_the_backend_listens_on_its_own_interface(stack: Stack, http: httpx.AsyncClient, tmp_path: Path) -> None:
    """Backend on ::1 (IPv6 loopback), client API on 127.0.0.1: each answers only where it was bound."""
    with api_process(stack, tmp_path, MOJAFLOW_BACKEND_API_HOST="::1") as api:
        on_its_host = await http.get(f"http://[::1]:{api.backend_port}/health")
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{api.backend_port}/health")
        client_api = await http.get(f"{api.client_url}/openapi.json")

    assert on_its_host.status_code == 200, on_its_host.text  # ::1/128 is on the default allow-list
    assert client_api.status_code == 200


def _ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _tls12_handshake(port: int, context: ssl.SSLContext) -> None:
    """A TLS 1.2 handshake (under 1.2 the server judges the client's certificate before the handshake ends; under
    1.3 the client's side completes first and the server just closes the connection)."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()


async def test_mutual_tls_refuses_a_client_without_a_certificate_and_serves_one_with_it(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "certs")
    payee = await new_payee(http, stack.cbs_url)
    with api_process(
        stack,
        tmp_path,
        MOJAFLOW_BACKEND_TLS_CERT=str(certs.server_cert),
        MOJAFLOW_BACKEND_TLS_KEY=str(certs.server_key),
        MOJAFLOW_BACKEND_TLS_CLIENT_CA=str(certs.ca),
    ) as api:
        url = f"https://127.0.0.1:{api.backend_port}/parties/MSISDN/{payee.msisdn}"

        async with httpx.AsyncClient(verify=_ssl_context(certs.ca)) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.get(url)
        with pytest.raises(ssl.SSLError):
            _tls12_handshake(api.backend_port, _ssl_context(certs.ca))
        _tls12_handshake(api.backend_port, _ssl_context(certs.ca, certs.client_cert, certs.client_key))
        with pytest.raises(httpx.TransportError):  # nor in plain HTTP
            await http.get(url.replace("https://", "http://"))
        client_context = _ssl_context(certs.ca, certs.client_cert, certs.client_key)
        async with httpx.AsyncClient(verify=client_context) as with_certificate:
            served = await with_certificate.get(url)

    assert served.status_code == 200, served.text
    assert served.json()["idValue"] == payee.msisdn


async def test_tls_without_a_client_ca_serves_any_https_client(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "certs")
    tls = {"MOJAFLOW_BACKEND_TLS_CERT": str(certs.server_cert), "MOJAFLOW_BACKEND_TLS_KEY": str(certs.server_key)}
    with api_process(stack, tmp_path, **tls) as api:
        async with httpx.AsyncClient(verify=_ssl_context(certs.ca)) as client:
            served = await client.get(f"https://127.0.0.1:{api.backend_port}/health")

    assert served.status_code == 200, served.text


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 client of a dual-stack listener
        ("127.0.0.2", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
        (None, False),  # e.g. a Unix socket: no peer address
    ],
)
def test_the_default_allow_list_is_loopback_only(peer: str | None, allowed: bool) -> None:
    assert client_allowed(peer, Settings(_env_file=None).backend_allowed_clients) is allowed


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MOJAFLOW_BACKEND_ALLOWED_CLIENTS": "10.0.0.1/8"}, "not a valid IPv4 or IPv6 network"),
        ({"MOJAFLOW_BACKEND_ALLOWED_CLIENTS": " , "}, "at least 1 item"),
        ({"MOJAFLOW_BACKEND_TLS_CERT": "/some/cert.pem"}, "must be set together"),
        ({"MOJAFLOW_BACKEND_TLS_CLIENT_CA": "/some/ca.pem"}, "needs MOJAFLOW_BACKEND_TLS_CERT"),
    ],
)
def test_bad_backend_network_settings_refuse_to_start(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)
