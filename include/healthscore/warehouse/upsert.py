"""Bulk writes on each engine's fast path, always inside the caller's transaction.

The caller owns the unit of work (``with engine.begin() as conn: bulk_upsert(conn, ...)``), so a crash
part-way leaves the previous state intact and several writes can commit together.

* PostgreSQL: rows are streamed with psycopg 3 ``COPY`` into a temporary staging table, then merged by
  ``INSERT ... SELECT ... ON CONFLICT (keys) DO UPDATE`` (a big batch chunk by chunk, Python preparing
  the next chunk while PostgreSQL merges the last). ``replace_partition`` copies straight into the
  target after deleting the partition.
* SQLite (and PostgreSQL through a driver other than psycopg 3): ``INSERT ... ON CONFLICT DO UPDATE``
  through ``executemany`` in batches.

Both paths first normalise values the same way (NaN/NaT/NA -> NULL, numpy scalars -> Python, datetimes ->
aware UTC, datetimes in DATE columns -> dates, JSON via ``dumps_json``), so the stored data does not depend
on the engine or on whether rows arrived as dicts or as a DataFrame.

The rows' normalisation is ``healthscore.warehouse.rowbatch``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from healthscore.warehouse.rowbatch import RowBatch, Rows, TableLike, _as_table

EXECUTEMANY_BATCH_ROWS = 10_000
# COPY: batches of at least this many rows hand the socket to psycopg's writer thread, so Python keeps
# preparing rows while PostgreSQL ingests them (the deferred work is done COPY_SERIALISE_ROWS at a time).
COPY_QUEUED_MIN_ROWS = 10_000
# bulk_upsert in a transaction stages and merges bigger batches this many rows at a time, preparing the
# next chunk while PostgreSQL merges the last (see _pipelined_merge).
COPY_PIPELINE_ROWS = 50_000
# SQLAlchemy only memoizes rowcount for UPDATE/DELETE unless asked; INSERT ... ON CONFLICT needs it.
_ROWCOUNT = {"preserve_rowcount": True}


def _uses_copy(connection: sa.Connection) -> bool:
    """COPY needs psycopg 3; another PostgreSQL driver still works through executemany."""
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


def _dialect_insert(connection: sa.Connection, table: sa.Table) -> Any:
    if connection.dialect.name == "postgresql":
        return pg_insert(table)
    if connection.dialect.name == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(f"bulk_upsert supports PostgreSQL and SQLite, not {connection.dialect.name}")


def _quoted_columns(connection: sa.Connection, names: Sequence[str]) -> str:
    quote = connection.dialect.identifier_preparer.quote
    return ", ".join(quote(n) for n in names)


# PostgreSQL types whose binary COPY input psycopg produces from the normalised Python values.
# json's binary input format is its text, so JSON columns travel as text; anything else (jsonb, numeric,
# arrays, user types...) makes the batch fall back to text COPY, which accepts every type.
_TEXT_OID, _JSON_OID = 25, 114
_BINARY_OIDS = frozenset({16, 20, 21, 23, 25, 700, 701, 1043, 1082, 1184})


def _column_oids(connection: sa.Connection, table: sa.Table, names: Sequence[str]) -> list[int]:
    rel = connection.dialect.identifier_preparer.format_table(table)
    query = sa.text(
        "SELECT attname, atttypid::int FROM pg_attribute "
        "WHERE attrelid = CAST(:rel AS regclass) AND attnum > 0 AND NOT attisdropped"
    )
    found = {name: oid for name, oid in connection.execute(query, {"rel": rel})}
    return [found[n] for n in names]


def _copy_writer(cursor: Any, rows: int) -> Any:
    """For many rows, psycopg's writer thread sends while this thread formats rows (and does deferred
    work); otherwise psycopg's default writer."""
    if rows < COPY_QUEUED_MIN_ROWS:
        return None
    from psycopg.copy import QueuedLibpqWriter

    return QueuedLibpqWriter(cursor)


