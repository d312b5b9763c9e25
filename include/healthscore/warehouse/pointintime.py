"""Point-in-time reads of the landing tables: what a run for batch T, with data as of instant A, could see.

The one place that answers "the newest version of every record of a landing object as of T". The
signals build, the quality gate's reference sets, the account names of the playbooks and the UI and the
owners' emails of the digests all read through it, so a rebuild of a past date gives what the first run
saw, whatever landed later.

Every landing table keeps one row per (record, batch that landed it). Rules:

- incremental and windowed objects: a record's truth is its newest version landed at or before T and
  stamped at or before A (a version stamped after A was not yet true at A: the one before it is read);
- snapshot objects (listed in full each batch): the newest non-empty snapshot at or before T is the truth
  (``latest(per_record=True)``: each record's newest version, kept after later snapshots dropped it);
- a version the quality gate quarantined in the batch that landed it is left out (``accepted_only``),
  without falling back to an older version; so is a tombstone (an incremental object's record deleted in
  the vendor, landed as ``"archived": true``);
- Mixpanel usage (``raw_mixpanel_usage_daily``): each event day's newest batch at or before T is the truth
  for that day.

Cost does not grow with the number of landed batches. ``landing_records`` holds one row per landed record
(its first batch), maintained by ``land_batch`` in the landing transaction. An incremental read walks that
index and, per record, seeks its newest qualifying version backwards on the landing table's primary key
(record_id, batch_date), written so that no other index can serve it (see ``newest_query``): rows read
are proportional to the records, not to records x batches, also for a record that stopped re-landing. A
snapshot read seeks the newest snapshot's batch and reads that batch only; a read with ``since`` filters the
version found, so a record last stamped before it costs one seek, not one row per batch that re-landed it.
Usage seeks each calendar day's newest batch on the (event_date, batch_date) index and reads only that
batch's rows of the day; NPS answers are read through a partial index of the rows that have one.
Quarantine is checked per version read, through its unique index. ``tests/integration/test_point_in_time.py``
counts the rows PostgreSQL reads (and SQLite's virtual-machine steps) to hold this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from healthscore.batch import PointInTime
from healthscore.sources import registry
from healthscore.warehouse.models import LandingRecordIndex, MixpanelUsageDaily, Quarantine, landing_table
from healthscore.warehouse.upsert import bulk_upsert

_INDEX = LandingRecordIndex.__table__
_QUARANTINE = Quarantine.__table__
_USAGE = MixpanelUsageDaily.__table__


def is_snapshot(source: str, obj: str) -> bool:
    """Landed as a full snapshot every batch (the registry's ``snapshot`` mode): the newest snapshot is the
    truth, not a per-record union."""
    return (source, obj) in registry.snapshot_objects()


# ---- landing ------------------------------------------------------------------------------------------------
def land_batch(conn: sa.Connection, source: str, obj: str, batch_date: date,
               chunks: Iterable[Sequence[Mapping[str, Any]]]) -> int:
    """Replace one batch of a landing table and keep the record index right, in the caller's transaction.

    Returns the rows the batch holds afterwards. Rerunning a date replaces its rows, so a rerun lands
    exactly what the first run landed and the point-in-time reads of every date stay as they were.
    """
    table = landing_table(source, obj)
    conn.execute(sa.delete(table).where(table.c.batch_date == batch_date))
    for chunk in chunks:
        bulk_upsert(conn, table, chunk, ["record_id", "batch_date"])
    index_batch(conn, source, obj, batch_date)
    return conn.execute(sa.select(sa.func.count()).select_from(table)
                        .where(table.c.batch_date == batch_date)).scalar_one()


def index_batch(conn: sa.Connection, source: str, obj: str, batch_date: date) -> None:
    """Bring ``landing_records`` up to date after ``batch_date`` of an object was (re)landed.

    Touches the records this batch lands and those it used to be the first landing of, never the rest.
    """
    table = landing_table(source, obj)
    mine = (_INDEX.c.source == source, _INDEX.c.object == obj)
    # Records first seen in this batch that a rerun no longer lands: forget them, or move them to the
    # batch that lands them first now.
    landed = sa.select(table.c.record_id).where(table.c.record_id == _INDEX.c.record_id)
    conn.execute(sa.delete(_INDEX).where(*mine, _INDEX.c.first_batch == batch_date, ~landed.exists()))
    first = sa.select(sa.func.min(table.c.batch_date)).where(table.c.record_id == _INDEX.c.record_id)
    conn.execute(sa.update(_INDEX).where(*mine, _INDEX.c.first_batch == batch_date)
                 .values(first_batch=first.scalar_subquery()))
    insert = _insert(conn)(_INDEX).from_select(
        ["source", "object", "record_id", "first_batch"],
        sa.select(sa.literal(source, sa.Text), sa.literal(obj, sa.Text), table.c.record_id, table.c.batch_date)
        .where(table.c.batch_date == batch_date))
    conn.execute(insert.on_conflict_do_update(
        index_elements=["source", "object", "record_id"], set_={"first_batch": insert.excluded.first_batch},
        where=insert.excluded.first_batch < _INDEX.c.first_batch))


def reindex(conn: sa.Connection, source: str, obj: str) -> None:
    """Rebuild an object's record index from its landing table (what the migration does for every object)."""
    table = landing_table(source, obj)
    conn.execute(sa.delete(_INDEX).where(_INDEX.c.source == source, _INDEX.c.object == obj))
    conn.execute(sa.insert(_INDEX).from_select(
        ["source", "object", "record_id", "first_batch"],
        sa.select(sa.literal(source, sa.Text), sa.literal(obj, sa.Text), table.c.record_id,
                  sa.func.min(table.c.batch_date)).group_by(table.c.record_id)))


def _insert(conn: sa.Connection) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return pg_insert
    if name == "sqlite":
        return sqlite_insert
    raise NotImplementedError(f"landing_records upserts support PostgreSQL and SQLite, not {name}")


# ---- records --------------------------------------------------------------------------------------------
def versions(conn: sa.Connection, source: str, obj: str, pit: PointInTime,
             since: datetime | None = None) -> list[dict]:
    """Vendor records as of ``pit``: each record's newest version (snapshots: the newest snapshot)
    stamped at or before as-of, not quarantined in its batch, and not a tombstone (``"archived": true``:
    deleted in the vendor by then), in record id order. ``since``: only records whose version so found is
    stamped at or after it (one last stamped earlier is left out, not looked for in older batches: a
    record's stamps do not go back in time from batch to batch)."""
    return [record for chunk in iter_versions(conn, source, obj, pit, since) for record in chunk]


def iter_versions(conn: sa.Connection, source: str, obj: str, pit: PointInTime, since: datetime | None = None,
                  chunk_size: int = 5000) -> Iterator[list[dict]]:
    """``versions`` in chunks of at most ``chunk_size`` records, in the same order, streamed from the database
    (a server-side cursor on PostgreSQL): a reader that reduces chunk by chunk never holds every payload of an
    object, as text or as parsed JSON, at once (at 10k accounts one object's payloads are hundreds of MB)."""
    query = newest_query(conn, source, obj, pit.batch_date, as_of=pit.as_of, since=since, accepted_only=True)
    if query is None:
        return
    result = conn.execute(query.execution_options(yield_per=chunk_size))
    try:
        for rows in result.partitions():
            records = [r for r in (json.loads(payload) for _, _, payload in rows) if r.get("archived") is not True]
            if records:
                yield records
    finally:
        result.close()


def latest(conn: sa.Connection, source: str, obj: str, batch_date: date, *,
           only: Iterable[str] | None = None, per_record: bool = False) -> list[dict]:
    """Each record's newest landed version at or before the batch date, whatever its stamp or verdict
    (the quality gate's reference sets, names for messages), in record id order; ``only``: of these
    record ids alone (a page that names a few accounts reads those, not the portfolio). ``per_record``:
    a snapshot object read record by record too, so a record that later snapshots no longer list keeps
    its last version (an owner dropped from HubSpot may still be named by the accounts' owner ids)."""
    rows = _newest(conn, source, obj, batch_date, only=only, per_record=per_record)
    return [json.loads(payload) for _, _, payload in rows]


def record_ids(conn: sa.Connection, source: str, obj: str, batch_date: date) -> set[str]:
    """Ids of every record landed at or before the batch date (in any batch, current or not)."""
    return set(conn.execute(sa.select(_INDEX.c.record_id).where(
        _INDEX.c.source == source, _INDEX.c.object == obj, _INDEX.c.first_batch <= batch_date)).scalars())


def _newest(conn: sa.Connection, source: str, obj: str, batch_date: date, **options: Any) -> list[tuple]:
    query = newest_query(conn, source, obj, batch_date, **options)
    return [] if query is None else [tuple(row) for row in conn.execute(query)]


def newest_query(conn: sa.Connection, source: str, obj: str, batch_date: date, *, as_of: datetime | None = None,
                 since: datetime | None = None, accepted_only: bool = False,
                 only: Iterable[str] | None = None, per_record: bool = False) -> sa.Select | None:
    """The statement behind ``versions``/``latest``: (record_id, batch_date, payload) in record id order;
    None when a snapshot object has no batch yet (tests read its plan). ``only``: these record ids alone.
    ``per_record``: the per-record rule for a snapshot object as well (see ``latest``)."""
    table = landing_table(source, obj)
    ids = None if only is None else sorted({str(i) for i in only})

    def stamped(t: Any) -> list[Any]:
        """Seek condition: stamped at or before as-of."""
        return [] if as_of is None else [sa.or_(t.c.source_updated_at.is_(None), t.c.source_updated_at <= as_of)]

    def recent(t: Any) -> list[Any]:
        """Filter on the version found: stamped at or after ``since``. Outside the seek, so a record last
        stamped before ``since`` costs one version, not a walk down every batch that re-landed it."""
        return [] if since is None else [sa.or_(t.c.source_updated_at.is_(None), t.c.source_updated_at >= since)]

    if is_snapshot(source, obj) and not per_record:
        newest = latest_batch(conn, table, batch_date)
        if newest is None:
            return None
        query = sa.select(table.c.record_id, table.c.batch_date, table.c.payload).where(
            table.c.batch_date == newest, *stamped(table), *recent(table))
        if ids is not None:
            query = query.where(table.c.record_id.in_(ids))
        picked = table
    elif conn.dialect.name == "postgresql":
        # One backward primary-key seek per indexed record, and the quarantine probe inside it as a scalar
        # subquery: one index probe per record, where an EXISTS may be turned into a hash of the object's
        # whole quarantine history. The seek is written so that only the primary key can serve it: the
        # first key at or below (record, T) in descending (record_id, batch_date) order, its record checked
        # outside (a record with no version stamped by as-of walks on into the one before it: dropped there).
        # No other index gives that order. Written as "record_id = r ORDER BY batch_date DESC", PostgreSQL
        # may walk the batch_date index back instead, filtering on record_id: cheap while every record
        # re-lands every batch, but a record dropped from later batches (an owner no longer listed) then
        # costs every row landed since (measured, 20 owners of which 5 dropped after batch 3: 40 rows read
        # at 8 batches, 3520 at 48, 27300 at 365; this form reads 40 at each: an index row and a version
        # per owner).
        columns = [table.c.record_id, table.c.batch_date, table.c.payload, table.c.source_updated_at]
        if accepted_only:
            columns.append(_quarantined(source, obj, table.c.record_id, table.c.batch_date).limit(1)
                           .scalar_subquery().label("held"))
        key = sa.tuple_(table.c.record_id, table.c.batch_date)
        version = (sa.select(*columns)
                   .where(key <= sa.tuple_(_INDEX.c.record_id, sa.literal(batch_date, sa.Date)), *stamped(table))
                   .order_by(table.c.record_id.desc(), table.c.batch_date.desc()).limit(1).lateral("version"))
        query = (sa.select(version.c.record_id, version.c.batch_date, version.c.payload)
                 .select_from(_INDEX.join(version, sa.true()))
                 .where(_INDEX.c.source == source, _INDEX.c.object == obj, _INDEX.c.first_batch <= batch_date,
                        version.c.record_id == _INDEX.c.record_id, *recent(version)))
        if accepted_only:
            query = query.where(version.c.held.is_(None))
        if ids is not None:
            query = query.where(_INDEX.c.record_id.in_(ids))
        return query.order_by(version.c.record_id)
    else:
        # SQLite has no LATERAL: the same seek as a correlated subquery, then the row by primary key.
        newer = table.alias("newer")
        seek = (sa.select(newer.c.batch_date)
                .where(newer.c.record_id == _INDEX.c.record_id, newer.c.batch_date <= batch_date, *stamped(newer))
                .order_by(newer.c.batch_date.desc()).limit(1).scalar_subquery())
        pick = (sa.select(_INDEX.c.record_id, seek.label("newest"))
                .where(_INDEX.c.source == source, _INDEX.c.object == obj, _INDEX.c.first_batch <= batch_date,
                       *([] if ids is None else [_INDEX.c.record_id.in_(ids)]))
                .subquery("pick"))
        query = (sa.select(table.c.record_id, table.c.batch_date, table.c.payload)
                 .select_from(pick.join(table, sa.and_(table.c.record_id == pick.c.record_id,
                                                       table.c.batch_date == pick.c.newest)))
                 .where(*recent(table)))
        picked = table
    if accepted_only:
        query = query.where(~_quarantined(source, obj, picked.c.record_id, picked.c.batch_date).exists())
    return query.order_by(picked.c.record_id)


def _quarantined(source: str, obj: str, record_id: Any, batch_date: Any) -> sa.Select:
    q = _QUARANTINE
    return sa.select(q.c.id).where(q.c.batch_date == batch_date, q.c.source == source, q.c.object == obj,
                                   q.c.record_id == record_id)


def latest_batch(conn: sa.Connection, table: sa.Table, batch_date: date) -> date | None:
    """The newest batch at or before ``batch_date`` that landed any row in ``table`` (an index seek)."""
    return conn.execute(sa.select(sa.func.max(table.c.batch_date)).where(table.c.batch_date <= batch_date)).scalar()


def batch_volumes(conn: sa.Connection, source: str, obj: str, before: date, batches: int = 7) -> list[int]:
    """Rows landed by each of the newest ``batches`` batches before a date that landed any, oldest first.

    Mixpanel counts the company-day rows of each batch's own day (its re-pulled trailing days repeat).
    One index seek and one batch count per batch: the history behind them is never scanned.
    """
    if source == "mixpanel":
        table, own_day = _USAGE, (_USAGE.c.event_date == _USAGE.c.batch_date,)
    else:
        table, own_day = landing_table(source, obj), ()
    counts: list[int] = []
    bound = before
    while len(counts) < batches:
        newest = conn.execute(sa.select(sa.func.max(table.c.batch_date)).where(table.c.batch_date < bound)).scalar()
        if newest is None:
            break
        landed = conn.execute(sa.select(sa.func.count()).select_from(table)
                              .where(table.c.batch_date == newest, *own_day)).scalar_one()
        if landed:
            counts.append(int(landed))
        bound = newest
    return counts[::-1]


# ---- Mixpanel usage -----------------------------------------------------------------------------------
def usage_rows(conn: sa.Connection, pit: PointInTime, first_day: date, columns: Sequence[str],
               only_nps: bool = False) -> pd.DataFrame:
    """Mixpanel company-day rows for [first_day, last_event_day] as of ``pit``.

    Per event day the newest batch at or before the batch date is the truth (each batch re-lands a
    trailing window); rows quarantined in that batch are dropped. ``attrs["covered_days"]``: the event
    days some batch landed (an account without a row on a covered day had no activity that day).
    ``only_nps``: the rows with an NPS answer only (read through the partial index on them).

    Reads one index entry per calendar day (``covered_usage_days``) and then only the rows of each day's
    newest batch: the older batches that re-landed a day are never read.
    """
    covered = covered_usage_days(conn, pit, first_day)
    return _usage_frame(conn, covered, [day for day, _ in covered], columns, only_nps)


def iter_usage_days(conn: sa.Connection, pit: PointInTime, first_day: date,
                    columns: Sequence[str]) -> tuple[list[date], Iterator[pd.DataFrame]]:
    """``usage_rows`` one covered day at a time: the covered days, and per covered day (oldest first) that
    day's rows as ``usage_rows`` gives them (each frame's ``attrs["covered_days"]`` is every covered day).
    Why: a reader that reduces day by day holds one day of company rows, not the window (90 days x accounts)."""
    covered = covered_usage_days(conn, pit, first_day)
    covered_days = [day for day, _ in covered]
    return covered_days, (_usage_frame(conn, [one], covered_days, columns) for one in covered)


def _usage_frame(conn: sa.Connection, covered: list[tuple[date, date]], covered_days: list[date],
                 columns: Sequence[str], only_nps: bool = False) -> pd.DataFrame:
    """The rows of these (event day, batch) pairs, without those quarantined in that batch."""
    u = _USAGE
    frame = pd.DataFrame(columns=["company_id", "event_date", "batch_date", *columns])
    if covered:
        query = (sa.select(u.c.company_id, u.c.event_date, u.c.batch_date, *(u.c[c] for c in columns))
                 .where(sa.tuple_(u.c.event_date, u.c.batch_date).in_(covered))
                 .order_by(u.c.event_date, u.c.company_id))
        if only_nps:
            query = query.where(NPS_ANSWERED)
        frame = pd.DataFrame(conn.execute(query).all(), columns=["company_id", "event_date", "batch_date", *columns])
    frame.attrs["covered_days"] = covered_days
    if frame.empty:
        return frame
    q = _QUARANTINE
    bad = set(conn.execute(sa.select(q.c.record_id, q.c.batch_date).distinct().where(
        q.c.source == "mixpanel", q.c.object == "usage_daily",
        q.c.batch_date.in_(sorted({batch for _, batch in covered})))).all())
    if bad:
        keys = zip(frame["company_id"] + ":" + frame["event_date"].map(date.isoformat), frame["batch_date"],
                   strict=True)
        frame = frame[[k not in bad for k in keys]].reset_index(drop=True)
        frame.attrs["covered_days"] = covered_days
    return frame


#: The rows with an NPS answer, written as the partial index ``ix_raw_mixpanel_usage_daily_nps`` is (a literal
#: 0, not a parameter, so that PostgreSQL and SQLite can match the query to the index).
NPS_ANSWERED = _USAGE.c.nps_responses > sa.literal_column("0")


def covered_usage_days(conn: sa.Connection, pit: PointInTime, first_day: date) -> list[tuple[date, date]]:
    """(event day, its newest batch at or before the batch date) for each covered day in [first_day,
    last_event_day], oldest first: one backward seek on the (event_date, batch_date) index per calendar day,
    however many batches re-landed the day."""
    u = _USAGE
    last_day = pit.last_event_day
    if last_day < first_day:
        return []
    start = sa.literal(first_day, sa.Date)
    calendar = sa.select(start.label("day")).cte("calendar", recursive=True)
    step = (sa.func.date(calendar.c.day, "+1 day", type_=sa.Date) if conn.dialect.name == "sqlite"
            else sa.cast(calendar.c.day + sa.literal_column("1"), sa.Date))
    calendar = calendar.union_all(sa.select(step).where(calendar.c.day < sa.literal(last_day, sa.Date)))
    newest = (sa.select(sa.func.max(u.c.batch_date)).where(u.c.event_date == calendar.c.day,
                                                            u.c.batch_date <= pit.batch_date)
              .scalar_subquery())
    rows = conn.execute(sa.select(calendar.c.day, newest.label("newest")).order_by(calendar.c.day)).all()
    return [(_as_date(day), _as_date(batch)) for day, batch in rows if batch is not None]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
