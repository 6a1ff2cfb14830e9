"""The SSRF guard (mojaflow/url_guard.py): bypass forms refused at subscription time, and at delivery time on the
address actually connected, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any

import httpcore
import httpx
import pytest

from mojaflow.url_guard import (
    GuardedNetworkBackend,
    UnsafeUrl,
    check_url,
    guarded_client,
    guarded_transport,
    unsafe_address_reason,
)

MAKE_RUN_ALLOWED = ["127.0.0.1", "localhost"]

# (URL, the reason code it is refused with)
REFUSED = [
    ("http://example.com/hook", "scheme"),
    ("ftp://example.com/hook", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com:70/_", "scheme"),
    ("https://127.0.0.1/", "address"),
    ("https://127.0.0.1:3006/hook", "address"),
    ("HTTPS://127.0.0.1/", "address"),
    ("https://127.0.0.1./", "address"),  # trailing dot on an IP
    ("https://127.255.255.254/", "address"),
    ("https://2130706433/", "nonstandard_ip"),  # decimal
    ("https://0177.0.0.1/", "invalid"),  # octal (httpx refuses to parse it)
    ("https://0177.1/", "nonstandard_ip"),  # octal, shortened
    ("https://0x7f.1/", "nonstandard_ip"),  # hex, shortened
    ("https://0x7f000001/", "nonstandard_ip"),  # hex
    ("https://127.1/", "nonstandard_ip"),  # shortened
    ("https://0/", "nonstandard_ip"),
    ("https://0251.0376.0251.0376/", "invalid"),  # octal 169.254.169.254
    ("https://0.0.0.0/", "address"),
    ("https://0.1.2.3/", "address"),  # "this network"
    ("https://[::ffff:127.0.0.1]/", "address"),  # IPv4-mapped
    ("https://[::ffff:7f00:1]/", "address"),
    ("https://[::ffff:a9fe:a9fe]/", "address"),  # IPv4-mapped metadata
    ("https://[::ffff:8.8.8.8]/", "address"),  # IPv4-mapped, even of a public address
    ("https://[::1]/", "address"),
    ("https://[0:0:0:0:0:0:0:1]/", "address"),
    ("https://[::]/", "address"),
    ("https://[::127.0.0.1]/", "address"),  # IPv4-compatible
    ("https://[2002:7f00:1::]/", "address"),  # 6to4 of 127.0.0.1
    ("https://[2002:a00:1::]/", "address"),  # 6to4 of 10.0.0.1
    ("https://[64:ff9b::7f00:1]/", "address"),  # NAT64 of 127.0.0.1
    ("https://[64:ff9b::a9fe:a9fe]/", "address"),  # NAT64 of 169.254.169.254
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "address"),  # Teredo, client 127.0.0.1
    ("https://localhost/", "name"),
    ("https://localhost./", "name"),  # trailing dot
    ("https://LocalHost/", "name"),
    ("https://api.localhost/", "name"),
    ("https://localhost:443@example.com/", "userinfo"),
    ("https://good.com@127.0.0.1/", "userinfo"),  # userinfo trick
    ("https://user:pass@example.com/", "userinfo"),
    ("https://127.0.0.1\\@good.com/", "userinfo"),  # backslash: httpx sees userinfo, browsers see 127.0.0.1
    ("https://127.0.0.1#@good.com", "address"),  # fragment trick: the host is 127.0.0.1
    ("https://127.0.0.1?@good.com", "address"),
    ("https://169.254.169.254/latest/meta-data/", "address"),
    ("https://169.254.170.2/v2/credentials", "address"),  # ECS task metadata
    ("https://100.100.100.200/latest/meta-data", "address"),  # Alibaba metadata, CGNAT range
    ("https://metadata.google.internal/computeMetadata/v1/", "name"),
    ("https://metadata.google.internal./", "name"),
    ("https://metadata/", "name"),
    ("https://vault.corp.internal/", "name"),
    ("https://printer.local/", "name"),
    ("https://[fd00:ec2::254]/", "address"),  # AWS metadata over IPv6
    ("https://[fd00::1]/", "address"),  # unique local fd00::/8
    ("https://[fc00::1]/", "address"),
    ("https://[fe80::1]/", "address"),  # link-local
    ("https://[fe80::1%25eth0]/", "host"),  # zone id
    ("https://169.254.1.1/", "address"),
    ("https://100.64.0.1/", "address"),  # CGNAT 100.64.0.0/10
    ("https://100.127.255.254/", "address"),
    ("https://224.0.0.1/", "address"),  # multicast 224.0.0.0/4
    ("https://239.255.255.250/", "address"),
    ("https://[ff02::1]/", "address"),
    ("https://10.0.0.1/", "address"),
    ("https://10.255.255.255/", "address"),
    ("https://172.16.0.1/", "address"),
    ("https://172.31.255.254/", "address"),
    ("https://192.168.1.1/", "address"),
    ("https://255.255.255.255/", "address"),  # broadcast
    ("https://240.0.0.1/", "address"),  # reserved
    ("https://198.18.0.1/", "address"),  # benchmarking
    ("https://192.0.2.1/", "address"),  # documentation
    ("https://[2001:db8::1]/", "address"),
    ("https://%31%32%37.0.0.1/", "host"),  # percent-encoded host
    ("https://127.0.0.1%00.good.com/", "host"),
    ("https://example.123/", "nonstandard_ip"),  # ends in a number: an IPv4 address to parsers
    ("https://1.2.3.4.5/", "nonstandard_ip"),
    ("https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", "invalid"),  # fullwidth "localhost"
    ("https:///hook", "host"),
    ("https:127.0.0.1", "host"),
    ("https://example.com:0/", "port"),
    ("https://example.com:65536/", "port"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=[url for url, _ in REFUSED])
async def test_bypass_forms_are_refused_at_subscription_time(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        await check_url(url, [])

    assert refused.value.reason == reason, str(refused.value)


def test_there_are_well_over_thirty_bypass_forms() -> None:
    assert len(REFUSED) >= 30


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "https://[::1]/", "https://localhost/", "https://10.0.0.1/"])
async def test_what_make_run_allows_is_refused_without_the_allowed_list(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await check_url(url, ["localhost.example", "10.0.0.2"])


def _non_public_hostname() -> str:
    """This machine's own name: it resolves through /etc/hosts, to loopback or a private address."""
    name = socket.gethostname().lower()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)}
    if not all(unsafe_address_reason(ip_address(a)) for a in addresses):
        pytest.skip(f"this machine's name {name} resolves to a public address")
    return name


