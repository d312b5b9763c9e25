"""Extract one source for one batch (a logical date) into its raw landing tables.

Guarantees, per source object:
- The batch starts from the cursor committed by the previous batch (None: a full backfill), so a
  rerun of the same logical date pulls the same records and lands byte-identical rows.
- Pages are staged on local disk while pulling, then landed, and the batch's cursor written, in ONE
  short transaction. A crash at any point before the commit leaves the previous state; after it the
  batch is complete. Nothing is lost and nothing is landed twice.
- Mixpanel events are never held whole: each day is folded into per-company aggregates while it
  streams, re-pulling a trailing window of days for late events and de-duplicating on $insert_id.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.settings import Settings
from healthscore.sources import Source, SourceConnection, registry
from healthscore.sources.base import RetryPolicy, canonical_json
from healthscore.sources.mixpanel import MixpanelSource
from healthscore.warehouse.models import ExtractRun, MixpanelUsageDaily, SourceCursor
from healthscore.warehouse.pointintime import land_batch
from healthscore.warehouse.types import utcnow
from healthscore.warehouse.upsert import bulk_upsert

if TYPE_CHECKING:
    from healthscore.quality.gate import ValidationContext

log = logging.getLogger(__name__)

LANDING_CHUNK = 5_000
MIXPANEL_TRAILING_DAYS = registry.source("mixpanel").object("events").window_days or 1
LOGIN_EVENT = "Login"
# Vanity traffic: a page view is not product use, so it does not make a user "active".
NOT_ACTIVITY_EVENTS = frozenset({"Page Viewed"})


@dataclass
class ObjectSummary:
    source: str
    object: str
    records: int = 0
    pages: int = 0
    start_cursor: str | None = None
    end_cursor: str | None = None
    extra: dict = field(default_factory=dict)


def previous_cursor(conn: sa.Connection, source: str, obj: str, batch_date: date) -> str | None:
    """The cursor committed by the latest earlier batch; None means this is the first (full) load."""
    row = conn.execute(
        sa.select(SourceCursor.cursor_value)
        .where(SourceCursor.source == source, SourceCursor.object == obj, SourceCursor.batch_date < batch_date)
        .order_by(SourceCursor.batch_date.desc())
        .limit(1)
    ).first()
    return row[0] if row else None


class _Staging:
    """Landing rows spooled to a temp file so memory stays flat however big the first load is."""

    # msgspec: the rows are strings (the payload, already JSON, among them) and None; json.dumps escaping
    # each payload again and json.loads reading it back were a third of a large extraction's CPU.
    _encode = msgspec.json.Encoder().encode
    _decode = msgspec.json.Decoder().decode

    def __init__(self, path: Path | None = None) -> None:
        """An anonymous temp file, or ``path`` (an extraction part's staged rows, read back by the landing step)."""
        self.file = tempfile.TemporaryFile(mode="w+b") if path is None else path.open("w+b")  # noqa: SIM115 - close()
        self.count = 0

    @classmethod
    def reopen(cls, path: Path) -> _Staging:
        """A staged file written earlier (maybe by another process), for ``chunks``."""
        staging = cls.__new__(cls)
        staging.file = path.open("rb")
        staging.count = 0
        return staging

    def add(self, row: dict) -> None:
        self.file.write(self._encode(row) + b"\n")
        self.count += 1

    def chunks(self, size: int) -> Iterator[list[dict]]:
        self.file.seek(0)
        chunk: list[dict] = []
        for line in self.file:
            row = self._decode(line)
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        self.file.close()


def _landing_row(source: Source, obj: str, record: dict, batch: Batch) -> dict:
    spec = source.objects[obj]
    payload = canonical_json(record)
    updated = spec.updated_at(record)
    return {
        "record_id": spec.record_id(record),
        "batch_date": batch.batch_date.isoformat(),
        "source_updated_at": updated.isoformat() if updated else None,
        "payload": payload,
        "payload_sha256": sha256(payload.encode()).hexdigest(),
    }


def extract_object(source: Source, obj: str, engine: Engine, batch: Batch) -> ObjectSummary:
    """Pull one object incrementally and land it atomically with its new cursor."""
    summary = ObjectSummary(source.name, obj)
    with engine.connect() as conn:
        summary.start_cursor = previous_cursor(conn, source.name, obj, batch.batch_date)
    started = utcnow()
    staging = _Staging()
    try:
        cursor = summary.start_cursor
        for page in source.pages(obj, summary.start_cursor):
            summary.pages += 1
            for record in page.records:
                staging.add(_landing_row(source, obj, record, batch))
            cursor = page.cursor or cursor
        summary.end_cursor = cursor
        with engine.begin() as conn:
            landed = land_batch(conn, source.name, obj, batch.batch_date, staging.chunks(LANDING_CHUNK))
            _save_cursor(conn, source.name, obj, batch, summary.end_cursor)
            _record_run(conn, summary, batch, started, landed, source.client.stats.retries)
        summary.records = landed
    finally:
        staging.close()
    log.info("%s.%s: landed %d records for %s in %d pages (cursor %s -> %s)", source.name, obj, summary.records,
             batch.batch_date, summary.pages, summary.start_cursor, summary.end_cursor)
    return summary


def _save_cursor(conn: sa.Connection, source: str, obj: str, batch: Batch, cursor: str | None) -> None:
    bulk_upsert(conn, SourceCursor, [{
        "source": source, "object": obj, "batch_date": batch.batch_date, "cursor_value": cursor,
        "high_watermark": batch.as_of, "updated_at": utcnow(),
    }], ["source", "object", "batch_date"])


def _record_run(conn: sa.Connection, summary: ObjectSummary, batch: Batch, started: datetime, landed: int,
                retries: int) -> None:
    bulk_upsert(conn, ExtractRun, [{
        "run_id": batch.run_id, "source": summary.source, "object": summary.object, "batch_date": batch.batch_date,
        "records_landed": landed, "pages": summary.pages, "retries": retries, "started_at": started,
        "finished_at": utcnow(), "status": "success",
    }], ["run_id", "source", "object"])


# ---- Mixpanel: validate and fold events per company-day while streaming ---------------------
EVENT_CHUNK = 100_000


@dataclass
class DayUsage:
    """One day's events, de-duplicated on $insert_id, validated in chunks, folded per company.

    Each chunk is reduced with pandas group-bys to small partial aggregates (counts per company and
    event, distinct active company-user pairs, survey answers); ``rows`` combines them once.
    """

    day: date
    validation: ValidationContext | None = None
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    buffer: list[dict] = field(default_factory=list)
    outcomes: list = field(default_factory=list)
    quarantined_payloads: dict[str, str] = field(default_factory=dict)
    _event_counts: list = field(default_factory=list)
    _active_pairs: list = field(default_factory=list)
    _answers: list = field(default_factory=list)

    def add(self, event: dict) -> None:
        insert_id = (event.get("properties") or {}).get("$insert_id")
        if insert_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(insert_id)
        self.buffer.append(event)
        if len(self.buffer) >= EVENT_CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        from healthscore.quality.gate import validate
        from healthscore.sources.schemas import flatten

        frame = flatten("mixpanel", "events", self.buffer)
        if self.validation is not None:
            outcome = validate("mixpanel", "events", frame, self.validation, partial=True, keep_accepted_ids=False,
                               publish=False)
            self.outcomes.append(outcome)
            bad = outcome.quarantined_ids
            if bad:
                for record_id, event in zip(frame["record_id"], self.buffer, strict=True):
                    if record_id in bad:
                        self.quarantined_payloads[record_id] = canonical_json(event)
                frame = frame[~frame["record_id"].isin(bad)]
        self._fold(frame)
        self.buffer = []

    def _fold(self, frame: Any) -> None:
        import pandas as pd

        frame = frame[frame["company_id"].notna()]
        company = frame["company_id"].astype(str)
        self._event_counts.append(frame.groupby([company, frame["event"]], sort=False).size())
        active = frame[~frame["event"].isin(NOT_ACTIVITY_EVENTS) & frame["distinct_id"].notna()]
        pairs = {"company_id": company[active.index], "user": active["distinct_id"].astype(str)}
        self._active_pairs.append(pd.DataFrame(pairs).drop_duplicates())
        for column, bucket in (("nps_score", "nps"), ("csat_score", "csat")):
            answered = frame[frame[column].notna()]
            if len(answered):
                self._answers.append(pd.DataFrame({
                    "company_id": company[answered.index], "bucket": bucket,
                    "ts": answered["event_ts"].astype("int64"), "score": answered[column].astype(float)}))

    def rows(self, batch: Batch) -> list[dict]:
        import pandas as pd

        if not self._event_counts:
            return []
        counts = pd.concat(self._event_counts).groupby(level=[0, 1], sort=True).sum()
        users = pd.concat(self._active_pairs).drop_duplicates().groupby("company_id").size().to_dict()
        answers = {}
        if self._answers:
            frame = pd.concat(self._answers).sort_values(["company_id", "bucket", "ts", "score"], kind="stable")
            for (company, bucket), group in frame.groupby(["company_id", "bucket"], sort=False):
                answers[(company, bucket)] = group["score"].tolist()
        rows: list[dict] = []
        current: dict | None = None
        for (company, event), count in zip(counts.index.tolist(), counts.tolist(), strict=True):
            if current is None or current["company_id"] != company:
                nps, csat = answers.get((company, "nps"), []), answers.get((company, "csat"), [])
                current = {
                    "company_id": company, "event_date": self.day, "batch_date": batch.batch_date,
                    "active_users": int(users.get(company, 0)), "event_count": 0, "logins": 0,
                    "feature_counts": {}, "distinct_features": 0, "insert_ids_seen": 0, "duplicates_dropped": 0,
                    "nps_responses": len(nps), "nps_sum": float(sum(nps)), "nps_latest": nps[-1] if nps else None,
                    "csat_responses": len(csat), "csat_sum": float(sum(csat)),
                }
                rows.append(current)
            current["feature_counts"][event] = int(count)
            current["event_count"] += int(count)
            current["distinct_features"] += 1
            current["insert_ids_seen"] += int(count)
            if event == LOGIN_EVENT:
                current["logins"] += int(count)
        if rows:
            rows[0]["duplicates_dropped"] = self.duplicates
        return rows


def mixpanel_days(start_cursor: str | None, batch: Batch, trailing_days: int, backfill_days: int) -> list[date]:
    """The event days a batch pulls: the trailing window before the batch date, or the backfill on a first batch."""
    span = trailing_days if start_cursor else backfill_days
    first_day = batch.batch_date - timedelta(days=span - 1)
    return [first_day + timedelta(days=i) for i in range(span)]


@dataclass
class UsageFold:
    """What folding some days of events gives: company-day rows, chunk verdicts and quarantined payloads, in day
    order. Small (rows per company-day, not events), so an extraction part can stage it for the landing step."""

    rows: list[dict] = field(default_factory=list)
    duplicates: int = 0
    outcomes: list = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    days: list[date] = field(default_factory=list)

    def extend(self, other: UsageFold) -> None:
        self.rows += other.rows
        self.duplicates += other.duplicates
        self.outcomes += other.outcomes
        self.quarantined.update(other.quarantined)
        self.days += other.days


def fold_days(source: MixpanelSource, days: list[date], batch: Batch,
              validation: ValidationContext | None = None) -> UsageFold:
    """Stream and fold each day in turn (one day's $insert_id set in memory at a time)."""
    fold = UsageFold()
    for day in days:
        def start(d: date = day) -> DayUsage:
            return DayUsage(d, validation)

        usage = source.fold_day(day, start, DayUsage.add)
        usage.flush()
        fold.extend(UsageFold(usage.rows(batch), usage.duplicates, usage.outcomes, usage.quarantined_payloads, [day]))
        del usage  # the day's $insert_id set is the largest object: free it before streaming the next day
    return fold


def land_usage(conn: sa.Connection, batch: Batch, summary: ObjectSummary, fold: UsageFold, started: datetime,
               retries: int) -> None:
    """Replace the batch's usage rows, store the merged verdict and write the cursor, in the caller's transaction."""
    from healthscore.quality.gate import merge

    outcome = merge(fold.outcomes) if fold.outcomes else None
    table = MixpanelUsageDaily.__table__
    conn.execute(sa.delete(table).where(table.c.batch_date == batch.batch_date))
    for start_row in range(0, len(fold.rows), LANDING_CHUNK):
        bulk_upsert(conn, table, fold.rows[start_row : start_row + LANDING_CHUNK],
                    ["company_id", "event_date", "batch_date"])
    if outcome is not None:
        from healthscore.pipeline.validate import store_outcome

        store_outcome(conn, outcome, fold.quarantined)
    summary.end_cursor = batch.batch_date.isoformat()
    summary.records = len(fold.rows)
    summary.pages = len(fold.days)
    summary.extra = {"days": [d.isoformat() for d in fold.days], "duplicates_dropped": fold.duplicates,
                     "quality": outcome.summary() if outcome else None}
    _save_cursor(conn, "mixpanel", "events", batch, summary.end_cursor)
    _record_run(conn, summary, batch, started, len(fold.rows), retries)


def extract_mixpanel(source: MixpanelSource, engine: Engine, batch: Batch,
                     validation: ValidationContext | None = None, trailing_days: int = MIXPANEL_TRAILING_DAYS,
                     *, backfill_days: int) -> ObjectSummary:
    """Land the batch day and re-pull the trailing days for late events; each batch keeps its own view.

    The first batch of a project backfills ``backfill_days`` so 30/90-day usage signals have history.
    Events failing the GX events suite are quarantined (with their payload) and never aggregated.
    """
    from healthscore.quality.gate import publish_docs

    summary = ObjectSummary("mixpanel", "usage_daily")
    with engine.connect() as conn:
        summary.start_cursor = previous_cursor(conn, "mixpanel", "events", batch.batch_date)
    started = utcnow()
    days = mixpanel_days(summary.start_cursor, batch, trailing_days, backfill_days)
    fold = fold_days(source, days, batch, validation)
    if validation is not None and validation.publish_docs:
        publish_docs(validation.data_docs_dir, validation.data_docs_index_limit)
    with engine.begin() as conn:
        land_usage(conn, batch, summary, fold, started, source.client.stats.retries)
    log.info("mixpanel: landed %d company-day rows for %s..%s; %d duplicate events dropped; %d quarantined",
             len(fold.rows), days[0], days[-1], fold.duplicates, len(fold.quarantined))
    return summary


def extract_source(name: str, connection: SourceConnection, engine: Engine, batch: Batch,
                   policy: RetryPolicy | None = None, validation: ValidationContext | None = None,
                   mixpanel_backfill_days: int | None = None) -> list[ObjectSummary]:
    """Every object of one source for one batch (the registry's extracted objects, in order); the unit an
    Airflow extract task runs."""
    spec = registry.source(name)
    with spec.client_class()(connection, as_of=batch.as_of, policy=policy) as source:
        if isinstance(source, MixpanelSource):
            days = Settings().mixpanel_backfill_days if mixpanel_backfill_days is None else mixpanel_backfill_days
            return [extract_mixpanel(source, engine, batch, validation, backfill_days=days)]
        return [extract_object(source, obj.name, engine, batch) for obj in spec.extracted_objects]
