"""Point-in-time account signals: read -> compute -> write, one row per account for scoring.

``build_signals(engine, as_of, batch_date, model)`` reads only what a run on ``batch_date`` could have
seen, through ``healthscore.warehouse.pointintime``: landed batches with ``batch_date <=`` the batch date,
each record's newest such version whose source timestamp is at or before ``as_of`` (full-snapshot objects:
the newest snapshot), minus records the quality gate quarantined in the batch that landed that version.
Rebuilding a past date therefore gives the same rows whatever landed later (rows are sorted by
``account_id``; every reduction runs over inputs in a fixed order).

Accounts are the HubSpot companies whose ``customer_status`` is ``active`` in that version; ``account_id``
is the HubSpot id. The roster and contract columns come from the accepted HubSpot versions even when
HubSpot is blocked. The computations (``healthscore.signals``, one module per source) and the carry-forward
of dimensions whose sources cannot be used (``healthscore.signals.carry``) are pure; this module only
reads their inputs, calls them, and stores the result. A batch that landed but was never validated counts
as usable (nothing says it is bad).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import PointInTime
from healthscore.config import ModelConfig
from healthscore.quality.policy import SOURCE_DIMENSIONS
from healthscore.signals import FEATURE_EVENTS, SOURCE_SIGNALS, SignalInputs, combine_parts, hubspot, mixpanel
from healthscore.signals.carry import (
    CONFIDENCE_PREFIX,
    CONTRACT_COLUMNS,
    DIMENSION_SOURCES,
    PriorRow,
    SourceStatus,
    apply_dimension_status,
    as_dict,
    dimension_reasons,
    signal_columns,
)
from healthscore.signals.common import (
    EXPANSION_DAYS,
    NPS_LOOKBACK_DAYS,
    QBR_LOOKBACK_DAYS,
    QUARTER_DAYS,
    USAGE_WINDOW_DAYS,
)
from healthscore.sources import registry
from healthscore.sources.schemas import flatten
from healthscore.warehouse import pointintime
from healthscore.warehouse.models import AccountSignals, QualityResult, SourceCursor
from healthscore.warehouse.types import utcnow
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

#: Every signal id the computations return: the registry's (each source's ``signals``). A model using another
#: one is refused at load (``load_model_config(..., computable_signals=COMPUTED_SIGNALS)``).
COMPUTED_SIGNALS: frozenset[str] = registry.signal_ids()
#: What the signals read of each source object besides the companies: records stamped since (days before as-of).
READS: dict[tuple[str, str], int | None] = {
    ("hubspot", "contacts"): None,
    ("hubspot", "deals"): EXPANSION_DAYS,
    ("hubspot", "meetings"): QBR_LOOKBACK_DAYS,
    ("zendesk", "tickets"): None,
    ("zendesk", "satisfaction_ratings"): 2 * QUARTER_DAYS,
    ("stripe", "customers"): None,
    ("stripe", "subscriptions"): None,
    ("stripe", "invoices"): None,
}
#: Records parsed at once per object read (Stripe invoices are ~17 KB each as Python objects).
READ_CHUNK = 5000
USAGE_COLUMNS = ("active_users", "event_count", "logins", "feature_counts", "csat_responses", "csat_sum")


# ---- source status ----------------------------------------------------------------------------------------
def source_statuses(conn: sa.Connection, batch_date: date) -> dict[str, SourceStatus]:
    """Per source: usable for this batch, or why not (blocked by the gate, not landed, never landed)."""
    c = SourceCursor.__table__
    landed: dict[str, tuple[bool, date]] = {}  # source -> (landed this batch, newest batch at or before it)
    for source, obj in registry.cursor_objects().items():  # the object whose cursor marks a source landed
        mine = (c.c.source == source, c.c.object == obj)
        newest = conn.execute(sa.select(sa.func.max(c.c.batch_date)).where(*mine, c.c.batch_date <= batch_date)).scalar()
        if newest is not None:
            landed[source] = (newest == batch_date, newest)
    r = QualityResult.__table__
    failures: dict[str, list[str]] = {}
    for source, suite, expectation, column, observed, details in conn.execute(
            sa.select(r.c.source, r.c.suite, r.c.expectation, r.c.column, r.c.observed_value, r.c.details)
            .where(r.c.batch_date == batch_date, r.c.severity == "critical", r.c.success.is_(False))
            .order_by(r.c.source, r.c.suite, r.c.expectation, r.c.id)):
        details = as_dict(details)
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
        elif not landed[source][0]:
            out[source] = SourceStatus(source, False, f"{source}: no batch landed for {batch_date} "
                                       f"(newest {landed[source][1]})")
        else:
            out[source] = SourceStatus(source, True, "")
    return out



# ---- read -> compute -> (carry forward) ---------------------------------------------------------------------
def build_signals(engine: Engine, as_of: datetime, batch_date: date, model: ModelConfig, *,
                  feature_events: Sequence[str] = FEATURE_EVENTS) -> pd.DataFrame:
    """One row per active account in score_accounts' input contract, as of ``as_of`` for ``batch_date``.

    Memory: the sources are read and reduced one after another (``SOURCE_SIGNALS``), each object's records
    streamed and flattened chunk by chunk (``read_frame``), so what is held at once is one source's typed
    frames and the per-account results, never every landed payload of every source.
    """
    pit = PointInTime.of(batch_date, as_of)
    with engine.connect() as conn:
        statuses = source_statuses(conn, batch_date)
        accounts = read_accounts(conn, pit)
        frame = hubspot.contract_columns(accounts, pit, model)
        parts = [reduce(read_source(conn, pit, statuses, accounts, source, feature_events), pit, feature_events)
                 for source, reduce in SOURCE_SIGNALS.items()]
        computed = combine_parts(SignalInputs(accounts).index, parts)
        if set(computed) != COMPUTED_SIGNALS:
            raise RuntimeError(f"the registry's signals {sorted(COMPUTED_SIGNALS)} are not what compute_signals "
                               f"returns: {sorted(set(computed))}")
        missing = [s for s in model.all_signal_ids() if s not in computed]
        if missing:  # models are checked at load; this is a model built without that check
            raise ValueError(f"model {model.version} uses signals no code computes: {', '.join(missing)}")
        for signal_id in model.all_signal_ids():
            frame[signal_id] = computed[signal_id].reindex(frame["account_id"]).to_numpy(dtype=float, na_value=np.nan)
        reasons = dimension_reasons(model, statuses, SOURCE_DIMENSIONS)
        prior = (_prior_rows(conn, frame["account_id"], batch_date, model.carry_forward.max_days)
                 if any(reasons.values()) else {})
    return apply_dimension_status(frame, model, reasons, prior, batch_date, SOURCE_DIMENSIONS)


def read_accounts(conn: sa.Connection, pit: PointInTime) -> pd.DataFrame:
    """The active HubSpot companies as of ``pit`` (``hubspot.active_accounts``) with ``zendesk_org`` and
    ``stripe_customer``, read whatever HubSpot's status (the roster and contract columns come from them)."""
    return hubspot.active_accounts(read_frame(conn, "hubspot", "companies", pit, with_columns=_account_links))


