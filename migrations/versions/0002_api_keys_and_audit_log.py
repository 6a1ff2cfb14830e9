"""The client API's keys, an append-only audit log, and an index for a client's own listing.

The audit log refuses UPDATE and DELETE in the database itself (a trigger on each engine), so no code path of
ours, by mistake or on purpose, rewrites who did what.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_REFUSAL = "audit_log is append-only"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("client_key", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100)),
        sa.Column("operator", sa.Boolean, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("hash_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("client_key", sa.String(16)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("transfer_id", sa.String(64)),
        sa.Column("detail", sa.String(200)),
    )
    op.create_index("ix_audit_log_transfer_id", "audit_log", ["transfer_id"])
    op.create_index("ix_transfers_client", "transfers", ["client_key", "created_at", "transfer_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_index("ix_transfers_client", "transfers")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
