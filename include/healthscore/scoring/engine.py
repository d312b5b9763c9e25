"""``score_accounts``: one day's signals -> one archive row per account. Pure: no I/O, no clock.

Pipeline (every step over all accounts at once):

1. normalize each signal 0..100 for the account's segment and lifecycle stage;
2. dimension score = weighted mean of the dimension's present signals;
3. composite by the configured method; missing dimensions drop out and the segment weights renormalize
   over the present ones;
4. coverage gate: the share of composite weight backed by data (signal weight share within each
   dimension x dimension weight) must reach ``scoring.weighted_average.min_weight_coverage`` whatever
   the method, else ``score`` is None with an ``unscored_reason``;
5. confidence = the same share with each dimension discounted by its carry-forward multiplier;
6. lifecycle exit gate, bands, trends / momentum / projection / attribution from history,
   health x value segment, and the active CSM override beside the computed score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig, ScoringMethod
from healthscore.scoring.bands import (
    VALUE_SEGMENTS,
    band_codes,
    names_from_codes,
    round_half_up,
    value_segment_codes,
)
from healthscore.scoring.compiled import CHUNK_ROWS, CompiledModel, compile_model
from healthscore.scoring.composite import (
    ChurnModel,
    ScoringInputError,
    dimension_matrix,
    model_probability_score,
    percentile_rank_score,
    points_score,
    rag_score,
    weighted_average,
)
from healthscore.scoring.history import (
    DIM_PREFIX,
    MOMENTUM_UP,
    History,
    attribution_deltas,
    lookups_back,
    momentum_codes,
    past_dimensions,
    prepare_history,
    projection,
    score_change,
    stage_runs,
    top_attribution,
)
from healthscore.scoring.inputs import Prepared, calendar_stage, prepare_signals, string_column
from healthscore.scoring.lifecycle import days_in_stage, plan_gates
from healthscore.scoring.normalize import normalize_matrix
from healthscore.scoring.overrides import active_overrides
from healthscore.scoring.probability import probability_scorer
from healthscore.scoring.pyobjects import gc_paused, object_array, records, tenths_columns

OUTPUT_COLUMNS: tuple[str, ...] = (
    "account_id",
    "as_of_date",
    "model_version",
    "score",
    "unscored_reason",
    "band",
    "raw_score",
    "confidence",
    "trend_30d",
    "trend_90d",
    "trend_365d",
    "momentum",
    "projection_90d",
    "attribution",
    "segment",
    "value_segment",
    "lifecycle_stage",
    "days_in_stage",
    "stage_gate_blocked",
    "override_score",
    "override_band",
    "override_id",
    "config_hash",
)
CONTRIBUTION_PREFIX = "contribution_"
ARCHIVE_TREND_WINDOWS = (30, 90, 365)
MOMENTUM = ("up", "flat", "down")
ATTRIBUTION_TOP = 3
COVERAGE_EPS = 1e-9


@dataclass
class _Core:
    dims: np.ndarray  # (n, D)
    signal_coverage: np.ndarray  # (n, D)
    composite: np.ndarray  # (n,) weighted average, NaN when no weighted dimension has data
    contributions: np.ndarray  # (n, D)
    coverage: np.ndarray  # (n,)
    confidence: np.ndarray  # (n,)

    def assign(self, rows: np.ndarray, part: _Core) -> None:
        for name in ("dims", "signal_coverage", "composite", "contributions", "coverage", "confidence"):
            getattr(self, name)[rows] = getattr(part, name)


def _core(
    raw: np.ndarray, seg: np.ndarray, stage: np.ndarray, mult: np.ndarray | None, cm: CompiledModel
) -> _Core:
    """Steps 1-3 and 5 for the given rows, in row chunks (the other methods build on this)."""
    n, d = raw.shape[0], len(cm.dimension_ids)
    core = _Core(
        dims=np.empty((n, d)),
        signal_coverage=np.empty((n, d)),
        composite=np.empty(n),
        contributions=np.empty((n, d)),
        coverage=np.empty(n),
        confidence=np.empty(n),
    )
    for start in range(0, n, CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        s = seg[part]
        normalized = normalize_matrix(raw[part], cm.group(s, stage[part]), cm)
        dims, cov = dimension_matrix(normalized, s, cm)
        core.composite[part], core.contributions[part] = weighted_average(dims, s, cm)
        core.dims[part], core.signal_coverage[part] = dims, cov
        weighted = cov * cm.dim_share[s]
        core.coverage[part] = weighted.sum(axis=1)
        if mult is not None:
            weighted *= mult[part]
        core.confidence[part] = weighted.sum(axis=1)
    return core


def _method_scores(
    core: _Core,
    raw: np.ndarray,
    seg: np.ndarray,
    stage: np.ndarray,
    eligible: np.ndarray,
    cm: CompiledModel,
    churn_model: ChurnModel | None,
) -> np.ndarray:
    """The configured composite for eligible rows (NaN elsewhere or where the method has no evidence)."""
    method = cm.model.scoring.method
    out = np.full(raw.shape[0], np.nan)
    rows = np.flatnonzero(eligible)
    if method is ScoringMethod.WEIGHTED_AVERAGE:
        out[rows] = core.composite[rows]
    elif method is ScoringMethod.POINTS:
        out[rows] = points_score(raw[rows], cm)
    elif method is ScoringMethod.RAG_RULES:
        out[rows] = rag_score(raw[rows], cm)
    elif method is ScoringMethod.PERCENTILE_RANK:
        out = percentile_rank_score(core.composite, seg, stage, eligible, cm)
    elif method is ScoringMethod.MODEL_PROBABILITY:
        if rows.size:
            normalized = normalize_matrix(raw[rows], cm.group(seg[rows], stage[rows]), cm)
            if churn_model is not None:  # an injected classifier: the weighted breakdown stays
                out[rows] = model_probability_score(normalized, cm, churn_model)
            else:
                prob = probability_scorer(cm)
                features = prob.features(normalized, core.dims[rows])
                out[rows] = prob.score(features)
                core.contributions[rows] = prob.dimension_points(features)
    else:  # pragma: no cover - the enum is closed
        raise ScoringInputError(f"unsupported scoring method {method!r}")
    return out


def _eligible(core: _Core, seg: np.ndarray, cm: CompiledModel) -> np.ndarray:
    minimum = cm.model.scoring.weighted_average.min_weight_coverage
    return (seg != cm.unknown_segment) & (core.coverage >= minimum - COVERAGE_EPS) & ~np.isnan(core.composite)


def _unscored_reasons(
    prep: Prepared, core: _Core, seg: np.ndarray, eligible: np.ndarray, rows: np.ndarray, cm: CompiledModel
) -> list[str]:
    """One human-readable reason per unscored row, naming what was missing."""
    method = cm.model.scoring.method
    minimum = cm.model.scoring.weighted_average.min_weight_coverage
    reasons: list[str] = []
    dims = cm.dimension_ids
    segments = prep.segment.iloc[rows].to_numpy(dtype=object)  # only the unscored rows: few
    for r, value in zip(rows.tolist(), segments, strict=True):
        if seg[r] == cm.unknown_segment:
            reasons.append("segment missing" if pd.isna(value) else f"unknown segment {value!r}")
            continue
        if not eligible[r]:
            weights = cm.dim_weights[seg[r]]
            blocked = [d for j, d in enumerate(dims) if prep.blocked[r, j] and weights[j] > 0]
            empty = [
                d
                for j, d in enumerate(dims)
                if weights[j] > 0 and core.signal_coverage[r, j] == 0 and not prep.blocked[r, j]
            ]
            text = (
                f"insufficient data: {core.coverage[r]:.0%} of the composite weight has data "
                f"(minimum {minimum:.0%})"
            )
            if empty:
                text += "; no data for " + ", ".join(empty)
            if blocked:
                text += "; blocked by data quality: " + ", ".join(blocked)
            reasons.append(text)
            continue
        if method is ScoringMethod.POINTS:
            names = sorted({r_.signal for r_ in cm.model.scoring.points.rules if r_.points > 0})
            reasons.append("points: no signal of a positive-points rule has data (" + ", ".join(names) + ")")
        elif method is ScoringMethod.RAG_RULES:
            names = sorted({r_.signal for r_ in cm.model.scoring.rag_rules.rules})
            reasons.append("rag_rules: no rule signal has data (" + ", ".join(names) + ")")
        else:
            reasons.append(f"{method.value}: the method returned no finite score")
    return reasons


def output_columns(dimensions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The output's columns in order: ``OUTPUT_COLUMNS`` with ``dim_<d>`` then ``contribution_<d>`` per
    dimension (catalogue order) after ``confidence``."""
    at = OUTPUT_COLUMNS.index("confidence") + 1
    flat = tuple(DIM_PREFIX + d for d in dimensions) + tuple(CONTRIBUTION_PREFIX + d for d in dimensions)
    return OUTPUT_COLUMNS[:at] + flat + OUTPUT_COLUMNS[at:]


