"""Validate one source's landed batch with its GX suites and store what the gate decided.

Results, quarantine and reconciliation are replaced per (batch, source, object) in one transaction,
so a rerun leaves one consistent verdict. Reference sets (known companies, owners, customers...) are
read point-in-time (``warehouse.pointintime``): only what had landed at or before the batch date.

The validate task of a source is the one gate of every object of it: objects validated while they stream
(Mixpanel events, never landed raw) have their verdict stored by the extract task and read back here
(``stored_outcome``), so blocking, the alert and ``HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL`` are the same for
all (``enforce``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.settings import Settings
from healthscore.sources import registry
from healthscore.warehouse import pointintime
from healthscore.warehouse.models import (
    BatchReconciliation,
    MixpanelUsageDaily,
    QualityResult,
    Quarantine,
    landing_table,
)
from healthscore.warehouse.upsert import bulk_upsert

if TYPE_CHECKING:
    from healthscore.quality.gate import ValidationContext, ValidationOutcome

log = logging.getLogger(__name__)



@dataclass
class QualityPaths:
    """Where the gate writes (Data Docs, alert outbox) and how large the Data Docs index is."""

    data_docs_dir: Path
    outbox_path: Path
    data_docs_index_limit: int = field(default_factory=lambda: Settings().data_docs_index_limit)

    @classmethod
    def under(cls, data_dir: Path, data_docs_index_limit: int | None = None) -> QualityPaths:
        from healthscore.quality.notify import default_outbox_path

        limit = {} if data_docs_index_limit is None else {"data_docs_index_limit": data_docs_index_limit}
        return cls(data_dir / "data_docs", default_outbox_path(data_dir), **limit)

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityPaths:
        return cls.under(settings.data_dir, settings.data_docs_index_limit)


def landed_records(conn: sa.Connection, source: str, obj: str, batch_date: date) -> list[dict]:
    table = landing_table(source, obj)
    rows = conn.execute(sa.select(table.c.payload).where(table.c.batch_date == batch_date)
                        .order_by(table.c.record_id)).scalars()
    return [json.loads(payload) for payload in rows]


def build_context(engine: Engine, source: str, batch: Batch, paths: QualityPaths,
                  fail_on_critical: bool = False, publish_docs: bool = True) -> ValidationContext:
    from healthscore.quality.gate import ValidationContext

    with engine.connect() as conn:
        # Keep only the two ids per company: 100k full payloads would be a few hundred MiB for nothing.
        company_ids, organizations = set(), {}
        for company in pointintime.latest(conn, "hubspot", "companies", batch.batch_date):
            company_ids.add(company["id"])
            if organization := (company.get("properties") or {}).get("zendesk_organization_id"):
                organizations[str(organization)] = company["id"]
        return ValidationContext(
            run_id=batch.run_id, batch_date=batch.batch_date, data_interval_end=batch.as_of,
            data_docs_dir=paths.data_docs_dir, data_docs_index_limit=paths.data_docs_index_limit,
            known_company_ids=company_ids,
            known_owner_ids=pointintime.record_ids(conn, "hubspot", "owners", batch.batch_date),
            known_organization_ids=organizations,
            known_customer_ids=pointintime.record_ids(conn, "stripe", "customers", batch.batch_date),
            known_ticket_ids=pointintime.record_ids(conn, "zendesk", "tickets", batch.batch_date),
            volume_history={f"{source}.{obj}": pointintime.batch_volumes(conn, source, obj, batch.batch_date)
                            for obj in registry.source(source).validated_objects},
            fail_on_critical=fail_on_critical, publish_docs=publish_docs,
        )


def _usage_frame(conn: sa.Connection, batch: Batch) -> Any:
    """Today's usage aggregate joined to licensed seats from the CRM (seats >= active users)."""
    from healthscore.sources.schemas import flatten

    table = MixpanelUsageDaily.__table__
    rows = conn.execute(sa.select(table.c.company_id, table.c.event_date, table.c.active_users, table.c.event_count)
                        .where(table.c.batch_date == batch.batch_date, table.c.event_date == batch.batch_date)
                        .order_by(table.c.company_id)).mappings().all()
    seats = {c["id"]: (c.get("properties") or {}).get("licensed_seats")
             for c in pointintime.latest(conn, "hubspot", "companies", batch.batch_date)}
    return flatten("mixpanel", "usage_daily", [
        {**row, "event_date": row["event_date"].isoformat(), "licensed_seats": seats.get(row["company_id"])}
        for row in rows])


