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
from collections.abc import Collection, Iterable, Iterator, Mapping
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


#: Landed records decoded and flattened at a time within a chunk: parsed vendor JSON is ~10 KB a Stripe invoice,
#: the flattened frame a few hundred bytes, so a chunk's memory is its frame, not its records.
DECODE_ROWS = 5_000


def landed_frames(conn: sa.Connection, source: str, obj: str, batch_date: date, size: int) -> Iterator[Any]:
    """The batch's landed records as flattened frames of ``size`` rows (the last may be shorter, one may be
    longer, see below), in record id order, through one streamed query: memory follows ``size``, not the batch.

    A chunk never ends between two rows of the same record id, so a repeated id always sits inside one
    chunk, where the suite's uniqueness check sees it: per-chunk uniqueness is uniqueness over the batch.
    Tombstones (records deleted in the vendor) carry no fields to check and are left out.
    """
    import pandas as pd

    from healthscore.sources.schemas import flatten

    table = landing_table(source, obj)
    rows = conn.execution_options(yield_per=DECODE_ROWS).execute(
        sa.select(table.c.record_id, table.c.payload).where(table.c.batch_date == batch_date)
        .order_by(table.c.record_id))
    parts: list[Any] = []
    records: list[dict] = []
    count, last = 0, None

    def decoded() -> None:
        nonlocal records
        if records:
            parts.append(flatten(source, obj, records))
            records = []

    for record_id, payload in rows:
        if count >= size and record_id != last:
            decoded()
            yield pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
            parts, count = [], 0
        record = json.loads(payload)
        count += 1
        last = record_id
        if record.get("archived") is not True:
            records.append(record)
            if len(records) >= DECODE_ROWS:
                decoded()
    decoded()
    if parts:
        yield pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def landed_payloads(conn: sa.Connection, source: str, obj: str, batch_date: date,
                    record_ids: Collection[str]) -> dict[str, str]:
    """The landed payloads of some records of the batch (the quarantined ones), as the quarantine keeps them."""
    table = landing_table(source, obj)
    ids = sorted(record_ids)
    out = {}
    for start in range(0, len(ids), 500):
        for record_id, payload in conn.execute(sa.select(table.c.record_id, table.c.payload).where(
                table.c.batch_date == batch_date, table.c.record_id.in_(ids[start:start + 500]))):
            out[record_id] = _payload(json.loads(payload))
    return out


