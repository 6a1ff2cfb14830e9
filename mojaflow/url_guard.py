"""The SSRF guard of webhook URLs: where mojaflow may POST on a subscriber's behalf.

A subscriber chooses the URL (and an OAuth2 token URL), so without a guard it could make us call our own
loopback, the private network or a cloud metadata endpoint. Two checks, both refusing with `UnsafeUrl`:

* `check_url` at subscription time: https only; no credentials in the URL; a host in the standard form (no
  decimal/octal/hex/short IPv4, no percent-encoding or zone id); not a special-use name (`localhost`, `*.internal`,
  metadata names); the IP literal, or every address the name resolves to now, public. A name that does not resolve
  now is accepted: the delivery-time check decides.
* `guarded_transport` at delivery time, on the address actually connected: it resolves once, checks every address
  and connects to a checked IP literal (a name that re-resolves to 127.0.0.1 after the check, DNS rebinding, never
  gets a connection); TLS SNI, certificate checks and `Host` stay the URL's hostname. Callers never follow
  redirects (`guarded_client` sets that, and ignores proxy environment variables, which would bypass the guard).

A host listed in `MOJAFLOW_WEBHOOK_ALLOWED_HOSTS` (exact name or IP, any port) skips the address checks and may
also use plain http: `make run` lists 127.0.0.1 and localhost for its simulators; production lists nothing.
Messages name the host and the reason, never userinfo, path or query (they may hold secrets), nor the addresses a
name resolved to.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

import anyio
import httpcore
import httpx

__all__ = [
    "GuardedNetworkBackend",
    "GuardedTransport",
    "Resolver",
    "UnsafeUrl",
    "check_url",
    "guarded_client",
    "guarded_transport",
    "unsafe_address_reason",
]

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]  # (host, port) -> addresses, e.g. via getaddrinfo

RESOLVE_TIMEOUT_S = 5.0  # at subscription time; at delivery time the request's connect timeout bounds it

_METADATA_ADDRESSES = frozenset(
    ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_SPECIAL_NAME_SUFFIXES = ("localhost", "internal", "local", "localdomain", "home.arpa")  # never public names
_CGNAT = ip_network("100.64.0.0/10")
_THIS_NETWORK = ip_network("0.0.0.0/8")
_IPV4_COMPATIBLE = ip_network("::/96")
_NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_STANDARD_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")


class UnsafeUrl(ValueError):
    """A URL mojaflow must not call; `reason` is a short code, the message says why (no secret parts)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Host:
    name: str  # lower case, no trailing dot, IPv6 without brackets: what allowed hosts are compared with
    ip: IPAddress | None  # set for an IP literal


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries (compatible, 6to4, NAT64, Teredo client), if any."""
    if ip in _IPV4_COMPATIBLE or any(ip in net for net in _NAT64):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def unsafe_address_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not go to this address (`"a loopback address"`, ...), or None for a public one."""
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:  # the OS connects to the IPv4 address: one more spelling of it
            return "an IPv4-mapped IPv6 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = unsafe_address_reason(embedded)
            if inner is not None:
                return f"an IPv6 address embedding {inner}"
            if ip.sixtofour is not None or any(ip in net for net in _NAT64):
                return None  # as public as the IPv4 address it carries (NAT64 on IPv6-only networks)
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_reserved:
        return "not a public address"
    return None


def _normalise_name(raw: str) -> str:
    name = raw.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name[:-1] if name.endswith(".") else name


def _normalise_allowed(allowed_hosts: Iterable[str]) -> frozenset[str]:
    normalised = set()
    for entry in allowed_hosts:
        name = _normalise_name(entry)
        try:
            name = str(ip_address(name))  # one spelling per IP literal: "0:0::1" is "::1"
        except ValueError:
            pass
        if name:
            normalised.add(name)
    return frozenset(normalised)


def _parse_host(raw: str) -> _Host:
    """The host in its one standard form, or `UnsafeUrl` for a form parsers disagree on."""
    name = _normalise_name(raw)
    if not name:
        raise UnsafeUrl("host", "the URL has no host")
    if "%" in name:
        raise UnsafeUrl("host", f"host {name!r}: percent-encoding or an IPv6 zone id is not allowed in a host")
    if ":" in name:
        try:
            return _Host(name=str(IPv6Address(name)), ip=IPv6Address(name))
        except ValueError:
            raise UnsafeUrl("host", f"host {name!r} is not a valid IPv6 address") from None
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # ends in a number: an IPv4 address to URL parsers and to getaddrinfo
        if not _STANDARD_IPV4.fullmatch(name):
            raise UnsafeUrl(
                "nonstandard_ip",
                f"host {name!r} is an IPv4 address in a non-standard form (decimal, octal, hex or shortened): "
                "write it as four decimal numbers",
            )
        return _Host(name=name, ip=IPv4Address(name))
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UnsafeUrl("host", f"host {name!r} is not a valid host name")
    return _Host(name=name, ip=None)


def _special_name_reason(name: str) -> str | None:
    if name in _METADATA_NAMES:
        return "a cloud metadata name"
    if any(name == suffix or name.endswith("." + suffix) for suffix in _SPECIAL_NAME_SUFFIXES):
        return "a local-only name"
    return None


