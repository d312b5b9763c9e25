"""Overrides in the CRM and in the archive: what was published beside the computed score, who revoked.

crm_publications gains the computed score and the override reason last written to the CRM (so a change of
either is published even when the shown score and band stay); score_overrides gains revoked_by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_publications") as batch:
        batch.add_column(sa.Column("health_score_computed", sa.Double(), nullable=True))
        batch.add_column(sa.Column("override_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("score_overrides") as batch:
        batch.add_column(sa.Column("revoked_by", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("score_overrides") as batch:
        batch.drop_column("revoked_by")
    with op.batch_alter_table("crm_publications") as batch:
        batch.drop_column("override_reason")
        batch.drop_column("health_score_computed")
