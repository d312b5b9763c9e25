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
"""

from __future__ import annotations

import datetime as dt
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from healthscore.warehouse.types import dumps_json_many, json_column_serialiser, to_utc

Rows = Sequence[Mapping[str, Any]] | pd.DataFrame
TableLike = sa.Table | type[Any]

EXECUTEMANY_BATCH_ROWS = 10_000
# COPY: bulk_upsert's deferred work (see _Batch) is done this many rows at a time as rows stream out, and
# big batches hand the socket to psycopg's writer thread, so Python keeps preparing rows while PostgreSQL
# ingests them.
COPY_SERIALISE_ROWS = 25_000
COPY_QUEUED_MIN_ROWS = 10_000
# bulk_upsert in a transaction stages and merges bigger batches this many rows at a time, preparing the
# next chunk while PostgreSQL merges the last (see _pipelined_merge).
COPY_PIPELINE_ROWS = 50_000
# SQLAlchemy only memoizes rowcount for UPDATE/DELETE unless asked; INSERT ... ON CONFLICT needs it.
_ROWCOUNT = {"preserve_rowcount": True}


# ------------------------------------------------------------------------------------------- helpers


def _as_table(table: TableLike) -> sa.Table:
    if isinstance(table, sa.Table):
        return table
    inner = getattr(table, "__table__", None)
    if isinstance(inner, sa.Table):
        return inner
    raise TypeError(f"expected a Table or a mapped class, got {table!r}")


def _missing(value: Any) -> bool:
    # pd.NA must be tested by identity: bool(pd.NA == x) raises.
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and value != value)  # NaN, incl. numpy floats
    )


def _kind(column: sa.Column[Any]) -> str:
    """How values of a column are normalised (json, datetime, date, bool, int, float, text, other)."""
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, sa.JSON):
        return "json"
    if isinstance(kind, sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.Integer):
        return "int"
    if isinstance(kind, sa.Float):  # not Numeric: Decimals must not be squeezed through float
        return "float"
    if isinstance(kind, sa.String):
        return "text"
    return "other"


def _to_datetime(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
    return to_utc(value)


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):  # before date: datetime is a date subclass
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise TypeError(f"expected a date, got {type(value).__name__}: {value!r}")


def _to_int(value: Any) -> int:
    # pandas turns an integer column with gaps into float64: 3.0 is fine, 3.5 is a bug.
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"non-integral value {value!r} for an integer column")
        return int(value)
    return operator.index(value)  # numpy ints, bools


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "datetime": _to_datetime,
    "date": _to_date,
    "bool": bool,
    "int": _to_int,
    "float": float,
    "text": str,
}
# Values of exactly this type need no conversion (the common case, checked first because it is cheap).
_EXACT: dict[str, type] = {"date": dt.date, "bool": bool, "int": int, "float": float, "text": str}


_NONE = type(None)


def _nan_to_none(values: list[float | None]) -> list[float | None]:
    """Floats (or None) with NaN -> None, found by numpy rather than a comparison per value."""
    nan = np.flatnonzero(np.isnan(np.array(values, dtype=float))).tolist()  # None is NaN here too
    if not nan:
        return values
    values = list(values)
    for i in nan:
        values[i] = None
    return values


def _json_values(values: list[Any], *, clean: bool) -> list[Any]:
    if clean or set(map(type, values)) <= {dict, _NONE}:
        return values
    return [v if type(v) is dict or not _missing(v) else None for v in values]


def _normalise(values: list[Any], kind: str, *, for_copy: bool, clean: bool) -> list[Any]:
    """Normalise one column. ``clean``: missing values are already None (DataFrame path).

    The exact-type test comes first in every comprehension: it is the common case and the cheapest.
    """
    if kind == "json":
        values = _json_values(values, clean=clean)
        # COPY needs the text (dumps_json's, built column-wise); through SQLAlchemy the JSON type
        # serialises (with the engine's dumps_json).
        return dumps_json_many(values) if for_copy else values
    convert = _CONVERT.get(kind)
    exact = _EXACT.get(kind)
    if kind == "float":  # NaN has the exact type but means NULL
        if set(map(type, values)) <= {float, _NONE}:
            return _nan_to_none(values)
        return [v if type(v) is float and v == v else (None if _missing(v) else float(v)) for v in values]
    if convert is None:
        return values if clean else [None if _missing(v) else v for v in values]
    if exact is None:  # datetime
        return _convert_distinct(values, convert, clean=clean)
    if set(map(type, values)) <= {exact, _NONE}:  # nothing to convert (a set of types is built in C)
        return values
    if clean:
        return [v if v is None or type(v) is exact else convert(v) for v in values]
    return [v if type(v) is exact else (None if _missing(v) else convert(v)) for v in values]


def _convert_distinct(values: list[Any], convert: Callable[[Any], Any], *, clean: bool) -> list[Any]:
    """Convert each distinct value once: a timestamp column mostly repeats a few values (a run's clock).

    Equal values convert to the same value (equal datetimes are the same instant), so this is the
    value-by-value conversion, only cheaper.
    """

    def one(v: Any) -> Any:
        return None if v is None or (not clean and _missing(v)) else convert(v)

    try:
        distinct = dict.fromkeys(values)
        for v in distinct:
            distinct[v] = one(v)
        return list(map(distinct.__getitem__, values))
    except TypeError:  # unhashable, or a hash collision with pd.NA: convert one by one, raising as ever
        return [one(v) for v in values]


_FRAME_READY = {("b", "bool"), ("i", "int"), ("u", "int"), ("f", "float")}


def _frame_ready(dtype: Any, kind: str) -> bool:
    """Whether ``_frame_column`` hands back a column of this dtype already normalised for ``kind``."""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return kind in ("date", "datetime")
    return (getattr(dtype, "kind", ""), kind) in _FRAME_READY or (
        kind == "text" and isinstance(dtype, pd.StringDtype)
    )


def _frame_column(series: pd.Series, kind: str) -> tuple[list[Any], bool]:
    """A DataFrame column as Python values (missing -> None), vectorised where pandas can.

    Returns the values and whether they are already normalised for ``kind`` (then nothing here raises).
    """
    mask = series.isna().to_numpy()
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) and kind in ("date", "datetime"):
        if kind == "date":
            values = series.dt.date.tolist()
        else:
            utc = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
            # Timestamps mostly repeat (a run's clock): convert each distinct one once.
            codes, distinct = pd.factorize(utc)
            converted = [*distinct.to_pydatetime(), None]  # code -1 (NaT) -> None
            values = list(map(converted.__getitem__, codes.tolist()))
    else:
        values = series.astype(object).tolist()  # numpy scalars -> Python scalars
    if mask.any():
        values = [None if m else v for v, m in zip(values, mask, strict=True)]
    return values, _frame_ready(dtype, kind)


def _ready_frame_values(kind: str) -> Callable[[pd.Series], list[Any]]:
    return lambda series: _frame_column(series, kind)[0]


def _pick(values: list[Any] | pd.Series, positions: list[int]) -> list[Any] | pd.Series:
    if isinstance(values, pd.Series):
        return values.take(positions)
    return [values[i] for i in positions]


def _rows(values: list[Any] | pd.Series, start: int, stop: int) -> list[Any] | pd.Series:
    return values.iloc[start:stop] if isinstance(values, pd.Series) else values[start:stop]


class _Batch:
    """Rows held column-wise, normalised for one table and one write path.

    ``defer`` (COPY only): work that cannot fail is left for ``chunks()``/``tuples()`` to do chunk by
    chunk as rows are written: serialising JSON columns whose values cannot fail to serialise, and
    converting DataFrame columns whose dtype needs no normalisation. Everything that can raise about a
    value (conversions, unserialisable JSON) is done here, before anything is written.
    """

    def __init__(self, table: sa.Table, rows: Rows, *, for_copy: bool, defer: bool = False) -> None:
        self.table = table
        self.for_copy = for_copy
        self.defer = defer and for_copy
        # Columns whose values still hold raw data (a list, or a Series), with what turns them into
        # normalised values; applied to any slice or selection of the rows.
        self.deferred: dict[str, Callable[[Any], list[Any]]] = {}
        kinds = {c.name: _kind(c) for c in table.columns}
        self.kinds = kinds
        self.values: dict[str, Any] = {}
        if isinstance(rows, pd.DataFrame):
            if rows.columns.duplicated().any():
                raise ValueError(
                    f"duplicate DataFrame columns: {list(rows.columns[rows.columns.duplicated()])}"
                )
            self._check_columns(rows.columns)
            for name in rows.columns:
                series = rows[name]
                if self.defer and _frame_ready(series.dtype, kinds[name]):
                    self.values[name] = series  # sliced and picked by position
                    self.deferred[name] = _ready_frame_values(kinds[name])
                    continue
                values, ready = _frame_column(series, kinds[name])
                self._add(name, values, ready=ready, clean=True)
            self.size = len(rows)
        else:
            rows = list(rows)
            names: dict[str, None] = dict.fromkeys(rows[0]) if rows else {}
            first = rows[0].keys() if rows else None
            for row in rows:
                if row.keys() != first:  # ragged rows: a key missing from a row is NULL there
                    names.update(dict.fromkeys(row))
            self._check_columns(names)
            for name in names:
                self._add(name, [row.get(name) for row in rows], ready=False, clean=False)
            self.size = len(rows)

    def _add(self, name: str, values: list[Any], *, ready: bool, clean: bool) -> None:
        kind = self.kinds[name]
        if kind == "json" and self.defer:
            values = _json_values(values, clean=clean)
            serialiser = json_column_serialiser(values)
            if serialiser is not None:
                self.values[name] = values
                self.deferred[name] = serialiser
                return
        self.values[name] = values if ready else _normalise(values, kind, for_copy=self.for_copy, clean=clean)

    def materialise(self, names: Iterable[str]) -> None:
        """Finish the deferred work for the columns among ``names`` now."""
        for name in [n for n in names if n in self.deferred]:
            self.values[name] = self.deferred.pop(name)(self.values[name])

    def _check_columns(self, names: Iterable[Any]) -> None:
        unknown = [n for n in names if not isinstance(n, str) or n not in self.table.c]
        if unknown:
            raise ValueError(f"columns not in table {self.table.name!r}: {unknown}")

    @property
    def columns(self) -> list[str]:
        return list(self.values)

    def normalise_value(self, name: str, value: Any) -> Any:
        return _normalise([value], self.kinds[name], for_copy=self.for_copy, clean=False)[0]

    def set_constant(self, name: str, value: Any) -> None:
        """Add or check a column that must hold ``value`` on every row (a partition key)."""
        value = self.normalise_value(name, value)
        self.materialise([name])
        if name not in self.values:
            self.values[name] = [value] * self.size
            return
        for i, v in enumerate(self.values[name]):
            if v != value:
                raise ValueError(f"row {i} has {name}={v!r} outside the partition {name}={value!r}")

    def dedupe(self, keys: Sequence[str]) -> None:
        """Keep the last row per key, as if the rows had been upserted one by one.

        PostgreSQL refuses to update the same row twice in one ON CONFLICT statement, and a plain
        INSERT would fail on the duplicate, so duplicates are settled here for both engines.
        """
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise ValueError(f"key columns missing from rows: {missing}")
        self.materialise(keys)
        key_rows = (
            zip(*(self.values[k] for k in keys), strict=True) if len(keys) > 1 else self.values[keys[0]]
        )
        last = dict(zip(key_rows, range(self.size), strict=True))  # a later duplicate overwrites
        if len(last) == self.size:
            return
        keep = sorted(last.values())
        self.values = {name: _pick(vals, keep) for name, vals in self.values.items()}
        self.size = len(keep)

    def tuples(self) -> Iterator[tuple[Any, ...]]:
        if not self.deferred:
            return zip(*self.values.values(), strict=True)
        return chain.from_iterable(self.chunks(COPY_SERIALISE_ROWS))

    def chunks(self, rows: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows as tuples, ``rows`` at a time, finishing the deferred work chunk by chunk."""
        deferred = self.deferred
        for start in range(0, self.size, rows):
            stop = start + rows
            columns = [
                deferred[name](_rows(values, start, stop)) if name in deferred else values[start:stop]
                for name, values in self.values.items()
            ]
            yield list(zip(*columns, strict=True))

    def dicts(self, start: int, stop: int) -> list[dict[str, Any]]:
        self.materialise(list(self.deferred))
        names = self.columns
        cols = [self.values[n][start:stop] for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


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
    table: sa.Table, batch: _Batch, keys: Sequence[str], update_columns: Sequence[str] | None
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
    batch = _Batch(tbl, rows, for_copy=use_copy, defer=True)
    if batch.size == 0:
        return 0
    batch.dedupe(keys)
    updates = _resolve_updates(tbl, batch, keys, update_columns)
    if use_copy:
        return _copy_upsert(connection, tbl, batch, keys, updates)
    return _executemany_upsert(connection, tbl, batch, keys, updates)


def _copy_upsert(
    connection: sa.Connection, table: sa.Table, batch: _Batch, keys: list[str], updates: list[str]
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
    batch: _Batch,
    copy_rows: Callable[[Iterable[tuple[Any, ...]], int], None],
    merge: Callable[[], int],
) -> int:
    """Stage and merge ``batch`` chunk by chunk, each chunk's merge running in a worker thread while this
    thread prepares the next chunk (the deferred work of ``_Batch``, then the tuples).

    The merge (PostgreSQL's INSERT ... ON CONFLICT) is the long pole and leaves Python idle; this way
    Python's share hides behind it. Nothing else changes: the same rows are merged in the same order (so
    they draw the same ids), in the caller's transaction, and the connection is never used by two
    threads at once. Rows are already deduplicated, so no key is merged twice, and whatever Python could
    raise about a value was raised by ``_Batch`` before anything was written; a database error aborts
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
    connection: sa.Connection, table: sa.Table, batch: _Batch, keys: list[str], updates: list[str]
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
    batch = _Batch(tbl, rows, for_copy=use_copy)
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
