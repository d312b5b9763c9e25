"""The model config compiled into lookup arrays, so the engine indexes tables instead of looping rows.

Every per-account rule of the config depends on a handful of categorical keys (segment, lifecycle
stage, inside/outside the renewal window). There are only a few combinations, so each rule is resolved
once per combination through the config's own lookups (``normalization_for``, ``thresholds_for``, ...)
and the engine gathers the resolved values by integer code. That keeps the engine exactly consistent
with the config's scalar reference semantics while staying vectorized.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from healthscore.config import Direction, ModelConfig, Segment

SEGMENTS: tuple[str, ...] = tuple(s.value for s in Segment)
# Row block of the (rows x signals) arithmetic: bounds its temporaries. At 16k rows x 22 signals (2.9 MB
# a temporary) the dozen passes over each block stay in cache; 64k-row blocks measured 20-30% slower
# (bench/bench_scoring.py, 1 MiB L2). Blocking only decides which rows go together, never a row's arithmetic.
CHUNK_ROWS = 16_384


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """Arrays derived from one ``ModelConfig``.

    Codes: segment ``0..len(SEGMENTS)-1`` plus ``unknown_segment``; stage ``0..len(stages)-1`` plus
    ``no_stage`` (context unknown: config lookups are called with ``None``). A normalization group is
    ``segment_code * (len(stages) + 1) + stage_code``.
    """

    model: ModelConfig
    signal_ids: tuple[str, ...]
    dimension_ids: tuple[str, ...]
    dim_starts: np.ndarray  # (D,) offset of each dimension's first signal; signals are contiguous
    dim_of_signal: np.ndarray  # (K,)
    stages: tuple[str, ...]
    stage_starts: np.ndarray  # (S,) start_day, ascending
    stage_ends: np.ndarray  # (S,) end_day, -1 when open-ended
    # normalization in "goodness" space (lower_is_better signals are negated), see normalize.py
    sign: np.ndarray  # (K,) +1 / -1
    g_floor: np.ndarray  # (K,)
    g_cap: np.ndarray  # (K,)
    g_baseline: np.ndarray  # (G, K)
    g_target: np.ndarray  # (G, K)
    g_upper_span: np.ndarray  # (G, K) target - baseline (> 0)
    g_lower_span: np.ndarray  # (G, K) baseline - floor (>= 0)
    signal_weights: np.ndarray  # (SEG+1, K) within-dimension weights, overrides applied
    dim_signal_weight: np.ndarray  # (SEG+1, D) sum of signal weights per dimension
    dim_weights: np.ndarray  # (SEG+1, D) percent of the composite; 0 for an unknown segment
    dim_share: np.ndarray  # (SEG+1, D) dim_weights as shares summing to 1 (0 for an unknown segment)
    healthy_at: np.ndarray  # (SEG+1, S+1, 2) [.., .., in_renewal_window]
    at_risk_below: np.ndarray  # (SEG+1, S+1, 2)
    band_names: tuple[str, ...]  # best first
    plain_band: np.ndarray  # (101,) band index of an integer score without context
    high_value_min_arr: np.ndarray  # (SEG+1,) USD; NaN for an unknown segment

    @property
    def unknown_segment(self) -> int:
        return len(SEGMENTS)

    @property
    def no_stage(self) -> int:
        return len(self.stages)

    def group(self, segment_code: np.ndarray, stage_code: np.ndarray) -> np.ndarray:
        """Normalization group of each row."""
        return segment_code.astype(np.intp) * (len(self.stages) + 1) + stage_code


def _compile(model: ModelConfig) -> CompiledModel:
    signal_ids = model.all_signal_ids()
    dimension_ids = tuple(model.dimensions)
    dim_of_signal = np.array([dimension_ids.index(model.dimension_of(s)) for s in signal_ids], dtype=np.intp)
    if np.any(np.diff(dim_of_signal) < 0):  # pragma: no cover - all_signal_ids is dimension-ordered
        raise AssertionError("signals of a dimension must be contiguous in catalogue order")
    dim_starts = np.searchsorted(dim_of_signal, np.arange(len(dimension_ids)))

    stages = tuple(s.name for s in model.lifecycle.stages)
    seg_keys: list[str | None] = [*SEGMENTS, None]
    stage_keys: list[str | None] = [*stages, None]

    k = len(signal_ids)
    sign = np.array(
        [1.0 if model.signal(s).direction is Direction.HIGHER_IS_BETTER else -1.0 for s in signal_ids]
    )
    g_floor = np.empty(k)
    g_cap = np.empty(k)
    n_groups = len(seg_keys) * len(stage_keys)
    g_baseline = np.empty((n_groups, k))
    g_target = np.empty((n_groups, k))
    for j, sig in enumerate(signal_ids):
        spec = model.signal(sig)
        lo, hi = (spec.floor, spec.cap) if sign[j] > 0 else (-spec.cap, -spec.floor)
        g_floor[j], g_cap[j] = lo, hi
        for si, seg in enumerate(seg_keys):
            for ti, stage in enumerate(stage_keys):
                norm = model.normalization_for(sig, seg, stage)
                g = si * len(stage_keys) + ti
                g_baseline[g, j] = sign[j] * norm.baseline
                g_target[g, j] = sign[j] * norm.target

    signal_weights = np.zeros((len(seg_keys), k))
    dim_weights = np.zeros((len(seg_keys), len(dimension_ids)))
    high_value = np.full(len(seg_keys), np.nan)
    for si, seg in enumerate(seg_keys):
        for d, dim in enumerate(dimension_ids):
            weights = (
                model.signal_weights_for(seg, dim)
                if seg is not None
                else {s: spec.weight for s, spec in model.dimensions[dim].signals.items()}
            )
            for sig, w in weights.items():
                signal_weights[si, signal_ids.index(sig)] = w
            if seg is not None:
                dim_weights[si, d] = model.weights_for(seg)[dim]
        if seg is not None:
            high_value[si] = model.value_segments.high_value_min_arr_for(seg)
    dim_signal_weight = np.add.reduceat(signal_weights, dim_starts, axis=1)
    totals = dim_weights.sum(axis=1, keepdims=True)
    dim_share = np.divide(dim_weights, totals, out=np.zeros_like(dim_weights), where=totals > 0)

    healthy_at = np.empty((len(seg_keys), len(stage_keys), 2))
    at_risk_below = np.empty((len(seg_keys), len(stage_keys), 2))
    for si, seg in enumerate(seg_keys):
        for ti, stage in enumerate(stage_keys):
            for window, days in enumerate((None, 0)):
                t = model.thresholds_for(seg, stage, days)
                healthy_at[si, ti, window] = t.healthy_at_or_above
                at_risk_below[si, ti, window] = t.at_risk_below

    plain_band = np.empty(101, dtype=np.intp)
    for i, band in enumerate(model.bands):
        plain_band[band.min : band.max + 1] = i

    return CompiledModel(
        model=model,
        signal_ids=signal_ids,
        dimension_ids=dimension_ids,
        dim_starts=dim_starts,
        dim_of_signal=dim_of_signal,
        stages=stages,
        stage_starts=np.array([s.start_day for s in model.lifecycle.stages]),
        stage_ends=np.array([-1 if s.end_day is None else s.end_day for s in model.lifecycle.stages]),
        sign=sign,
        g_floor=g_floor,
        g_cap=g_cap,
        g_baseline=g_baseline,
        g_target=g_target,
        g_upper_span=g_target - g_baseline,
        g_lower_span=g_baseline - g_floor,
        signal_weights=signal_weights,
        dim_signal_weight=dim_signal_weight,
        dim_weights=dim_weights,
        dim_share=dim_share,
        healthy_at=healthy_at,
        at_risk_below=at_risk_below,
        band_names=tuple(b.name for b in model.bands),
        plain_band=plain_band,
        high_value_min_arr=high_value,
    )


_CACHE: dict[tuple[str, str], CompiledModel] = {}
_LOCK = threading.Lock()


def compile_model(model: ModelConfig) -> CompiledModel:
    """Compiled tables for ``model``, cached by config hash and key order (configs are frozen)."""
    key = model.layout_key
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = _compile(model)
        with _LOCK:
            if len(_CACHE) > 16:
                _CACHE.clear()
            _CACHE[key] = hit
    return hit
