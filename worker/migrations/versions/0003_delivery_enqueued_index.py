"""index deliveries by edition, status and enqueue time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_edition_status")
        batch_op.create_index(
            "ix_delivery_edition_status_enqueued", ["edition_id", "status", "enqueued_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_edition_status_enqueued")
        batch_op.create_index("ix_delivery_edition_status", ["edition_id", "status"])