def _rounded_columns(prefix: str, keys: tuple[str, ...], values: np.ndarray) -> dict[str, Any]:
    """One nullable Float64 column per key, rounded half-up to 0.1 (<NA> when missing).

    Columns rather than a dict per row: a million accounts would otherwise cost two million small
    dicts, more than all of the scoring arithmetic. ``breakdown_dicts`` builds the dicts when needed.
    """
    rounded = round_half_up(values)
    rounded += 0.0  # -0.0 -> 0.0
    return {prefix + key: _floats(rounded[:, j]) for j, key in enumerate(keys)}


def breakdown_dicts(scores: pd.DataFrame, prefix: str) -> list[dict[str, Any] | None]:
    """Per row ``{dimension: value or None}`` from the ``<prefix><dimension>`` columns, in column order.

    The archive's JSON shape of ``dim_`` (dimension scores: a dict on every row) and ``contribution_``
    columns (None on rows without a score, as they have no contributions)."""
    columns = [c for c in scores.columns if c.startswith(prefix)]
    keys = tuple(c[len(prefix) :] for c in columns)
    tenths = np.empty((len(scores), len(columns)))
    for j, column in enumerate(columns):
        tenths[:, j] = scores[column].to_numpy(dtype=float, na_value=np.nan)
    tenths *= 10.0
    np.rint(tenths, out=tenths)  # the stored values are whole tenths: exact
    rows = np.arange(len(scores))
    if prefix == CONTRIBUTION_PREFIX:
        rows = np.flatnonzero(scores["score"].notna().to_numpy())
    out = np.full(len(scores), None, dtype=object)
    with gc_paused():
        out[rows] = object_array(records(keys, tenths_columns(tenths[rows])))
    return out.tolist()


