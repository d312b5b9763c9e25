"""notification_deliveries: what was handed to email or Slack, per outbox message.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

One row per outbox message a transport was asked to deliver (keyed by the outbox's dedupe key): the
attempts, the last error, and ``delivered_at`` once the SMTP server or the webhook accepted it. A
delivered message is never handed over again, however often the task is retried or the run rerun.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("transport", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("dedupe_key", name=op.f("pk_notification_deliveries")),
        sa.ForeignKeyConstraint(["dedupe_key"], ["notifications_outbox.dedupe_key"],
                                name=op.f("fk_notification_deliveries_dedupe_key_notifications_outbox")),
    )


def downgrade() -> None:
    op.drop_table("notification_deliveries")
