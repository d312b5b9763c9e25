"""Turn the ``signals`` frame into typed arrays once, checking the contract where a mistake would be silent."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from healthscore.scoring.compiled import SEGMENTS, CompiledModel
from healthscore.scoring.composite import ScoringInputError

REQUIRED_COLUMNS = ("account_id", "as_of_date", "segment")
BLOCKED_COLUMN = "blocked_dimensions"
CONFIDENCE_PREFIX = "confidence_"


@dataclass
class Prepared:
    """One row per account, aligned with the input frame's row order."""

    account_id: pd.Series
    as_of: np.ndarray  # datetime64[D]
    segment: pd.Series  # as given (for reasons and the output column)
    segment_code: np.ndarray  # intp; cm.unknown_segment when missing or unknown
    stage_given: np.ndarray  # intp; cm.no_stage when the column is absent or null
    tenure: np.ndarray  # float, NaN when unknown
    arr_usd: np.ndarray  # float, NaN when unknown
    days_to_renewal: np.ndarray  # float, NaN when unknown
    raw: np.ndarray  # (n, K) float64 raw signal values, catalogue order
    blocked: np.ndarray  # (n, D) bool: dimension blocked by a critical quality failure
    multiplier: np.ndarray | None  # (n, D) carry-forward confidence multiplier in [0, 1]; None = all 1

    @property
    def n(self) -> int:
        return len(self.account_id)


def to_days(values: Any) -> np.ndarray:
    """Dates/datetimes/strings (NaT/None allowed) -> datetime64[D]; time of day is dropped."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        return series.to_numpy(dtype="datetime64[D]")
    if series.empty:
        return np.array([], dtype="datetime64[D]")
    # Object columns of datetime.date are common (warehouse reads); converting the distinct values only
    # keeps a one-date frame of a million rows cheap.
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    days = pd.to_datetime(pd.Series(uniques, dtype=object), utc=True).dt.tz_localize(None)
    table = np.append(days.to_numpy(dtype="datetime64[D]"), np.datetime64("NaT", "D"))
    return table[codes]


def _arrow_strings(values: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow storage of a pyarrow-backed string column (zero-copy), else None.

    Arrow's hash kernel (``index_in``) looks strings up without the detour through ``factorize``:
    matching millions of history rows to today's accounts is a good share of scoring with history."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pa.chunked_array(pa.array(values.array))
    return None


def string_column(values: np.ndarray) -> pd.Series:
    """``pd.Series(values, dtype="str")`` for an object array of str or None, through Arrow's C
    conversion: pandas' own inspects every object in Python, 0.1 s per million mostly-None rows."""
    return pd.Series(pa.array(values, type=pa.large_string(), from_pandas=True), dtype="str")


