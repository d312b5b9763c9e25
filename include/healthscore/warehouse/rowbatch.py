"""Rows held column-wise and normalised for one table and one write path (``RowBatch``).

Both paths first normalise values the same way (NaN/NaT/NA -> NULL, numpy scalars -> Python, datetimes ->
aware UTC, datetimes in DATE columns -> dates, JSON via ``dumps_json``), so the stored data does not depend
on the engine or on whether rows arrived as dicts or as a DataFrame.

Used by ``healthscore.warehouse.upsert``, which owns the write paths.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from healthscore.warehouse.types import dumps_json_many, json_column_serialiser, to_utc

Rows = Sequence[Mapping[str, Any]] | pd.DataFrame
TableLike = sa.Table | type[Any]

# COPY: a RowBatch's deferred work is done this many rows at a time as rows stream out.
COPY_SERIALISE_ROWS = 25_000


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


class RowBatch:
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