def _parse_url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:  # idna's errors are ValueErrors too
        # httpx's message quotes the faulty part: echoed only when the URL carries no credentials
        detail = f": {exc}" if "@" not in url else ""
        raise UnsafeUrl("invalid", f"not a valid URL{detail}") from None


def _inspect(url: httpx.URL, allowed: frozenset[str]) -> tuple[_Host, bool]:
    """The checks that need no DNS: (host, whether it is allowed) or `UnsafeUrl`."""
    if url.scheme not in ("https", "http"):
        raise UnsafeUrl("scheme", f"the URL's scheme must be https, not {url.scheme!r}")
    if url.userinfo:
        raise UnsafeUrl("userinfo", "the URL carries credentials (user:password@): set them in `auth` instead")
    host = _parse_host(url.host)
    is_allowed = host.name in allowed
    if url.scheme == "http" and not is_allowed:
        raise UnsafeUrl("scheme", f"host {host.name}: plain http is allowed only for MOJAFLOW_WEBHOOK_ALLOWED_HOSTS")
    if url.port is not None and not 0 < url.port < 65536:
        raise UnsafeUrl("port", f"port {url.port} is not a valid TCP port")
    return host, is_allowed


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _checked_addresses(host: _Host, port: int, resolver: Resolver) -> list[IPAddress]:
    """Every address `host` stands for, all public, or `UnsafeUrl`. DNS errors propagate (OSError)."""
    if host.ip is not None:
        reason = unsafe_address_reason(host.ip)
        if reason:
            raise UnsafeUrl("address", f"host {host.name} is {reason}")
        return [host.ip]
    reason = _special_name_reason(host.name)
    if reason:
        raise UnsafeUrl("name", f"host {host.name} is {reason}")
    addresses: list[IPAddress] = []
    for text in await resolver(host.name, port):
        ip = ip_address(text.split("%", 1)[0])  # a scope id never makes a refused address acceptable
        reason = unsafe_address_reason(ip)
        if reason:  # one bad address is enough: whichever the connection picks must be safe
            raise UnsafeUrl("address", f"host {host.name} resolves to {reason}")
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise OSError(f"{host.name} resolved to no address")
    return addresses


async def check_url(url: str, allowed_hosts: Collection[str], *, resolver: Resolver | None = None) -> None:
    """Refuse (`UnsafeUrl`) a webhook or token URL mojaflow must not call; see the module docstring.

    ```python
    await check_url("https://hooks.example.com/mojaloop", settings.webhook_allowed_hosts)
    ```
    `resolver` replaces getaddrinfo (tests); name resolution is bounded by RESOLVE_TIMEOUT_S.
    """
    parsed = _parse_url(url)
    host, is_allowed = _inspect(parsed, _normalise_allowed(allowed_hosts))
    if is_allowed:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT_S):
            await _checked_addresses(host, port, resolver or _system_resolver)
    except (OSError, TimeoutError):
        return  # does not resolve now: accepted, the delivery-time check decides on what it resolves to then


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to checked addresses (allowed hosts: to anything).

    Resolves the host once, refuses (`UnsafeUrl`) if any address is unsafe, then connects to the checked IP
    literals in turn; `inner` does the actual connecting (default: httpcore's anyio backend).
    """

    def __init__(
        self,
        allowed_hosts: Collection[str],
        *,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allowed = _normalise_allowed(allowed_hosts)
        self._inner = inner or httpcore.AnyIOBackend()
        self._resolver = resolver or _system_resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        parsed = _parse_host(host)
        if parsed.name in self._allowed:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                addresses = await _checked_addresses(parsed, port, self._resolver)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {parsed.name} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {parsed.name}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # addresses is never empty
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("host", "a Unix socket is never a webhook destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` whose connections go through `GuardedNetworkBackend`; no proxy, no Unix socket.

    Each request's URL is also checked for scheme, credentials and host form before it is sent.
    """

    def __init__(
        self,
        allowed_hosts: Collection[str],
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: str | tuple[str, str] | tuple[str, str, str] | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        # httpx's own __init__ is not called: it would build the same pool without our backend, to be thrown away
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._allowed = _normalise_allowed(allowed_hosts)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            retries=retries,
            local_address=local_address,
            socket_options=socket_options,
            network_backend=GuardedNetworkBackend(allowed_hosts, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _inspect(request.url, self._allowed)
        return await super().handle_async_request(request)


def guarded_transport(allowed_hosts: Collection[str], **transport_kwargs: Any) -> httpx.AsyncBaseTransport:
    """The delivery-time guard as an httpx transport (keyword arguments as `GuardedTransport`'s).

    Raises `UnsafeUrl` (not an `httpx.HTTPError`) from the request when the destination is refused.
    """
    return GuardedTransport(allowed_hosts, **transport_kwargs)


def guarded_client(allowed_hosts: Collection[str], *, timeout: float, **transport_kwargs: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for webhook calls: guarded transport, redirects never followed, no env proxies."""
    return httpx.AsyncClient(
        transport=guarded_transport(allowed_hosts, **transport_kwargs),
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
    )
