"""Indexes for reads that do not grow with history: stage runs in health_scores, recent playbook events.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``ix_health_scores_stage_run`` (model_version, account_id, lifecycle_stage, as_of_date) lets the scoring
step seek each account's newest archived row per lifecycle stage instead of reading its whole stage run
(``healthscore.pipeline.score_history``); ``ix_playbook_events_crossing_date`` lets the playbooks read
only the events young enough to hold a cooldown. Data is unchanged.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_health_scores_stage_run"), "health_scores",
                    ["model_version", "account_id", "lifecycle_stage", "as_of_date"])
    op.create_index(op.f("ix_playbook_events_crossing_date"), "playbook_events", ["crossing_date"])


def downgrade() -> None:
    op.drop_index(op.f("ix_playbook_events_crossing_date"), table_name="playbook_events")
    op.drop_index(op.f("ix_health_scores_stage_run"), table_name="health_scores")
