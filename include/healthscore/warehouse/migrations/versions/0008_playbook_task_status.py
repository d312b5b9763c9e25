"""playbook_events: the CRM task's status as read back from HubSpot.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

``task_status`` is the task's ``hs_task_status`` (NOT_STARTED, COMPLETED, ... as HubSpot names them),
``task_completed_at`` its ``hs_task_completion_date`` and ``task_checked_at`` the simulated or real instant
of the last read. The daily DAG's act step reads back the tasks it created (by their ids), so the monthly
accuracy report can say which plays were done and when.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("playbook_events") as batch:
        batch.add_column(sa.Column("task_status", sa.Text(), nullable=True))
        batch.add_column(sa.Column("task_completed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("task_checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("playbook_events") as batch:
        batch.drop_column("task_checked_at")
        batch.drop_column("task_completed_at")
        batch.drop_column("task_status")
