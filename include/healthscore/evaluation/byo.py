"""Bring your own table: read a user's account x date table and its signal mapping, checked up front.

The BYO commands run on tables nobody in the project has seen, so every way such a table can be wrong
(a missing column, a signal that is text, an outcome that is not 0/1, a dimension that does not exist)
is caught here and raised as one ``ByoInputError`` whose message is a single line naming the column.
Nothing downstream has to defend against a malformed table again.

Signal columns keep their names in the table; inside a model they become signal ids (the schema wants
``[a-z][a-z0-9_]*``), derived by :func:`signal_id_for` so that a model written by ``recalibrate`` finds
its columns again when ``backtest --model`` reads the same (or a later) table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from healthscore.config import Segment

ACCOUNT_COLUMN = "account_id"
DATE_COLUMN = "as_of_date"
SEGMENT_COLUMN = "segment"
STAGE_COLUMN = "lifecycle_stage"
DIMENSIONS = ("usage", "engagement", "value", "relationship", "support", "financial")
SEGMENTS = tuple(s.value for s in Segment)
DEFAULT_SEGMENT = Segment.MID_MARKET.value  # the packaged model's reference segment
# Column names the scoring engine reads with a meaning of their own: a signal may not take them as its id.
RESERVED_IDS = frozenset(
    {
        ACCOUNT_COLUMN,
        DATE_COLUMN,
        SEGMENT_COLUMN,
        STAGE_COLUMN,
        "tenure_days",
        "arr_cents",
        "renewal_date",
        "blocked_dimensions",
        "plan",
        "owner_id",
    }
)
MAX_ID_LENGTH = 64


class ByoInputError(ValueError):
    """A bad table, mapping or option; the message is one line and names what was wrong."""


@dataclass(frozen=True)
class MappedSignal:
    """One signal column of the user's table and where it goes in a model."""

    column: str
    signal_id: str
    dimension: str
    direction: int  # 1: higher is healthier, -1: lower is healthier
    binary: bool  # only 0/1 values


@dataclass
class ByoTable:
    """The validated table: one row per (account, date), signals as float columns, outcome as 0/1."""

    frame: pd.DataFrame  # account_id (str), as_of_date (datetime64), segment (str), signals, outcome
    signals: tuple[MappedSignal, ...]
    outcome: str
    source: str
    has_segment: bool
    has_stage: bool
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def y(self) -> np.ndarray:
        return self.frame[self.outcome].to_numpy(dtype=np.int8)

    @property
    def dates(self) -> np.ndarray:
        return self.frame[DATE_COLUMN].to_numpy(dtype="datetime64[D]")

    @property
    def accounts(self) -> np.ndarray:
        return self.frame[ACCOUNT_COLUMN].to_numpy(dtype=object)

    @property
    def segments(self) -> np.ndarray:
        return self.frame[SEGMENT_COLUMN].to_numpy(dtype=object)

    def raw(self, signal: MappedSignal) -> np.ndarray:
        return self.frame[signal.column].to_numpy(dtype=float)

    def subset(self, rows: np.ndarray) -> ByoTable:
        """The same table restricted to ``rows`` (positions), in their order."""
        return replace(self, frame=self.frame.iloc[rows].reset_index(drop=True), notes=list(self.notes))


# ----------------------------------------------------------------------------------------------- ids


def signal_id_for(column: str) -> str:
    """A model signal id for a table column: lower case, ``[a-z0-9_]``, starting with a letter.

    Reserved engine column names get ``_signal`` appended so the engine never mistakes a signal for,
    say, the account's tenure. Deterministic: the same column name always gives the same id.
    """
    text = re.sub(r"[^a-z0-9_]+", "_", column.strip().lower())
    text = re.sub(r"_+", "_", text).strip("_")
    if not text or not text[0].isalpha():
        text = "s_" + text if text else "signal"
    if text in RESERVED_IDS or text.startswith("confidence_"):
        text += "_signal"
    return text[:MAX_ID_LENGTH].rstrip("_")


# -------------------------------------------------------------------------------------------- reading


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_table(path: Path | str) -> pd.DataFrame:
    """CSV or Parquet by extension (anything else is tried as CSV); errors are one line."""
    p = Path(path)
    if not p.exists():
        raise ByoInputError(f"{p}: table file not found")
    if p.is_dir():
        raise ByoInputError(f"{p}: is a directory, not a CSV or Parquet table")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p, low_memory=False)
    except pd.errors.EmptyDataError:
        raise ByoInputError(f"{p}: the table is empty") from None
    except Exception as exc:  # pyarrow, csv and unicode errors all end here as one line
        raise ByoInputError(f"{p}: cannot read the table: {_one_line(exc)}") from None


