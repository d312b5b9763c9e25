"""Bulk writes on each engine's fast path, always inside the caller's transaction.

The caller owns the unit of work (``with engine.begin() as conn: bulk_upsert(conn, ...)``), so a crash
part-way leaves the previous state intact and several writes can commit together.

* PostgreSQL: rows are streamed with psycopg 3 ``COPY`` into a temporary staging table, then merged by a
  single ``INSERT ... SELECT ... ON CONFLICT (keys) DO UPDATE``. ``replace_partition`` copies straight
  into the target after deleting the partition.
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
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from healthscore.warehouse.types import dumps_json, to_utc

Rows = Sequence[Mapping[str, Any]] | pd.DataFrame
TableLike = sa.Table | type[Any]

EXECUTEMANY_BATCH_ROWS = 10_000
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


def _normalise(values: list[Any], kind: str, *, for_copy: bool, clean: bool) -> list[Any]:
    """Normalise one column. ``clean``: missing values are already None (DataFrame path).

    The exact-type test comes first in every comprehension: it is the common case and the cheapest.
    """
    if kind == "json":
        if not clean:
            values = [v if type(v) is dict or not _missing(v) else None for v in values]
        # COPY needs the text; through SQLAlchemy the JSON type serialises (with the engine's dumps_json).
        return [None if v is None else dumps_json(v) for v in values] if for_copy else values
    convert = _CONVERT.get(kind)
    exact = _EXACT.get(kind)
    if kind == "float":  # NaN has the exact type but means NULL
        return [v if type(v) is float and v == v else (None if _missing(v) else float(v)) for v in values]
    if convert is None:
        return values if clean else [None if _missing(v) else v for v in values]
    if exact is None:
        return [None if v is None or (not clean and _missing(v)) else convert(v) for v in values]
    if clean:
        return [v if v is None or type(v) is exact else convert(v) for v in values]
    return [v if type(v) is exact else (None if _missing(v) else convert(v)) for v in values]


_FRAME_READY = {("b", "bool"), ("i", "int"), ("u", "int"), ("f", "float")}


def _frame_column(series: pd.Series, kind: str) -> tuple[list[Any], bool]:
    """A DataFrame column as Python values (missing -> None), vectorised where pandas can.

    Returns the values and whether they are already normalised for ``kind``.
    """
    mask = series.isna().to_numpy()
    dtype = series.dtype
    ready = False
    if pd.api.types.is_datetime64_any_dtype(dtype) and kind in ("date", "datetime"):
        if kind == "date":
            values = series.dt.date.tolist()
        else:
            utc = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
            values = list(utc.dt.to_pydatetime())
        ready = True
    else:
        values = series.astype(object).tolist()  # numpy scalars -> Python scalars
        ready = (getattr(dtype, "kind", ""), kind) in _FRAME_READY or (
            kind == "text" and isinstance(dtype, pd.StringDtype)
        )
    if mask.any():
        values = [None if m else v for v, m in zip(values, mask, strict=True)]
    return values, ready


class _Batch:
    """Rows held column-wise, normalised for one table and one write path."""

    def __init__(self, table: sa.Table, rows: Rows, *, for_copy: bool) -> None:
        self.table = table
        self.for_copy = for_copy
        kinds = {c.name: _kind(c) for c in table.columns}
        self.kinds = kinds
        self.values: dict[str, list[Any]] = {}
        if isinstance(rows, pd.DataFrame):
            if rows.columns.duplicated().any():
                raise ValueError(
                    f"duplicate DataFrame columns: {list(rows.columns[rows.columns.duplicated()])}"
                )
            self._check_columns(rows.columns)
            for name in rows.columns:
                values, ready = _frame_column(rows[name], kinds[name])
                if not ready:
                    values = _normalise(values, kinds[name], for_copy=for_copy, clean=True)
                self.values[name] = values
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
                raw = [row.get(name) for row in rows]
                self.values[name] = _normalise(raw, kinds[name], for_copy=for_copy, clean=False)
            self.size = len(rows)

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
        key_rows = (
            zip(*(self.values[k] for k in keys), strict=True) if len(keys) > 1 else self.values[keys[0]]
        )
        last = {key: i for i, key in enumerate(key_rows)}
        if len(last) == self.size:
            return
        keep = sorted(last.values())
        self.values = {name: [vals[i] for i in keep] for name, vals in self.values.items()}
        self.size = len(keep)

    def tuples(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self.values.values(), strict=True)

    def dicts(self, start: int, stop: int) -> list[dict[str, Any]]:
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


def _copy_in(connection: sa.Connection, target_sql: str, table: sa.Table, batch: _Batch) -> None:
    """Stream the batch with psycopg 3 COPY, in binary when every column type allows it.

    Binary COPY skips text formatting and parsing on both sides (about twice as fast for scores).
    """
    oids = [_TEXT_OID if oid == _JSON_OID else oid for oid in _column_oids(connection, table, batch.columns)]
    binary = all(oid in _BINARY_OIDS for oid in oids)
    driver = connection.connection.driver_connection
    columns = _quoted_columns(connection, batch.columns)
    statement = f"COPY {target_sql} ({columns}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        if binary:
            copy.set_types(oids)
        write_row = copy.write_row
        for row in batch.tuples():
            write_row(row)


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
    batch = _Batch(tbl, rows, for_copy=use_copy)
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
    _copy_in(connection, preparer.quote(stage), table, batch)

    staged = sa.table(stage, *(sa.column(c) for c in batch.columns))
    stmt = pg_insert(table).from_select(batch.columns, sa.select(*staged.c))
    if updates:
        set_ = {c: stmt.excluded[c] for c in updates} | _onupdate_values(table, batch.columns)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    written = connection.execute(stmt, execution_options=_ROWCOUNT).rowcount
    connection.exec_driver_sql(f"DROP TABLE {preparer.quote(stage)}")
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
        _copy_in(connection, connection.dialect.identifier_preparer.format_table(tbl), tbl, batch)
    else:
        stmt = _dialect_insert(connection, tbl)
        for start in range(0, batch.size, EXECUTEMANY_BATCH_ROWS):
            connection.execute(stmt, batch.dicts(start, start + EXECUTEMANY_BATCH_ROWS))
    return batch.size
