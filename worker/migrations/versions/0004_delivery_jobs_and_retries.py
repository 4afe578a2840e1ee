"""deliveries name the job that carries them, when their retry is due, and uncertain sends

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("uncertain", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.drop_index("ix_delivery_edition_status_enqueued")
        batch_op.create_index("ix_delivery_edition_status_job", ["edition_id", "status", "job_id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_edition_status_job")
        batch_op.create_index(
            "ix_delivery_edition_status_enqueued", ["edition_id", "status", "enqueued_at"]
        )
        batch_op.drop_column("uncertain")
        batch_op.drop_column("retry_at")
        batch_op.drop_column("job_id")
