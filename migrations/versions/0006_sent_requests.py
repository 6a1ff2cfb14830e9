"""The claims of the SDK requests that leave at most once (mojaflow/sent_requests.py): the party lookup and the
party acceptance run as local activities, and a re-run finds its claim, with the answer sealed, instead of sending
again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_requests",
        sa.Column("request_key", sa.String(300), primary_key=True),
        sa.Column("activity_type", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.JSON),
    )
    op.create_index("ix_sent_requests_claimed_at", "sent_requests", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_sent_requests_claimed_at", table_name="sent_requests")
    op.drop_table("sent_requests")
