"""Initial warehouse schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Frozen history: this file spells out every table instead of importing the models, so later model
changes cannot silently rewrite what revision 0001 created. All constraint and index names are explicit
and follow the models' naming convention (pk_/uq_/ck_/fk_/ix_), identical on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The landing objects that existed at revision 0001 (a copy, not models.LANDING_OBJECTS, on purpose).
LANDING_OBJECTS_0001 = (
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

NOW = sa.func.current_timestamp()
ZERO = sa.text("0")


def _id() -> sa.Column:
    # SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _ts(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=NOW if now else None, nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _count(name: str, type_: type[sa.types.TypeEngine] = sa.Integer) -> sa.Column:
    return sa.Column(name, type_(), server_default=ZERO, nullable=False)


def upgrade() -> None:
    op.create_table(
        "source_cursors",
        _text("source"),
        _text("object"),
        _text("cursor_value", nullable=True),
        _text("cursor_kind", nullable=True),
        _ts("high_watermark", nullable=True),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _ts("updated_at", now=True),
        sa.PrimaryKeyConstraint("source", "object", "batch_date", name=op.f("pk_source_cursors")),
    )

    for source, obj in LANDING_OBJECTS_0001:
        table = f"raw_{source}_{obj}"
        op.create_table(
            table,
            _text("record_id"),
            sa.Column("batch_date", sa.Date(), nullable=False),
            _ts("source_updated_at", nullable=True),
            _text("payload"),
            _text("payload_sha256"),
            sa.PrimaryKeyConstraint("record_id", "batch_date", name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_batch_date"), table, ["batch_date"])

    op.create_table(
        "raw_mixpanel_usage_daily",
        _text("company_id"),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _count("active_users"),
        _count("event_count", sa.BigInteger),
        _count("logins"),
        sa.Column("feature_counts", sa.JSON(), nullable=True),
        _count("distinct_features"),
        _count("insert_ids_seen", sa.BigInteger),
        _count("duplicates_dropped", sa.BigInteger),
        _count("nps_responses"),
        sa.Column("nps_sum", sa.Double(), nullable=True),
        sa.Column("nps_latest", sa.Double(), nullable=True),
        _count("csat_responses"),
        sa.Column("csat_sum", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint(
            "company_id", "event_date", "batch_date", name=op.f("pk_raw_mixpanel_usage_daily")
        ),
    )
    op.create_index(
        op.f("ix_raw_mixpanel_usage_daily_batch_date"), "raw_mixpanel_usage_daily", ["batch_date"]
    )

    op.create_table(
        "extract_runs",
        _text("run_id"),
        _text("source"),
        _text("object"),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _count("records_landed"),
        _count("pages"),
        _count("retries"),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        _text("status"),
        sa.PrimaryKeyConstraint("run_id", "source", "object", name=op.f("pk_extract_runs")),
    )
    op.create_index(op.f("ix_extract_runs_batch_date_source"), "extract_runs", ["batch_date", "source"])

    op.create_table(
        "quality_results",
        _id(),
        _text("run_id"),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _text("source"),
        _text("suite"),
        _text("expectation"),
        _text("column", nullable=True),
        _text("severity"),
        sa.Column("success", sa.Boolean(), nullable=False),
        _text("observed_value", nullable=True),
        sa.Column("unexpected_count", sa.Integer(), nullable=True),
        sa.Column("element_count", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        _ts("created_at", now=True),
        sa.CheckConstraint("severity IN ('critical', 'warning')", name=op.f("ck_quality_results_severity")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_results")),
    )
    op.create_index(op.f("ix_quality_results_batch_date_source"), "quality_results", ["batch_date", "source"])

    op.create_table(
        "quarantine",
        _id(),
        _text("run_id"),
        sa.Column("batch_date", sa.Date(), nullable=False),
        _text("source"),
        _text("object"),
        _text("record_id"),
        _text("expectation"),
        _text("reason", nullable=True),
        _text("payload", nullable=True),
        _ts("created_at", now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
        sa.UniqueConstraint(
            "batch_date",
            "source",
            "object",
            "record_id",
            "expectation",
            name=op.f("uq_quarantine_batch_date_source_object_record_id_expectation"),
        ),
    )

    op.create_table(
        "batch_reconciliation",
        sa.Column("batch_date", sa.Date(), nullable=False),
        _text("source"),
        _text("object"),
        _text("run_id"),
        _count("landed"),
        _count("accepted"),
        _count("quarantined"),
        sa.PrimaryKeyConstraint("batch_date", "source", "object", name=op.f("pk_batch_reconciliation")),
    )

    op.create_table(
        "account_signals",
        _text("account_id"),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        _text("segment", nullable=True),
        _text("plan", nullable=True),
        _text("lifecycle_stage", nullable=True),
        sa.Column("tenure_days", sa.Integer(), nullable=True),
        sa.Column("arr_cents", sa.BigInteger(), nullable=True),
        sa.Column("renewal_date", sa.Date(), nullable=True),
        _text("owner_id", nullable=True),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("dimension_sources", sa.JSON(), nullable=False),
        _ts("built_at", now=True),
        sa.PrimaryKeyConstraint("account_id", "as_of_date", name=op.f("pk_account_signals")),
    )
    op.create_index(op.f("ix_account_signals_as_of_date"), "account_signals", ["as_of_date"])

    op.create_table(
        "model_versions",
        _text("version"),
        _text("config_hash"),
        _text("config_yaml"),
        sa.Column("role", sa.Text(), server_default=sa.text("'candidate'"), nullable=False),
        _ts("created_at", now=True),
        _ts("promoted_at", nullable=True),
        _text("approved_by", nullable=True),
        _text("parent_version", nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        _text("notes", nullable=True),
        sa.CheckConstraint(
            "role IN ('champion', 'challenger', 'candidate', 'retired')", name=op.f("ck_model_versions_role")
        ),
        sa.ForeignKeyConstraint(
            ["parent_version"],
            ["model_versions.version"],
            name=op.f("fk_model_versions_parent_version_model_versions"),
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
    )
    # At most one champion at any time.
    op.create_index(
        op.f("uq_model_versions_one_champion"),
        "model_versions",
        ["role"],
        unique=True,
        sqlite_where=sa.text("role = 'champion'"),
        postgresql_where=sa.text("role = 'champion'"),
    )

    op.create_table(
        "score_overrides",
        _id(),
        _text("account_id"),
        sa.Column("override_score", sa.Double(), nullable=True),
        _text("override_band", nullable=True),
        _text("reason"),
        _text("author"),
        _ts("created_at", now=True),
        sa.Column("expires_on", sa.Date(), nullable=True),
        _ts("revoked_at", nullable=True),
        sa.CheckConstraint(
            "override_score IS NOT NULL OR override_band IS NOT NULL",
            name=op.f("ck_score_overrides_has_value"),
        ),
        sa.CheckConstraint(
            "override_score IS NULL OR (override_score >= 0 AND override_score <= 100)",
            name=op.f("ck_score_overrides_score_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_overrides")),
    )
    op.create_index(op.f("ix_score_overrides_account_id"), "score_overrides", ["account_id"])

    op.create_table(
        "health_scores",
        _id(),
        _text("account_id"),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        _text("model_version"),
        sa.Column("score", sa.Double(), nullable=True),
        _text("unscored_reason", nullable=True),
        _text("band", nullable=True),
        sa.Column("raw_score", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("dimension_scores", sa.JSON(), nullable=True),
        sa.Column("contributions", sa.JSON(), nullable=True),
        sa.Column("trend_30d", sa.Double(), nullable=True),
        sa.Column("trend_90d", sa.Double(), nullable=True),
        sa.Column("trend_365d", sa.Double(), nullable=True),
        _text("momentum", nullable=True),
        sa.Column("projection_90d", sa.Double(), nullable=True),
        sa.Column("attribution", sa.JSON(), nullable=True),
        _text("segment", nullable=True),
        _text("value_segment", nullable=True),
        _text("lifecycle_stage", nullable=True),
        sa.Column("days_in_stage", sa.Integer(), nullable=True),
        sa.Column("stage_gate_blocked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("override_score", sa.Double(), nullable=True),
        _text("override_band", nullable=True),
        sa.Column("override_id", sa.BigInteger(), nullable=True),
        sa.Column("is_shadow", sa.Boolean(), server_default=sa.false(), nullable=False),
        _text("config_hash", nullable=True),
        _ts("computed_at", now=True),
        sa.CheckConstraint(
            "momentum IS NULL OR momentum IN ('up', 'flat', 'down')", name=op.f("ck_health_scores_momentum")
        ),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 0 AND score <= 100)", name=op.f("ck_health_scores_score_range")
        ),
        sa.CheckConstraint(
            "score IS NOT NULL OR unscored_reason IS NOT NULL",
            name=op.f("ck_health_scores_unscored_has_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_health_scores_model_version_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["override_id"], ["score_overrides.id"], name=op.f("fk_health_scores_override_id_score_overrides")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_scores")),
        sa.UniqueConstraint(
            "account_id",
            "as_of_date",
            "model_version",
            name=op.f("uq_health_scores_account_id_as_of_date_model_version"),
        ),
    )
    op.create_index(
        op.f("ix_health_scores_as_of_date_model_version"), "health_scores", ["as_of_date", "model_version"]
    )

    op.create_table(
        "playbook_events",
        _id(),
        _text("idempotency_key"),
        _text("account_id"),
        _text("playbook"),
        sa.Column("crossing_date", sa.Date(), nullable=False),
        _text("model_version"),
        _text("severity", nullable=True),
        _text("owner_id", nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("priority_score", sa.Double(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        _text("crm_task_id", nullable=True),
        _count("attempts"),
        _text("last_error", nullable=True),
        _ts("created_at", now=True),
        _ts("sent_at", nullable=True),
        _ts("due_at", nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'deferred', 'sent', 'failed', 'suppressed')",
            name=op.f("ck_playbook_events_status"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_playbook_events_model_version_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_playbook_events_idempotency_key")),
    )
    op.create_index(op.f("ix_playbook_events_status_due_at"), "playbook_events", ["status", "due_at"])
    op.create_index(
        op.f("ix_playbook_events_account_id_crossing_date"),
        "playbook_events",
        ["account_id", "crossing_date"],
    )

    op.create_table(
        "crm_publications",
        _text("account_id"),
        sa.Column("health_score", sa.Double(), nullable=True),
        _text("health_band", nullable=True),
        _text("health_trend", nullable=True),
        _ts("published_at"),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_crm_publications")),
    )

    op.create_table(
        "notifications_outbox",
        _id(),
        _text("channel"),
        _text("recipient"),
        _text("subject", nullable=True),
        _text("body"),
        _ts("created_at", now=True),
        _ts("sent_at", nullable=True),
        _text("dedupe_key"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_outbox_dedupe_key")),
    )
    op.create_index(op.f("ix_notifications_outbox_sent_at"), "notifications_outbox", ["sent_at"])

    op.create_table(
        "outcomes",
        _id(),
        _text("account_id"),
        sa.Column("outcome_date", sa.Date(), nullable=False),
        _text("outcome"),
        sa.Column("arr_before_cents", sa.BigInteger(), nullable=True),
        sa.Column("arr_after_cents", sa.BigInteger(), nullable=True),
        _text("reason", nullable=True),
        _text("source", nullable=True),
        _ts("recorded_at", now=True),
        sa.CheckConstraint(
            "outcome IN ('churned', 'renewed', 'expanded', 'contracted')", name=op.f("ck_outcomes_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint(
            "account_id", "outcome_date", "outcome", name=op.f("uq_outcomes_account_id_outcome_date_outcome")
        ),
    )
    op.create_index(op.f("ix_outcomes_outcome_date"), "outcomes", ["outcome_date"])

    op.create_table(
        "accuracy_reports",
        _id(),
        _text("model_version"),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("at_risk_threshold", sa.Double(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _text("report_path", nullable=True),
        _ts("created_at", now=True),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_accuracy_reports_model_version_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accuracy_reports")),
        sa.UniqueConstraint(
            "model_version",
            "period_start",
            "period_end",
            "horizon_days",
            name=op.f("uq_accuracy_reports_version_period_horizon"),
        ),
    )


def downgrade() -> None:
    # Reverse dependency order; dropping a table drops its indexes and constraints with it.
    for table in (
        "accuracy_reports",
        "outcomes",
        "notifications_outbox",
        "crm_publications",
        "playbook_events",
        "health_scores",
        "score_overrides",
        "model_versions",
        "account_signals",
        "batch_reconciliation",
        "quarantine",
        "quality_results",
        "extract_runs",
        "raw_mixpanel_usage_daily",
        *(f"raw_{source}_{obj}" for source, obj in reversed(LANDING_OBJECTS_0001)),
        "source_cursors",
    ):
        op.drop_table(table)
