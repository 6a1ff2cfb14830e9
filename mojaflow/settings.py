"""mojaflow's settings: every one a `MOJAFLOW_*` environment variable (or a line in `.env`).

Built once per process by `Settings()` and passed in; nothing else reads the environment.
"""

from __future__ import annotations

import re
from decimal import Decimal
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, StringConstraints, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mojaflow.models import PartyIdType

__all__ = ["Settings"]

# Signature algorithms a token may use: asymmetric ones only (no `none`, no HS*).
_TOKEN_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _trusted_jwks_url(url: str) -> bool:
    parsed = urlsplit(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    return parsed.scheme == "https" or (parsed.scheme == "http" and loopback)


SqlitePragma = Annotated[str, StringConstraints(pattern=r"^[a-z_]+=[A-Za-z0-9_-]+$")]
DynamicConfigValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.]*=[A-Za-z0-9_.-]+$")]


class Settings(BaseSettings):
    """Typed settings; see the README for the table of names and defaults."""

    model_config = SettingsConfigDict(env_prefix="MOJAFLOW_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".mojaflow")
    log_level: str = "INFO"
    # json: one JSON object per line, for a log pipeline (the default: what a deployment runs); console: for people
    # (`make run` sets it unless given)
    log_format: Literal["json", "console"] = "json"
    # Prometheus metrics of a worker process (mojaflow/metrics_server.py), served without credentials: unset, none.
    # `make run --workers N` gives worker i the port + i - 1. The API serves its own on /metrics (operator key).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    temporal_dev_server: bool = True  # `make run` starts the dev server at temporal_address
    # The dev server's SQLite file: a write-ahead log, each commit synced (durable across an OS crash: a lost
    # "activity started" record could send the money step twice). PRAGMA=VALUE, comma-separated.
    temporal_sqlite_pragmas: Annotated[list[SqlitePragma], NoDecode] = Field(
        default_factory=lambda: ["journal_mode=wal", "synchronous=full"]
    )
    # The dev server's dynamic config, KEY=VALUE comma-separated (none by default: the server's own values). E.g.
    # history.transferProcessorMaxPollRPS=1000 takes ~90 ms off a transfer alone and costs throughput under load
    # (README, "Performance").
    temporal_dynamic_config: Annotated[list[DynamicConfigValue], NoDecode] = Field(default_factory=list)
    task_queue: str = "mojaflow-transfers"
    workflow_sandbox: bool = False  # the tests replay every workflow through the sandbox instead (see worker.py)
    # The transfers' worker (worker.py `transfer_worker_options`; the webhook deliveries' worker has its own slots,
    # below): temporalio 1.35's defaults but the activity slots, per worker process. A sticky cache smaller than the
    # workflows in flight makes their tasks replay whole histories. At least two workflow-task slots and pollers
    # (temporalio asks for two while the cache is on). `bench/bench.py --scenario worker-options` measures them.
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2, le=10_000)
    worker_max_concurrent_activities: int = Field(default=200, ge=1, le=10_000)
    worker_max_concurrent_local_activities: int = Field(default=100, ge=1, le=10_000)
    worker_max_cached_workflows: int = Field(default=1000, ge=0, le=1_000_000)  # 0: no sticky cache
    worker_workflow_task_pollers: int = Field(default=5, ge=2, le=100)
    worker_activity_task_pollers: int = Field(default=5, ge=1, le=100)
    # A real cluster or Temporal Cloud (mojaflow/temporal.py): TLS is on when any of these is set ("auto"), or
    # forced on/off; the CA defaults to the system's; cert + key make it mutual TLS. The API key is sent as
    # `authorization: Bearer` and only ever over TLS.
    temporal_tls: Literal["auto", "true", "false"] = "auto"
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None

    # App database (SQLite in the data dir unless a URL is given, e.g. postgresql+asyncpg://...)
    database_url: str | None = None

    # The systems we talk to, and whether `make run` starts local simulators of them
    sdk_url: str = "http://127.0.0.1:4001"
    cbs_url: str = "http://127.0.0.1:3005"
    sdk_simulator: bool = True
    cbs_simulator: bool = True
    sdk_simulator_party_timeout_s: float = 30.0
    cbs_seed_file: Path | None = None
    # `make run` also starts a webhook receiver (simulators/webhook_receiver.py) to subscribe and watch events arrive
    webhook_receiver_simulator: bool = True
    webhook_receiver_port: int = Field(default=3006, ge=1, le=65535)

    # Our two HTTP surfaces
    api_host: str = "127.0.0.1"
    client_api_port: int = 3004
    backend_api_port: int = 3003
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )

    # Who may call the client API (README "Authentication"): API keys (`mojaflow keys create`), stored as an
    # HMAC-SHA256 under a key derived from the secrets key ring; a verified key is remembered for api_key_cache_s,
    # so a revoked key stops working within that long. `none`: local experiments only (the client_key header
    # decides).
    auth: Literal["api_key", "none"] = "api_key"
    send_money_auth: Literal["api_key", "none"] = "api_key"  # for the Send Money routes (api/send_money.py)
    api_key_cache_s: float = Field(default=5.0, ge=0, le=60)

    # OAuth2 bearer tokens on the client API (api/jwt_auth.py), off unless the JWKS URL is set: JWTs signed by a
    # key of that JWKS (cached oauth_jwks_cache_s, refetched on an unknown kid), of that issuer and audience, with
    # an asymmetric algorithm only; the token's oauth_client_key_claim decides the client_key, its `sub` the actor.
    oauth_jwks_url: str | None = None
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_client_key_claim: str = Field(default="client_key", min_length=1)
    oauth_operator_scope: str | None = None  # a token with this scope (`scope` or `scp`) reads every client's
    oauth_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    oauth_jwks_cache_s: float = Field(default=300.0, ge=1, le=86_400)
    oauth_leeway_s: int = Field(default=30, ge=0, le=300)  # clock skew allowed on exp / nbf
    # The codec endpoint: `local` (loopback callers from the UI origins: make run's dev server) or `token` (a Temporal
    # UI elsewhere forwards its user's token: a valid JWT for codec_oauth_audience, or an operator API key)
    codec_auth: Literal["local", "token"] = "local"
    codec_oauth_audience: str | None = None  # default: oauth_audience
    # Abuse limits (api/limits.py): POSTs per credential and minute in each API process (0: none); request bodies
    # (413) and request heads (431, or the HTTP server's own 400 when the head comes in pieces)
    rate_limit_per_minute: int = Field(default=600, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)

    # The backend API (SDK-facing). SDK 18.0.2 calls it over plain HTTP without credentials, so the network is its
    # protection: its own interface, an allow-list of client (TCP peer) addresses, optional TLS / mutual TLS for a
    # TLS sidecar next to the SDK. See the README, "Who may call the backend API".
    backend_api_host: str = "127.0.0.1"
    backend_allowed_clients: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")], min_length=1
    )
    backend_tls_cert: Path | None = None  # PEM certificate (chain) of the backend API; with backend_tls_key
    backend_tls_key: Path | None = None
    backend_tls_client_ca: Path | None = None  # when set, a client must present a certificate this CA signed

    # Outbound policy
    auto_accept_party: bool = True
    auto_accept_quote: bool = True
    max_fee: Decimal | None = Field(default=None, ge=0)  # an absolute cap on a quote's fees; overrides the two below
    max_fee_fixed: Decimal = Field(default=Decimal("0"), ge=0)  # else the cap is fixed + rate × amount
    max_fee_rate: Decimal = Field(default=Decimal("0.02"), ge=0, le=1)
    allow_caller_auto_accept: bool = False  # may a body's autoAccept* true override a manual bank policy?
    default_wait_s: float = Field(default=30.0, ge=0, le=60)
    acceptance_timeout_s: float = Field(default=300.0, gt=0)
    default_client_key: str = "bank"

    # Timeouts and reconciliation against the SDK. The SDK itself gives up on the switch after its
    # REQUEST_PROCESSING_TIMEOUT_SECONDS (30 s by default), so our HTTP timeout must be longer.
    sdk_timeout_s: float = 65.0
    cbs_timeout_s: float = 10.0
    # How long a prepare may stay unresolved: must be >= the SDK's EXPIRY_SECONDS, or a late prepare could commit
    # after we released the payer's hold. Below the minimum we refuse to start.
    transfer_expiry_s: float = Field(default=60.0, ge=2)
    reconcile_grace_s: float = 60.0
    reconcile_max_interval_s: float = 60.0
    reconcile_require_fulfilment: bool = True
    reconcile_checks_per_run: int = Field(default=500, ge=1)  # then continue-as-new: history stays small

    # The pm4ml Send Money API (api/send_money.py): the id type of its `payer.payerId`
    send_money_payer_id_type: PartyIdType = PartyIdType.MSISDN

    # Inbound. Currencies the bank serves at all: a quote or transfer in another is refused (5106) before any lookup
    currencies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["USD"], min_length=1)
    quote_expiry_s: float = 300.0
    # The SDK waits for our answer to its `POST /transfers` before it answers the switch: answer well within that.
    inbound_reservation_wait_s: float = Field(default=20.0, gt=0, le=60)
    inbound_fee: Decimal = Field(default=Decimal("0"), ge=0)  # payeeFspFee of every inbound quote
    inbound_commission: Decimal = Field(default=Decimal("0"), ge=0)  # payeeFspCommission of every inbound quote
    # Before crediting on a COMMITTED notification, ask the switch (GET /transfers/{id} through the SDK): a forged
    # PUT /transfers/{id} on the backend API then credits nothing
    inbound_confirm_commit: bool = True

    # Webhooks' outbox (mojaflow/webhook_outbox*.py): the `product` / `payment_channel` of inbound events;
    # how often each worker starts the deliveries a crash or a Temporal hiccup left unstarted (older than that).
    inbound_product: str = Field(default="retail_payments", pattern=r"^[a-zA-Z0-9_.& -]{1,100}$")
    inbound_payment_channel: str = Field(default="csm", pattern=r"^[a-zA-Z0-9_.& -]{1,100}$")
    webhook_sweep_interval_s: float = Field(default=5.0, gt=0)
    # Tests only: the process exits right after a save's commit that wrote deliveries, before it starts them
    test_crash_after_outbox_commit: bool = False

    # The stuck-transfer sweeper (mojaflow/sweeper.py): a Temporal Schedule (this id, every interval) that reports
    # holds still open at the CBS after their transfer ended, and transfers in progress whose workflow is gone, once
    # older than the grace period. It reports only; each worker creates or updates the Schedule at start.
    sweeper_schedule_id: str = Field(default="mojaflow-sweeper", pattern=r"^[a-zA-Z0-9_.-]{1,100}$")
    sweeper_interval_s: float = Field(default=300.0, ge=10, le=86_400)
    sweeper_grace_s: float = Field(default=600.0, ge=0)

    # Secrets and personal data. Key rings `id:base64,id:base64` (mojaflow/keys.py): the first encrypts, all decrypt.
    # Unset: the ring files in the data dir, generated on first use (`make run`); several processes must set them.
    payload_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)  # the payload codec's
    payload_key: SecretStr | None = None  # a one-key payload ring (earlier versions); key id sha256(key)[:16]
    secrets_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)  # secrets, personal data at rest
    # HMAC keys of the one-way party ids that match a quote to its transfer (the first makes them, all match)
    party_hash_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    party_hash_key: SecretStr | None = None  # a one-key party-hash ring (earlier versions)
    personal_data_retention_days: float = Field(default=90, ge=0)  # then a final transfer's names and ids are purged
    personal_data_purge_interval_s: float = Field(default=3600, gt=0)  # how often each worker runs that purge

    # Webhooks (issue 9). Deliveries run on their own task queue, polled by the worker process with slots of its own
    # (webhook_max_concurrent_attempts), so a dead receiver never takes a transfer's slot; each subscription has at
    # most webhook_subscription_concurrency requests in flight per worker process. A host in webhook_allowed_hosts
    # may resolve to a private or loopback address and be called over plain http (the SSRF guard's exceptions).
    webhook_task_queue: str = Field(default="mojaflow-webhooks", min_length=1)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)  # per HTTP request (token fetch and POST alike)
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_subscription_concurrency: int = Field(default=10, ge=1, le=1000)
    webhook_max_concurrent_attempts: int = Field(default=200, ge=1, le=10_000)

    # Traces (mojaflow/tracing.py): OpenTelemetry's own variable names, not MOJAFLOW_*. Tracing is on when the OTLP
    # endpoint is set (OTLP over HTTP: spans go to its /v1/traces); unset or empty, no span is ever made.
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")

    @field_validator("payload_keys", "secrets_keys", "party_hash_keys", mode="before")
    @classmethod
    def _split_ring(cls, value: object) -> object:  # never echoes the value: it holds keys
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("payload_key", "party_hash_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:  # host names compare case-insensitively
        return [item.strip().lower() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("currencies", mode="before")
    @classmethod
    def _split_currencies(cls, value: object) -> object:
        return [item.strip().upper() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("currencies")
    @classmethod
    def _iso_codes(cls, value: list[str]) -> list[str]:
        refused = [code for code in value if not re.fullmatch(r"[A-Z]{3}", code)]
        if refused:
            raise ValueError(f"ISO 4217 codes such as USD, comma-separated; not {refused}")
        return value

    @field_validator("codec_cors_origins", "temporal_sqlite_pragmas", "temporal_dynamic_config", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "temporal_tls_ca", "temporal_tls_cert", "temporal_tls_key", "temporal_tls_server_name", "temporal_api_key",
        "worker_metrics_port", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:  # compose's `${VAR:-}` passes an empty string
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("backend_allowed_clients", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("backend_tls_cert", "backend_tls_key", "backend_tls_client_ca", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _backend_tls_complete(self) -> Settings:
        if (self.backend_tls_cert is None) != (self.backend_tls_key is None):
            raise ValueError("MOJAFLOW_BACKEND_TLS_CERT and MOJAFLOW_BACKEND_TLS_KEY must be set together")
        if self.backend_tls_client_ca is not None and self.backend_tls_cert is None:
            raise ValueError("MOJAFLOW_BACKEND_TLS_CLIENT_CA needs MOJAFLOW_BACKEND_TLS_CERT and _KEY (mutual TLS)")
        return self

    @field_validator("oauth_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @field_validator("oauth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in _TOKEN_ALGORITHMS]
        if refused:  # `none` and HS* never: a public key must never serve as an HMAC secret
            raise ValueError(f"not accepted: {refused}; choose among {sorted(_TOKEN_ALGORITHMS)}")
        return value

    @field_validator(
        "oauth_jwks_url", "oauth_issuer", "oauth_audience", "oauth_operator_scope", "codec_oauth_audience",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_oauth_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _oauth_complete(self) -> Settings:
        oauth = {"JWKS_URL": self.oauth_jwks_url, "ISSUER": self.oauth_issuer, "AUDIENCE": self.oauth_audience}
        missing = [f"MOJAFLOW_OAUTH_{name}" for name, value in oauth.items() if value is None]
        if len(missing) < len(oauth) and missing:
            raise ValueError(f"OAuth2 tokens need MOJAFLOW_OAUTH_JWKS_URL, _ISSUER and _AUDIENCE; missing {missing}")
        if self.oauth_jwks_url is not None and not _trusted_jwks_url(self.oauth_jwks_url):
            raise ValueError("MOJAFLOW_OAUTH_JWKS_URL must be https:// (http:// only on 127.0.0.1 or localhost)")
        if self.codec_oauth_audience is not None and self.oauth_jwks_url is None:
            raise ValueError("MOJAFLOW_CODEC_OAUTH_AUDIENCE needs MOJAFLOW_OAUTH_JWKS_URL, _ISSUER and _AUDIENCE")
        if self.codec_auth == "token" and "*" in self.codec_cors_origins:
            raise ValueError("MOJAFLOW_CODEC_CORS_ORIGINS: the Web UI's exact origins, not `*` (credentials)")
        return self

    @field_validator("temporal_tls", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'mojaflow.db'}"

    @property
    def client_api_url(self) -> str:
        return f"http://{self.api_host}:{self.client_api_port}"

    @property
    def backend_api_url(self) -> str:
        scheme = "https" if self.backend_tls_cert else "http"
        host = f"[{self.backend_api_host}]" if ":" in self.backend_api_host else self.backend_api_host
        return f"{scheme}://{host}:{self.backend_api_port}"
