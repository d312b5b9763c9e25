"""Raw signal values -> 0..100, per (segment, lifecycle stage), without per-row Python.

``Normalization.score`` in the config is the scalar reference; this is the same piecewise-linear curve
applied to a whole matrix. Lower-is-better signals are negated first ("goodness" space), which turns
every signal into a higher-is-better one with identical arithmetic (negation is exact), so one code
path serves both directions and agrees with the reference bit for bit. Work happens in place on a few
buffers: at a million accounts, fresh (rows x signals) temporaries cost more than the arithmetic.
"""

from __future__ import annotations

import numpy as np

from healthscore.scoring.compiled import CompiledModel


def normalize_matrix(raw: np.ndarray, group: np.ndarray, cm: CompiledModel) -> np.ndarray:
    """(n, K) raw values in catalogue order -> (n, K) scores 0..100; NaN stays NaN (missing).

    ``group`` is each row's normalization group (segment x stage code, see ``CompiledModel.group``).
    """
    x = np.multiply(raw, cm.sign, order="C")  # goodness space; NaN propagates
    np.clip(x, cm.g_floor, cm.g_cap, out=x)
    full = x >= cm.g_target[group]
    baseline = cm.g_baseline[group]
    above = x >= baseline
    upper = np.subtract(x, baseline, out=baseline)  # reuse the gathered buffer
    span = cm.g_upper_span[group]
    upper *= 50.0
    upper /= span
    upper += 50.0
    lower = np.subtract(x, cm.g_floor, out=span)
    lower *= 50.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # baseline == floor is legal (nothing is then below baseline); the 0/0 it yields is masked out.
        lower /= cm.g_lower_span[group]
    np.copyto(lower, upper, where=above)
    lower[full] = 100.0
    return lower  # NaN input -> NaN through every branch
