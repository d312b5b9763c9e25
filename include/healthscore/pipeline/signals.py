"""Point-in-time account signals: landed, validated batches -> one row per account for scoring.

``build_signals(engine, as_of, batch_date, model)`` reads only what a run on ``batch_date`` could have
seen: landed batches with ``batch_date <=`` the batch date, each record's newest such version whose
source timestamp is at or before ``as_of`` (full-snapshot objects: the newest snapshot), minus records
the quality gate quarantined in the batch that landed that version. Rebuilding a past date therefore
gives the same rows whatever landed later (rows are sorted by ``account_id``; every reduction runs over
inputs in a fixed order).

Accounts are the HubSpot companies whose ``customer_status`` is ``active`` in that version: churned
companies have nothing left to score, and a company churned *after* as-of is still active in the
version read, so history does not change when it churns later. ``account_id`` is the HubSpot id.
The roster and contract columns come from the accepted HubSpot versions even when HubSpot is blocked.

Sources the gate BLOCKED for this batch (a failed critical batch-level check, e.g. too many rows
quarantined or stale data), sources with no batch landed for this date, and sources with no data at
all take out the dimensions they feed (``policy.SOURCE_DIMENSIONS``). Each such dimension is carried
forward per account from the newest earlier ``account_signals`` row whose value came from a good run
(at most the model's ``carry_forward.max_days`` old) with confidence ``carry_forward.decay_per_day ** age_days``; when there
is none its signals stay NaN and the dimension is listed in ``blocked_dimensions``. Scoring treats a
listed dimension as missing, so carried dimensions are deliberately NOT listed there (that would throw
the carried values away): they are named in ``carried_dimensions`` and discounted by
``confidence_<dimension>``. ``dimension_sources`` records {status, confidence, reason[, from]} per
dimension: ``ok`` | ``carried_forward`` | ``missing``. A batch that landed but was never validated
counts as usable (nothing says it is bad).

Signal definitions (windows end at ``as_of``; product windows are whole event days ending on the batch
date; a "covered" day is an event day some batch landed, and an account without a row on a covered day
had no activity that day):

usage (Mixpanel daily aggregates; licensed seats from HubSpot)
  active_user_pct       mean daily active users over the covered days of the last 30 / licensed seats x 100,
                        capped at 100. The export only yields DAILY distinct users, so this is a DAU-based
                        ratio (lower than the MAU ratio the catalogue's baselines assume).
  logins_per_user_week  logins in the last 28 days / (covered days / 7) / mean daily active users
                        (0 when nobody was active). With DAU as the denominator this is ~7x logins per
                        active user-day: how many sessions an active user opens.
  feature_breadth       distinct tracked feature events (``FEATURE_EVENTS``; logins, page views and
                        surveys excluded) used in the last 30 days / number of tracked features x 100.
  usage_trend_mom       mean DAU of the last 30 days vs the 30 before, % change; needs
                        ``MIN_TREND_COVERED_DAYS`` covered days in each window (0 when both are 0).
engagement (HubSpot meetings)
  csm_touchpoints_qtr   COMPLETED meetings of kind QBR or Check-in in the last 90 days.
  qbr_attended          the most recent QBR held or missed (COMPLETED / NO_SHOW; CANCELED ignored) in the
                        last 120 days: 1 if COMPLETED, 0 if NO_SHOW; 0 when there was none.
  training_sessions_qtr COMPLETED Training meetings in the last 90 days.
relationship
  latest_nps            the newest NPS answer (Mixpanel ``nps_latest``) within the last 365 days.
  csat_3m               mean of every CSAT answer in the last 90 days on a 1-5 scale: Mixpanel in-app
                        surveys (csat_sum / csat_responses) pooled with Zendesk ratings (good = 5, bad = 1).
  executive_sponsor     1 if a HubSpot contact with customer_role executive_sponsor has not left, else 0.
  active_champion       1 if a contact with customer_role champion has not left, else 0.
  contacts_engaged      HubSpot contacts on record that have not left the company. Per-contact engagements
                        (emails, calls, meeting attendees) are not extracted; Zendesk requesters were the
                        other candidate but measure support friction (they rise as health falls).
  departments_engaged   distinct departments of those contacts (multi-threading).
support (Zendesk tickets, linked by the company's zendesk_organization_id)
  open_tickets          tickets whose status is new/open/pending/hold at as-of.
  p1_tickets_90d        urgent-priority tickets created in the last 90 days.
  resolution_time_trend median full-resolution minutes of tickets solved in the last 90 days vs the 90
                        days before, % change (the catalogue's unit); NaN unless both windows have one.
  complaint_ratio       tickets created in the last 90 days tagged complaint* or escalat* / all of them
                        (NaN without tickets).
value
  expansion_12m         HubSpot deals with deal_category expansion, closedwon, closed in the last 365 days.
  arr                   Stripe: 12 x MRR of the account's live subscriptions (not canceled or expired),
                        in dollars (0 when all are canceled); NaN without any subscription.
  contract_coverage     peak daily active users in the last 30 days / licensed seats x 100, capped at 100:
                        a lower bound on the seats in use (named seat assignment is not in any source).
financial (Stripe)
  days_past_due         whole days the oldest open/uncollectible invoice is past its due date at as-of, 0
                        when none is. Invoices are extracted incrementally on ``created``, so one paid after
                        it landed still reads "open": an invoice only counts while the subscription
                        snapshot (re-pulled in full every batch) shows the customer past_due/unpaid.
  payment_status_ok     0 if a subscription is past_due/unpaid, an invoice is past due, or an invoice of
                        the last 90 days is uncollectible or needed more than one charge attempt; else 1.
Counts and flags are 0 (not NaN) for an account without records when the source has data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.config import ModelConfig
from healthscore.quality.policy import SOURCE_DIMENSIONS
from healthscore.sources import registry
from healthscore.sources.schemas import flatten
from healthscore.warehouse.models import (
    AccountSignals,
    MixpanelUsageDaily,
    QualityResult,
    Quarantine,
    SourceCursor,
    landing_table,
)
from healthscore.warehouse.types import utcnow
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

DAY_S = 86_400
USAGE_WINDOW_DAYS = 30
LOGIN_WINDOW_DAYS = 28
MIN_USAGE_COVERED_DAYS = 7
MIN_TREND_COVERED_DAYS = 21
NPS_LOOKBACK_DAYS = 365
QUARTER_DAYS = 90
QBR_LOOKBACK_DAYS = 120
EXPANSION_DAYS = 365

#: The product's tracking plan: events that mean "a feature was used" (feature_breadth's denominator).
FEATURE_EVENTS: tuple[str, ...] = (
    "Dashboard Viewed", "Report Created", "Export Completed", "Integration Configured", "Invite Sent",
    "Workflow Automated", "API Call",
)
OPEN_TICKET_STATUSES = frozenset({"new", "open", "pending", "hold"})
TOUCHPOINT_KINDS = frozenset({"qbr", "check-in"})
LIVE_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid", "trialing", "paused"})
DELINQUENT_SUBSCRIPTION = frozenset({"past_due", "unpaid"})
UNPAID_INVOICE = frozenset({"open", "uncollectible"})
CSAT_RATING_VALUE = {"good": 5.0, "bad": 1.0}
#: Objects landed as full snapshots every batch: the newest snapshot is the truth, not a per-record union.
#: (Incremental objects whose deletions matter land them as tombstones: see read_versions.)
SNAPSHOT_OBJECTS = registry.snapshot_objects()
#: Cursor object that marks a source as landed for a batch (Mixpanel's cursor is kept on "events").
SOURCE_CURSOR_OBJECTS = registry.cursor_objects()

CONTRACT_COLUMNS = ("account_id", "as_of_date", "segment", "plan", "lifecycle_stage", "tenure_days", "arr_cents",
                    "renewal_date", "owner_id")
STATUS_COLUMNS = ("blocked_dimensions", "carried_dimensions")
CONFIDENCE_PREFIX = "confidence_"
DIMENSION_SOURCES = "dimension_sources"
_NOT_SIGNALS = frozenset({*CONTRACT_COLUMNS, *STATUS_COLUMNS, DIMENSION_SOURCES})


# ---- point-in-time reads ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointInTime:
    """What a run for ``batch_date`` with data as of ``as_of`` may see."""

    batch_date: date
    as_of: datetime

    @property
    def as_of_ts(self) -> int:
        return int(self.as_of.timestamp())

    @property
    def last_event_day(self) -> date:
        """Last whole event day: the batch date, unless as-of falls earlier (the day is not over)."""
        return min(self.batch_date, (self.as_of - timedelta(seconds=1)).astimezone(UTC).date())

    def since(self, days: int) -> int:
        return self.as_of_ts - days * DAY_S


def _quarantined(conn: sa.Connection, source: str, obj: str, batch_date: date) -> set[tuple[str, date]]:
    q = Quarantine.__table__
    rows = conn.execute(sa.select(q.c.record_id, q.c.batch_date).distinct().where(
        q.c.source == source, q.c.object == obj, q.c.batch_date <= batch_date))
    return {(r[0], r[1]) for r in rows}


def read_versions(conn: sa.Connection, source: str, obj: str, pit: PointInTime,
                  since: datetime | None = None) -> list[dict]:
    """Vendor records as of ``pit``: newest landed version per record (snapshots: newest snapshot),
    stamped at or before as-of (and at or after ``since`` when given), not quarantined in its batch,
    and not a tombstone (``"archived": true``: deleted in the vendor by then)."""
    t = landing_table(source, obj)
    cond = [t.c.batch_date <= pit.batch_date,
            sa.or_(t.c.source_updated_at.is_(None), t.c.source_updated_at <= pit.as_of)]
    if since is not None:
        cond.append(sa.or_(t.c.source_updated_at.is_(None), t.c.source_updated_at >= since))
    if (source, obj) in SNAPSHOT_OBJECTS:
        latest = conn.execute(sa.select(sa.func.max(t.c.batch_date)).where(t.c.batch_date <= pit.batch_date)).scalar()
        if latest is None:
            return []
        query = sa.select(t.c.record_id, t.c.batch_date, t.c.payload).where(*cond, t.c.batch_date == latest)
    else:
        newest = (sa.select(t.c.record_id, sa.func.max(t.c.batch_date).label("newest")).where(*cond)
                  .group_by(t.c.record_id).subquery())
        query = sa.select(t.c.record_id, t.c.batch_date, t.c.payload).join(
            newest, sa.and_(t.c.record_id == newest.c.record_id, t.c.batch_date == newest.c.newest))
    bad = _quarantined(conn, source, obj, pit.batch_date)
    rows = conn.execute(query.order_by(t.c.record_id)).all()
    records = (json.loads(payload) for record_id, batch, payload in rows if (record_id, batch) not in bad)
    return [r for r in records if r.get("archived") is not True]


def _usage_rows(conn: sa.Connection, pit: PointInTime, first_day: date, columns: Sequence[str],
                only_nps: bool = False) -> pd.DataFrame:
    """Mixpanel company-day rows for [first_day, last_event_day]: per event day the newest batch is the
    truth (each batch re-lands a trailing window); rows quarantined in that batch are dropped."""
    u = MixpanelUsageDaily.__table__
    last_day = pit.last_event_day
    newest = (sa.select(u.c.event_date, sa.func.max(u.c.batch_date).label("newest"))
              .where(u.c.batch_date <= pit.batch_date, u.c.event_date >= first_day, u.c.event_date <= last_day)
              .group_by(u.c.event_date).subquery())
    query = (sa.select(u.c.company_id, u.c.event_date, u.c.batch_date, *(u.c[c] for c in columns))
             .join(newest, sa.and_(u.c.event_date == newest.c.event_date, u.c.batch_date == newest.c.newest))
             .order_by(u.c.event_date, u.c.company_id))
    if only_nps:
        query = query.where(u.c.nps_responses > 0)
    covered = conn.execute(sa.select(newest.c.event_date).order_by(newest.c.event_date)).scalars().all()
    frame = pd.DataFrame(conn.execute(query).all(), columns=["company_id", "event_date", "batch_date", *columns])
    frame.attrs["covered_days"] = list(covered)
    if frame.empty:
        return frame
    bad = _quarantined(conn, "mixpanel", "usage_daily", pit.batch_date)
    if bad:
        keys = zip(frame["company_id"] + ":" + frame["event_date"].map(date.isoformat), frame["batch_date"],
                   strict=True)
        frame = frame[[k not in bad for k in keys]].reset_index(drop=True)
        frame.attrs["covered_days"] = list(covered)
    return frame


# ---- source and dimension status --------------------------------------------------------------------------
@dataclass
class SourceStatus:
    source: str
    usable: bool
    reason: str


def source_statuses(conn: sa.Connection, batch_date: date) -> dict[str, SourceStatus]:
    """Per source: usable for this batch, or why not (blocked by the gate, not landed, never landed)."""
    c = SourceCursor.__table__
    landed: dict[str, set[date]] = {}
    for source, obj, batch in conn.execute(sa.select(c.c.source, c.c.object, c.c.batch_date)
                                           .where(c.c.batch_date <= batch_date)):
        if SOURCE_CURSOR_OBJECTS.get(source) == obj:
            landed.setdefault(source, set()).add(batch)
    r = QualityResult.__table__
    failures: dict[str, list[str]] = {}
    for source, suite, expectation, column, observed, details in conn.execute(
            sa.select(r.c.source, r.c.suite, r.c.expectation, r.c.column, r.c.observed_value, r.c.details)
            .where(r.c.batch_date == batch_date, r.c.severity == "critical", r.c.success.is_(False))
            .order_by(r.c.source, r.c.suite, r.c.expectation, r.c.id)):
        details = details if isinstance(details, Mapping) else json.loads(details or "{}")
        if details.get("scope") == "batch":
            failures.setdefault(source, []).append(
                f"{suite}: {expectation}{f'({column})' if column else ''} observed {observed}")
    out = {}
    for source in SOURCE_DIMENSIONS:
        if source not in landed:
            out[source] = SourceStatus(source, False, f"{source}: no data landed at or before {batch_date}")
        elif source in failures:
            out[source] = SourceStatus(source, False, f"{source} blocked by the quality gate for {batch_date}: "
                                       + "; ".join(dict.fromkeys(failures[source])))
        elif batch_date not in landed[source]:
            out[source] = SourceStatus(source, False, f"{source}: no batch landed for {batch_date} "
                                       f"(newest {max(landed[source])})")
        else:
            out[source] = SourceStatus(source, True, "")
    return out


def _dimension_reasons(model: ModelConfig, statuses: Mapping[str, SourceStatus]) -> dict[str, list[str]]:
    """Dimension -> why it cannot use this run's data (empty list: it can)."""
    reasons: dict[str, list[str]] = {dim: [] for dim in model.dimensions}
    for source, status in statuses.items():
        if not status.usable:
            for dim in SOURCE_DIMENSIONS[source]:
                if dim in reasons:
                    reasons[dim].append(status.reason)
    return reasons