def _account_links(records: list[dict], frame: pd.DataFrame) -> None:
    frame["zendesk_org"] = pd.array([_prop(c, "zendesk_organization_id") for c in records], dtype="str")
    frame["stripe_customer"] = pd.array([_prop(c, "stripe_customer_id") for c in records], dtype="str")


def read_source(conn: sa.Connection, pit: PointInTime, statuses: Mapping[str, SourceStatus],
                accounts: pd.DataFrame, source: str,
                feature_events: Sequence[str] = FEATURE_EVENTS) -> SignalInputs:
    """One source's point-in-time frames (``READS``; Mixpanel: the usage window reduced day by day to
    ``UsageTotals`` as it is read, and the NPS rows), what its ``SOURCE_SIGNALS`` reduction takes. An unusable
    source's objects read as empty: its dimensions are carried forward anyway."""
    inputs = SignalInputs(accounts)
    usable = statuses[source].usable
    for (name, obj), days in READS.items():
        if name != source:
            continue
        since = None if days is None else datetime.fromtimestamp(pit.since(days), UTC)
        inputs.frames[f"{source}.{obj}"] = (read_frame(conn, source, obj, pit, since) if usable
                                            else flatten(source, obj, []))
    if source == "mixpanel" and usable:
        last = pit.last_event_day
        window_start = last - timedelta(days=max(2 * USAGE_WINDOW_DAYS, QUARTER_DAYS) - 1)
        covered, days = pointintime.iter_usage_days(conn, pit, window_start, USAGE_COLUMNS)
        usage = mixpanel.UsageTotals(inputs.index, covered, pit, list(dict.fromkeys(feature_events)))
        for rows in days:  # one covered day's company rows at a time
            usage.update(rows)
        inputs.usage = usage
        inputs.nps = pointintime.usage_rows(conn, pit, last - timedelta(days=NPS_LOOKBACK_DAYS - 1), ("nps_latest",),
                                            only_nps=True)
    return inputs


