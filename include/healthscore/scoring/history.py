"""What yesterday's archive says about today: trends, momentum, projection, attribution, days in stage.

History is read as given (the caller chooses how far back to load). Rows are matched to today's accounts
by ``account_id``; rows dated on or after the account's as-of date are ignored, so re-running a day
never compares a score with itself. When several model versions scored the same day (champion and
shadow challenger), the row of the model being run wins, else any row of that day.

Dimension scores in history may arrive either as a ``dimension_scores`` column of dicts (or JSON text),
as the archive stores them, or flattened as ``dim_<dimension>`` columns (``flatten_dimension_scores``);
the flat form is read without touching Python objects and wins when both are present.

Lookups are a single ``searchsorted`` over a (account, date) key, so a year of history for a million
accounts costs a sort, not a join per window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from healthscore.scoring.compiled import CHUNK_ROWS, CompiledModel
from healthscore.scoring.composite import ScoringInputError, weighted_average
from healthscore.scoring.inputs import category_codes, positions_in, to_days
from healthscore.scoring.pyobjects import object_array, tenths_floats

DIM_PREFIX = "dim_"
PROJECTION_DAYS = 90
PROJECTION_MIN_POINTS = 3  # today plus at least two archived scores
PROJECTION_MIN_SPAN_DAYS = 28  # a line through a week of noise is not a trend
_MAX_SHARED_DELTAS = 1 << 16  # distinct tenths one attribution table may span (+/-100 points: 2,001)


def flatten_dimension_scores(frame: pd.DataFrame, dimensions: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Copy of ``frame`` with ``dimension_scores`` dicts (or JSON) expanded into ``dim_<d>`` float columns."""
    out = frame.copy()
    values = _dimension_values(frame["dimension_scores"].to_numpy(dtype=object), dimensions)
    for j, dim in enumerate(dimensions):
        out[DIM_PREFIX + dim] = values[:, j]
    return out


def _dimension_values(cells: np.ndarray, dimensions: list[str] | tuple[str, ...]) -> np.ndarray:
    out = np.full((len(cells), len(dimensions)), np.nan)
    for i, cell in enumerate(cells):
        if isinstance(cell, str):
            cell = json.loads(cell)
        if not isinstance(cell, Mapping):
            continue
        for j, dim in enumerate(dimensions):
            v = cell.get(dim)
            if v is not None:
                out[i, j] = float(v)
    return out