# ---- building ----------------------------------------------------------------------------------------------
@dataclass
class _Inputs:
    """Flattened point-in-time frames, keyed to account ids."""

    accounts: pd.DataFrame
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    usage: pd.DataFrame | None = None
    nps: pd.DataFrame | None = None


def build_signals(engine: Engine, as_of: datetime, batch_date: date, model: ModelConfig, *,
                  feature_events: Sequence[str] = FEATURE_EVENTS) -> pd.DataFrame:
    """One row per active account in score_accounts' input contract, as of ``as_of`` for ``batch_date``."""
    as_of = as_of.astimezone(UTC) if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    pit = PointInTime(batch_date, as_of)
    with engine.connect() as conn:
        statuses = source_statuses(conn, batch_date)
        inputs = _read_inputs(conn, pit, statuses)
        frame = _contract_columns(inputs.accounts, pit, model)
        computed = _compute_signals(inputs, pit, feature_events)
        if set(computed) != COMPUTED_SIGNALS:
            raise RuntimeError(f"COMPUTED_SIGNALS is out of date: computed {sorted(set(computed))}")
        missing = [s for s in model.all_signal_ids() if s not in computed]
        if missing:  # models are checked at load; this is a model built without that check
            raise ValueError(f"model {model.version} uses signals no code computes: {', '.join(missing)}")
        for signal_id in model.all_signal_ids():
            frame[signal_id] = computed[signal_id].reindex(frame["account_id"]).to_numpy(dtype=float, na_value=np.nan)
        reasons = _dimension_reasons(model, statuses)
        prior = (_prior_rows(conn, frame["account_id"], batch_date, model.carry_forward.max_days)
                 if any(reasons.values()) else {})
    return _apply_dimension_status(frame, model, reasons, prior, batch_date)