def _trend(
    hist: History | None, score: np.ndarray, lookup: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """``score_change`` at a ``lookups_back`` result; all NaN without history."""
    if hist is None or lookup is None:
        return np.full(score.size, np.nan)
    return score_change(hist, score, *lookup)


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    """Label column over a fixed vocabulary (code -1 = missing): the categories document the vocabulary
    and a million rows cost a copy of the codes instead of a million strings."""
    return pd.Categorical.from_codes(codes, categories=list(names))


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def _floats(values: np.ndarray) -> pd.arrays.FloatingArray:
    """Nullable float column: NaN becomes <NA>, so "no value" can't be mistaken for a number."""
    missing = np.isnan(values)
    return pd.arrays.FloatingArray(np.where(missing, 0.0, values), missing)


def _ints(values: np.ndarray) -> pd.arrays.IntegerArray:
    missing = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing)


def score_accounts(
    signals: pd.DataFrame,
    model: ModelConfig,
    *,
    history: pd.DataFrame | None = None,
    overrides: pd.DataFrame | None = None,
    churn_model: ChurnModel | None = None,
    model_version: str,
) -> pd.DataFrame:
    """Score one as-of date of accounts; one row per account, columns ``OUTPUT_COLUMNS`` in that order.

    ``score`` (Float64, 1 decimal, half-up) is <NA> exactly when ``unscored_reason`` is set, never NaN;
    ``raw_score`` is the same composite at full precision. See the package docstring for the contract,
    including that the ``attribution`` entry dicts are shared between rows (read-only).
    """
    cm = compile_model(model)
    prep = prepare_signals(signals, cm)
    n = prep.n
    seg = prep.segment_code
    hist = prepare_history(history, prep.account_id, prep.as_of, model_version, cm)
    prior_stage, since_entry, observed_entry = stage_runs(hist, prep.as_of)

    # -- lifecycle exit gate: score gate candidates in the stage they'd be held in, release who clears it
    calendar = calendar_stage(prep, cm)
    gates = plan_gates(calendar, prep.tenure, prior_stage, cm)
    stage = gates.held_stage.copy()
    core = _core(prep.raw, seg, stage, prep.multiplier, cm)
    eligible = _eligible(core, seg, cm)
    method_score = _method_scores(core, prep.raw, seg, stage, eligible, cm, churn_model)
    blocked_gate = gates.candidate.copy()
    if gates.candidate.any():
        held_score = round_half_up(method_score)
        cleared = gates.candidate & ~np.isnan(held_score) & (held_score >= gates.min_score)
        rows = np.flatnonzero(cleared)
        if rows.size:
            stage[rows] = calendar[rows]
            mult = None if prep.multiplier is None else prep.multiplier[rows]
            core.assign(rows, _core(prep.raw[rows], seg[rows], stage[rows], mult, cm))
            eligible = _eligible(core, seg, cm)
            method_score = _method_scores(core, prep.raw, seg, stage, eligible, cm, churn_model)
        blocked_gate &= ~cleared

    scored = eligible & np.isfinite(method_score)
    raw_score = np.where(scored, np.clip(method_score, 0.0, 100.0), np.nan)
    score = round_half_up(raw_score)
    bands = band_codes(score, seg, stage, prep.days_to_renewal, cm)

    # -- history: trends, momentum, projection, attribution
    tolerance = model.momentum.lookup_tolerance_days
    windows = sorted(set(model.momentum.trend_windows_days))
    window = model.momentum.window_days
    lookups: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # one per window: trend and attribution share
    if hist is not None:
        lookups = lookups_back(hist, prep.as_of, sorted({*windows, window}), tolerance)
    trends = {w: _trend(hist, score, lookups.get(w)) for w in windows}
    trend_window = trends[window] if window in trends else _trend(hist, score, lookups.get(window))
    moves = momentum_codes(trend_window, model.momentum.stable_band_points)
    projected = projection(hist, score, prep.as_of)
    attribution = np.full(n, None, dtype=object)
    if hist is not None:
        pos, found = lookups[window]
        past = past_dimensions(hist, pos, found, cm)
        has_past = found & scored & ~np.all(np.isnan(past), axis=1)
        by_probability = model.scoring.method is ScoringMethod.MODEL_PROBABILITY and churn_model is None
        if by_probability and not probability_scorer(cm).dimension_features_only:
            has_past[:] = False  # signal features: the archive has no past value to attribute against
        if has_past.any():
            if by_probability:
                deltas = probability_scorer(cm).attribution_deltas(core.contributions, past)
            else:
                deltas = attribution_deltas(core.contributions, past, seg, cm)
            with gc_paused():
                attribution = top_attribution(deltas, has_past, cm.dimension_ids, ATTRIBUTION_TOP)

    value_codes = value_segment_codes(bands, trend_window, moves == MOMENTUM_UP, prep.arr_usd, seg, cm)
    in_stage = days_in_stage(stage, prep.tenure, prior_stage, since_entry, observed_entry, cm)

    # -- overrides beside the computed score
    over = active_overrides(overrides, prep.account_id, prep.as_of)
    override_band = over["override_band"]
    need_band = override_band.isna().to_numpy() & over["override_score"].notna().to_numpy()
    if need_band.any():
        o_score = over["override_score"].to_numpy(dtype=float, na_value=np.nan)
        o_band = names_from_codes(band_codes(o_score, seg, stage, prep.days_to_renewal, cm), cm.band_names)
        filled = override_band.to_numpy(dtype=object).copy()
        filled[need_band] = o_band[need_band]
        override_band = string_column(filled)

    # -- assemble
    unscored_rows = np.flatnonzero(~scored)
    reasons = np.full(n, None, dtype=object)
    reasons[unscored_rows] = _unscored_reasons(prep, core, seg, eligible, unscored_rows, cm)
    if not scored.all():
        core.contributions[unscored_rows] = np.nan  # no score, no contributions

    columns: dict[str, Any] = {
        "account_id": prep.account_id,
        "as_of_date": signals["as_of_date"].reset_index(drop=True),
        "model_version": _constant(model_version, n),
        "score": _floats(score),
        "unscored_reason": string_column(reasons),
        "band": _labels(bands, cm.band_names),
        "raw_score": _floats(raw_score),
        "confidence": np.round(core.confidence, 3),
        **_rounded_columns(DIM_PREFIX, cm.dimension_ids, core.dims),
        **_rounded_columns(CONTRIBUTION_PREFIX, cm.dimension_ids, core.contributions),
    }
    for w in ARCHIVE_TREND_WINDOWS:
        columns[f"trend_{w}d"] = trends.get(w, np.full(n, np.nan))
    columns.update(
        {
            "momentum": _labels(moves, MOMENTUM),
            "projection_90d": projected,
            "attribution": pd.Series(attribution, dtype=object),
            "segment": prep.segment,
            "value_segment": _labels(value_codes, VALUE_SEGMENTS),
            "lifecycle_stage": _labels(np.where(stage == cm.no_stage, -1, stage), cm.stages),
            "days_in_stage": _ints(in_stage),
            "stage_gate_blocked": blocked_gate,
            "override_score": over["override_score"].array,
            "override_band": override_band,
            "override_id": over["override_id"].array,
            "config_hash": _constant(model.config_hash, n),
        }
    )
    for w in windows:  # windows configured beyond the archive's three
        if w not in ARCHIVE_TREND_WINDOWS:
            columns[f"trend_{w}d"] = trends[w]
    out = pd.DataFrame(columns)
    out.index = signals.index
    return out