def store_outcome(conn: sa.Connection, outcome: ValidationOutcome, payloads: dict[str, str]) -> None:
    """Replace this batch's verdict for one object (results, quarantine, reconciliation)."""
    key = {"batch_date": outcome.batch_date, "source": outcome.source}
    for model in (QualityResult, Quarantine):
        table = model.__table__
        conn.execute(sa.delete(table).where(table.c.batch_date == outcome.batch_date,
                                            table.c.source == outcome.source,
                                            _object_filter(table, outcome.obj, outcome.suite)))
    if outcome.results:
        conn.execute(sa.insert(QualityResult), _result_rows(outcome))
    if outcome.quarantine:
        conn.execute(sa.insert(Quarantine), [
            {**key, "run_id": outcome.run_id, "object": outcome.obj, "record_id": q["record_id"],
             "expectation": q["expectation"], "reason": q["reason"], "payload": payloads.get(q["record_id"])}
            for q in outcome.quarantine])
    rec = outcome.reconciliation
    bulk_upsert(conn, BatchReconciliation, [{**key, "object": outcome.obj, "run_id": outcome.run_id,
                                            "landed": rec["landed"], "accepted": rec["accepted"],
                                            "quarantined": rec["quarantined"],
                                            "out_of_scope": rec.get("out_of_scope", 0)}],
                ["batch_date", "source", "object"])


def _object_filter(table: sa.Table, obj: str, suite: str) -> Any:
    return table.c.object == obj if "object" in table.c else table.c.suite == suite


def _result_rows(outcome: ValidationOutcome) -> list[dict]:
    columns = set(QualityResult.__table__.c.keys()) - {"id", "created_at"}
    return [{k: v for k, v in row.items() if k in columns} for row in outcome.results]


def stored_outcome(conn: sa.Connection, source: str, obj: str, batch_date: date) -> ValidationOutcome | None:
    """The verdict stored for one object of a batch (results, quarantine, reconciliation), judged by the
    gate's one blocking rule; None when the object has no verdict for the batch."""
    from healthscore.quality.gate import ValidationOutcome, judge
    from healthscore.quality.suites import suite_name

    rec = conn.execute(sa.select(BatchReconciliation.__table__).where(
        BatchReconciliation.batch_date == batch_date, BatchReconciliation.source == source,
        BatchReconciliation.object == obj)).mappings().first()
    if rec is None:
        return None
    suite = suite_name(source, obj)
    r = QualityResult.__table__
    results = []
    for row in conn.execute(sa.select(r).where(r.c.batch_date == batch_date, r.c.source == source,
                                               r.c.suite == suite).order_by(r.c.id)).mappings():
        details = row["details"] if isinstance(row["details"], dict) else json.loads(row["details"] or "{}")
        results.append({k: v for k, v in row.items() if k not in ("id", "created_at")} | {"details": details})
    q = Quarantine.__table__
    quarantine = [dict(row) for row in conn.execute(
        sa.select(q.c.run_id, q.c.batch_date, q.c.source, q.c.object, q.c.record_id, q.c.expectation, q.c.reason)
        .where(q.c.batch_date == batch_date, q.c.source == source, q.c.object == obj).order_by(q.c.id)).mappings()]
    reconciliation = {k: rec[k] for k in ("run_id", "batch_date", "source", "object", "landed", "accepted",
                                          "quarantined", "out_of_scope")}
    return judge(ValidationOutcome(source=source, obj=obj, suite=suite, run_id=rec["run_id"], batch_date=batch_date,
                                   results=results, quarantine=quarantine, flagged=[], accepted_ids=None,
                                   reconciliation=reconciliation))


