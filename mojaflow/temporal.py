"""How every process of ours reaches Temporal: one client factory, our search attributes, workflow ids."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, Interceptor, WithStartWorkflowOperation
from temporalio.common import SearchAttributeKey
from temporalio.service import TLSConfig

from mojaflow.codec import data_converter, load_payload_ring
from mojaflow.settings import Settings

__all__ = [
    "CLIENT_KEY",
    "DIRECTION",
    "HOME_TRANSACTION_ID",
    "MOJAFLOW_STATE",
    "SDK_TRANSFER_ID",
    "SEARCH_ATTRIBUTES",
    "TRANSFER_ID",
    "TemporalConnectError",
    "WEBHOOK_EVENT_IDS",
    "WEBHOOK_STATUS",
    "WEBHOOK_SUBSCRIPTION_ID",
    "WEBHOOK_TRANSFER_IDS",
    "connect",
    "describe_connection",
    "inbound_workflow_id",
    "outbound_workflow_id",
    "retrieve_start_outcome",
    "LOW_LATENCY_DYNAMIC_CONFIG",
    "dev_server_dynamic_config_flags",
    "dev_server_flags",
    "register_search_attributes",
    "search_attribute_flags",
    "tls_config",
    "tls_enabled",
]

# Keyword search attributes, kept current by the workflows. None of them holds personal data.
MOJAFLOW_STATE = SearchAttributeKey.for_keyword("MojaflowState")
HOME_TRANSACTION_ID = SearchAttributeKey.for_keyword("HomeTransactionId")
SDK_TRANSFER_ID = SearchAttributeKey.for_keyword("SdkTransferId")
CLIENT_KEY = SearchAttributeKey.for_keyword("ClientKey")
DIRECTION = SearchAttributeKey.for_keyword("Direction")
# A batch of webhook deliveries to one subscriber (workflows/webhook_delivery.py): the Web UI finds every delivery
# of a transfer or an event (`WebhookTransferIds`, `WebhookEventIds`: those of that workflow). `TransferId` was set
# by versions before batches, on runs of one transfer's deliveries.
TRANSFER_ID = SearchAttributeKey.for_keyword("TransferId")
WEBHOOK_TRANSFER_IDS = SearchAttributeKey.for_keyword_list("WebhookTransferIds")
WEBHOOK_EVENT_IDS = SearchAttributeKey.for_keyword_list("WebhookEventIds")
WEBHOOK_SUBSCRIPTION_ID = SearchAttributeKey.for_keyword("WebhookSubscriptionId")
WEBHOOK_STATUS = SearchAttributeKey.for_keyword("WebhookStatus")
# Eight keywords and two keyword lists: a SQL-backed visibility store (the dev server's SQLite among them) holds ten
# keywords and three keyword lists at most.
SEARCH_ATTRIBUTES = (
    MOJAFLOW_STATE,
    HOME_TRANSACTION_ID,
    SDK_TRANSFER_ID,
    CLIENT_KEY,
    DIRECTION,
    TRANSFER_ID,
    WEBHOOK_TRANSFER_IDS,
    WEBHOOK_EVENT_IDS,
    WEBHOOK_SUBSCRIPTION_ID,
    WEBHOOK_STATUS,
)


# The history service hands workflow and activity tasks to matching through its transfer queue, whose reader runs at
# most 20 times a second per shard by default (`history.transferProcessorMaxPollRPS`). A task not handed over in the
# same transaction (the workflow task after an activity completes, after a signal) waits for the next read: ~50 ms
# per hop at low load, most of a lone transfer's latency. Reading at will takes that away, and under load costs the
# server many small reads: fewer transfers/s and deliveries/s (bench/README.md, "About 50 ms per workflow task").
# `make run` keeps the server's value (MOJAFLOW_TEMPORAL_DYNAMIC_CONFIG changes it); the tests, which wait on one
# transfer at a time, read at will.
LOW_LATENCY_DYNAMIC_CONFIG = ("history.transferProcessorMaxPollRPS=1000",)


def dev_server_dynamic_config_flags(values: Sequence[str]) -> list[str]:
    """`temporal server start-dev` arguments that set this dynamic config (KEY=VALUE each)."""
    flags = []
    for value in values:
        flags += ["--dynamic-config-value", value]
    return flags


def dev_server_flags(settings: Settings) -> list[str]:
    """`temporal server start-dev` arguments of ours besides addresses: search attributes, dynamic config, SQLite
    pragmas."""
    flags = search_attribute_flags() + dev_server_dynamic_config_flags(settings.temporal_dynamic_config)
    for pragma in settings.temporal_sqlite_pragmas:
        flags += ["--sqlite-pragma", pragma]
    return flags


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` arguments that register our search attributes with their types."""
    flags = []
    for key in SEARCH_ATTRIBUTES:
        is_list = key.indexed_value_type == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST
        kind = "KeywordList" if is_list else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


