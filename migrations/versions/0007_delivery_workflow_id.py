"""Each webhook delivery knows the workflow that holds its cycle: deliveries travel in batches of any transfers'
events to one subscriber, so the workflow's id no longer follows from the delivery's transfer (the API's manual
retries and cancellations look it up here). Rows from before have none: their workflow is their transfer's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("workflow_id", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as table:
        table.drop_column("workflow_id")
