"""crm_publication_errors: accounts whose health fields a HubSpot batch update refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_publication_errors",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("health_score", sa.Double(), nullable=True),
        sa.Column("health_band", sa.Text(), nullable=True),
        sa.Column("health_trend", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_crm_publication_errors")),
    )


def downgrade() -> None:
    op.drop_table("crm_publication_errors")
