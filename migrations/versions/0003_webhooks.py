"""Webhooks: subscriptions, the event outbox, deliveries, their attempts, OAuth2 tokens (mojaflow/webhook_tables.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("subscription_id", sa.String(64), primary_key=True),
        sa.Column("client_key", sa.String(16), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("states", sa.JSON),
        sa.Column("auth_type", sa.String(32), nullable=False),
        sa.Column("auth_public", sa.JSON, nullable=False),
        sa.Column("auth_sealed", sa.JSON, nullable=False),
        sa.Column("signing_sealed", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("deleted_at", _WHEN),
    )
    op.create_index(
        "ix_webhook_subscriptions_client", "webhook_subscriptions", ["client_key", "created_at", "subscription_id"]
    )
    op.create_table(
        "webhook_events",
        sa.Column("event_id", sa.String(20), primary_key=True),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("client_key", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(50), nullable=False),
        sa.Column("product", sa.String(100)),
        sa.Column("payment_channel", sa.String(100)),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("occurred_at", _WHEN, nullable=False),
    )
    op.create_index("ix_webhook_events_transfer", "webhook_events", ["transfer_id", "sequence"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(20), nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("client_key", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cycle", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("dispatched_at", _WHEN),
        sa.Column("last_attempt_at", _WHEN),
        sa.Column("next_attempt_at", _WHEN),
    )
    op.create_index("ix_webhook_deliveries_undispatched", "webhook_deliveries", ["dispatched_at", "created_at"])
    op.create_index(
        "ix_webhook_deliveries_subscription", "webhook_deliveries", ["subscription_id", "status", "created_at"]
    )
    op.create_index("ix_webhook_deliveries_transfer", "webhook_deliveries", ["transfer_id"])
    op.create_index("ix_webhook_deliveries_client", "webhook_deliveries", ["client_key", "created_at", "delivery_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", sa.String(100), primary_key=True),
        sa.Column("cycle", sa.Integer, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("latency_ms", sa.Integer),
        sa.Column("error_class", sa.String(80)),
        sa.Column("response_excerpt", sa.String(1024)),
    )
    op.create_table(
        "webhook_oauth_tokens",
        sa.Column("subscription_id", sa.String(64), primary_key=True),
        sa.Column("token_sealed", sa.JSON, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "webhook_oauth_tokens",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_events",
        "webhook_subscriptions",
    ):
        op.drop_table(table)