def read_mapping(path: Path | str) -> dict[str, Any]:
    """The mapping file (YAML or JSON; YAML parses JSON too) as a dict of column -> spec."""
    p = Path(path)
    if not p.exists():
        raise ByoInputError(f"{p}: mapping file not found")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ByoInputError(f"{p}: cannot parse the mapping: {_one_line(exc)}") from None
    if not isinstance(data, Mapping) or not data:
        raise ByoInputError(
            f"{p}: the mapping must be a non-empty mapping of signal_column: {{dimension: ..., direction: 1|-1}}"
        )
    return {str(k): v for k, v in data.items()}


def _direction(value: Any, column: str, source: str) -> int:
    if isinstance(value, str):
        text = value.strip().lower()
        named = {"higher_is_better": 1, "lower_is_better": -1, "1": 1, "+1": 1, "-1": -1}
        if text in named:
            return named[text]
    elif isinstance(value, int | float) and not isinstance(value, bool) and value in (1, -1):
        return int(value)
    raise ByoInputError(
        f"{source}: column {column!r}: direction must be 1 (higher is healthier) or -1, got {value!r}"
    )


def parse_mapping(
    data: Mapping[str, Any], source: str, dimensions: tuple[str, ...] = DIMENSIONS
) -> list[tuple[str, str, int]]:
    """(column, dimension, direction) per mapped column, in file order; every entry checked."""
    out: list[tuple[str, str, int]] = []
    for column, spec in data.items():
        if not isinstance(spec, Mapping):
            raise ByoInputError(
                f"{source}: column {column!r}: expected {{dimension: ..., direction: 1|-1}}, got {spec!r}"
            )
        unknown = sorted(set(map(str, spec)) - {"dimension", "direction"})
        if unknown:
            raise ByoInputError(
                f"{source}: column {column!r}: unknown key {unknown[0]!r} (allowed: dimension, direction)"
            )
        if "dimension" not in spec:
            raise ByoInputError(f"{source}: column {column!r}: dimension is missing")
        if "direction" not in spec:
            raise ByoInputError(
                f"{source}: column {column!r}: direction is missing (1 = higher is healthier, -1)"
            )
        dimension = str(spec["dimension"]).strip()
        if dimension not in dimensions:
            raise ByoInputError(
                f"{source}: column {column!r}: unknown dimension {dimension!r}; expected one of {', '.join(dimensions)}"
            )
        out.append((column, dimension, _direction(spec["direction"], column, source)))
    return out