def read_frame(conn: sa.Connection, source: str, obj: str, pit: PointInTime, since: datetime | None = None, *,
               with_columns: Callable[[list[dict], pd.DataFrame], None] | None = None,
               chunk_size: int = READ_CHUNK) -> pd.DataFrame:
    """``flatten(source, obj, pointintime.versions(...))``, the same frame, built chunk by chunk from the
    streamed records (``pointintime.iter_versions``): only one chunk of parsed payloads is alive at a time.
    ``with_columns(records, frame)`` adds columns to each chunk's frame from that chunk's records."""
    parts = []
    for records in pointintime.iter_versions(conn, source, obj, pit, since, chunk_size=chunk_size):
        part = flatten(source, obj, records)
        if with_columns is not None:
            with_columns(records, part)
        parts.append(part)
        del records
    if not parts:
        part = flatten(source, obj, [])
        if with_columns is not None:
            with_columns([], part)
        return part
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _prop(record: Mapping[str, Any], name: str) -> str | None:
    value = (record.get("properties") or {}).get(name)
    return None if value in (None, "") else str(value)


def _prior_rows(conn: sa.Connection, account_ids: Iterable[str], batch_date: date,
                max_days: int) -> dict[str, PriorRow]:
    """Newest earlier account_signals row per account within the carry-forward horizon."""
    t = AccountSignals.__table__
    start = batch_date - timedelta(days=max_days)
    newest = (sa.select(t.c.account_id, sa.func.max(t.c.as_of_date).label("newest"))
              .where(t.c.as_of_date < batch_date, t.c.as_of_date >= start).group_by(t.c.account_id).subquery())
    query = sa.select(t.c.account_id, t.c.as_of_date, t.c.signals, t.c.dimension_sources).join(
        newest, sa.and_(t.c.account_id == newest.c.account_id, t.c.as_of_date == newest.c.newest))
    wanted = set(account_ids)
    return {r[0]: (r[1], as_dict(r[2]), as_dict(r[3])) for r in conn.execute(query) if r[0] in wanted}



# ---- storing ------------------------------------------------------------------------------------------------
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
    return signals_frame(rows)


def load_signal_history(engine: Engine, first: date, last: date, accounts: list[str] | None = None) -> pd.DataFrame:
    """Every stored build of ``accounts`` (all when None) dated ``first``..``last``, in the scoring input shape.

    What a backtest replays: each row is what the signals task stored for that as-of date, nothing later.
    """
    table = AccountSignals.__table__
    chunks = [None] if accounts is None else [accounts[i:i + 500] for i in range(0, len(accounts), 500)]
    rows: list = []
    with engine.connect() as conn:
        for chunk in chunks:
            query = sa.select(table).where(table.c.as_of_date >= first, table.c.as_of_date <= last)
            if chunk is not None:
                if not chunk:
                    continue
                query = query.where(table.c.account_id.in_(chunk))
            rows.extend(conn.execute(query.order_by(table.c.as_of_date, table.c.account_id)).mappings().all())
    if not rows:
        return pd.DataFrame(columns=[*CONTRACT_COLUMNS, "blocked_dimensions", "carried_dimensions"])
    return signals_frame(rows)


def signals_frame(rows: list) -> pd.DataFrame:
    """``account_signals`` rows (mappings) as the scoring input frame."""
    frame = pd.DataFrame([{c: row[c] for c in CONTRACT_COLUMNS} for row in rows])
    signals = pd.DataFrame([as_dict(row["signals"]) for row in rows], dtype=float)
    frame = pd.concat([frame, signals], axis=1)
    statuses = [as_dict(row[DIMENSION_SOURCES]) for row in rows]
    frame["blocked_dimensions"] = [sorted(d for d, s in st.items() if s.get("status") == "missing") for st in statuses]
    frame["carried_dimensions"] = [sorted(d for d, s in st.items() if s.get("status") == "carried_forward")
                                   for st in statuses]
    for dim in sorted({d for st in statuses for d in st}):
        frame[CONFIDENCE_PREFIX + dim] = [float(st.get(dim, {}).get("confidence", 1.0)) for st in statuses]
    frame[DIMENSION_SOURCES] = statuses
    return frame
