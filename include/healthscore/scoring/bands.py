"""Bands from segment, lifecycle and renewal context, and the health x value matrix.

``band_codes`` is ``ModelConfig.band_for`` over arrays: thresholds are resolved once per (segment,
stage, inside renewal window) by the config itself and gathered per row, so the two cannot disagree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from healthscore.config import ModelConfig
from healthscore.scoring.compiled import SEGMENTS, CompiledModel, compile_model
from healthscore.scoring.inputs import category_codes

HIGH_VALUE_AT_RISK = "High-Value At-Risk"
HIGH_VALUE_WATCH = "High-Value Watch"
HIGH_VALUE_HEALTHY = "High-Value Healthy"
EMERGING_CHAMPIONS = "Emerging Champions"
LOW_VALUE_HEALTHY = "Low-Value Healthy"
LOW_VALUE_WATCH = "Low-Value Watch"
LOW_VALUE_AT_RISK = "Low-Value At-Risk"
VALUE_SEGMENTS: tuple[str, ...] = (
    HIGH_VALUE_AT_RISK,
    HIGH_VALUE_WATCH,
    HIGH_VALUE_HEALTHY,
    EMERGING_CHAMPIONS,
    LOW_VALUE_HEALTHY,
    LOW_VALUE_WATCH,
    LOW_VALUE_AT_RISK,
)


def round_half_up(values: np.ndarray, decimals: int = 1) -> np.ndarray:
    """Half-up rounding for storage, matching the half-up rounding ``band_for`` applies (NaN stays NaN)."""
    factor = 10.0**decimals
    return np.floor(values * factor + 0.5) / factor


def band_codes(
    score: np.ndarray,
    segment_code: np.ndarray,
    stage_code: np.ndarray,
    days_to_renewal: np.ndarray,
    cm: CompiledModel,
) -> np.ndarray:
    """Index into ``cm.band_names`` per row (best first); -1 where the score is NaN."""
    known = ~np.isnan(score)
    rounded = np.clip(np.floor(np.where(known, score, 0.0) + 0.5), 0, 100).astype(np.intp)
    window = cm.model.lifecycle.renewal_window.days_before_renewal
    in_window = ((days_to_renewal >= 0) & (days_to_renewal <= window)).astype(np.intp)
    healthy = cm.healthy_at[segment_code, stage_code, in_window]
    at_risk = cm.at_risk_below[segment_code, stage_code, in_window]
    code = np.where(
        rounded >= healthy, 0, np.where(rounded >= at_risk, 1, np.maximum(cm.plain_band[rounded], 2))
    )
    return np.where(known, code, -1)


def assign_bands(
    scores: pd.Series,
    segment: pd.Series,
    model: ModelConfig,
    *,
    lifecycle_stage: pd.Series | None = None,
    days_to_renewal: pd.Series | None = None,
) -> pd.Series:
    """Band name per score with its context (vectorized ``ModelConfig.band_for``); NaN score -> NaN band.

    Unknown segments and stages are treated as "no context" for that part, as ``band_for`` does with None.
    """
    cm = compile_model(model)
    values = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if np.any((values < 0) | (values > 100)):
        raise ValueError("scores must be within 0..100")
    seg, _ = category_codes(pd.Series(segment).reset_index(drop=True), SEGMENTS, cm.unknown_segment)
    stage = np.full(values.size, cm.no_stage, dtype=np.intp)
    if lifecycle_stage is not None:
        stage, _ = category_codes(pd.Series(lifecycle_stage).reset_index(drop=True), cm.stages, cm.no_stage)
    dtr = np.full(values.size, np.nan)
    if days_to_renewal is not None:
        dtr = pd.to_numeric(days_to_renewal, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    codes = band_codes(values, seg, stage, dtr, cm)
    return pd.Series(names_from_codes(codes, cm.band_names), index=scores.index, dtype="str")


def names_from_codes(codes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Object array of names; code -1 -> None."""
    table = np.array([*names, None], dtype=object)
    return table[np.where(codes < 0, len(names), codes)]


def value_segment_codes(
    band_code: np.ndarray,
    trend_window: np.ndarray,
    momentum_up: np.ndarray,
    arr_usd: np.ndarray,
    segment_code: np.ndarray,
    cm: CompiledModel,
) -> np.ndarray:
    """Health x value cell per row as an index into ``VALUE_SEGMENTS``; -1 when unscored or ARR unknown.

    Health: At-Risk when the band is the third or lower (At Risk, Critical) or the score fell by
    ``momentum.alert_drop_points`` or more within the momentum window, whatever the band; Healthy for
    the top band; otherwise Watch. Value: ARR at or above the segment's ``high_value_min_arr``.
    Emerging Champions are Low-Value accounts that are Healthy and rising (momentum up).
    """
    alert = cm.model.momentum.alert_drop_points
    at_risk = (band_code >= 2) | (trend_window <= -alert)
    healthy = (band_code == 0) & ~at_risk
    high = arr_usd >= cm.high_value_min_arr[segment_code]
    code = np.where(
        high,
        np.where(at_risk, 0, np.where(healthy, 2, 1)),
        np.where(at_risk, 6, np.where(healthy, np.where(momentum_up, 3, 4), 5)),
    )
    unknown = (band_code < 0) | np.isnan(arr_usd) | np.isnan(cm.high_value_min_arr[segment_code])
    return np.where(unknown, -1, code)
