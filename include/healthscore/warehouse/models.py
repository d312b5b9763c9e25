"""Warehouse schema as typed SQLAlchemy 2 declarative models.

These models are the reference the Alembic migrations must match (a test compares them after
``upgrade head``). Schema changes go through a new migration, never ``create_all``.

Conventions: every timestamp is ``UTCDateTime`` (aware UTC on both engines); JSON columns store SQL NULL
for ``None``; money is integer cents; constraint names come from ``NAMING_CONVENTION`` so they are identical
on SQLite and PostgreSQL and later migrations can address them by name.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from healthscore.sources import registry
from healthscore.warehouse.types import UTCDateTime, json_type

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Closed vocabularies enforced by CHECK constraints (changing one is a migration, on purpose).
MODEL_ROLES = ("champion", "challenger", "candidate", "retired")
PLAYBOOK_STATUSES = ("pending", "deferred", "sent", "failed", "suppressed")
MOMENTUM_VALUES = ("up", "flat", "down")
QUALITY_SEVERITIES = ("critical", "warning")
OUTCOME_KINDS = ("renewed", "churned", "contracted", "expanded")
OUTCOME_RECORD_KINDS = ("renewal", "mid_term")
OUTCOME_AGREEMENTS = ("agree", "disagree", "crm_only", "billing_only")

#: Every raw landing table, one per (source, object), from the source registry (objects landed ``raw``).
#: A new object there needs a migration creating ``raw_<source>_<object>`` (the autogenerate test will say so).
LANDING_OBJECTS: tuple[tuple[str, str], ...] = registry.landing_objects()

JSONDict = dict[str, Any]

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a 64-bit identity.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.func.current_timestamp()


def _one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> sa.CheckConstraint:
    """CHECK constraint named ``ck_<table>_<column>`` restricting a text column to a vocabulary."""
    allowed = ", ".join(f"'{v}'" for v in values)
    expr = f"{column} IN ({allowed})"
    if nullable:
        expr = f"{column} IS NULL OR {expr}"
    return sa.CheckConstraint(expr, name=column)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention and the Python -> SQL type defaults."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: sa.Text(),
        int: sa.Integer(),
        float: sa.Double(),
        bool: sa.Boolean(),
        dt.date: sa.Date(),
        dt.datetime: UTCDateTime(),
        JSONDict: json_type(),
    }


# --------------------------------------------------------------------------------------------- extract


class SourceCursor(Base):
    """The cursor each batch ended at, per (source, object).

    Kept per batch, not just the latest, so a rerun or backfill of a logical date starts from the
    cursor of the batch before it and lands exactly what the first run landed. Written in the same
    transaction as the landing rows.
    """

    __tablename__ = "source_cursors"

    source: Mapped[str] = mapped_column(primary_key=True)
    object: Mapped[str] = mapped_column(primary_key=True)
    cursor_value: Mapped[str | None]
    cursor_kind: Mapped[str | None]
    high_watermark: Mapped[dt.datetime | None]
    batch_date: Mapped[dt.date] = mapped_column(primary_key=True)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW, onupdate=NOW)


class LandingRecord:
    """Columns shared by every raw landing table (mixed into the generated classes).

    ``payload`` is canonical JSON text (``canonical_json``) so re-landing a batch is byte-identical and
    ``payload_sha256`` is reproducible. There is deliberately no landed-at column for the same reason.
    """

    record_id: Mapped[str] = mapped_column(primary_key=True)
    batch_date: Mapped[dt.date] = mapped_column(primary_key=True, index=True)
    source_updated_at: Mapped[dt.datetime | None]
    payload: Mapped[str]
    payload_sha256: Mapped[str]


def landing_table_name(source: str, obj: str) -> str:
    """``raw_<source>_<object>``: the naming rule for landing tables."""
    return f"raw_{source}_{obj}"


def _landing_model(source: str, obj: str) -> type[Base]:
    class_name = "Raw" + "".join(part.title() for part in f"{source}_{obj}".split("_"))
    attrs = {"__tablename__": landing_table_name(source, obj), "__module__": __name__}
    return type(class_name, (LandingRecord, Base), attrs)


#: ORM classes of the landing tables, generated from ``LANDING_OBJECTS``.
LANDING_MODELS: dict[tuple[str, str], type[Base]] = {key: _landing_model(*key) for key in LANDING_OBJECTS}


def landing_table(source: str, obj: str) -> sa.Table:
    """The landing ``Table`` for a source object; KeyError names the registry if it is unknown."""
    try:
        return LANDING_MODELS[(source, obj)].__table__  # type: ignore[return-value]
    except KeyError:
        raise KeyError(f"({source!r}, {obj!r}) is not in LANDING_OBJECTS") from None


class LandingRecordIndex(Base):
    """One row per record ever landed in a raw landing table: the batch that first landed it.

    Kept by ``pointintime.land_batch`` in the landing transaction. Point-in-time reads walk it and seek
    each record's newest version on the landing table's primary key, so their cost follows the number
    of records, not of landed batches (``healthscore.warehouse.pointintime``).
    """

    __tablename__ = "landing_records"
    __table_args__ = (sa.Index("ix_landing_records_source_object_first_batch", "source", "object", "first_batch"),)

    source: Mapped[str] = mapped_column(primary_key=True)
    object: Mapped[str] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(primary_key=True)
    first_batch: Mapped[dt.date]


class MixpanelUsageDaily(Base):
    """Product usage aggregated while streaming Mixpanel events (raw events are never stored)."""

    __tablename__ = "raw_mixpanel_usage_daily"
    # Point-in-time reads take a window of event days and each day's newest batch; the NPS answers of a
    # year are read through a partial index of the rows that have one (about 1 in 100).
    __table_args__ = (
        sa.Index("ix_raw_mixpanel_usage_daily_event_date_batch_date", "event_date", "batch_date"),
        sa.Index("ix_raw_mixpanel_usage_daily_nps", "event_date", "batch_date",
                 postgresql_where=sa.text("nps_responses > 0"), sqlite_where=sa.text("nps_responses > 0")),
    )

    company_id: Mapped[str] = mapped_column(primary_key=True)
    event_date: Mapped[dt.date] = mapped_column(primary_key=True)
    # Each batch keeps its own view of the trailing days it re-pulled (late events), so reruns are
    # byte-identical and a point-in-time read takes the newest batch <= as-of date.
    batch_date: Mapped[dt.date] = mapped_column(primary_key=True, index=True)
    active_users: Mapped[int] = mapped_column(server_default=sa.text("0"))
    event_count: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    logins: Mapped[int] = mapped_column(server_default=sa.text("0"))
    feature_counts: Mapped[JSONDict | None]
    distinct_features: Mapped[int] = mapped_column(server_default=sa.text("0"))
    insert_ids_seen: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    duplicates_dropped: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    nps_responses: Mapped[int] = mapped_column(server_default=sa.text("0"))
    nps_sum: Mapped[float | None]
    nps_latest: Mapped[float | None]
    csat_responses: Mapped[int] = mapped_column(server_default=sa.text("0"))
    csat_sum: Mapped[float | None]


class ExtractRun(Base):
    """What one run extracted per source object (volumes, pages, retries, outcome)."""

    __tablename__ = "extract_runs"
    __table_args__ = (sa.Index("ix_extract_runs_batch_date_source", "batch_date", "source"),)

    run_id: Mapped[str] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)
    object: Mapped[str] = mapped_column(primary_key=True)
    batch_date: Mapped[dt.date]
    records_landed: Mapped[int] = mapped_column(server_default=sa.text("0"))
    pages: Mapped[int] = mapped_column(server_default=sa.text("0"))
    retries: Mapped[int] = mapped_column(server_default=sa.text("0"))
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    status: Mapped[str]


# --------------------------------------------------------------------------------------------- quality


class QualityResult(Base):
    """One expectation result of a validation run."""

    __tablename__ = "quality_results"
    __table_args__ = (
        _one_of("severity", QUALITY_SEVERITIES),
        sa.Index("ix_quality_results_batch_date_source", "batch_date", "source"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[str]
    batch_date: Mapped[dt.date]
    source: Mapped[str]
    suite: Mapped[str]
    expectation: Mapped[str]
    column: Mapped[str | None]
    severity: Mapped[str]
    success: Mapped[bool]
    observed_value: Mapped[str | None]
    unexpected_count: Mapped[int | None]
    element_count: Mapped[int | None]
    details: Mapped[JSONDict | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class Quarantine(Base):
    """A landed record held back by an expectation; unique so re-validation does not duplicate."""

    __tablename__ = "quarantine"
    __table_args__ = (sa.UniqueConstraint("batch_date", "source", "object", "record_id", "expectation"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[str]
    batch_date: Mapped[dt.date]
    source: Mapped[str]
    object: Mapped[str]
    record_id: Mapped[str]
    expectation: Mapped[str]
    reason: Mapped[str | None]
    payload: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class BatchReconciliation(Base):
    """landed = accepted + quarantined + out_of_scope, per batch and source object."""

    __tablename__ = "batch_reconciliation"

    batch_date: Mapped[dt.date] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)
    object: Mapped[str] = mapped_column(primary_key=True)
    run_id: Mapped[str]
    landed: Mapped[int] = mapped_column(server_default=sa.text("0"))
    accepted: Mapped[int] = mapped_column(server_default=sa.text("0"))
    quarantined: Mapped[int] = mapped_column(server_default=sa.text("0"))
    out_of_scope: Mapped[int] = mapped_column(server_default=sa.text("0"))


# --------------------------------------------------------------------------------------------- scoring


class AccountSignals(Base):
    """Point-in-time inputs of one account on one as-of date (what a backtest replays)."""

    __tablename__ = "account_signals"

    account_id: Mapped[str] = mapped_column(primary_key=True)
    as_of_date: Mapped[dt.date] = mapped_column(primary_key=True, index=True)
    segment: Mapped[str | None]
    plan: Mapped[str | None]
    lifecycle_stage: Mapped[str | None]
    tenure_days: Mapped[int | None]
    arr_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    renewal_date: Mapped[dt.date | None]
    owner_id: Mapped[str | None]
    signals: Mapped[JSONDict]
    dimension_sources: Mapped[JSONDict]
    built_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class ModelVersion(Base):
    """Registry of model configs; at most one champion at a time (partial unique index)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        _one_of("role", MODEL_ROLES),
        sa.Index(
            "uq_model_versions_one_champion",
            "role",
            unique=True,
            sqlite_where=sa.text("role = 'champion'"),
            postgresql_where=sa.text("role = 'champion'"),
        ),
        sa.Index("uq_model_versions_number", "number", unique=True),
    )

    version: Mapped[str] = mapped_column(primary_key=True)
    number: Mapped[int | None]  # registration order: 1, 2, 3, ...
    config_hash: Mapped[str]
    config_yaml: Mapped[str]
    role: Mapped[str] = mapped_column(server_default=sa.text("'candidate'"))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    promoted_at: Mapped[dt.datetime | None]
    approved_by: Mapped[str | None]
    parent_version: Mapped[str | None] = mapped_column(sa.ForeignKey("model_versions.version"))
    metrics: Mapped[JSONDict | None]
    notes: Mapped[str | None]
    author: Mapped[str | None]
    changelog: Mapped[str | None]  # one line: what changed and why
    demoted_at: Mapped[dt.datetime | None]  # when it stopped being the champion