@dataclass
class History:
    """Archived rows of today's accounts, one per (account, day), sorted by (row, day)."""

    row: np.ndarray  # index of the account in today's frame
    day: np.ndarray  # days since ``origin``, so keys stay non-negative
    score: np.ndarray  # float, NaN when unscored that day
    stage: np.ndarray  # stage code, -1 when unknown
    source: pd.DataFrame  # the caller's frame, untouched (read lazily for dimension scores)
    src: np.ndarray  # position of each row in ``source``
    origin: int
    key_span: int
    keys: np.ndarray  # key(row, day) of each row, ascending

    def key(self, row: np.ndarray, day: np.ndarray) -> np.ndarray:
        return row.astype(np.int64) * self.key_span + day

    @cached_property
    def scored(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, sorted keys) of the rows that carry a score: what trend lookups search."""
        pos = np.flatnonzero(~np.isnan(self.score))
        return pos, self.keys[pos]


def prepare_history(
    history: pd.DataFrame | None,
    account_id: pd.Series,
    as_of: np.ndarray,
    model_version: str,
    cm: CompiledModel,
) -> History | None:
    """Select, dedupe and sort the history rows that belong to today's accounts (no frame copies)."""
    if history is None or len(history) == 0:
        return None
    missing = [c for c in ("account_id", "as_of_date", "score") if c not in history.columns]
    if missing:
        raise ScoringInputError(f"history frame lacks required columns {missing}")
    if len(account_id) == 0:
        return None
    row = positions_in(account_id, history["account_id"])
    day = to_days(history["as_of_date"]).view(np.int64)
    today = as_of.view(np.int64)
    src = np.flatnonzero((row >= 0) & (day < today[row]))  # row -1 reads the last account: masked anyway
    if src.size == 0:
        return None
    row, day = row[src], day[src]
    origin = int(min(day.min(), today.min()))
    span = int(max(today.max(), day.max()) - origin) + 1
    key = np.multiply(row, span, dtype=np.int64)  # orders like (row, day)
    key += day
    key -= origin
    preferred = np.zeros(src.size, dtype=np.int8)
    if "model_version" in history.columns:
        mine = (history["model_version"] == model_version).to_numpy(dtype=bool, na_value=False)
        preferred = mine[src].astype(np.int8)
    order = np.lexsort((preferred, key))  # the last of each (row, day) is the preferred one
    key, src = key[order], src[order]
    last_of_day = np.ones(src.size, dtype=bool)
    last_of_day[:-1] = key[1:] != key[:-1]
    keys, src = key[last_of_day], src[last_of_day]
    row, day = np.divmod(keys, span)

    score = pd.to_numeric(history["score"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)[src]
    stage = np.full(src.size, -1, dtype=np.intp)
    if "lifecycle_stage" in history.columns:
        codes, _ = category_codes(history["lifecycle_stage"], cm.stages, -1)
        stage = codes[src]
    return History(
        row=row.astype(np.intp, copy=False),
        day=day,
        score=score,
        stage=stage,
        source=history,
        src=src,
        origin=origin,
        key_span=span,
        keys=keys,
    )


def lookup_back(
    hist: History, as_of: np.ndarray, days_back: int, tolerance: int
) -> tuple[np.ndarray, np.ndarray]:
    """Newest scored history row at or before as_of - days_back, at most ``tolerance`` days older.

    Returns ``(position, found)``: position into ``hist`` arrays (valid where ``found``).
    """
    return lookups_back(hist, as_of, (days_back,), tolerance)[days_back]


def lookups_back(
    hist: History, as_of: np.ndarray, windows: Iterable[int], tolerance: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``lookup_back`` for several windows, sharing today's keys between them."""
    pos_scored, keys = hist.scored
    rows = np.arange(as_of.size)
    today = _shift(hist, as_of)
    today_key = hist.key(rows, today)
    out = {}
    for days_back in windows:
        # A target before the archive starts yields a key inside an earlier account's block (or -1): not found.
        at = np.searchsorted(keys, today_key - days_back, side="right") - 1
        if pos_scored.size == 0:
            out[days_back] = np.zeros(as_of.size, dtype=np.intp), np.zeros(as_of.size, dtype=bool)
            continue
        pos = pos_scored[np.clip(at, 0, None)]
        found = (at >= 0) & (hist.row[pos] == rows) & (hist.day[pos] >= today - (days_back + tolerance))
        out[days_back] = pos, found
    return out


def _shift(hist: History, as_of: np.ndarray) -> np.ndarray:
    """Today's dates in the history's shifted day numbering."""
    return as_of.astype(np.int64) - hist.origin


def trend(
    hist: History | None, score: np.ndarray, as_of: np.ndarray, days_back: int, tolerance: int
) -> np.ndarray:
    """Score now minus the archived score ``days_back`` ago; NaN without a comparable archived score."""
    if hist is None:
        return np.full(score.size, np.nan)
    return score_change(hist, score, *lookup_back(hist, as_of, days_back, tolerance))


def score_change(hist: History, score: np.ndarray, pos: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Score now minus the archived score at a ``lookup_back`` result (NaN where not found)."""
    out = np.full(score.size, np.nan)
    out[found] = np.round(score[found] - hist.score[pos[found]], 1)
    return out


MOMENTUM_UP, MOMENTUM_FLAT, MOMENTUM_DOWN = 0, 1, 2


def momentum_codes(trend_window: np.ndarray, stable_points: float) -> np.ndarray:
    """0 up / 1 flat (within +/- stable_points) / 2 down; -1 when there is no trend."""
    code = np.where(trend_window > stable_points, MOMENTUM_UP, MOMENTUM_FLAT)
    code[trend_window < -stable_points] = MOMENTUM_DOWN
    code[np.isnan(trend_window)] = -1
    return code


def projection(hist: History | None, score: np.ndarray, as_of: np.ndarray) -> np.ndarray:
    """Least-squares line through the last 90 days of scores (today included), read 90 days ahead.

    Clipped to 0..100; NaN with fewer than three points or when they span less than four weeks.
    """
    n_rows = score.size
    out = np.full(n_rows, np.nan)
    if hist is None:
        return out
    age = _shift(hist, as_of)[hist.row]
    age -= hist.day  # days before today, >= 1
    use = (age <= PROJECTION_DAYS) & ~np.isnan(hist.score)
    r, y = hist.row[use], hist.score[use]
    t = -age[use].astype(float)  # the same as (day - today) as float
    now = ~np.isnan(score)
    y0 = np.where(now, score, 0.0)
    n = np.bincount(r, minlength=n_rows) + now
    st = np.bincount(r, weights=t, minlength=n_rows)
    sy = np.bincount(r, weights=y, minlength=n_rows) + y0
    stt = np.bincount(r, weights=t * t, minlength=n_rows)
    sty = np.bincount(r, weights=t * y, minlength=n_rows)
    oldest = np.full(n_rows, 0.0)
    first = np.ones(r.size, dtype=bool)  # sorted by (row, day): an account's first point
    first[1:] = r[1:] != r[:-1]
    oldest[r[first]] = t[first]  # is its oldest (t < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = n * stt - st * st
        slope = (n * sty - st * sy) / denom
        intercept = (sy - slope * st) / n
    ok = now & (n >= PROJECTION_MIN_POINTS) & (-oldest >= PROJECTION_MIN_SPAN_DAYS) & (denom > 0)
    out[ok] = np.round(np.clip(intercept[ok] + slope[ok] * PROJECTION_DAYS, 0.0, 100.0), 1)
    return out


def past_dimensions(hist: History, pos: np.ndarray, found: np.ndarray, cm: CompiledModel) -> np.ndarray:
    """(n, D) archived dimension scores at ``pos`` (NaN where not found or not archived)."""
    out = np.full((pos.size, len(cm.dimension_ids)), np.nan)
    rows = np.flatnonzero(found)
    if rows.size == 0:
        return out
    at = hist.src[pos[rows]]
    frame = hist.source
    flat = [DIM_PREFIX + d for d in cm.dimension_ids]
    if any(c in frame.columns for c in flat):
        for j, col in enumerate(flat):
            if col in frame.columns:
                values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                out[rows, j] = values[at]
    elif "dimension_scores" in frame.columns:
        cells = frame["dimension_scores"].to_numpy(dtype=object)[at]
        out[rows] = _dimension_values(cells, cm.dimension_ids)
    return out


def attribution_deltas(
    contributions_now: np.ndarray, past_dims: np.ndarray, segment_code: np.ndarray, cm: CompiledModel
) -> np.ndarray:
    """Change of each dimension's contribution since the reference day, both days under today's weights.

    Past contributions are rebuilt from the archived dimension scores with today's segment weights
    (renormalized over the dimensions present then), so a model-version change is not mistaken for a
    dimension moving, and the deltas sum to the change of the weighted composite.
    """
    out = np.empty(past_dims.shape)
    for start in range(0, past_dims.shape[0], CHUNK_ROWS):  # row blocks keep temporaries in cache
        part = slice(start, start + CHUNK_ROWS)
        _, past = weighted_average(past_dims[part], segment_code[part], cm)
        np.subtract(np.nan_to_num(contributions_now[part]), np.nan_to_num(past), out=out[part])
    return out


def top_attribution(
    deltas: np.ndarray, valid: np.ndarray, dimensions: tuple[str, ...], top: int = 3
) -> np.ndarray:
    """Per row: up to ``top`` ``{"dimension", "delta"}`` sorted by |delta| (rounded deltas of 0 dropped).

    Ties keep catalogue order. None for rows without a reference (``valid`` False). Returns an object
    array of one new list per row. The entry dicts are shared between rows, one per distinct
    (dimension, rounded delta) (see ``_attribution_entries``), so treat them as read-only: at a
    million accounts three fresh dicts per row cost more than all of the history arithmetic.
    """
    out = np.full(deltas.shape[0], None, dtype=object)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return out
    tenths = deltas[rows] * 10.0  # np.round(x, 1) is exactly rint(x * 10) / 10
    np.rint(tenths, out=tenths)
    magnitude = np.abs(tenths / 10.0)  # |rounded delta|; abs also turns -0.0 into 0.0
    np.negative(magnitude, out=magnitude)
    order = np.argsort(magnitude, axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(tenths, order, axis=1)
    entries = _attribution_entries(order, picked, dimensions)
    kept = picked != 0.0
    if kept.all():  # the usual case: every row keeps all its picks
        out[rows] = object_array(entries.tolist())  # 2-D .tolist(): one new list per row, in C
        return out
    pattern = kept @ (1 << np.arange(order.shape[1]))  # bit k set: top entry k is kept
    for p in np.flatnonzero(np.bincount(pattern)).tolist():
        sel = np.flatnonzero(pattern == p)
        cols = np.flatnonzero(kept[sel[0]])
        if cols.size == 0:
            out[rows[sel]] = object_array([[] for _ in range(sel.size)])
        else:
            out[rows[sel]] = object_array(entries[np.ix_(sel, cols)].tolist())
    return out


def _attribution_entries(order: np.ndarray, tenths: np.ndarray, dimensions: tuple[str, ...]) -> np.ndarray:
    """Object array shaped like ``order``: ``{"dimension": dimensions[order], "delta": tenths / 10}``.

    Equal entries are one shared dict: there are only dimensions x (distinct deltas) of them, so a
    million rows gather a few thousand dicts instead of allocating three each (object creation and the
    fresh memory it touches are most of attribution's cost). Values are ``tenths_floats``', so each
    entry is bit for bit the one built per row. Without a table narrow enough (non-finite or absurdly
    spread deltas) every entry is its own dict.
    """
    names = np.array(dimensions, dtype=object)
    if tenths.size == 0:
        return np.empty(order.shape, dtype=object)
    lo, hi = tenths.min(), tenths.max()
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo >= _MAX_SHARED_DELTAS:
        flat = [
            {"dimension": n, "delta": v}
            for n, v in zip(names[order.ravel()].tolist(), tenths_floats(tenths.ravel()), strict=True)
        ]
        return object_array(flat).reshape(order.shape)
    span = int(hi - lo) + 1
    code = order * span
    code += (tenths - lo).astype(np.intp)  # exact: integer-valued floats
    present = np.flatnonzero(np.bincount(code.ravel(), minlength=len(dimensions) * span))
    table = np.empty(len(dimensions) * span, dtype=object)
    table[present] = object_array(
        [
            {"dimension": n, "delta": v}
            for n, v in zip(
                names[present // span].tolist(),
                tenths_floats((present % span).astype(float) + lo),
                strict=True,
            )
        ]
    )
    return table[code]


def stage_runs(hist: History | None, as_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per account: (stage code of the newest archived row or -1, days since that stage's run began,
    whether the run began with an observed transition rather than with the start of the archive)."""
    n_rows = as_of.size
    stage = np.full(n_rows, -1, dtype=np.intp)
    since = np.zeros(n_rows, dtype=np.int64)
    observed = np.zeros(n_rows, dtype=bool)
    if hist is None:
        return stage, since, observed
    positions = np.arange(hist.row.size)
    first = np.ones(hist.row.size, dtype=bool)
    first[1:] = hist.row[1:] != hist.row[:-1]
    change = first.copy()
    change[1:] |= hist.stage[1:] != hist.stage[:-1]
    run_start = np.maximum.accumulate(np.where(change, positions, 0))
    block_start = np.maximum.accumulate(np.where(first, positions, 0))
    at = np.flatnonzero(np.append(first[1:], True))  # last row of each account
    rows = hist.row[at]
    stage[rows] = hist.stage[at]
    since[rows] = _shift(hist, as_of)[rows] - hist.day[run_start[at]]
    observed[rows] = run_start[at] != block_start[at]
    return stage, since, observed