def _copier(
    connection: sa.Connection, target_sql: str, table: sa.Table, names: Sequence[str]
) -> Callable[[Iterable[tuple[Any, ...]], int], None]:
    """A function streaming rows (and their count) into ``target_sql`` with psycopg 3 COPY, in binary
    when every column type allows it.

    Binary COPY skips text formatting and parsing on both sides (about twice as fast for scores).
    """
    oids = [_TEXT_OID if oid == _JSON_OID else oid for oid in _column_oids(connection, table, names)]
    binary = all(oid in _BINARY_OIDS for oid in oids)
    driver = connection.connection.driver_connection
    columns = _quoted_columns(connection, names)
    statement = f"COPY {target_sql} ({columns}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")

    def copy_rows(rows: Iterable[tuple[Any, ...]], count: int) -> None:
        with driver.cursor() as cursor, cursor.copy(statement, writer=_copy_writer(cursor, count)) as copy:
            if binary:
                copy.set_types(oids)
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    return copy_rows


def _onupdate_values(table: sa.Table, provided: Sequence[str]) -> dict[str, Any]:
    """SQL ``onupdate`` defaults (e.g. ``updated_at``) that ON CONFLICT DO UPDATE would not apply itself."""
    extra: dict[str, Any] = {}
    for column in table.columns:
        default = column.onupdate
        if column.name in provided or default is None:
            continue
        if getattr(default, "is_clause_element", False) or getattr(default, "is_scalar", False):
            extra[column.name] = default.arg  # type: ignore[attr-defined]
    return extra


def _resolve_updates(
    table: sa.Table, batch: RowBatch, keys: Sequence[str], update_columns: Sequence[str] | None
) -> list[str]:
    if update_columns is None:
        return [c for c in batch.columns if c not in keys]
    bad = [c for c in update_columns if c in keys or c not in batch.columns]
    if bad:
        raise ValueError(f"update_columns must be non-key columns present in the rows: {bad}")
    return list(update_columns)


# ------------------------------------------------------------------------------------------- public


def bulk_upsert(
    connection: sa.Connection,
    table: TableLike,
    rows: Rows,
    key_columns: Sequence[str],
    update_columns: Sequence[str] | None = None,
) -> int:
    """Insert ``rows`` or update the existing rows with the same ``key_columns``; return rows written.

    ``key_columns`` must match a primary key or unique constraint. ``update_columns`` defaults to every
    non-key column present in the rows; an empty list means insert-if-absent (``DO NOTHING``). Duplicate
    keys within ``rows`` resolve to the last one. Runs in ``connection``'s transaction; never commits.
    """
    tbl = _as_table(table)
    keys = list(key_columns)
    if not keys:
        raise ValueError("key_columns must name the conflict target")
    use_copy = _uses_copy(connection)
    batch = RowBatch(tbl, rows, for_copy=use_copy, defer=True)
    if batch.size == 0:
        return 0
    batch.dedupe(keys)
    updates = _resolve_updates(tbl, batch, keys, update_columns)
    if use_copy:
        return _copy_upsert(connection, tbl, batch, keys, updates)
    return _executemany_upsert(connection, tbl, batch, keys, updates)


def _copy_upsert(
    connection: sa.Connection, table: sa.Table, batch: RowBatch, keys: list[str], updates: list[str]
) -> int:
    preparer = connection.dialect.identifier_preparer
    stage = f"_hs_stage_{uuid.uuid4().hex[:16]}"
    driver = connection.connection.driver_connection
    # In a transaction (the normal case) the stage vanishes on commit or rollback, whatever happens.
    on_commit = "" if driver.autocommit else " ON COMMIT DROP"
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {preparer.quote(stage)}{on_commit} AS "
        f"SELECT {_quoted_columns(connection, batch.columns)} FROM {preparer.format_table(table)} WITH NO DATA"
    )
    copy_rows = _copier(connection, preparer.quote(stage), table, batch.columns)

    staged = sa.table(stage, *(sa.column(c) for c in batch.columns))
    stmt = pg_insert(table).from_select(batch.columns, sa.select(*staged.c))
    if updates:
        set_ = {c: stmt.excluded[c] for c in updates} | _onupdate_values(table, batch.columns)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)

    def merge() -> int:
        return connection.execute(stmt, execution_options=_ROWCOUNT).rowcount

    if driver.autocommit or batch.size <= COPY_PIPELINE_ROWS:  # under autocommit one INSERT stays atomic
        copy_rows(batch.tuples(), batch.size)
        written = merge()
    else:
        written = _pipelined_merge(connection, preparer.quote(stage), batch, copy_rows, merge)
    connection.exec_driver_sql(f"DROP TABLE {preparer.quote(stage)}")
    return written


