"""The webhook tables (on the app database's `metadata`; migration 0003).

* `webhook_subscriptions`: who wants which events where. Secrets (API-key header values, Basic password, OAuth2
  client secret, Standard Webhooks signing secrets) only sealed (`auth_sealed`, `signing_sealed`); `auth_public`
  holds the rest (header names, username, client id, token URL, scope) to show back.
* `webhook_events`: the outbox. One row per state change, id from (transferId, sequence), written in the same
  transaction as the transfer's state; `data` is the event's `data` (no personal data).
* `webhook_deliveries`: one row per (event, subscription), written with the event; `dispatched_at` is set once its
  workflow is started (the sweeper starts those left without it).
* `webhook_attempts`: every attempt, recorded by the delivery activity.
* `webhook_oauth_tokens`: the OAuth2 access token per subscription, sealed, shared by every worker process.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, Integer, String, Table

from mojaflow.database import metadata

__all__ = [
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_events",
    "webhook_oauth_tokens",
    "webhook_subscriptions",
]

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("client_key", String(16), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("states", JSON),  # None: every state
    Column("auth_type", String(32), nullable=False),  # api_keys | basic | oauth2_client_credentials
    Column("auth_public", JSON, nullable=False),
    Column("auth_sealed", JSON, nullable=False),
    Column("signing_sealed", JSON, nullable=False),  # the whsec_ secrets with their expiry (rotation: 24 h overlap)
    Column("enabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    Index("ix_webhook_subscriptions_client", "client_key", "created_at", "subscription_id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(20), primary_key=True),
    Column("transfer_id", String(64), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("client_key", String(16), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("product", String(100)),
    Column("payment_channel", String(100)),
    Column("data", JSON, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("ix_webhook_events_transfer", "transfer_id", "sequence"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(100), primary_key=True),  # `{eventId}-{subscriptionId}`
    Column("event_id", String(20), nullable=False),
    Column("subscription_id", String(64), nullable=False),
    Column("transfer_id", String(64), nullable=False),
    Column("client_key", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),
    # The workflow that holds its cycle (a batch's, named after its first delivery): set when it is dispatched.
    Column("workflow_id", String(200)),
    Index("ix_webhook_deliveries_undispatched", "dispatched_at", "created_at"),
    Index("ix_webhook_deliveries_subscription", "subscription_id", "status", "created_at"),
    Index("ix_webhook_deliveries_transfer", "transfer_id"),
    Index("ix_webhook_deliveries_status", "status", "created_at"),  # /metrics: the waiting ones and the oldest
    Index("ix_webhook_deliveries_client", "client_key", "created_at", "delivery_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("cycle", Integer, primary_key=True),
    Column("attempt", Integer, primary_key=True),  # 1..73 within a cycle; manual attempts numbered apart
    Column("manual", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),  # from the workflow: exact under time-skipping too
    Column("status_code", Integer),
    Column("latency_ms", Integer),
    Column("error_class", String(80)),
    Column("response_excerpt", String(1024)),
)

webhook_oauth_tokens = Table(
    "webhook_oauth_tokens",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("token_sealed", JSON, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