def _payload(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def references_needed(source: str) -> set[str]:
    """The reference sets the source's suites (and out-of-scope rules) use: the others are not read (the
    Zendesk ticket ids are 1.3M at 100k accounts, and no Stripe or HubSpot check looks at them)."""
    from healthscore.quality.suites import SCOPES, declared_checks

    objects = registry.source(source).validated_objects
    needed = {c.ref for obj in objects for c in declared_checks(source, obj) if c.kind == "known" and c.ref}
    return needed | {rule.ref for (s, obj), rule in SCOPES.items() if s == source and obj in objects}


def build_context(engine: Engine, source: str, batch: Batch, paths: QualityPaths,
                  fail_on_critical: bool = False, publish_docs: bool = True) -> ValidationContext:
    """What the source's suites need besides the frames, read point-in-time at the batch date."""
    from healthscore.quality.gate import ValidationContext

    needed = references_needed(source)
    with engine.connect() as conn:
        # Keep only the two ids per company: 100k full payloads would be a few hundred MiB for nothing.
        company_ids: set[str] | None = None
        organizations: dict[str, str] | None = None
        if needed & {"companies", "organizations"}:
            company_ids, organizations = set(), {}
            for company in pointintime.latest(conn, "hubspot", "companies", batch.batch_date):
                company_ids.add(company["id"])
                if organization := (company.get("properties") or {}).get("zendesk_organization_id"):
                    organizations[str(organization)] = company["id"]

        def ids(ref: str, src: str, obj: str) -> set[Any] | None:
            return pointintime.record_ids(conn, src, obj, batch.batch_date) if ref in needed else None

        return ValidationContext(
            run_id=batch.run_id, batch_date=batch.batch_date, data_interval_end=batch.as_of,
            data_docs_dir=paths.data_docs_dir, data_docs_index_limit=paths.data_docs_index_limit,
            known_company_ids=company_ids if "companies" in needed else None,
            known_owner_ids=ids("owners", "hubspot", "owners"),
            known_organization_ids=organizations if "organizations" in needed else None,
            known_customer_ids=ids("customers", "stripe", "customers"),
            known_ticket_ids=ids("tickets", "zendesk", "tickets"),
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


def _frames(conn: sa.Connection, source: str, obj: str, batch: Batch, size: int) -> Iterator[Any]:
    if obj != "usage_daily":
        yield from landed_frames(conn, source, obj, batch.batch_date, size)
        return
    frame = _usage_frame(conn, batch)  # one row per company: small, chunked alike so every object takes one path
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size].reset_index(drop=True)


def _payloads(conn: sa.Connection, source: str, obj: str, batch: Batch, bad: set[str]) -> dict[str, str]:
    """Payloads of the quarantined records only, read back once the verdict is known: keeping every record
    (1.3M invoices on a 100k-account backfill) for the few that are kept cost GiBs."""
    if not bad:
        return {}
    if obj != "usage_daily":
        return landed_payloads(conn, source, obj, batch.batch_date, bad)
    frame = _usage_frame(conn, batch)  # the aggregate row itself is what gets quarantined
    rows = frame[frame["record_id"].isin(bad)].drop(columns=["parse_errors"], errors="ignore")
    return {row["record_id"]: _payload(row) for row in rows.to_dict("records")}


def validate_object(conn: sa.Connection, source: str, obj: str, batch: Batch, context: ValidationContext,
                    chunk_rows: int) -> tuple[ValidationOutcome, dict[str, str]]:
    """One object's verdict and its quarantined payloads, validating ``chunk_rows`` landed rows at a time.

    A batch that fits in one chunk is validated in one piece, as it always was. A larger one goes chunk by
    chunk through GX (``validate(partial=True)``) and the chunks are merged (``gate.merge``): counts summed,
    freshness and volume judged on the whole batch, quarantine in one-piece order; uniqueness holds across
    chunks because no id spans two (``landed_frames``). One chunk's frame is alive at a time.
    """
    from healthscore.quality import gate
    from healthscore.sources.schemas import empty_frame

    frames = _frames(conn, source, obj, batch, chunk_rows)
    first = next(frames, None)
    second = next(frames, None)
    if second is None:  # the whole batch in one piece (an empty one too)
        outcome = gate.validate(source, obj, empty_frame(source, obj) if first is None else first, context,
                                publish=False)
    else:
        head, parts = [second, first], []
        first = second = None  # the list alone holds them, until each is taken: one frame alive at a time

        def chunks() -> Iterator[Any]:
            while head:
                yield head.pop()
            yield from frames

        for frame in chunks():
            part = gate.validate(source, obj, frame, context, partial=True, keep_accepted_ids=False, publish=False)
            part.flagged = _distinct_flags(part.flagged)
            parts.append(part)
            del frame
        outcome = gate.merge(parts)
    return outcome, _payloads(conn, source, obj, batch, outcome.quarantined_ids)


def _distinct_flags(flagged: list[dict]) -> list[dict]:
    """One flag per record (all a merged outcome reports of them is how many records were flagged): the
    unlinked-record warnings can flag most of a 1M-row batch, and each flag is a dict."""
    return list({f["record_id"]: f for f in flagged}.values())


def validate_source(source: str, engine: Engine, batch: Batch, paths: QualityPaths,
                    fail_on_critical: bool = False, publish: bool = True,
                    chunk_rows: int | None = None) -> list[dict]:
    """Validate every object of a source for the batch (``chunk_rows`` landed rows at a time, default the
    ``validation_chunk_rows`` setting), take the streamed objects' stored verdicts, and apply the gate to
    all of them: alert (and optionally fail) on a critical block."""
    from healthscore.quality.gate import publish_docs

    size = chunk_rows or Settings().validation_chunk_rows
    spec = registry.source(source)
    outcomes = []
    with engine.connect() as conn:
        for obj in spec.objects:
            if obj.validated == "streamed" and (outcome := stored_outcome(conn, source, obj.name, batch.batch_date)):
                outcomes.append(outcome)
    context = build_context(engine, source, batch, paths)
    for obj in spec.validated_objects:
        with engine.connect() as conn:
            outcome, payloads = validate_object(conn, source, obj, batch, context, size)
        with engine.begin() as conn:
            store_outcome(conn, outcome, payloads)
        outcomes.append(outcome)
        del payloads
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