def enforce(outcomes: Iterable[ValidationOutcome], paths: QualityPaths, batch: Batch,
            fail_on_critical: bool, engine: Engine | None = None) -> list[ValidationOutcome]:
    """The gate's consequences, the same for every object: a blocked one is logged and alerted (the outbox
    file, and its table with ``engine``); with ``fail_on_critical`` the first raises ``QualityGateError``
    (after every alert is written)."""
    from healthscore.quality.gate import QualityGateError
    from healthscore.quality.notify import QualityAlertNotifier

    blocked = [o for o in outcomes if o.critical_failed]
    for outcome in blocked:
        log.error("%s.%s critical quality failure: %s; blocked dimensions: %s", outcome.source, outcome.obj,
                  "; ".join(outcome.block_reasons), outcome.blocked_dimensions)
        QualityAlertNotifier(paths.outbox_path, outcome=outcome, engine=engine).notify({"run_id": batch.run_id})
    if blocked and fail_on_critical:
        raise QualityGateError(blocked[0])
    return blocked


def validate_source(source: str, engine: Engine, batch: Batch, paths: QualityPaths,
                    fail_on_critical: bool = False, publish: bool = True) -> list[dict]:
    """Validate every object of a source for the batch, take the streamed objects' stored verdicts, and
    apply the gate to all of them: alert (and optionally fail) on a critical block."""
    from healthscore.quality.gate import publish_docs, validate
    from healthscore.sources.schemas import flatten

    spec = registry.source(source)
    outcomes = []
    with engine.connect() as conn:
        for obj in spec.objects:
            if obj.validated == "streamed" and (outcome := stored_outcome(conn, source, obj.name, batch.batch_date)):
                outcomes.append(outcome)
    context = build_context(engine, source, batch, paths)
    for obj in spec.validated_objects:
        with engine.connect() as conn:
            if obj == "usage_daily":
                frame = _usage_frame(conn, batch)
                # The aggregate row itself is what gets quarantined: keep it as the payload.
                records = frame.drop(columns=["parse_errors"], errors="ignore").to_dict("records")
            else:
                # Tombstones (records deleted in the vendor) carry no fields to check.
                records = [r for r in landed_records(conn, source, obj, batch.batch_date)
                           if r.get("archived") is not True]
                frame = flatten(source, obj, records)
        outcome = validate(source, obj, frame, context, publish=False)
        # Payloads of the quarantined records only: serialising every record (1.1M meetings on a 100k-account
        # backfill) cost CPU and hundreds of MiB for the few that are kept.
        bad = outcome.quarantined_ids
        payloads = {record_id: json.dumps(record, sort_keys=True, default=str)
                    for record_id, record in zip(frame["record_id"], records, strict=True) if record_id in bad}
        del records, frame
        with engine.begin() as conn:
            store_outcome(conn, outcome, payloads)
        outcomes.append(outcome)
    index = None
    if publish:  # once for every suite of the source: the index is the costly part
        index = publish_docs(paths.data_docs_dir, paths.data_docs_index_limit)
    summaries = []
    for outcome in outcomes:
        outcome.docs_path = outcome.docs_path or index
        summary = outcome.summary()
        summaries.append(summary)
        log.info("%s.%s %s: landed=%d accepted=%d quarantined=%d out_of_scope=%d; Data Docs: %s", source,
                 outcome.obj, batch.batch_date, summary["landed"], summary["accepted"], summary["quarantined"],
                 summary["out_of_scope"], summary["docs_path"])
    # Alerts stay file-only (engine not passed): the table is what notify.delivery hands to email and
    # Slack, and the data-quality recipient is not an address it can resolve yet.
    enforce(outcomes, paths, batch, fail_on_critical)
    return summaries