async def test_a_plain_name_that_resolves_to_a_non_public_address_is_refused() -> None:
    name = _non_public_hostname()

    with pytest.raises(UnsafeUrl) as refused:
        await check_url(f"https://{name}/hook", [])

    assert refused.value.reason == "address"
    assert "resolves to" in str(refused.value)


async def test_one_non_public_address_among_public_ones_is_enough_to_refuse() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "2606:2800:220:1::1", "10.0.0.7"]

    with pytest.raises(UnsafeUrl, match="resolves to a private address"):
        await check_url("https://mixed.example/hook", [], resolver=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/mojaloop",
        "https://hooks.example.com:8443/mojaloop?x=1",
        "https://8.8.8.8/hook",
        "https://[2606:4700::1111]/hook",
        "https://hooks.example.invalid/x",  # does not resolve now: the delivery-time check decides
    ],
)
async def test_public_https_urls_are_accepted(url: str) -> None:
    await check_url(url, [])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3006/hook",
        "https://127.0.0.1:3006/hook",
        "http://localhost:3006/hook",
        "http://LOCALHOST./hook",
        "http://[::1]:3006/hook",
    ],
)
async def test_allowed_hosts_are_accepted_with_plain_http_too(url: str) -> None:
    await check_url(url, [*MAKE_RUN_ALLOWED, "[0:0::1]"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433:3006/", "nonstandard_ip"),  # another spelling of an allowed IP is not allowed
        ("http://127.1:3006/", "nonstandard_ip"),
        ("http://user:pw@127.0.0.1:3006/", "userinfo"),  # credentials never, even for an allowed host
        ("http://[::ffff:127.0.0.1]:3006/", "scheme"),  # not the allowed 127.0.0.1
        ("ftp://127.0.0.1/", "scheme"),
    ],
)
async def test_allowed_hosts_allow_only_their_exact_host(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        await check_url(url, MAKE_RUN_ALLOWED)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cr3t-pw@example.com/hook?token=t0k3n-value",
        "https://user:s3cr3t-pw@exa\tmple.com/hook?token=t0k3n-value",  # unparseable
        "https://127.0.0.1/hook?token=t0k3n-value",
    ],
)
async def test_messages_never_carry_credentials_path_or_query(url: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        await check_url(url, [])

    message = str(refused.value)
    assert "s3cr3t" not in message and "t0k3n" not in message and "/hook" not in message


# ---- delivery time: a real HTTP server on 127.0.0.1 -----------------------------------------------------------


@dataclass
class Receiver:
    """A plain HTTP server on 127.0.0.1 counting the connections it accepted and the paths it was asked for."""

    port: int
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    redirect_to: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            state.paths.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class CountingServer(ThreadingHTTPServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            accepted = super().get_request()
            state.connections += 1
            return accepted

    server = CountingServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_the_transport_reaches_an_allowed_host_over_plain_http(receiver: Receiver) -> None:
    async with guarded_client(["127.0.0.1"], timeout=5) as client:
        response = await client.post(f"{receiver.url}/hook", json={"id": "e1"})

    assert response.status_code == 200
    assert receiver.paths == ["/hook"]


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ([], "http://127.0.0.1:{port}/hook"),  # plain http to a host not allowed
        ([], "https://127.0.0.1:{port}/hook"),  # checked on connect: loopback
        (["localhost"], "https://127.0.0.1:{port}/hook"),  # another name for it is not it
        (["127.0.0.1"], "https://[::ffff:127.0.0.1]:{port}/hook"),
        (["127.0.0.1"], "https://2130706433:{port}/hook"),
    ],
)
async def test_the_transport_refuses_a_host_not_allowed_before_any_connection(
    receiver: Receiver, allowed: list[str], url: str
) -> None:
    async with guarded_client(allowed, timeout=5) as client:
        with pytest.raises(UnsafeUrl):
            await client.post(url.format(port=receiver.port), json={"id": "e1"})

    assert receiver.connections == 0