class ScoreOverride(Base):
    """A human override of an account's score or band, until it expires or is revoked."""

    __tablename__ = "score_overrides"
    __table_args__ = (
        sa.CheckConstraint("override_score IS NOT NULL OR override_band IS NOT NULL", name="has_value"),
        sa.CheckConstraint(
            "override_score IS NULL OR (override_score >= 0 AND override_score <= 100)", name="score_range"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[str] = mapped_column(index=True)
    override_score: Mapped[float | None]
    override_band: Mapped[str | None]
    reason: Mapped[str]
    author: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    expires_on: Mapped[dt.date | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None]


class HealthScore(Base):
    """Score history: one row per (account, as-of date, model version); shadow rows fire no playbooks."""

    __tablename__ = "health_scores"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "as_of_date", "model_version"),
        sa.Index("ix_health_scores_as_of_date_model_version", "as_of_date", "model_version"),
        # healthscore.pipeline.score_history seeks each account's newest row per stage (migration 0010)
        sa.Index("ix_health_scores_stage_run", "model_version", "account_id", "lifecycle_stage", "as_of_date"),
        _one_of("momentum", MOMENTUM_VALUES, nullable=True),
        sa.CheckConstraint("score IS NULL OR (score >= 0 AND score <= 100)", name="score_range"),
        sa.CheckConstraint("score IS NOT NULL OR unscored_reason IS NOT NULL", name="unscored_has_reason"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[str]
    as_of_date: Mapped[dt.date]
    model_version: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.version"))
    score: Mapped[float | None]
    unscored_reason: Mapped[str | None]
    band: Mapped[str | None]
    raw_score: Mapped[float | None]
    confidence: Mapped[float | None]
    dimension_scores: Mapped[JSONDict | None]
    contributions: Mapped[JSONDict | None]
    trend_30d: Mapped[float | None]
    trend_90d: Mapped[float | None]
    trend_365d: Mapped[float | None]
    momentum: Mapped[str | None]
    projection_90d: Mapped[float | None]
    attribution: Mapped[JSONDict | None]
    segment: Mapped[str | None]
    value_segment: Mapped[str | None]
    lifecycle_stage: Mapped[str | None]
    days_in_stage: Mapped[int | None]
    stage_gate_blocked: Mapped[bool] = mapped_column(server_default=sa.false())
    override_score: Mapped[float | None]
    override_band: Mapped[str | None]
    override_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("score_overrides.id"))
    is_shadow: Mapped[bool] = mapped_column(server_default=sa.false())
    config_hash: Mapped[str | None]
    computed_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


# --------------------------------------------------------------------------------------------- actions


class PlaybookEvent(Base):
    """A band crossing that calls for action; the idempotency key makes re-runs harmless."""

    __tablename__ = "playbook_events"
    __table_args__ = (
        _one_of("status", PLAYBOOK_STATUSES),
        sa.Index("ix_playbook_events_status_due_at", "status", "due_at"),
        sa.Index("ix_playbook_events_account_id_crossing_date", "account_id", "crossing_date"),
        sa.Index("ix_playbook_events_crossing_date", "crossing_date"),  # events young enough for a cooldown
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[str]
    playbook: Mapped[str]
    crossing_date: Mapped[dt.date]
    model_version: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.version"))
    severity: Mapped[str | None]
    owner_id: Mapped[str | None]
    status: Mapped[str] = mapped_column(server_default=sa.text("'pending'"))
    priority_score: Mapped[float | None]
    payload: Mapped[JSONDict | None]
    crm_task_id: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(server_default=sa.text("0"))
    last_error: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    sent_at: Mapped[dt.datetime | None]
    due_at: Mapped[dt.datetime | None]
    # the CRM task read back (healthscore.playbooks.followup): hs_task_status, hs_task_completion_date
    task_status: Mapped[str | None]
    task_completed_at: Mapped[dt.datetime | None]
    task_checked_at: Mapped[dt.datetime | None]


class CrmPublication(Base):
    """Last values written to the CRM per account, so a PATCH is sent only on change.

    ``health_score``/``health_band`` are what the CRM shows (an active override's, else the computed);
    ``health_score_computed`` is the computed score and ``override_reason`` the override's reason ('' when none).
    """

    __tablename__ = "crm_publications"

    account_id: Mapped[str] = mapped_column(primary_key=True)
    health_score: Mapped[float | None]
    health_band: Mapped[str | None]
    health_trend: Mapped[str | None]
    health_score_computed: Mapped[float | None]
    override_reason: Mapped[str | None]
    published_at: Mapped[dt.datetime]


class CrmPublicationError(Base):
    """An account whose health fields the CRM refused (per-record error in a batch update), kept until a
    later run publishes it: nothing is dropped silently. ``crm_publications`` keeps the last values that
    did land, so the next run tries again."""

    __tablename__ = "crm_publication_errors"

    account_id: Mapped[str] = mapped_column(primary_key=True)
    health_score: Mapped[float | None]
    health_band: Mapped[str | None]
    health_trend: Mapped[str | None]
    category: Mapped[str]
    message: Mapped[str]
    first_failed_at: Mapped[dt.datetime]
    last_failed_at: Mapped[dt.datetime]


class NotificationOutbox(Base):
    """Outbox of digests and alerts; ``dedupe_key`` makes enqueueing idempotent."""

    __tablename__ = "notifications_outbox"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[str]
    recipient: Mapped[str]
    subject: Mapped[str | None]
    body: Mapped[str]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    sent_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    dedupe_key: Mapped[str] = mapped_column(unique=True)
    # Files sent with the message where the channel can carry them (email): {"paths": [...]}.
    attachments: Mapped[JSONDict | None]


class NotificationDelivery(Base):
    """Handing an outbox message to email or Slack: attempts, last error, and when it was accepted."""

    __tablename__ = "notification_deliveries"

    dedupe_key: Mapped[str] = mapped_column(sa.ForeignKey("notifications_outbox.dedupe_key"), primary_key=True)
    transport: Mapped[str]
    address: Mapped[str]
    attempts: Mapped[int] = mapped_column(server_default=sa.text("0"))
    last_error: Mapped[str | None]
    last_attempt_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]


# ------------------------------------------------------------------------------------------ evaluation


class BillingSubscriptionState(Base):
    """Change log of Stripe subscription states: a row when a subscription's billed state changed.

    The billing side of renewal outcomes is read from consecutive rows (a cancellation, a term rolled
    over with fewer or more seats, a plan change). Status flips such as past_due are left out on purpose:
    they are not outcomes and would make the log grow every day.
    """

    __tablename__ = "billing_subscription_states"

    subscription_id: Mapped[str] = mapped_column(primary_key=True)
    batch_date: Mapped[dt.date] = mapped_column(primary_key=True, index=True)
    account_id: Mapped[str | None]
    customer_id: Mapped[str | None]
    canceled: Mapped[bool]
    canceled_date: Mapped[dt.date | None]
    quantity: Mapped[int | None] = mapped_column(sa.BigInteger)
    mrr_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    plan: Mapped[str | None]
    term_end_date: Mapped[dt.date | None]


class RenewalOutcome(Base):
    """How one renewal resolved, with the CRM's and billing's evidence side by side.

    One row per (account, renewal date = term end, kind); ``kind`` 'mid_term' holds amendments inside a
    term (seat expansions), which are not renewals. ``agreement`` says whether both sides saw it and agreed;
    ``outcome`` is billing's where billing saw it (what was charged), else the CRM's. ``as_of_batch_date``
    is the batch that last wrote the row: an older batch rerun later never overwrites a newer view.
    """

    __tablename__ = "renewal_outcomes"
    __table_args__ = (
        _one_of("outcome", OUTCOME_KINDS),
        _one_of("crm_outcome", OUTCOME_KINDS, nullable=True),
        _one_of("billing_outcome", OUTCOME_KINDS, nullable=True),
        _one_of("kind", OUTCOME_RECORD_KINDS),
        _one_of("agreement", OUTCOME_AGREEMENTS),
    )

    account_id: Mapped[str] = mapped_column(primary_key=True)
    renewal_date: Mapped[dt.date] = mapped_column(primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(primary_key=True)
    outcome: Mapped[str]
    source: Mapped[str]
    agreement: Mapped[str]
    crm_outcome: Mapped[str | None]
    crm_date: Mapped[dt.date | None]
    crm_deal_id: Mapped[str | None]
    crm_arr_before_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    crm_arr_after_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    billing_outcome: Mapped[str | None]
    billing_date: Mapped[dt.date | None]
    billing_subscription_id: Mapped[str | None]
    seats_before: Mapped[int | None] = mapped_column(sa.BigInteger)
    seats_after: Mapped[int | None] = mapped_column(sa.BigInteger)
    mrr_before_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    mrr_after_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    plan_before: Mapped[str | None]
    plan_after: Mapped[str | None]
    note: Mapped[str | None]
    first_batch_date: Mapped[dt.date]
    as_of_batch_date: Mapped[dt.date]


class AccuracyReport(Base):
    """Monthly accuracy of one model version over a period and prediction horizon."""

    __tablename__ = "accuracy_reports"
    __table_args__ = (
        # Explicit name: the convention's would exceed PostgreSQL's 63-character identifier limit.
        sa.UniqueConstraint(
            "model_version",
            "period_start",
            "period_end",
            "horizon_days",
            name="uq_accuracy_reports_version_period_horizon",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    model_version: Mapped[str] = mapped_column(sa.ForeignKey("model_versions.version"))
    period_start: Mapped[dt.date]
    period_end: Mapped[dt.date]
    horizon_days: Mapped[int]
    at_risk_threshold: Mapped[float]
    metrics: Mapped[JSONDict]
    report_path: Mapped[str | None]
    created_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
