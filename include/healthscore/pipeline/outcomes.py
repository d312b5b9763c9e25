"""The daily outcomes task: renewal outcomes from the landed CRM deals and Stripe subscriptions.

Read -> ``healthscore.evaluation.outcomes`` -> write, in one transaction per batch:

1. the batch's subscription snapshot (point-in-time, quarantined records left out) is compared with each
   subscription's previous state; changed states are logged in ``billing_subscription_states`` at the batch;
2. billing events (consecutive logged states) and CRM events (the batch's deals snapshot) are reconciled
   into ``renewal_outcomes``.

Idempotent: a rerun of a batch deletes and re-derives its own state rows (the same, from the same landed
data) and writes the same records; a record last written by a *later* batch is left as it is, so rerunning
an old date never rolls the table back. Backfills in date order end where daily runs end.
"""

from __future__ import annotations

import logging
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import PointInTime
from healthscore.evaluation.outcomes import (
    RECORD_COLUMNS,
    STATE_COLUMNS,
    billing_events,
    changed_states,
    crm_events,
    reconcile,
    subscription_states,
)
from healthscore.pipeline.extract import Batch
from healthscore.sources.schemas import flatten
from healthscore.warehouse.models import BillingSubscriptionState, RenewalOutcome
from healthscore.warehouse.pointintime import versions as read_versions
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)
KEY = ("account_id", "renewal_date", "kind")


def _states(conn: sa.Connection, batch_date: date, *, before: bool) -> pd.DataFrame:
    """Latest logged state per subscription strictly before (or at or before) ``batch_date``."""
    s = BillingSubscriptionState.__table__
    bound = s.c.batch_date < batch_date if before else s.c.batch_date <= batch_date
    newest = (sa.select(s.c.subscription_id, sa.func.max(s.c.batch_date).label("newest")).where(bound)
              .group_by(s.c.subscription_id).subquery())
    query = sa.select(*(s.c[c] for c in STATE_COLUMNS), s.c.batch_date).join(
        newest, sa.and_(s.c.subscription_id == newest.c.subscription_id, s.c.batch_date == newest.c.newest))
    return pd.DataFrame(conn.execute(query.order_by(s.c.subscription_id)).mappings().all(),
                        columns=[*STATE_COLUMNS, "batch_date"])


def record_outcomes(engine: Engine, batch: Batch) -> dict:
    """Log the batch's billing state changes and (re)write the renewal outcomes visible as of the batch."""
    pit = PointInTime(batch.batch_date, batch.as_of)
    s = BillingSubscriptionState.__table__
    o = RenewalOutcome.__table__
    # Read, then write: on SQLite take the write lock at BEGIN (IMMEDIATE), so a writer running beside this task
    # (build_signals, in Airflow or the bootstrap's workers) makes it wait instead of failing "database is locked".
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        subs = flatten("stripe", "subscriptions", read_versions(conn, "stripe", "subscriptions", pit))
        current = subscription_states(subs)
        conn.execute(sa.delete(s).where(s.c.batch_date == batch.batch_date))
        changed = changed_states(current, _states(conn, batch.batch_date, before=True))
        if not changed.empty:
            rows = changed.assign(batch_date=batch.batch_date).astype(object)
            conn.execute(sa.insert(s), rows.where(rows.notna(), None).to_dict("records"))
        history = pd.DataFrame(conn.execute(sa.select(*(s.c[c] for c in STATE_COLUMNS), s.c.batch_date)
                                            .where(s.c.batch_date <= batch.batch_date)).mappings().all(),
                               columns=[*STATE_COLUMNS, "batch_date"])
        deals = flatten("hubspot", "deals", read_versions(conn, "hubspot", "deals", pit))
        records = reconcile(crm_events(deals), billing_events(history),
                            _states(conn, batch.batch_date, before=False))
        written, kept = _write(conn, o, records, batch.batch_date)
    summary = {"batch_date": str(batch.batch_date), "state_changes": len(changed), "records": len(records),
               "written": written, "kept_newer": kept,
               "by_outcome": records.loc[records["kind"] == "renewal", "outcome"].value_counts().to_dict(),
               "by_agreement": records.loc[records["kind"] == "renewal", "agreement"].value_counts().to_dict()}
    log.info("renewal outcomes as of %s: %s", batch.batch_date, summary)
    return summary


def _write(conn: sa.Connection, o: sa.Table, records: pd.DataFrame, batch_date: date) -> tuple[int, int]:
    existing = {tuple(r[:3]): (r[3], r[4]) for r in conn.execute(
        sa.select(o.c.account_id, o.c.renewal_date, o.c.kind, o.c.first_batch_date, o.c.as_of_batch_date))}
    rows, seen, kept = [], set(), 0
    for rec in records.astype(object).where(records.notna(), None).to_dict("records"):
        key = tuple(rec[c] for c in KEY)
        seen.add(key)
        first, as_of = existing.get(key, (batch_date, batch_date))
        if as_of > batch_date:  # a later batch wrote it: this older view must not replace it
            kept += 1
            continue
        rows.append({**{c: rec[c] for c in RECORD_COLUMNS}, "first_batch_date": min(first, batch_date),
                     "as_of_batch_date": batch_date})
    gone = [k for k, (_, as_of) in existing.items() if k not in seen and as_of <= batch_date]
    for account_id, renewal_date, kind in gone:  # evidence no longer there as of this batch
        conn.execute(sa.delete(o).where(o.c.account_id == account_id, o.c.renewal_date == renewal_date,
                                        o.c.kind == kind))
    if rows:
        bulk_upsert(conn, o, rows, KEY)
    return len(rows), kept