def _read_inputs(conn: sa.Connection, pit: PointInTime, statuses: Mapping[str, SourceStatus]) -> _Inputs:
    companies = read_versions(conn, "hubspot", "companies", pit)
    accounts = flatten("hubspot", "companies", companies)
    accounts["zendesk_org"] = pd.array([_prop(c, "zendesk_organization_id") for c in companies], dtype="str")
    accounts["stripe_customer"] = pd.array([_prop(c, "stripe_customer_id") for c in companies], dtype="str")
    active = accounts["customer_status"].str.lower().eq("active").fillna(False) & accounts["company_id"].notna()
    accounts = accounts[active.to_numpy(dtype=bool)].sort_values("company_id", kind="stable").reset_index(drop=True)
    inputs = _Inputs(accounts)
    quarter = datetime.fromtimestamp(pit.since(2 * QUARTER_DAYS), UTC)
    wanted = {
        ("hubspot", "contacts"): None,
        ("hubspot", "deals"): datetime.fromtimestamp(pit.since(EXPANSION_DAYS), UTC),
        ("hubspot", "meetings"): datetime.fromtimestamp(pit.since(QBR_LOOKBACK_DAYS), UTC),
        ("zendesk", "tickets"): None,
        ("zendesk", "satisfaction_ratings"): quarter,
        ("stripe", "customers"): None,
        ("stripe", "subscriptions"): None,
        ("stripe", "invoices"): None,
    }
    for (source, obj), since in wanted.items():
        # An unusable source's dimensions are carried forward anyway: do not even read its data.
        records = read_versions(conn, source, obj, pit, since) if statuses[source].usable else []
        inputs.frames[f"{source}.{obj}"] = flatten(source, obj, records)
    if statuses["mixpanel"].usable:
        last = pit.last_event_day
        window_start = last - timedelta(days=max(2 * USAGE_WINDOW_DAYS, QUARTER_DAYS) - 1)
        inputs.usage = _usage_rows(conn, pit, window_start, ("active_users", "event_count", "logins",
                                                             "feature_counts", "csat_responses", "csat_sum"))
        inputs.nps = _usage_rows(conn, pit, last - timedelta(days=NPS_LOOKBACK_DAYS - 1), ("nps_latest",),
                                 only_nps=True)
    return inputs