def _numeric(values: pd.Series, column: str) -> np.ndarray:
    """A signal column as float (NaN = missing); text, dates or infinities are refused by name."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype):
        out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        present = values.notna() & (values.astype(str).str.strip() != "")
        converted = pd.to_numeric(values.where(present), errors="coerce")
        bad = present & converted.isna()
        if bad.any():
            first = values[bad].iloc[0]
            raise ByoInputError(
                f"column {column!r} is not numeric: {int(bad.sum())} values such as {str(first)[:40]!r} "
                "(signals must be integers, floats or 0/1 flags)"
            )
        out = converted.to_numpy(dtype=float, na_value=np.nan)
    else:
        raise ByoInputError(
            f"column {column!r} is not numeric (dtype {values.dtype}); signals must be numbers"
        )
    if np.isinf(out).any():
        raise ByoInputError(f"column {column!r} has infinite values")
    return out


def _outcome(values: pd.Series, column: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(np.int8).to_numpy()
    numeric = pd.to_numeric(values, errors="coerce")
    blank = values.isna()
    if blank.any():
        raise ByoInputError(
            f"outcome column {column!r} has {int(blank.sum())} empty values; it must be 0 or 1 on every row"
        )
    bad = numeric.isna() | ~numeric.isin([0, 1])
    if bad.any():
        first = values[bad].iloc[0]
        raise ByoInputError(
            f"outcome column {column!r} must be 0 (retained) or 1 (churned); found {str(first)[:40]!r} "
            f"in {int(bad.sum())} rows"
        )
    return numeric.to_numpy(dtype=np.int8)


def load_byo(
    table_path: Path | str,
    mapping_path: Path | str,
    outcome: str,
    *,
    dimensions: tuple[str, ...] = DIMENSIONS,
) -> ByoTable:
    """Read and check the table and the mapping; the one entry point of both BYO commands."""
    mapping_source = str(mapping_path)
    entries = parse_mapping(read_mapping(mapping_path), mapping_source, dimensions)
    raw = read_table(table_path)
    if raw.empty:
        raise ByoInputError(f"{table_path}: the table has no rows")
    columns = {str(c) for c in raw.columns}
    for required, why in (
        (ACCOUNT_COLUMN, "required"),
        (DATE_COLUMN, "required"),
        (outcome, "the --outcome column"),
    ):
        if required not in columns:
            raise ByoInputError(f"missing column {required!r} ({why}) in {table_path}")
    for column, _, _ in entries:
        if column not in columns:
            raise ByoInputError(
                f"missing column {column!r} (named in the mapping {mapping_source}) in {table_path}"
            )
        if column in (ACCOUNT_COLUMN, DATE_COLUMN, SEGMENT_COLUMN, STAGE_COLUMN, outcome):
            raise ByoInputError(f"column {column!r} is mapped as a signal but is the table's {column} column")

    frame = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    account = raw[ACCOUNT_COLUMN]
    if account.isna().any():
        raise ByoInputError(f"column {ACCOUNT_COLUMN!r} has {int(account.isna().sum())} empty values")
    frame[ACCOUNT_COLUMN] = account.astype(str).to_numpy(dtype=object)
    dates = pd.to_datetime(raw[DATE_COLUMN], errors="coerce", utc=True)
    if dates.isna().any():
        first = raw[DATE_COLUMN][dates.isna()].iloc[0]
        raise ByoInputError(
            f"column {DATE_COLUMN!r} has values that are not dates, such as {str(first)[:40]!r}"
        )
    frame[DATE_COLUMN] = dates.dt.tz_localize(None).dt.normalize().to_numpy()
    dupes = frame.duplicated([ACCOUNT_COLUMN, DATE_COLUMN])
    if dupes.any():
        first = frame[dupes].iloc[0]
        raise ByoInputError(
            f"columns {ACCOUNT_COLUMN!r}/{DATE_COLUMN!r}: {int(dupes.sum())} duplicate rows, e.g. account "
            f"{first[ACCOUNT_COLUMN]!r} on {first[DATE_COLUMN].date()} (one row per account and date)"
        )

    notes: list[str] = []
    has_segment = SEGMENT_COLUMN in columns
    if has_segment:
        seg = raw[SEGMENT_COLUMN].astype("string").str.strip().str.lower()
        unknown = seg.notna() & ~seg.isin(SEGMENTS)
        if unknown.any():
            raise ByoInputError(
                f"column {SEGMENT_COLUMN!r} has unknown value {str(raw[SEGMENT_COLUMN][unknown].iloc[0])!r}; "
                f"expected {', '.join(SEGMENTS)} (or leave it empty)"
            )
        if seg.isna().any():
            notes.append(f"{int(seg.isna().sum())} rows without a segment were treated as {DEFAULT_SEGMENT}")
        frame[SEGMENT_COLUMN] = seg.fillna(DEFAULT_SEGMENT).to_numpy(dtype=object)
    else:
        notes.append(
            f"no segment column: every account was treated as {DEFAULT_SEGMENT} (one universal model)"
        )
        frame[SEGMENT_COLUMN] = DEFAULT_SEGMENT
    has_stage = STAGE_COLUMN in columns
    if has_stage:
        frame[STAGE_COLUMN] = raw[STAGE_COLUMN].astype("string").str.strip().to_numpy(dtype=object)

    signals: list[MappedSignal] = []
    seen_ids: dict[str, str] = {}
    for column, dimension, direction in entries:
        values = _numeric(raw[column], column)
        if np.isnan(values).all():
            raise ByoInputError(f"column {column!r} has no values (every row is empty)")
        sid = signal_id_for(column)
        if sid in seen_ids:
            raise ByoInputError(
                f"columns {seen_ids[sid]!r} and {column!r} both become signal id {sid!r}; rename one of them"
            )
        seen_ids[sid] = column
        present = values[~np.isnan(values)]
        binary = bool(np.isin(present, (0.0, 1.0)).all())
        frame[column] = values
        signals.append(MappedSignal(column, sid, dimension, direction, binary))
    frame[outcome] = _outcome(raw[outcome], outcome)
    return ByoTable(
        frame=frame,
        signals=tuple(signals),
        outcome=outcome,
        source=str(table_path),
        has_segment=has_segment,
        has_stage=has_stage,
        notes=notes,
    )