async def register_search_attributes(client: Client) -> list[str]:
    """Add to the client's namespace those of our search attributes it lacks; the names added. A dev server only
    registers its `--search-attribute` flags when it makes its database, so one kept from an earlier version lacks
    the newer ones (`make run` calls this at every start). On a cluster of your own, register them once yourself."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = listed.custom_attributes
    missing = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in SEARCH_ATTRIBUTES
               if key.name not in known}  # fmt: skip
    if missing:
        request = AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        await client.operator_service.add_search_attributes(request)
    return sorted(missing)


class TemporalConnectError(Exception):
    """A process cannot reach Temporal as configured, at start. The message is one line that begins with the
    setting at fault and never holds a secret: entry points print it and exit, without a traceback."""


def tls_config(settings: Settings) -> TLSConfig | None:
    """The TLS of the Temporal connection, None for plaintext (the dev server). `MOJAFLOW_TEMPORAL_TLS=auto` means
    TLS as soon as any TLS setting or an API key is given. Files are read here, so a missing one fails at start."""
    configured = [name for name, value in _tls_settings(settings).items() if value is not None]
    if settings.temporal_tls == "false":
        if settings.temporal_api_key is not None:
            raise TemporalConnectError(
                "MOJAFLOW_TEMPORAL_API_KEY is only ever sent over TLS, but MOJAFLOW_TEMPORAL_TLS=false"
            )
        if configured:
            raise TemporalConnectError(f"MOJAFLOW_TEMPORAL_TLS=false, but {', '.join(configured)} is set")
        return None
    if not tls_enabled(settings):
        return None
    if (settings.temporal_tls_cert is None) != (settings.temporal_tls_key is None):
        raise TemporalConnectError(
            "MOJAFLOW_TEMPORAL_TLS_CERT and MOJAFLOW_TEMPORAL_TLS_KEY go together (mutual TLS): set both or neither"
        )
    return TLSConfig(
        server_root_ca_cert=_read_pem("MOJAFLOW_TEMPORAL_TLS_CA", settings.temporal_tls_ca, "CERTIFICATE"),
        client_cert=_read_pem("MOJAFLOW_TEMPORAL_TLS_CERT", settings.temporal_tls_cert, "CERTIFICATE"),
        client_private_key=_read_pem("MOJAFLOW_TEMPORAL_TLS_KEY", settings.temporal_tls_key, "PRIVATE KEY"),
        domain=settings.temporal_tls_server_name,
    )


def _tls_settings(settings: Settings) -> dict[str, object]:
    return {
        "MOJAFLOW_TEMPORAL_TLS_CA": settings.temporal_tls_ca,
        "MOJAFLOW_TEMPORAL_TLS_CERT": settings.temporal_tls_cert,
        "MOJAFLOW_TEMPORAL_TLS_KEY": settings.temporal_tls_key,
        "MOJAFLOW_TEMPORAL_TLS_SERVER_NAME": settings.temporal_tls_server_name,
    }


def tls_enabled(settings: Settings) -> bool:
    """Whether we speak TLS to Temporal: `MOJAFLOW_TEMPORAL_TLS`, or under `auto` any TLS setting or the API key."""
    if settings.temporal_tls != "auto":
        return settings.temporal_tls == "true"
    return settings.temporal_api_key is not None or any(v is not None for v in _tls_settings(settings).values())


def _read_pem(setting: str, path: Path | None, kind: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TemporalConnectError(f"{setting}: cannot read {path}: {error.strerror or error}") from None
    if f"{kind}-----".encode() not in data:  # PEM armour: "-----BEGIN CERTIFICATE-----", "... PRIVATE KEY-----"
        raise TemporalConnectError(f"{setting}: {path} holds no PEM {kind.lower()}")
    return data


def describe_connection(settings: Settings) -> str:
    """Where and how we connect, for the log line at start: file paths, never the key or a file's content."""
    if not tls_enabled(settings):
        how = "plaintext"
    else:
        ca = f"CA {settings.temporal_tls_ca}" if settings.temporal_tls_ca else "the system's CAs"
        name = f", server name {settings.temporal_tls_server_name}" if settings.temporal_tls_server_name else ""
        mutual = f", client certificate {settings.temporal_tls_cert}" if settings.temporal_tls_cert else ""
        how = f"{'mutual TLS' if mutual else 'TLS'}: {ca}{name}{mutual}"
    if settings.temporal_api_key is not None:
        how += ", API key"
    return f"Temporal at {settings.temporal_address}, namespace {settings.temporal_namespace} ({how})"