async def test_the_transport_checks_what_a_name_resolves_to_when_it_connects(receiver: Receiver) -> None:
    backend = GuardedNetworkBackend([])
    with pytest.raises(UnsafeUrl, match="resolves to"):
        await backend.connect_tcp(_non_public_hostname(), receiver.port, timeout=5)

    assert receiver.connections == 0


async def test_a_name_that_does_not_resolve_is_a_connection_error_at_delivery() -> None:
    async with guarded_client([], timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post("https://hooks.example.invalid/x", json={})


class _PoisonedNetwork(httpcore.AsyncNetworkBackend):
    """The OS's network as a rebinding attacker makes it: names resolve through `resolver`; only 127.0.0.1 can be
    reached from the tests, so any other address is recorded and fails to connect."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver
        self.attempted: list[str] = []
        self.real = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.attempted.append(host)
        addresses = [host] if _is_ip(host) else await self.resolver(host, port)
        if addresses[0] != "127.0.0.1":
            raise httpcore.ConnectError(f"only 127.0.0.1 is reachable from the tests, not {addresses[0]}")
        return await self.real.connect_tcp(addresses[0], port, *args, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


async def test_dns_rebinding_gets_no_connection(receiver: Receiver) -> None:
    """The name is public when checked and 127.0.0.1 a moment later: the guard connects to the address it checked."""
    answers = [["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]]

    async def rebinding_dns(host: str, port: int) -> list[str]:
        return answers.pop(0)

    network = _PoisonedNetwork(rebinding_dns)
    backend = GuardedNetworkBackend([], inner=network, resolver=rebinding_dns)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("rebind.example", receiver.port, timeout=5)

    assert network.attempted == ["93.184.216.34"]  # an IP literal: the name was resolved once, by the guard
    assert receiver.connections == 0


async def test_the_network_stand_in_does_reach_the_receiver_when_a_name_is_passed_through(receiver: Receiver) -> None:
    """Control for the test above: were the name handed to the network, the rebound answer would get through."""

    async def rebound_dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    stream = await _PoisonedNetwork(rebound_dns).connect_tcp("rebind.example", receiver.port, timeout=5)
    await stream.aclose()

    # The kernel completes the connection before the server's thread accepts it: wait for that thread to count it.
    deadline = time.monotonic() + 5
    while receiver.connections == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert receiver.connections == 1


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.redirect_to = f"{receiver.url}/target"
    async with guarded_client(["127.0.0.1"], timeout=5) as client:
        response = await client.post(f"{receiver.url}/redirect", json={"id": "e1"})

    assert response.status_code == 302
    assert receiver.paths == ["/redirect"]


async def test_a_redirect_to_a_host_not_allowed_is_refused_even_by_a_client_that_follows(receiver: Receiver) -> None:
    receiver.redirect_to = f"http://localhost:{receiver.port}/target"
    transport = guarded_transport(["127.0.0.1"])
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with pytest.raises(UnsafeUrl):
            await client.get(f"{receiver.url}/redirect")

    assert receiver.paths == ["/redirect"]


async def test_proxy_environment_variables_do_not_bypass_the_guard(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, receiver.url)  # a proxy would connect to the private address for us
    async with guarded_client([], timeout=5) as client:
        with pytest.raises(UnsafeUrl):
            await client.get("https://10.0.0.1/hook")

    assert receiver.connections == 0