def _index_in(values: pa.ChunkedArray, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set`` (unique), -1 for null or absent."""
    found = pc.index_in(values, value_set=value_set, skip_nulls=True)
    return found.fill_null(-1).to_numpy().astype(np.intp)


def category_codes(
    values: pd.Series, categories: Iterable[str], missing: int
) -> tuple[np.ndarray, np.ndarray]:
    """(codes, unknown_mask): position of each value in ``categories``; ``missing`` for null or unknown.

    Arrow strings are looked up with one hash kernel; anything else is factorized first, so the
    Python-level lookup runs once per distinct value, not once per row.
    """
    cats = list(categories)
    strings = _arrow_strings(values)
    if strings is not None:
        out = _index_in(strings, pa.array(cats, type=strings.type))
        absent = out < 0
        unknown = absent & values.notna().to_numpy()
        out[absent] = missing
        return out, unknown
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    unknown_code = -2
    lookup = np.array(
        [cats.index(u) if u in cats else unknown_code for u in uniques] + [missing], dtype=np.intp
    )
    out = lookup[codes]  # the NA sentinel -1 picks the trailing ``missing``
    unknown = out == unknown_code
    out[unknown] = missing
    return out, unknown


def positions_in(keys: pd.Series, values: pd.Series) -> np.ndarray:
    """Position of each of ``values`` in the unique ``keys`` (-1 when absent or null).

    Arrow strings of one type: one ``index_in`` (a hash table of the keys probed by the values).
    Otherwise one factorize of keys and values together, which assigns the keys codes 0..len(keys)-1
    in order (they are unique and come first), so a value's code is its key's position; both are far
    cheaper than an index lookup on millions of strings.
    """
    key_strings, value_strings = _arrow_strings(keys), _arrow_strings(values)
    if key_strings is not None and value_strings is not None and key_strings.type == value_strings.type:
        return _index_in(value_strings, key_strings.combine_chunks())
    both = pd.concat([keys.reset_index(drop=True), values.reset_index(drop=True)], ignore_index=True)
    codes, _ = pd.factorize(both, use_na_sentinel=True)
    pos = codes[len(keys) :].astype(np.intp)
    pos[pos >= len(keys)] = -1
    return pos


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _signal_matrix(frame: pd.DataFrame, signal_ids: tuple[str, ...]) -> np.ndarray:
    """(n, K) float64 raw values; a zero-copy (read-only) view when the columns are already float64."""
    try:
        return frame[list(signal_ids)].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        pass
    columns = []
    for sig in signal_ids:
        try:
            values = pd.to_numeric(frame[sig], errors="raise")
        except (TypeError, ValueError) as exc:
            raise ScoringInputError(f"signal column {sig!r} is not numeric: {exc}") from None
        columns.append(values.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.column_stack(columns)


def _parse_blocked(values: pd.Series, cm: CompiledModel) -> np.ndarray:
    """``blocked_dimensions`` cells (list/tuple/set/array or "a,b" string, null = none) -> (n, D) mask."""
    blocked = np.zeros((len(values), len(cm.dimension_ids)), dtype=bool)
    index = {d: i for i, d in enumerate(cm.dimension_ids)}
    unknown: set[str] = set()
    cells = values.to_numpy(dtype=object)
    for row in np.flatnonzero(pd.notna(values).to_numpy()):
        cell = cells[row]
        names = cell.replace(";", ",").split(",") if isinstance(cell, str) else list(cell)
        for name in names:
            name = str(name).strip()
            if not name:
                continue
            if name in index:
                blocked[row, index[name]] = True
            else:
                unknown.add(name)
    if unknown:
        raise ScoringInputError(
            f"{BLOCKED_COLUMN} names unknown dimensions {sorted(unknown)}; known: {', '.join(cm.dimension_ids)}"
        )
    return blocked


def prepare_signals(signals: pd.DataFrame, cm: CompiledModel) -> Prepared:
    """Validate the input contract and extract aligned arrays."""
    missing = [c for c in REQUIRED_COLUMNS if c not in signals.columns]
    if missing:
        raise ScoringInputError(f"signals frame lacks required columns {missing}")
    absent = [s for s in cm.signal_ids if s not in signals.columns]
    if absent:
        raise ScoringInputError(
            f"signals frame lacks columns for config signals {absent}; add them as NaN when the data "
            "does not exist (e.g. replaying old snapshots with a newer model)"
        )
    account_id = signals["account_id"].reset_index(drop=True)
    if not account_id.is_unique:  # cheaper than marking duplicates, which only the message needs
        dupes = account_id[account_id.duplicated()]
        raise ScoringInputError(
            f"signals must hold one row per account; duplicated: {dupes.head(5).tolist()}"
        )
    if account_id.isna().any():
        raise ScoringInputError("signals has rows without account_id")

    as_of = to_days(signals["as_of_date"].reset_index(drop=True))
    if np.isnat(as_of).any():
        raise ScoringInputError("signals has rows without as_of_date")
    segment = signals["segment"].reset_index(drop=True)
    segment_code, _ = category_codes(segment, SEGMENTS, cm.unknown_segment)

    stage_given = np.full(len(signals), cm.no_stage, dtype=np.intp)
    if "lifecycle_stage" in signals.columns:
        stage_given, unknown = category_codes(signals["lifecycle_stage"], cm.stages, cm.no_stage)
        if unknown.any():
            bad = sorted({str(v) for v in signals["lifecycle_stage"].to_numpy(dtype=object)[unknown]})
            raise ScoringInputError(f"unknown lifecycle_stage values {bad}; known: {', '.join(cm.stages)}")

    tenure = _float_column(signals, "tenure_days")
    if (tenure < 0).any():
        raise ScoringInputError("tenure_days must be >= 0")
    arr_usd = _float_column(signals, "arr_cents") / 100.0
    days_to_renewal = np.full(len(signals), np.nan)
    if "renewal_date" in signals.columns:
        renewal = to_days(signals["renewal_date"].reset_index(drop=True))
        delta = (renewal - as_of).astype("timedelta64[D]")
        days_to_renewal = np.where(np.isnat(delta), np.nan, delta.astype(np.int64).astype(float))

    raw = _signal_matrix(signals, cm.signal_ids)
    blocked = np.zeros((len(signals), len(cm.dimension_ids)), dtype=bool)
    if BLOCKED_COLUMN in signals.columns:
        blocked = _parse_blocked(signals[BLOCKED_COLUMN].reset_index(drop=True), cm)
    if blocked.any():
        raw = raw.copy()  # may be a read-only view of the caller's frame
        # A blocked dimension's values are not trusted today: every method must see them as missing.
        for d in np.flatnonzero(blocked.any(axis=0)):
            cols = np.flatnonzero(cm.dim_of_signal == d)
            raw[np.ix_(np.flatnonzero(blocked[:, d]), cols)] = np.nan

    multiplier = None
    for d, dim in enumerate(cm.dimension_ids):
        col = CONFIDENCE_PREFIX + dim
        if col in signals.columns:
            if multiplier is None:
                multiplier = np.ones((len(signals), len(cm.dimension_ids)))
            m = _float_column(signals, col)
            bad = ~np.isnan(m) & ((m < 0) | (m > 1))
            if bad.any():
                raise ScoringInputError(f"{col} must be within [0, 1]; got {m[bad][:3].tolist()}")
            multiplier[:, d] = np.where(np.isnan(m), 1.0, m)

    return Prepared(
        account_id=account_id,
        as_of=as_of,
        segment=segment,
        segment_code=segment_code,
        stage_given=stage_given,
        tenure=tenure,
        arr_usd=arr_usd,
        days_to_renewal=days_to_renewal,
        raw=raw,
        blocked=blocked,
        multiplier=multiplier,
    )


def calendar_stage(prep: Prepared, cm: CompiledModel) -> np.ndarray:
    """The given lifecycle stage, else the stage of ``tenure_days``; ``no_stage`` when neither is known."""
    stage = prep.stage_given.copy()
    derive = (stage == cm.no_stage) & ~np.isnan(prep.tenure)
    if derive.any():
        stage[derive] = np.searchsorted(cm.stage_starts, prep.tenure[derive], side="right") - 1
    return stage