def _pipelined_merge(
    connection: sa.Connection,
    stage: str,
    batch: RowBatch,
    copy_rows: Callable[[Iterable[tuple[Any, ...]], int], None],
    merge: Callable[[], int],
) -> int:
    """Stage and merge ``batch`` chunk by chunk, each chunk's merge running in a worker thread while this
    thread prepares the next chunk (the deferred work of ``RowBatch``, then the tuples).

    The merge (PostgreSQL's INSERT ... ON CONFLICT) is the long pole and leaves Python idle; this way
    Python's share hides behind it. Nothing else changes: the same rows are merged in the same order (so
    they draw the same ids), in the caller's transaction, and the connection is never used by two
    threads at once. Rows are already deduplicated, so no key is merged twice, and whatever Python could
    raise about a value was raised by ``RowBatch`` before anything was written; a database error aborts
    the transaction, as it would have in a single statement.
    """
    written = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk_upsert") as pool:
        pending: Future[int] | None = None
        for rows in batch.chunks(COPY_PIPELINE_ROWS):  # this chunk is prepared while `pending` runs
            if pending is not None:
                written += pending.result()
                connection.exec_driver_sql(f"TRUNCATE {stage}")
            copy_rows(rows, len(rows))
            pending = pool.submit(merge)
        if pending is not None:
            written += pending.result()
    return written


def _executemany_upsert(
    connection: sa.Connection, table: sa.Table, batch: RowBatch, keys: list[str], updates: list[str]
) -> int:
    stmt = _dialect_insert(connection, table)
    if updates:
        set_ = {c: stmt.excluded[c] for c in updates} | _onupdate_values(table, batch.columns)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    written = 0
    for start in range(0, batch.size, EXECUTEMANY_BATCH_ROWS):
        written += connection.execute(
            stmt, batch.dicts(start, start + EXECUTEMANY_BATCH_ROWS), execution_options=_ROWCOUNT
        ).rowcount
    return written


def replace_partition(
    connection: sa.Connection,
    table: TableLike,
    where: Mapping[str, Any],
    rows: Rows,
) -> int:
    """Delete the partition selected by ``where`` (column -> value) and insert ``rows`` in its place.

    Used for idempotent landing: re-running a batch replaces it instead of appending, and the delete and
    insert share the caller's transaction. Rows lacking a partition column get it from ``where``; a row
    carrying a different value is an error. Duplicate primary keys resolve to the last row. Returns the
    number of rows inserted.
    """
    tbl = _as_table(table)
    if not where:
        raise ValueError("replace_partition needs a non-empty 'where' (refusing to replace the whole table)")
    unknown = [c for c in where if c not in tbl.c]
    if unknown:
        raise ValueError(f"partition columns not in table {tbl.name!r}: {unknown}")
    use_copy = _uses_copy(connection)
    batch = RowBatch(tbl, rows, for_copy=use_copy)
    for name, value in where.items():
        batch.set_constant(name, value)
    pk = [c.name for c in tbl.primary_key.columns]
    if batch.size and pk and all(k in batch.values for k in pk):
        batch.dedupe(pk)

    # Compare with the same normalised values the rows carry (e.g. an ISO string becomes a date).
    bounds = {
        name: value if batch.kinds[name] == "json" else batch.normalise_value(name, value)
        for name, value in where.items()
    }
    connection.execute(sa.delete(tbl).where(*(tbl.c[name] == value for name, value in bounds.items())))
    if batch.size == 0:
        return 0
    if use_copy:
        target = connection.dialect.identifier_preparer.format_table(tbl)
        _copier(connection, target, tbl, batch.columns)(batch.tuples(), batch.size)
    else:
        stmt = _dialect_insert(connection, tbl)
        for start in range(0, batch.size, EXECUTEMANY_BATCH_ROWS):
            connection.execute(stmt, batch.dicts(start, start + EXECUTEMANY_BATCH_ROWS))
    return batch.size