def _prop(record: Mapping[str, Any], name: str) -> str | None:
    value = (record.get("properties") or {}).get(name)
    return None if value in (None, "") else str(value)


def _contract_columns(accounts: pd.DataFrame, pit: PointInTime, model: ModelConfig) -> pd.DataFrame:
    since = accounts["customer_since_ts"].fillna(accounts["created_ts"])
    tenure = ((pit.as_of_ts - since) // DAY_S).clip(lower=0).astype("Int64")
    stages = {int(t): model.stage_for(int(t)) for t in tenure.dropna().unique()}
    renewal = [date.fromisoformat(v) if isinstance(v, str) else None for v in accounts["renewal_date"]]
    return pd.DataFrame({
        "account_id": accounts["company_id"].astype(object).to_numpy(),
        "as_of_date": [pit.batch_date] * len(accounts),
        "segment": accounts["segment"].astype(object).where(accounts["segment"].notna(), None).to_numpy(),
        "plan": accounts["plan_tier"].astype(object).where(accounts["plan_tier"].notna(), None).to_numpy(),
        "lifecycle_stage": [stages.get(int(t)) if pd.notna(t) else None for t in tenure],
        "tenure_days": tenure.to_numpy(),
        "arr_cents": accounts["arr_cents"].astype("Int64").to_numpy(),
        "renewal_date": pd.Series(renewal, dtype=object).to_numpy(),
        "owner_id": accounts["owner_id"].astype(object).where(accounts["owner_id"].notna(), None).to_numpy(),
    })


# ---- signal computations -------------------------------------------------------------------------------------
Signals = dict[str, pd.Series]


#: Every signal id ``_compute_signals`` returns: a model using another one is refused at load
#: (``load_model_config(..., computable_signals=COMPUTED_SIGNALS)``), not scored as a column of NaN.
COMPUTED_SIGNALS: frozenset[str] = frozenset({
    "active_user_pct", "logins_per_user_week", "feature_breadth", "usage_trend_mom", "contract_coverage",
    "csm_touchpoints_qtr", "training_sessions_qtr", "qbr_attended", "executive_sponsor", "active_champion",
    "contacts_engaged", "departments_engaged", "expansion_12m", "open_tickets", "p1_tickets_90d",
    "complaint_ratio", "resolution_time_trend", "arr", "days_past_due", "payment_status_ok", "latest_nps",
    "csat_3m",
})


def _compute_signals(inputs: _Inputs, pit: PointInTime, feature_events: Sequence[str]) -> Signals:
    """Every computable signal as a float Series indexed by account id (sources without data give NaN)."""
    index = pd.Index(inputs.accounts["company_id"].astype(object), name="account_id")
    out: Signals = {}
    steps: list[Callable[[], Signals]] = [
        lambda: _usage_signals(inputs, index, pit, feature_events),
        lambda: _meeting_signals(inputs.frames["hubspot.meetings"], index, pit),
        lambda: _contact_signals(inputs, index),
        lambda: _deal_signals(inputs.frames["hubspot.deals"], index, pit),
        lambda: _ticket_signals(inputs, index, pit),
        lambda: _billing_signals(inputs, index, pit),
        lambda: _relationship_survey_signals(inputs, index, pit),
    ]
    for step in steps:
        out.update(step())
    return out


def _count(keys: pd.Series, mask: Any, index: pd.Index) -> pd.Series:
    """Rows per account where ``mask`` holds, 0 for accounts without any."""
    selected = keys[np.asarray(mask, dtype=bool)]
    return selected.value_counts().reindex(index, fill_value=0).astype(float)


def _flag(keys: pd.Series, mask: Any, index: pd.Index) -> pd.Series:
    return (_count(keys, mask, index) > 0).astype(float)


def _between(ts: pd.Series, start: int, end: int) -> np.ndarray:
    """start < ts <= end, nulls False."""
    return ((ts > start) & (ts <= end)).fillna(False).to_numpy(dtype=bool)


def _usage_signals(inputs: _Inputs, index: pd.Index, pit: PointInTime, feature_events: Sequence[str]) -> Signals:
    usage = inputs.usage
    covered = pd.Index(usage.attrs.get("covered_days", []) if usage is not None else [])
    names = ("active_user_pct", "logins_per_user_week", "feature_breadth", "usage_trend_mom", "contract_coverage")
    if usage is None or covered.empty:
        return {n: pd.Series(np.nan, index=index) for n in names}
    last = pit.last_event_day

    def window(days: int, offset: int = 0) -> tuple[pd.DataFrame, int]:
        hi = last - timedelta(days=offset)
        lo = hi - timedelta(days=days - 1)
        rows = usage[(usage["event_date"] >= lo) & (usage["event_date"] <= hi) & usage["company_id"].isin(index)]
        return rows, int(((covered >= lo) & (covered <= hi)).sum())

    def total(rows: pd.DataFrame, column: str) -> pd.Series:
        return rows.groupby("company_id", sort=True)[column].sum().reindex(index, fill_value=0).astype(float)

    seats = pd.Series(inputs.accounts["licensed_seats"].astype("Float64").to_numpy(dtype=float, na_value=np.nan),
                      index=index)
    seats = seats.where(seats > 0)
    recent, n_recent = window(USAGE_WINDOW_DAYS)
    enough = n_recent >= MIN_USAGE_COVERED_DAYS
    nan = pd.Series(np.nan, index=index)
    dau = total(recent, "active_users") / n_recent if enough else nan
    peak = recent.groupby("company_id", sort=True)["active_users"].max().reindex(index, fill_value=0).astype(float)
    out: Signals = {
        "active_user_pct": (dau / seats * 100.0).clip(upper=100.0),
        "contract_coverage": (peak / seats * 100.0).clip(upper=100.0) if enough else nan,
    }
    logins, n_logins = window(LOGIN_WINDOW_DAYS)
    if n_logins >= MIN_USAGE_COVERED_DAYS:
        dau28 = total(logins, "active_users") / n_logins
        per_week = total(logins, "logins") / (n_logins / 7.0)
        out["logins_per_user_week"] = (per_week / dau28.where(dau28 > 0)).fillna(0.0)
    else:
        out["logins_per_user_week"] = nan
    out["feature_breadth"] = _feature_breadth(recent, index, feature_events) if enough else nan
    previous, n_previous = window(USAGE_WINDOW_DAYS, USAGE_WINDOW_DAYS)
    if min(n_recent, n_previous) >= MIN_TREND_COVERED_DAYS:
        before = total(previous, "active_users") / n_previous
        now = total(recent, "active_users") / n_recent
        trend = (now / before.where(before > 0) - 1.0) * 100.0
        out["usage_trend_mom"] = trend.mask((before == 0) & (now == 0), 0.0)
    else:
        out["usage_trend_mom"] = nan
    return out


def _feature_breadth(rows: pd.DataFrame, index: pd.Index, feature_events: Sequence[str]) -> pd.Series:
    tracked = list(dict.fromkeys(feature_events))
    if not tracked:
        return pd.Series(np.nan, index=index)
    counts = pd.DataFrame.from_records(
        [c if isinstance(c, Mapping) else json.loads(c or "{}") for c in rows["feature_counts"]],
        columns=tracked, index=rows.index).reindex(columns=tracked)
    used = (counts.fillna(0) > 0).groupby(rows["company_id"].to_numpy(), sort=True).any()
    return (used.sum(axis=1) / len(tracked) * 100.0).reindex(index, fill_value=0.0).astype(float)


def _meeting_signals(meetings: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    kind = meetings["activity_type"].fillna(meetings["title"]).str.strip().str.lower().fillna("")
    outcome = meetings["outcome"].str.upper().fillna("")
    ts = meetings["meeting_ts"]
    keys = meetings["company_id"]
    completed = (outcome == "COMPLETED").to_numpy(dtype=bool)
    quarter = _between(ts, pit.since(QUARTER_DAYS), pit.as_of_ts)
    qbr = meetings[(kind == "qbr").to_numpy(dtype=bool) & outcome.isin(["COMPLETED", "NO_SHOW"]).to_numpy(dtype=bool)
                   & _between(ts, pit.since(QBR_LOOKBACK_DAYS), pit.as_of_ts)]
    latest = qbr.sort_values(["company_id", "meeting_ts", "record_id"], kind="stable").groupby("company_id").tail(1)
    attended = pd.Series((latest["outcome"].str.upper() == "COMPLETED").to_numpy(dtype=float),
                         index=latest["company_id"].astype(object).to_numpy())
    return {
        "csm_touchpoints_qtr": _count(keys, completed & quarter & kind.isin(TOUCHPOINT_KINDS).to_numpy(dtype=bool),
                                      index),
        "training_sessions_qtr": _count(keys, completed & quarter & (kind == "training").to_numpy(dtype=bool), index),
        "qbr_attended": attended.reindex(index, fill_value=0.0).astype(float),
    }


def _contact_signals(inputs: _Inputs, index: pd.Index) -> Signals:
    contacts = inputs.frames["hubspot.contacts"]
    current = contacts[~contacts["left_company"].fillna(False).to_numpy(dtype=bool)]
    role = current["role"].str.lower().fillna("")
    keys = current["company_id"]
    by_company = current.groupby(keys.astype(object).to_numpy(), sort=True)
    return {
        "executive_sponsor": _flag(keys, (role == "executive_sponsor").to_numpy(dtype=bool), index),
        "active_champion": _flag(keys, (role == "champion").to_numpy(dtype=bool), index),
        "contacts_engaged": by_company["contact_id"].nunique().reindex(index, fill_value=0).astype(float),
        "departments_engaged": by_company["department"].nunique().reindex(index, fill_value=0).astype(float),
    }


def _deal_signals(deals: pd.DataFrame, index: pd.Index, pit: PointInTime) -> Signals:
    expansion = (deals["deal_category"].str.lower().eq("expansion") & deals["deal_stage"].str.lower().eq("closedwon"))
    window = _between(deals["close_ts"], pit.since(EXPANSION_DAYS), pit.as_of_ts)
    return {"expansion_12m": _count(deals["company_id"], expansion.fillna(False).to_numpy(dtype=bool) & window, index)}


def _tickets_with_accounts(inputs: _Inputs) -> pd.DataFrame:
    """Tickets of known accounts (organization -> company through HubSpot's zendesk_organization_id)."""
    if "tickets_by_account" in inputs.frames:
        return inputs.frames["tickets_by_account"]
    orgs = inputs.accounts.dropna(subset=["zendesk_org"]).drop_duplicates("zendesk_org")
    owner = pd.Series(orgs["company_id"].astype(object).to_numpy(), index=orgs["zendesk_org"].astype(object).to_numpy())
    tickets = inputs.frames["zendesk.tickets"]
    account = tickets["organization_id"].astype("Int64").astype("str").astype(object).map(owner)
    tickets = tickets.assign(account_id=account)[account.notna().to_numpy()].reset_index(drop=True)
    inputs.frames["tickets_by_account"] = tickets
    return tickets


def _ticket_signals(inputs: _Inputs, index: pd.Index, pit: PointInTime) -> Signals:
    tickets = _tickets_with_accounts(inputs)
    keys = tickets["account_id"]
    seen = (tickets["created_ts"] <= pit.as_of_ts).fillna(False).to_numpy(dtype=bool)
    open_now = tickets["status"].str.lower().isin(OPEN_TICKET_STATUSES).to_numpy(dtype=bool) & seen
    recent = _between(tickets["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts)
    urgent = tickets["priority"].str.lower().eq("urgent").fillna(False).to_numpy(dtype=bool)
    tags = tickets["tags"].fillna("").str.lower()
    complaint = (tags.str.contains(r"(?:^|\s)(?:complaint|escalat)", regex=True)).to_numpy(dtype=bool)
    n_recent = _count(keys, recent, index)
    return {
        "open_tickets": _count(keys, open_now, index),
        "p1_tickets_90d": _count(keys, recent & urgent, index),
        "complaint_ratio": _count(keys, recent & complaint, index) / n_recent.where(n_recent > 0),
        "resolution_time_trend": _resolution_trend(tickets, index, pit),
    }


def _resolution_trend(tickets: pd.DataFrame, index: pd.Index, pit: PointInTime) -> pd.Series:
    minutes = tickets["full_resolution_minutes"].astype("Float64")
    solved = tickets[minutes.notna().to_numpy()]
    minutes = minutes[minutes.notna()].to_numpy(dtype=float)

    def median(start: int, end: int) -> pd.Series:
        mask = _between(solved["solved_ts"], start, end)
        frame = pd.DataFrame({"account_id": solved["account_id"].to_numpy()[mask], "m": minutes[mask]})
        return frame.groupby("account_id", sort=True)["m"].median().reindex(index)

    now = median(pit.since(QUARTER_DAYS), pit.as_of_ts)
    before = median(pit.since(2 * QUARTER_DAYS), pit.since(QUARTER_DAYS))
    return (now / before.where(before > 0) - 1.0) * 100.0


def _billing_signals(inputs: _Inputs, index: pd.Index, pit: PointInTime) -> Signals:
    customers = inputs.frames["stripe.customers"]
    owner = pd.Series(customers["hubspot_company_id"].astype(object).to_numpy(),
                      index=customers["customer_id"].astype(object).to_numpy())
    owner = owner[owner.notna() & ~owner.index.duplicated()]
    from_crm = inputs.accounts.dropna(subset=["stripe_customer"]).drop_duplicates("stripe_customer")
    crm = pd.Series(from_crm["company_id"].astype(object).to_numpy(),
                    index=from_crm["stripe_customer"].astype(object).to_numpy())
    owner = pd.concat([owner, crm[~crm.index.isin(owner.index)]])

    def account_of(frame: pd.DataFrame, fallback: str | None = None) -> pd.Series:
        acc = frame["customer_id"].astype(object).map(owner)
        if fallback is not None:
            acc = acc.fillna(frame[fallback].astype(object))
        return acc

    subs = inputs.frames["stripe.subscriptions"]
    subs = subs.assign(account_id=account_of(subs, "hubspot_company_id"))
    status = subs["status"].str.lower().fillna("")
    live = status.isin(LIVE_SUBSCRIPTION).to_numpy(dtype=bool)
    mrr = subs["mrr_cents"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    arr_frame = pd.DataFrame({"account_id": subs["account_id"].to_numpy(), "arr": np.where(live, mrr, 0.0) * 12 / 100})
    arr = arr_frame.groupby("account_id", sort=True)["arr"].sum(min_count=1).reindex(index)
    delinquent = _flag(subs["account_id"], status.isin(DELINQUENT_SUBSCRIPTION).to_numpy(dtype=bool), index)
    has_subs = _count(subs["account_id"], np.ones(len(subs), dtype=bool), index) > 0

    invoices = inputs.frames["stripe.invoices"]
    invoices = invoices.assign(account_id=account_of(invoices))
    keys = invoices["account_id"]
    unpaid = invoices["status"].str.lower().isin(UNPAID_INVOICE).to_numpy(dtype=bool)
    remaining = invoices["amount_remaining"].astype("Float64").fillna(1.0).to_numpy(dtype=float) > 0
    overdue_days = (pit.as_of_ts - invoices["due_ts"].astype("Float64")) // DAY_S
    overdue = unpaid & remaining & (overdue_days > 0).fillna(False).to_numpy(dtype=bool)
    days = pd.DataFrame({"account_id": keys.to_numpy()[overdue],
                         "days": overdue_days.to_numpy(dtype=float, na_value=np.nan)[overdue]})
    oldest = days.groupby("account_id", sort=True)["days"].max().reindex(index, fill_value=0.0).astype(float)
    # Trust a landed "open" only while the fresh subscription snapshot confirms the customer is behind.
    oldest = oldest.where(~has_subs | (delinquent > 0), 0.0)
    has_invoices = _count(keys, np.ones(len(invoices), dtype=bool), index) > 0
    recent = _between(invoices["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts)
    failed = recent & ((invoices["status"].str.lower().eq("uncollectible").fillna(False).to_numpy(dtype=bool))
                       | (invoices["attempt_count"].astype("Float64").fillna(0) > 1).to_numpy(dtype=bool))
    problem = (delinquent > 0) | (oldest > 0) | (_count(keys, failed, index) > 0)
    known = has_subs | has_invoices
    return {
        "arr": arr,
        "days_past_due": oldest.where(known),
        "payment_status_ok": (~problem).astype(float).where(known),
    }


def _relationship_survey_signals(inputs: _Inputs, index: pd.Index, pit: PointInTime) -> Signals:
    nps = inputs.nps
    if nps is not None and not nps.empty:
        latest = nps[nps["company_id"].isin(index)].sort_values(["company_id", "event_date"], kind="stable")
        latest_nps = latest.groupby("company_id", sort=True)["nps_latest"].last().reindex(index).astype(float)
    else:
        latest_nps = pd.Series(np.nan, index=index)

    usage = inputs.usage
    first_day = pit.last_event_day - timedelta(days=QUARTER_DAYS - 1)
    sums = pd.Series(0.0, index=index)
    counts = pd.Series(0.0, index=index)
    if usage is not None and not usage.empty:
        rows = usage[(usage["event_date"] >= first_day) & usage["company_id"].isin(index)]
        grouped = rows.groupby("company_id", sort=True)
        sums = sums.add(grouped["csat_sum"].sum().astype(float), fill_value=0.0).reindex(index)
        counts = counts.add(grouped["csat_responses"].sum().astype(float), fill_value=0.0).reindex(index)
    ratings = inputs.frames["zendesk.satisfaction_ratings"]
    tickets = _tickets_with_accounts(inputs)
    owner = pd.Series(tickets["account_id"].to_numpy(), index=tickets["ticket_id"].astype("Int64").to_numpy())
    owner = owner[~owner.index.duplicated()]
    value = ratings["score"].str.lower().map(CSAT_RATING_VALUE).astype(float)
    mask = _between(ratings["created_ts"], pit.since(QUARTER_DAYS), pit.as_of_ts) & value.notna().to_numpy()
    rated = pd.DataFrame({"account_id": ratings["ticket_id"].astype("Int64").map(owner).to_numpy()[mask],
                          "value": value.to_numpy()[mask]}).dropna(subset=["account_id"])
    by_account = rated.groupby("account_id", sort=True)["value"]
    sums = sums.add(by_account.sum(), fill_value=0.0).reindex(index)
    counts = counts.add(by_account.count().astype(float), fill_value=0.0).reindex(index)
    return {"latest_nps": latest_nps, "csat_3m": sums / counts.where(counts > 0)}


# ---- blocked dimensions: carry forward --------------------------------------------------------------------
def _prior_rows(conn: sa.Connection, account_ids: Iterable[str], batch_date: date,
                max_days: int) -> dict[str, tuple]:
    """Newest earlier account_signals row per account within the carry-forward horizon."""
    t = AccountSignals.__table__
    start = batch_date - timedelta(days=max_days)
    newest = (sa.select(t.c.account_id, sa.func.max(t.c.as_of_date).label("newest"))
              .where(t.c.as_of_date < batch_date, t.c.as_of_date >= start).group_by(t.c.account_id).subquery())
    query = sa.select(t.c.account_id, t.c.as_of_date, t.c.signals, t.c.dimension_sources).join(
        newest, sa.and_(t.c.account_id == newest.c.account_id, t.c.as_of_date == newest.c.newest))
    wanted = set(account_ids)
    return {r[0]: (r[1], _json(r[2]), _json(r[3])) for r in conn.execute(query) if r[0] in wanted}


def _json(value: Any) -> dict:
    if isinstance(value, Mapping):
        return dict(value)
    return json.loads(value) if value else {}


def _good_value(prior: tuple | None, dim: str) -> tuple[date, dict] | None:
    """(date of the last good value, signals of that row) for a dimension, if the prior row has one."""
    if prior is None:
        return None
    as_of_date, signals, sources = prior
    entry = sources.get(dim) or {}
    if entry.get("status") == "ok":
        return as_of_date, signals
    if entry.get("status") == "carried_forward" and entry.get("from"):
        return date.fromisoformat(entry["from"]), signals
    return None


def _apply_dimension_status(frame: pd.DataFrame, model: ModelConfig, reasons: Mapping[str, list[str]],
                            prior: Mapping[str, tuple], batch_date: date) -> pd.DataFrame:
    """Carry blocked dimensions forward (or leave them NaN) and add the status/confidence columns."""
    carry = model.carry_forward
    n = len(frame)
    blocked: list[list[str]] = [[] for _ in range(n)]
    carried: list[list[str]] = [[] for _ in range(n)]
    sources: list[dict] = [{} for _ in range(n)]
    confidence: dict[str, np.ndarray] = {}
    ids = frame["account_id"].tolist()
    for dim, spec in model.dimensions.items():
        fed_by = sorted(s for s, dims in SOURCE_DIMENSIONS.items() if dim in dims)
        conf = np.ones(n)
        why = reasons.get(dim) or []
        if not why:
            ok = {"status": "ok", "confidence": 1.0,
                  "reason": f"fresh from {', '.join(fed_by)}" if fed_by else "no source mapped in the policy"}
            for row in sources:
                row[dim] = dict(ok)
            confidence[dim] = conf
            continue
        reason = "; ".join(why)
        signal_ids = list(spec.signals)
        columns = {s: frame[s].to_numpy(dtype=float, copy=True) for s in signal_ids}
        for i, account in enumerate(ids):
            good = _good_value(prior.get(account), dim)
            age = (batch_date - good[0]).days if good else None
            if good is None or age is None or not 0 < age <= carry.max_days:
                for s in signal_ids:
                    columns[s][i] = np.nan
                conf[i] = 0.0
                blocked[i].append(dim)
                sources[i][dim] = {"status": "missing", "confidence": 0.0,
                                   "reason": f"{reason}; no good value in the last {carry.max_days} days"}
                continue
            weight = carry.confidence(age)
            for s in signal_ids:
                value = good[1].get(s)
                columns[s][i] = np.nan if value is None else float(value)
            conf[i] = weight
            carried[i].append(dim)
            sources[i][dim] = {"status": "carried_forward", "confidence": weight, "from": good[0].isoformat(),
                               "reason": f"{reason}; carried forward from {good[0].isoformat()}"}
        for s, values in columns.items():
            frame[s] = values
        confidence[dim] = conf
    frame["blocked_dimensions"] = blocked
    frame["carried_dimensions"] = carried
    for dim in model.dimensions:
        frame[CONFIDENCE_PREFIX + dim] = confidence[dim]
    frame[DIMENSION_SOURCES] = sources
    return frame.sort_values("account_id", kind="stable").reset_index(drop=True)


# ---- storing ------------------------------------------------------------------------------------------------
def signal_columns(frame: pd.DataFrame) -> list[str]:
    """The signal columns of a build_signals frame (everything that is not contract/status/confidence)."""
    return [c for c in frame.columns if c not in _NOT_SIGNALS and not str(c).startswith(CONFIDENCE_PREFIX)]


def store_signals(engine: Engine, frame: pd.DataFrame) -> int:
    """Upsert the frame into account_signals in one transaction (rerunning a date rewrites its rows)."""
    if frame.empty:
        return 0
    signal_ids = signal_columns(frame)
    values = frame[signal_ids].to_numpy(dtype=float, na_value=np.nan)
    built_at = utcnow()
    rows = []
    for i, record in enumerate(frame[list(CONTRACT_COLUMNS) + [DIMENSION_SOURCES]].itertuples(index=False)):
        row = dict(zip((*CONTRACT_COLUMNS, DIMENSION_SOURCES), record, strict=True))
        row["signals"] = {s: (None if np.isnan(v) else float(v)) for s, v in zip(signal_ids, values[i], strict=True)}
        row["built_at"] = built_at
        rows.append(row)
    with engine.begin() as conn:
        bulk_upsert(conn, AccountSignals, rows, ["account_id", "as_of_date"])
    return len(rows)


def load_signals(engine: Engine, as_of_date: date) -> pd.DataFrame:
    """A stored build back in the scoring input shape (the score task reads what the signals task wrote)."""
    table = AccountSignals.__table__
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.as_of_date == as_of_date)
                            .order_by(table.c.account_id)).mappings().all()
    if not rows:
        raise LookupError(f"no account_signals stored for {as_of_date}; run the signals task first")
    frame = pd.DataFrame([{c: row[c] for c in CONTRACT_COLUMNS} for row in rows])
    signals = pd.DataFrame([_json(row["signals"]) for row in rows], dtype=float)
    frame = pd.concat([frame, signals], axis=1)
    statuses = [_json(row[DIMENSION_SOURCES]) for row in rows]
    frame["blocked_dimensions"] = [sorted(d for d, s in st.items() if s.get("status") == "missing") for st in statuses]
    frame["carried_dimensions"] = [sorted(d for d, s in st.items() if s.get("status") == "carried_forward")
                                   for st in statuses]
    for dim in sorted({d for st in statuses for d in st}):
        frame[CONFIDENCE_PREFIX + dim] = [float(st.get(dim, {}).get("confidence", 1.0)) for st in statuses]
    frame[DIMENSION_SOURCES] = statuses
    return frame
