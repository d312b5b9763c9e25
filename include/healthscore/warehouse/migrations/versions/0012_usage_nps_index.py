"""A partial index of the Mixpanel company-days that carry an NPS answer.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

``latest_nps`` looks a year back for each account's newest answer. Through the (event_date, batch_date)
index that read takes every company-day of the year; ``ix_raw_mixpanel_usage_daily_nps`` holds only the
rows with ``nps_responses > 0`` (about one in a hundred), so the signals read those alone
(``healthscore.warehouse.pointintime.usage_rows``). Data is unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_raw_mixpanel_usage_daily_nps"), "raw_mixpanel_usage_daily", ["event_date", "batch_date"],
                    postgresql_where=sa.text("nps_responses > 0"), sqlite_where=sa.text("nps_responses > 0"))


def downgrade() -> None:
    op.drop_index(op.f("ix_raw_mixpanel_usage_daily_nps"), table_name="raw_mixpanel_usage_daily")
