"""bounce events say whether they were only a delay; subscribers remember a delivery notice

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delayed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("accepted_at")
    with op.batch_alter_table("bounce_event", schema=None) as batch_op:
        batch_op.drop_column("delayed")
