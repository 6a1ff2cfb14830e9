"""The stuck-transfer sweeper's reports (mojaflow/sweeper_store.py): one row per sweep, one per finding.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=False),
        sa.Column("holds_checked", sa.Integer, nullable=False),
        sa.Column("holds_truncated", sa.Boolean, nullable=False),
        sa.Column("holds_error", sa.String(200)),
        sa.Column("transfers_checked", sa.Integer, nullable=False),
        sa.Column("transfers_truncated", sa.Boolean, nullable=False),
        sa.Column("transfers_error", sa.String(200)),
        sa.Column("findings", sa.Integer, nullable=False),
    )
    op.create_index("ix_sweep_runs_finished", "sweep_runs", ["finished_at"])
    op.create_table(
        "sweep_findings",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("transfer_id", sa.String(64)),
        sa.Column("hold_id", sa.String(128)),
        sa.Column("state", sa.String(40)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("workflow_status", sa.String(32)),
        sa.Column("amount", sa.String(32)),
        sa.Column("currency", sa.String(3)),
        sa.Column("since", _WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sweep_findings")
    op.drop_table("sweep_runs")
