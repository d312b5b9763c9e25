"""Step 1 of recalibration, per signal: the normalization curve learned from retention (see
``healthscore.evaluation.recalibrate``), and the curve arithmetic the scoring engine shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

from healthscore.evaluation.backtest import Curve, binary_curve, curve_from_goodness, distribution_curve
from healthscore.evaluation.byo import MappedSignal
from healthscore.evaluation.holdout import MIN_CLASS_ROWS

# Knot candidates: these quantiles of the rows and of the distinct values (the finer grid measured
# 0.002-0.003 AUC better than 15 levels on bench_byo's tables).
CURVE_QUANTILES = np.r_[0, 0.02, np.arange(0.05, 0.951, 0.05), 0.98, 1.0]
# Baselines placed between a floor and a target candidate, as these fractions of the way (0.5: a straight
# ramp from floor to target, the shape a linear model gives a signal, which the candidates alone often miss:
# an integer count has no candidate half-way between two of its values).
BASELINE_FRACTIONS = (0.25, 0.5, 0.75)
MIN_RAMP_SHARE = 0.03  # each ramp of a curve (floor..baseline, baseline..target) holds >= 3% of the rows
MIN_PARTIAL_CHI2 = 16.0  # explained weighted sum of squares a backfitted curve needs (~chi-square, 3 knots)


def apply_curve(x: np.ndarray, curve: Curve, direction: int) -> np.ndarray:
    """0..100 per value, as ``Normalization.score`` computes it (the engine's reference semantics)."""
    f, b, t, _ = curve_goodness(curve, direction)
    u = direction * np.clip(x, curve.floor, curve.cap)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = 50.0 + 50.0 * (u - b) / (t - b)
        lower = 50.0 * (u - f) / (b - f) if b > f else np.full_like(u, 50.0)
    out = np.where(u >= t, 100.0, np.where(u >= b, upper, lower))
    return np.where(np.isnan(x), np.nan, out)


def _piecewise(c: np.ndarray, f: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(candidates, points) matrix of the curve shape for knot vectors f <= b < t at points c."""
    c = c[None, :]
    f, b, t = f[:, None], b[:, None], t[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(b > f, 50.0 * (c - f) / (b - f), 50.0)
        upper = 50.0 + 50.0 * (c - b) / (t - b)
    return np.where(c >= t, 100.0, np.where(c >= b, upper, np.where(c <= f, 0.0, lower)))


@dataclass(frozen=True)
class CurveFit:
    curve: Curve
    how: str
    informative: bool


def fit_curve(
    x: np.ndarray,
    churn: np.ndarray,
    signal: MappedSignal,
    *,
    fixed: Curve | None = None,
    partial: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> CurveFit:
    """The curve whose normalized score is most nearly linear in the retention log-odds (see module doc).

    ``fixed``: keep its floor and cap (a per-segment fit may only move baseline and target).
    ``partial``/``weight``: fit to these per-row partial residuals of the log-odds (IRLS working response
    minus the other signals' part, with its weights) instead of the signal's own retention log-odds.
    """
    if signal.binary:
        return CurveFit(binary_curve(signal.direction), "0/1 flag", True)
    d = signal.direction
    ok = np.isfinite(x)
    u, retained = d * x[ok], 1.0 - churn[ok]
    if partial is not None:
        partial, weight = partial[ok], (np.ones(ok.sum()) if weight is None else weight[ok])
    fallback = fixed or distribution_curve(x, d, False)
    uniq = np.unique(u)
    if u.size < 2 * MIN_CLASS_ROWS or uniq.size < 2 or retained.min() == retained.max():
        return CurveFit(fallback, "too few values or outcomes to learn from", False)
    if uniq.size <= 30:
        centers = uniq
        bins = np.searchsorted(uniq, u)
    else:
        # Quantiles of the rows and of the distinct values: a zero-inflated column (days past due) still
        # gets bins across its tail.
        grid = np.linspace(0, 1, 21)
        edges = np.unique(np.r_[np.quantile(u, grid), np.quantile(uniq, grid)])
        bins = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, edges.size - 2)
        counts = np.bincount(bins, minlength=edges.size - 1)
        centers = np.bincount(bins, weights=u, minlength=edges.size - 1) / np.maximum(counts, 1)
        keep = counts > 0
        remap = np.cumsum(keep) - 1
        centers, bins = centers[keep], remap[bins]
    if partial is None:
        n_b = np.bincount(bins, minlength=centers.size).astype(float)
        ret_b = np.bincount(bins, weights=retained, minlength=centers.size)
        prior = retained.mean()
        rate = (ret_b + 2.0 * prior) / (n_b + 2.0)
        iso = IsotonicRegression(increasing=True).fit(centers, rate, sample_weight=n_b).predict(centers)
        logit = np.log(np.clip(iso, 1e-4, 1 - 1e-4) / np.clip(1 - iso, 1e-4, 1))
    else:
        n_b = np.bincount(bins, weights=weight, minlength=centers.size)
        mean_b = np.bincount(bins, weights=weight * partial, minlength=centers.size) / np.maximum(n_b, 1e-12)
        logit = mean_b  # no isotonic step: it flattens the noisy ends, pulling the knots inward
    if logit.max() - logit.min() < 1e-3:
        return CurveFit(fallback, "no relation with retention in the mapped direction", False)

    cand = np.unique(np.r_[np.quantile(u, CURVE_QUANTILES), np.quantile(uniq, CURVE_QUANTILES)])
    if fixed is not None:
        f0 = curve_goodness(fixed, d)[0]
        top = curve_goodness(fixed, d)[3]
        cand = np.unique(np.clip(cand, f0, top))
        fs = np.array([f0])
    else:
        top = float(u.max())
        fs = cand
    # Every knot triple f <= b < t (f fixed for a per-segment fit), built without Python loops.
    fi, bi, ti = np.meshgrid(np.arange(fs.size), np.arange(cand.size), np.arange(cand.size), indexing="ij")
    f_all, b_all, t_all = fs[fi].ravel(), cand[bi].ravel(), cand[ti].ravel()
    valid = (b_all >= f_all) & (t_all > b_all)
    if not valid.any():
        return CurveFit(fallback, "too few distinct values to place the knots", False)
    f_arr, b_arr, t_arr = f_all[valid], b_all[valid], t_all[valid]
    fj, tj = np.meshgrid(fs, cand, indexing="ij")
    pair = tj > fj
    fj, tj = fj[pair], tj[pair]
    if fj.size:
        frac = np.asarray(BASELINE_FRACTIONS)[:, None]
        f_arr = np.r_[f_arr, np.tile(fj, frac.size)]
        b_arr = np.r_[b_arr, (fj + frac * (tj - fj)).ravel()]
        t_arr = np.r_[t_arr, np.tile(tj, frac.size)]
    # Each ramp of the curve must hold a share of the rows: a knot pair around a few rows fits noise.
    sorted_u = np.sort(u)

    def mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (
            np.searchsorted(sorted_u, hi, side="left") - np.searchsorted(sorted_u, lo, side="right")
        ) / u.size

    ramps_ok = (mass(b_arr, t_arr) >= MIN_RAMP_SHARE) & (
        (b_arr == f_arr) | (mass(f_arr, b_arr) >= MIN_RAMP_SHARE)
    )
    if not ramps_ok.any():
        return CurveFit(fallback, "too few distinct values to place the knots", False)
    f_arr, b_arr, t_arr = f_arr[ramps_ok], b_arr[ramps_ok], t_arr[ramps_ok]
    g = _piecewise(centers, f_arr, b_arr, t_arr)
    w = n_b / n_b.sum()
    gm = g @ w
    lm = logit @ w
    gc = g - gm[:, None]
    cov = gc @ (w * (logit - lm))
    var = (gc**2) @ w
    with np.errstate(divide="ignore", invalid="ignore"):
        explained = np.where((var > 0) & (cov > 0), cov**2 / var, 0.0)
    best = int(np.argmax(explained))
    if explained[best] <= 0:
        return CurveFit(fallback, "no relation with retention in the mapped direction", False)
    if partial is not None and explained[best] * n_b.sum() < MIN_PARTIAL_CHI2:
        # Not distinguishable from noise given the other signals: keep the curve it had.
        return CurveFit(fixed or fallback, "no relation given the other signals", False)
    curve = curve_from_goodness(f_arr[best], b_arr[best], t_arr[best], max(top, t_arr[best]), d)
    if fixed is not None:
        curve = Curve(floor=fixed.floor, cap=fixed.cap, baseline=curve.baseline, target=curve.target)
    return CurveFit(
        curve,
        "learned from retention" if partial is None else "learned from retention, given the other signals",
        True,
    )


def curve_goodness(curve: Curve, direction: int) -> tuple[float, float, float, float]:
    """(floor, baseline, target, top) in goodness space (value x direction)."""
    if direction > 0:
        return curve.floor, curve.baseline, curve.target, curve.cap
    return -curve.cap, -curve.baseline, -curve.target, -curve.floor