async def connect(settings: Settings, *, lazy: bool = False, interceptors: Sequence[Interceptor] = ()) -> Client:
    """The Temporal client for worker and API alike: our encrypted pydantic data converter, TLS and the API key
    from the settings; `interceptors` (tracing) apply to its calls and to every worker built on it. Raises
    `TemporalConnectError`.

    `lazy` (the API) connects on first use, so the API starts, and its /health says why, while Temporal is still
    coming up. With TLS or an API key it tries once at start all the same, so a certificate or a key that Temporal
    or we refuse stops the process at start instead of failing every call; only "nobody answers" goes lazy."""
    tls = tls_config(settings)
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key is not None else None
    try:
        converter = data_converter(load_payload_ring(settings))
    except ValueError as error:  # a malformed ring: one line naming its setting, never key material
        raise TemporalConnectError(str(error)) from None

    async def attempt(*, lazy: bool) -> Client:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=converter,
            tls=tls if tls is not None else False,  # never the SDK's own default (TLS whenever a key is set)
            api_key=api_key,
            lazy=lazy,
            interceptors=interceptors,
        )

    if lazy and tls is None:
        return await attempt(lazy=True)
    try:
        return await attempt(lazy=False)
    except RuntimeError as error:  # the SDK's core reports every connect failure as one RuntimeError
        setting, problem = _explain_connect_failure(settings, str(error))
        if lazy and setting == "MOJAFLOW_TEMPORAL_ADDRESS":  # not answering yet: the API starts anyway
            return await attempt(lazy=True)
        raise TemporalConnectError(f"{setting}: {problem}") from None


# What the core's (rustls / tonic) error text says, in the order to test it, and the setting it points at.
_FAILURES: list[tuple[tuple[str, ...], str, str]] = [
    (("NotValidForName",), "MOJAFLOW_TEMPORAL_TLS_SERVER_NAME", "the certificate of {where} is not valid for {name}"),
    (("InvalidCertificate(",), "MOJAFLOW_TEMPORAL_TLS_CA", "the certificate of {where} is not trusted by {ca} ({why})"),
    (
        ("CertificateRequired", "BadCertificate", "UnknownCA", "AlertReceived("),
        "MOJAFLOW_TEMPORAL_TLS_CERT",
        "{where} refused our client certificate ({why})",
    ),
    (
        ("InvalidContentType", "CorruptMessage", "InvalidMessage("),
        "MOJAFLOW_TEMPORAL_TLS",
        "{where} does not speak TLS (a dev server?): set MOJAFLOW_TEMPORAL_TLS=false, or the right address",
    ),
    (("code: Unauthenticated", "code: PermissionDenied"), "{credential}", "{where} refused our credentials ({why})"),
]


def _explain_connect_failure(settings: Settings, message: str) -> tuple[str, str]:
    """(the setting at fault, one line of why) for a connect failure's text from the SDK's core."""
    where = f"Temporal at {settings.temporal_address}"
    tls = tls_enabled(settings)
    values = {
        "where": where,
        "name": repr(settings.temporal_tls_server_name or settings.temporal_address.rpartition(":")[0]),
        "ca": f"the CA in {settings.temporal_tls_ca}" if settings.temporal_tls_ca else "the system's CAs",
        "why": _reason(message),
        "credential": "MOJAFLOW_TEMPORAL_API_KEY"
        if settings.temporal_api_key is not None or settings.temporal_tls_cert is None
        else "MOJAFLOW_TEMPORAL_TLS_CERT",
    }
    for needles, setting, problem in _FAILURES:
        if any(needle in message for needle in needles):
            return setting.format(**values), problem.format(**values)
    if "after connection" in message:  # TCP (and TLS) went through, then the first call found the line dead
        if not tls:
            return (
                "MOJAFLOW_TEMPORAL_TLS",
                f"{where} hung up on plaintext: if it wants TLS, set MOJAFLOW_TEMPORAL_TLS=true",
            )
        if settings.temporal_tls_cert is None:
            return "MOJAFLOW_TEMPORAL_TLS_CERT", f"{where} hung up after the TLS handshake: does it want mutual TLS?"
        return "MOJAFLOW_TEMPORAL_TLS_CERT", f"{where} hung up after the TLS handshake: does it trust our certificate?"
    return "MOJAFLOW_TEMPORAL_ADDRESS", f"cannot reach {where}: {values['why']}"


def _reason(message: str) -> str:
    """The most specific part of a core error, on one line: `InvalidCertificate(Kind)` / `AlertReceived(Kind)`'s
    kind, else its innermost `message: "..."` (e.g. "Connection refused"), else all of it."""
    kind = re.search(r"(?:InvalidCertificate|AlertReceived)\((\w+)", message)
    if kind:
        return kind.group(1)
    quoted = re.findall(r'(?:message|error): "([^"]+)"', message) or re.findall(r'"([^"]+)"', message)
    return quoted[-1] if quoted else " ".join(message.split())


def outbound_workflow_id(client_key: str, idempotency_key: str) -> str:
    """Derived from the caller's idempotency key, so a retried request can only find the same run."""
    return f"outbound-{client_key}-{idempotency_key}"


def inbound_workflow_id(mojaloop_transfer_id: str) -> str:
    """Derived from the Mojaloop transferId, so a duplicate POST from the SDK cannot start a second run."""
    return f"inbound-{mojaloop_transfer_id}"


def retrieve_start_outcome(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Mark the start half of an update-with-start as seen. When the start fails (the workflow already ran,
    REJECT_DUPLICATE), the SDK both raises the error and keeps it on the operation's own future; a future whose
    error is never read is logged at garbage collection as "Future exception was never retrieved". The SDK has no
    public way to ask without waiting, hence the private attribute."""
    future = start._workflow_handle
    if future.done() and not future.cancelled():
        future.exception()
