"""Point-in-time index: landing_records, and Mixpanel usage by (event_date, batch_date).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``landing_records`` holds one row per record ever landed in a raw landing table, with the batch that first
landed it; ``healthscore.warehouse.pointintime`` walks it and seeks each record's newest version, so a
point-in-time read no longer groups over every landed batch. Existing warehouses get it filled from their
landing tables here. Frozen history: the landing tables of this revision are listed here, not imported.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LANDING_OBJECTS_0007 = (
    ("hubspot", "companies"),
    ("hubspot", "contacts"),
    ("hubspot", "deals"),
    ("hubspot", "owners"),
    ("hubspot", "meetings"),
    ("zendesk", "tickets"),
    ("zendesk", "satisfaction_ratings"),
    ("stripe", "customers"),
    ("stripe", "subscriptions"),
    ("stripe", "invoices"),
)


def upgrade() -> None:
    op.create_table(
        "landing_records",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("object", sa.Text(), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("first_batch", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("source", "object", "record_id", name=op.f("pk_landing_records")),
    )
    op.create_index(op.f("ix_landing_records_source_object_first_batch"), "landing_records",
                    ["source", "object", "first_batch"])
    op.create_index(op.f("ix_raw_mixpanel_usage_daily_event_date_batch_date"), "raw_mixpanel_usage_daily",
                    ["event_date", "batch_date"])
    index = sa.table("landing_records", sa.column("source"), sa.column("object"), sa.column("record_id"),
                     sa.column("first_batch"))
    for source, obj in LANDING_OBJECTS_0007:
        landing = sa.table(f"raw_{source}_{obj}", sa.column("record_id"), sa.column("batch_date"))
        op.execute(index.insert().from_select(
            ["source", "object", "record_id", "first_batch"],
            sa.select(sa.literal(source, sa.Text), sa.literal(obj, sa.Text), landing.c.record_id,
                      sa.func.min(landing.c.batch_date)).group_by(landing.c.record_id)))


def downgrade() -> None:
    op.drop_index(op.f("ix_raw_mixpanel_usage_daily_event_date_batch_date"), table_name="raw_mixpanel_usage_daily")
    op.drop_table("landing_records")
