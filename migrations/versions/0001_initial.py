"""The first schema: transfers, idempotency keys, inbound quotes.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("transfer_id", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("workflow_id", sa.String(200), nullable=False),
        sa.Column("client_key", sa.String(16)),
        sa.Column("home_transaction_id", sa.String(128)),
        sa.Column("sdk_transfer_id", sa.String(64)),
        sa.Column("current_state", sa.String(40), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("resource", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_transfers_home_transaction_id", "transfers", ["home_transaction_id"])
    op.create_index("ix_transfers_sdk_transfer_id", "transfers", ["sdk_transfer_id"])
    op.create_index("ix_transfers_listing", "transfers", ["direction", "current_state", "created_at"])
    op.create_index("ix_transfers_created", "transfers", ["created_at", "transfer_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("client_key", sa.String(16), primary_key=True),
        sa.Column("method", sa.String(8), primary_key=True),
        sa.Column("route", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(64), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inbound_quotes",
        sa.Column("quote_id", sa.String(64), primary_key=True),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("quote", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbound_quotes")
    op.drop_table("idempotency_keys")
    op.drop_table("transfers")
