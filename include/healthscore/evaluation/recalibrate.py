"""Recalibrate the glass-box weighted model on a user's table of outcomes.

The steps, all fitted on the training part only:

1. **Curves.** Per signal, the normalization curve (floor -> 0, baseline -> 50, target -> 100, monotone in
   the mapped direction) whose shape best matches the signal's retention log-odds: retention per value bin,
   made monotone (isotonic), turned into log-odds, then the knots chosen from the signal's quantiles that make
   those log-odds most nearly linear in the normalized score; then two rounds of backfitting refit each curve
   to its partial residual given the other signals (they all follow one latent health, so a signal's own
   relation carries the others' effects). Each ramp must hold >= 3% of the rows (no knots around a handful
   of rows). Per segment (baseline and target only; the schema keeps floor and cap global) where the
   segment has enough accounts. A signal without a monotone
   relation in its mapped direction keeps a distribution curve and ends up with weight 0.
2. **Weights.** A logistic regression of retention on the normalized signals with non-negative coefficients
   (L1 or L2, chosen by time-ordered, account-grouped cross-validation; balanced classes). A coefficient is
   the signal's weight; a dimension's weight is the sum of its signals', normalized to 100%. The weighted
   average is then the regression's linear predictor rescaled, so it ranks accounts as the regression does.
   Per segment where the data suffices (more than 100 accounts with outcomes) and cross-validation says the
   segment fits rank better than the universal one: shrunk toward the universal fit, with its intercept and
   weight total, so that equal scores mean equal odds in every segment (a weighted average can redistribute
   weight between signals, it has no per-segment intercept). Missing values are imputed, for the refits,
   exactly as the weighted average treats them (a dimension's other signals, then the other dimensions).
3. **Lines.** From out-of-fold scores computed by the scoring engine: the At Risk line is the lowest that
   catches at least 75% of churners (the best specificity at that recall); Healthy and Critical are the
   splits of the scores above and below it that separate churn rates best (a decision stump), so that
   Healthy retains better than Moderate, Moderate better than At Risk, At Risk better than Critical.

The model is evaluated on held-out rows (later dates, other accounts) against the baseline, through the
same engine the daily DAG scores with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from healthscore.config import ModelConfig
from healthscore.evaluation.backtest import (
    SEGMENTS,
    Curve,
    base_weights_for,
    binary_curve,
    build_model,
    curve_from_goodness,
    distribution_curve,
    load_model_arg,
    mapped_dimensions,
    percent_weights,
    prepare_out_dir,
    score_metrics,
    score_table,
    signal_spec,
    table_model,
    write_json,
    write_model_yaml,
)
from healthscore.evaluation.byo import DIMENSIONS, ByoInputError, ByoTable, MappedSignal, load_byo
from healthscore.evaluation.metrics import roc_auc, specificity_at_recall

TEST_SHARE = 0.3
CV_FOLDS = 3
TARGET_RECALL = 0.75
MIN_SEGMENT_ACCOUNTS = 100  # "more than 100 accounts with outcomes in the segment"
MIN_CLASS_ROWS = 10
# Knot candidates: these quantiles of the rows and of the distinct values (the finer grid measured
# 0.002-0.003 AUC better than 15 levels on bench_byo's tables).
CURVE_QUANTILES = np.r_[0, 0.02, np.arange(0.05, 0.951, 0.05), 0.98, 1.0]
# (penalty, strength): non-negative logistic regression candidates, chosen by cross-validation.
PENALTIES: tuple[tuple[str, float], ...] = (
    ("l2", 1e-4),
    ("l2", 1e-3),
    ("l2", 1e-2),
    ("l2", 3e-2),
    ("l1", 1e-4),
    ("l1", 1e-3),
    ("l1", 3e-3),
)
SEGMENT_SHRINKAGE_ROWS = 10.0
BACKFIT_ROUNDS = 2
IMPUTE_ROUNDS = 2  # refits of the weights with missing values imputed as the engine treats them
MIN_RAMP_SHARE = 0.03  # each ramp of a curve (floor..baseline, baseline..target) holds >= 3% of the rows
MIN_PARTIAL_CHI2 = 16.0  # explained weighted sum of squares a backfitted curve needs (~chi-square, 3 knots)  # per-segment fit: extra L2 pull toward the universal weights, worth ~this/n


# --------------------------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row positions
    test: np.ndarray
    description: dict[str, Any]


def _account_draw(accounts: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number per account from its id: the same account lands in the same group on any table."""
    out = np.empty(accounts.size)
    for i, a in enumerate(accounts):
        digest = hashlib.sha256(f"{seed}:{a}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64
    return out


def holdout_split(table: ByoTable, test_share: float = TEST_SHARE, seed: int = 0) -> Split:
    """Train on earlier dates of some accounts, test on later dates of the others: no account in both."""
    accounts = table.accounts
    unique, inverse = np.unique(accounts, return_inverse=True)
    is_test_account = (_account_draw(unique, seed) < test_share)[inverse]
    dates = table.dates
    days = np.unique(dates)
    if days.size >= 2:
        share_on_or_after = np.array([(dates >= d).mean() for d in days[1:]])
        cutoff = days[1:][int(np.argmin(np.abs(share_on_or_after - test_share)))]
        train = np.flatnonzero(~is_test_account & (dates < cutoff))
        test = np.flatnonzero(is_test_account & (dates >= cutoff))
        how = (
            f"held out by time and account: train on dates before {cutoff} of "
            f"{np.unique(accounts[~is_test_account]).size} accounts, test on dates from {cutoff} of the other "
            f"{np.unique(accounts[is_test_account]).size} accounts"
        )
        cut = str(cutoff)
    else:
        train = np.flatnonzero(~is_test_account)
        test = np.flatnonzero(is_test_account)
        how = "held out by account only (the table has one as_of_date)"
        cut = None
    y = table.y
    for name, rows in (("training", train), ("held-out", test)):
        positives = int(y[rows].sum())
        if rows.size < 2 * MIN_CLASS_ROWS or positives < 2 or rows.size - positives < 2:
            raise ByoInputError(
                f"outcome column {table.outcome!r}: too little data for a held-out evaluation: the {name} part has "
                f"{rows.size} rows and {positives} churned (need at least {2 * MIN_CLASS_ROWS} rows and both outcomes)"
            )
    return Split(
        train=train,
        test=test,
        description={
            "method": how,
            "cutoff_date": cut,
            "train": _part(table, train),
            "test": _part(table, test),
            "rows_unused": int(len(table) - train.size - test.size),
        },
    )


def _part(table: ByoTable, rows: np.ndarray) -> dict[str, Any]:
    y = table.y[rows]
    return {
        "rows": int(rows.size),
        "accounts": int(np.unique(table.accounts[rows]).size),
        "churned": int(y.sum()),
        "first_date": str(table.dates[rows].min()) if rows.size else None,
        "last_date": str(table.dates[rows].max()) if rows.size else None,
    }


def cv_folds(
    table: ByoTable, k: int = CV_FOLDS, seed: int = 1
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Folds that validate each account group on later dates than the other groups trained on."""
    unique, inverse = np.unique(table.accounts, return_inverse=True)
    group = np.minimum((_account_draw(unique, seed) * k).astype(int), k - 1)[inverse]
    dates = table.dates
    days = np.unique(dates)
    folds = []
    if days.size >= k + 1:
        # Cut points at row quantiles 0.4 .. 0.8: each fold trains on what came before its cut.
        cuts = [np.quantile(dates.astype("int64"), q) for q in np.linspace(0.4, 0.8, k)]
        for g, cut in enumerate(cuts):
            cut_day = days[np.searchsorted(days.astype("int64"), cut, side="left").clip(1, days.size - 1)]
            train = np.flatnonzero((group != g) & (dates < cut_day))
            valid = np.flatnonzero((group == g) & (dates >= cut_day))
            folds.append((train, valid))
        kind = f"{k} folds, time-ordered (train before each cut, validate after) and grouped by account"
    else:
        for g in range(k):
            folds.append((np.flatnonzero(group != g), np.flatnonzero(group == g)))
        kind = f"{k} folds grouped by account (too few dates to order them in time)"
    y = table.y
    usable = [(tr, va) for tr, va in folds if _both_classes(y[tr]) and _both_classes(y[va])]
    if not usable:
        raise ByoInputError(
            f"outcome column {table.outcome!r}: too few churned rows in the training part for cross-validation"
        )
    return usable, kind


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


# --------------------------------------------------------------------------------------------- curves


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


# -------------------------------------------------------------------------------------------- weights


def fit_nonneg_logistic(
    X: np.ndarray,  # noqa: N803 - the usual name of a design matrix
    y: np.ndarray,
    *,
    penalty: str,
    strength: float,
    center: np.ndarray | None = None,
    extra_l2: float = 0.0,
    intercept: float | None = None,
    total: float | None = None,
) -> tuple[np.ndarray, float]:
    """Logistic regression with coefficients >= 0 (L-BFGS-B), balanced classes; returns (coef, intercept).

    With non-negativity an L1 penalty is linear, so one smooth bounded solver handles both penalties.
    ``center``: the L2 part pulls toward it instead of 0 (per-segment fits shrink toward the universal one).
    ``intercept`` fixes the intercept and ``total`` the sum of the coefficients (a per-segment fit keeps the
    universal scale, so equal scores mean equal odds in every segment: a weighted average can only
    redistribute weight, it has no per-segment intercept or scale).
    """
    n, p = X.shape
    pos = max(int(y.sum()), 1)
    neg = max(n - int(y.sum()), 1)
    sw = np.where(y == 1, n / (2.0 * pos), n / (2.0 * neg))
    c = np.zeros(p) if center is None else center
    l1 = strength if penalty == "l1" else 0.0
    l2 = (strength if penalty == "l2" else 1e-6) + extra_l2

    mu = 10.0  # weight of the (sum - total)^2 term; the result is rescaled to the total exactly

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:p], theta[p]
        z = X @ w + b
        loss = float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) / n)
        gz = sw * (expit(z) - y) / n
        diff = w - c
        loss += 0.5 * l2 * float(diff @ diff) + l1 * float(w.sum())
        grad = np.empty(p + 1)
        grad[:p] = X.T @ gz + l2 * diff + l1
        grad[p] = gz.sum()
        if total is not None:
            gap = float(w.sum()) - total
            loss += mu * gap * gap
            grad[:p] += 2.0 * mu * gap
        return loss, grad

    x0 = np.r_[
        np.maximum(c, 0.0) if center is not None else np.full(p, 0.1), 0.0 if intercept is None else intercept
    ]
    bounds = [(0.0, None)] * p + [(None, None) if intercept is None else (intercept, intercept)]
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    coef = np.where(res.x[:p] < 1e-6, 0.0, res.x[:p])
    if total is not None and coef.sum() > 0:
        coef = coef * (total / coef.sum())
    return coef, float(res.x[p])


# ------------------------------------------------------------------------------------------- pipeline


@dataclass
class Fitted:
    """Everything learned from one training set."""

    curves: dict[str, Curve]  # signal_id -> universal curve
    curve_how: dict[str, str]
    segment_curves: dict[str, dict[str, Curve]]  # segment -> signal_id -> curve
    coef: np.ndarray  # universal, per signal (catalogue order of table.signals)
    segment_coef: dict[str, np.ndarray]
    fill: np.ndarray  # imputation of a missing normalized signal (training mean, 0..1)
    penalty: tuple[str, float]
    segments_fitted: list[str] = field(default_factory=list)
    design: np.ndarray | None = None  # the training rows' imputed 0..1 design matrix


def _enough(table: ByoTable, rows: np.ndarray) -> bool:
    y = table.y[rows]
    return (
        np.unique(table.accounts[rows]).size > MIN_SEGMENT_ACCOUNTS
        and int(y.sum()) >= MIN_CLASS_ROWS
        and y.size - int(y.sum()) >= MIN_CLASS_ROWS
    )


def segments_with_data(table: ByoTable) -> list[str]:
    """Segments that get their own curves, weights and lines (the table must name segments)."""
    if not table.has_segment:
        return []
    seg = table.segments
    present = [s for s in SEGMENTS if (seg == s).any()]
    if len(present) < 2:
        return []
    return [s for s in present if _enough(table, np.flatnonzero(seg == s))]


def normalized_matrix(table: ByoTable, fitted: Fitted) -> np.ndarray:
    """(rows, signals) 0..100 under the fitted curves (a segment's own where it has them); NaN = missing."""
    out = np.empty((len(table), len(table.signals)))
    seg = table.segments
    for j, sig in enumerate(table.signals):
        x = table.raw(sig)
        out[:, j] = apply_curve(x, fitted.curves[sig.signal_id], sig.direction)
        for s, curves in fitted.segment_curves.items():
            rows = seg == s
            if rows.any() and sig.signal_id in curves:
                out[rows, j] = apply_curve(x[rows], curves[sig.signal_id], sig.direction)
    return out


def _design(norm: np.ndarray, fill: np.ndarray) -> np.ndarray:
    x = norm / 100.0
    return np.where(np.isnan(x), fill[None, :], x)


def fit_curves(table: ByoTable, per_segment: bool = True) -> Fitted:
    """Step 1 on ``table``: universal curves, and a segment's own baseline/target where it has the data.

    Each curve starts from the signal's own relation with retention, then ``BACKFIT_ROUNDS`` rounds of
    backfitting (the local-scoring algorithm of additive models) refit every curve to its partial residual
    given the others: signals that all follow one latent health would otherwise each take the shape of
    the others' effects too.
    """
    y = table.y
    curves, how = {}, {}
    for sig in table.signals:
        fit = fit_curve(table.raw(sig), y, sig)
        curves[sig.signal_id], how[sig.signal_id] = fit.curve, fit.how
    own = segments_with_data(table) if per_segment else []
    seg = table.segments
    segment_curves: dict[str, dict[str, Curve]] = {s: {} for s in own}
    for s in own:
        rows = seg == s
        for sig in table.signals:
            if not sig.binary:
                fit = fit_curve(table.raw(sig)[rows], y[rows], sig, fixed=curves[sig.signal_id])
                if fit.informative:
                    segment_curves[s][sig.signal_id] = fit.curve
    fitted = Fitted(
        curves, how, segment_curves, np.zeros(len(table.signals)), {}, np.zeros(0), ("l2", 0.0), own
    )
    _refresh_design(table, fitted)
    retained = 1.0 - y
    sw = _balanced(retained)
    for _ in range(BACKFIT_ROUNDS):
        X = fitted.design  # noqa: N806
        coef, intercept = fit_nonneg_logistic(X, retained, penalty="l2", strength=1e-3)
        eta = X @ coef + intercept
        p = expit(eta)
        w = np.clip(p * (1 - p), 1e-4, None) * sw
        work = eta + (retained - p) / np.clip(p * (1 - p), 1e-4, None)
        for j, sig in enumerate(table.signals):
            if sig.binary:
                continue
            part = work - eta + coef[j] * X[:, j]
            x = table.raw(sig)
            fit = fit_curve(x, y, sig, partial=part, weight=w)
            if fit.informative:
                curves[sig.signal_id], how[sig.signal_id] = fit.curve, fit.how
            for s in own:
                rows = seg == s
                fit = fit_curve(
                    x[rows], y[rows], sig, fixed=curves[sig.signal_id], partial=part[rows], weight=w[rows]
                )
                if fit.informative:
                    segment_curves[s][sig.signal_id] = fit.curve
                else:
                    segment_curves[s].pop(sig.signal_id, None)
        _refresh_design(table, fitted)
    return fitted


def _refresh_design(table: ByoTable, fitted: Fitted) -> None:
    norm = normalized_matrix(table, fitted)
    fitted.fill = np.nan_to_num(np.nanmean(norm, axis=0) / 100.0, nan=0.5)
    fitted.design = _design(norm, fitted.fill)


def _balanced(y: np.ndarray) -> np.ndarray:
    n, pos = y.size, max(int(y.sum()), 1)
    neg = max(n - int(y.sum()), 1)
    return np.where(y == 1, n / (2.0 * pos), n / (2.0 * neg))


def fit_weights(table: ByoTable, curves: Fitted, penalty: tuple[str, float]) -> Fitted:
    """Step 2: non-negative weights over the fitted curves, universal and per segment.

    The first fit sees missing values at the training mean; the refits see them as the engine will: a
    missing signal counts as its dimension's other signals, a missing dimension as the other dimensions
    (the weighted average renormalizes), so the weights are fitted to the score that will be computed.
    """
    norm = normalized_matrix(table, curves) / 100.0
    X = curves.design  # noqa: N806
    retained = 1.0 - table.y
    seg = table.segments
    fitted = curves
    for round_ in range(1 + IMPUTE_ROUNDS):
        if round_:
            X = engine_imputed(norm, table, fitted)  # noqa: N806
        coef, intercept = fit_nonneg_logistic(X, retained, penalty=penalty[0], strength=penalty[1])
        segment_coef = {}
        for s in curves.segments_fitted if coef.sum() > 0 else ():
            rows = seg == s
            segment_coef[s], _ = fit_nonneg_logistic(
                X[rows],
                retained[rows],
                penalty=penalty[0],
                strength=penalty[1],
                center=coef,
                extra_l2=SEGMENT_SHRINKAGE_ROWS / rows.sum(),
                intercept=intercept,
                total=float(coef.sum()),
            )
        fitted = replace(curves, coef=coef, segment_coef=segment_coef, penalty=penalty)
    return fitted


def _row_coef(table: ByoTable, fitted: Fitted) -> np.ndarray:
    out = np.tile(fitted.coef, (len(table), 1))
    seg = table.segments
    for s, coef in fitted.segment_coef.items():
        out[seg == s] = coef
    return out


def engine_imputed(norm: np.ndarray, table: ByoTable, fitted: Fitted) -> np.ndarray:
    """The 0..1 design with each missing value replaced as the weighted average treats it.

    With these values the regression's linear predictor is the engine's composite times the weight total,
    so the two rank accounts identically, missing data included.
    """
    coef = _row_coef(table, fitted)
    present = ~np.isnan(norm)
    values = np.where(present, norm, 0.0)
    dims = mapped_dimensions(table.signals)
    dim_of = np.array([dims.index(s.dimension) for s in table.signals])
    n = len(table)
    dim_score = np.full((n, len(dims)), np.nan)
    dim_weight = np.zeros((n, len(dims)))
    for d in range(len(dims)):
        cols = dim_of == d
        w = coef[:, cols]
        wp = w * present[:, cols]
        total = wp.sum(axis=1)
        members = cols.sum()
        eq = present[:, cols].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            weighted = (wp * values[:, cols]).sum(axis=1) / total
            equal = values[:, cols].sum(axis=1) / eq  # all weights 0: the dimension shows the plain mean
        dim_score[:, d] = np.where(total > 0, weighted, np.where(eq > 0, equal, np.nan))
        dim_weight[:, d] = w.sum(axis=1)
        del members
    has = ~np.isnan(dim_score)
    with np.errstate(divide="ignore", invalid="ignore"):
        composite = (np.where(has, dim_score, 0.0) * dim_weight).sum(axis=1) / (has * dim_weight).sum(axis=1)
    composite = np.where(np.isfinite(composite), composite, np.nan)
    fill = np.where(np.isnan(dim_score[:, dim_of]), composite[:, None], dim_score[:, dim_of])
    fill = np.where(np.isnan(fill), fitted.fill[None, :], fill)
    return np.where(present, norm, fill)


def fit_pipeline(table: ByoTable, penalty: tuple[str, float], per_segment: bool = True) -> Fitted:
    """Curves, then non-negative weights, universal and per segment, from ``table`` (training rows only)."""
    return fit_weights(table, fit_curves(table, per_segment), penalty)


def linear_health(table: ByoTable, fitted: Fitted) -> np.ndarray:
    """The regression's linear predictor of retention, missing values as the engine treats them: it ranks
    accounts as the weighted-average score does."""
    X = engine_imputed(normalized_matrix(table, fitted) / 100.0, table, fitted)  # noqa: N806
    return (X * _row_coef(table, fitted)).sum(axis=1)


def choose_penalty(
    table: ByoTable, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[tuple[str, float], bool, list[dict[str, Any]]]:
    """(penalty, per_segment, all results): the best mean validation AUC of the regression's ranking.

    Per-segment curves and weights are a candidate too, where segments have the data: they must earn
    their place on validation rows. Ties (within 0.0002) go to the universal model, then to L1 and the
    stronger penalty.
    """
    variants = [False, True] if segments_with_data(table) else [False]
    aucs: dict[tuple[str, float, bool], list[float | None]] = {
        (*p, v): [] for v in variants for p in PENALTIES
    }
    for train, valid in folds:
        part_train, part_valid = table.subset(train), table.subset(valid)
        for per_segment in variants:
            curves = fit_curves(part_train, per_segment)  # independent of the penalty: once per fold
            for penalty in PENALTIES:
                fitted = fit_weights(part_train, curves, penalty)
                aucs[(*penalty, per_segment)].append(
                    roc_auc(part_valid.y, -linear_health(part_valid, fitted))
                )
    results = []
    for (name, strength, per_segment), fold_auc in aucs.items():
        values = [a for a in fold_auc if a is not None]
        results.append(
            {
                "penalty": name,
                "strength": strength,
                "per_segment": per_segment,
                "fold_auc": fold_auc,
                "mean_auc": float(np.mean(values)) if values else None,
            }
        )
    best_auc = max(r["mean_auc"] or 0.0 for r in results)
    chosen = [r for r in results if (r["mean_auc"] or 0.0) >= best_auc - 2e-4]
    pick = max(chosen, key=lambda r: (not r["per_segment"], r["penalty"] == "l1", r["strength"]))
    return (pick["penalty"], pick["strength"]), pick["per_segment"], results


# -------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Lines:
    healthy: dict[str, int]  # segment -> healthy_at_or_above
    at_risk: dict[str, int]  # segment -> at_risk_below
    universal_healthy: int
    universal_at_risk: int
    critical: int  # plain bands: Critical below this
    how: dict[str, str]


def _within_dim(coef: np.ndarray, table: ByoTable) -> tuple[dict[str, float], dict[str, float]]:
    """(signal weights inside their dimension, dimension totals) for one coefficient vector."""
    dims = mapped_dimensions(table.signals)
    totals = {d: float(sum(coef[j] for j, s in enumerate(table.signals) if s.dimension == d)) for d in dims}
    weights = {}
    for j, s in enumerate(table.signals):
        total = totals[s.dimension]
        members = sum(1 for t in table.signals if t.dimension == s.dimension)
        weights[s.signal_id] = round(float(coef[j] / total), 4) if total > 0 else round(1.0 / members, 4)
    return weights, totals


def model_from_fit(
    base: ModelConfig,
    table: ByoTable,
    fitted: Fitted,
    *,
    version: str,
    description: str,
    lines: Lines | None = None,
) -> ModelConfig:
    """The fitted curves and weights as a complete model (lines: learned ones, else the base's)."""
    dims = mapped_dimensions(table.signals)
    signal_w, dim_totals = _within_dim(fitted.coef, table)
    if sum(dim_totals.values()) <= 0:
        weights = base_weights_for(base, dims)
    else:
        weights = {s: percent_weights(dim_totals) for s in SEGMENTS}
    overrides: dict[str, dict[str, float]] = {}
    for s, coef in fitted.segment_coef.items():
        seg_w, seg_totals = _within_dim(coef, table)
        if sum(seg_totals.values()) > 0:
            weights[s] = percent_weights(seg_totals)
            overrides[s] = seg_w
    dimensions: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in dims}
    for sig in table.signals:
        by_segment = {s: c[sig.signal_id] for s, c in fitted.segment_curves.items() if sig.signal_id in c}
        dimensions[sig.dimension][sig.signal_id] = signal_spec(
            sig,
            table.raw(sig),
            fitted.curves[sig.signal_id],
            weight=signal_w[sig.signal_id],
            by_segment=by_segment or None,
            note=fitted.curve_how[sig.signal_id],
        )
    kwargs: dict[str, Any] = {}
    if lines is not None:
        kwargs["bands"] = _bands(base, lines)
        kwargs["segment_thresholds"] = {
            s: {"healthy_at_or_above": lines.healthy[s], "at_risk_below": lines.at_risk[s]} for s in SEGMENTS
        }
        kwargs["stage_thresholds"] = {
            "healthy_at_or_above": lines.universal_healthy,
            "at_risk_below": lines.universal_at_risk,
        }
    return build_model(
        base,
        dimensions,
        weights,
        version=version,
        description=description,
        signal_weight_overrides=overrides,
        **kwargs,
    )


def _bands(base: ModelConfig, lines: Lines) -> list[dict[str, Any]]:
    """The base's bands (names, colours, count) with the learned edges, best first, covering 0..100."""
    h, r, c = lines.universal_healthy, lines.universal_at_risk, lines.critical
    edges = [h, r]  # lower edge of each band, best first
    rest = len(base.bands) - 2
    if rest == 1:
        edges.append(0)
    else:
        edges.append(c)
        lower = len(base.bands) - 3  # bands below At Risk share 0..c-1
        step = c / lower
        edges += [int(round(c - step * (i + 1))) for i in range(lower)]
        edges[-1] = 0
    out = []
    upper = 100
    for band, low in zip(base.bands, edges, strict=True):
        item = {"name": band.name, "min": int(low), "max": int(upper)}
        if band.color:
            item["color"] = band.color
        out.append(item)
        upper = int(low) - 1
    return out


def _stump(
    s: np.ndarray, y: np.ndarray, candidates: np.ndarray, min_side: int, lower_worse: bool
) -> int | None:
    """The split ``s < c`` vs ``s >= c`` with the least Gini impurity whose lower side churns more."""
    best, best_imp = None, np.inf
    for c in candidates:
        lo = s < c
        n_lo, n_hi = int(lo.sum()), int((~lo).sum())
        if n_lo < min_side or n_hi < min_side:
            continue
        p_lo, p_hi = y[lo].mean(), y[~lo].mean()
        if lower_worse and not p_lo > p_hi:
            continue
        imp = n_lo * p_lo * (1 - p_lo) + n_hi * p_hi * (1 - p_hi)
        if imp < best_imp - 1e-12:
            best, best_imp = int(c), imp
    return best


def _lines_for(s: np.ndarray, y: np.ndarray, n_all: int) -> tuple[int, int, int, str]:
    """(healthy, at_risk, critical) lines on integer scores ``s`` and what decided them."""
    op = specificity_at_recall(y, -s.astype(float), TARGET_RECALL)
    r = int(np.clip(int(-op.threshold) + 1 if op.threshold is not None else 50, 2, 99))
    how = (
        f"At Risk below {r}: recall {op.recall:.3f} at specificity {op.specificity:.3f} (out-of-fold)"
        if op.recall is not None
        else "At Risk line kept at 50: no out-of-fold outcomes of both kinds"
    )
    above = s >= r
    h = _stump(s[above], y[above], np.arange(r + 1, 101), max(10, int(0.1 * n_all)), True)
    if h is None:
        h = int(np.clip(np.median(s[above]) + 1 if above.any() else r + 10, r + 1, 100))
    below = ~above
    c = _stump(s[below], y[below], np.arange(1, r), max(10, int(0.05 * n_all)), True)
    if c is None:
        c = int(np.clip(np.quantile(s[below], 1 / 3) if below.any() else r // 2, 1, r - 1))
    return h, r, c, how


def band_lines(scores: np.ndarray, y: np.ndarray, segments: np.ndarray, own: Sequence[str]) -> Lines:
    """Universal lines from all out-of-fold scores; a segment's own where it has enough accounts."""
    ok = np.isfinite(scores)
    s = np.floor(scores[ok] + 0.5).astype(int)  # bands compare the score rounded half-up
    yy, seg = y[ok], segments[ok]
    h_u, r_u, c_u, how_u = _lines_for(s, yy, s.size)
    healthy = dict.fromkeys(SEGMENTS, h_u)
    at_risk = dict.fromkeys(SEGMENTS, r_u)
    how = {"universal": how_u}
    for name in own:
        rows = seg == name
        if _both_classes(yy[rows]) and int(yy[rows].sum()) >= MIN_CLASS_ROWS:
            h, r, _, text = _lines_for(s[rows], yy[rows], int(rows.sum()))
            healthy[name], at_risk[name] = h, r
            how[name] = text
    critical = int(max(1, min(c_u, min(at_risk.values()) - 1, r_u - 1)))
    return Lines(healthy, at_risk, h_u, r_u, critical, how)


# ---------------------------------------------------------------------------------------------- run


@dataclass
class Recalibration:
    """What ``recalibrate`` produced, for the files and the report."""

    model: ModelConfig
    baseline: ModelConfig
    table: ByoTable
    split: Split
    test_scores: dict[str, Any]  # name -> scored frame of the held-out rows
    metrics: dict[str, Any]


def _version(base: ModelConfig, table: ByoTable) -> str:
    stamp = str(table.dates.max()).replace("-", "")
    return f"{base.version[:24]}-byo{stamp}"


def baseline_model(base: ModelConfig, train: ByoTable, base_given: bool) -> tuple[ModelConfig, str]:
    """The model to beat: the base as it is when it scores every mapped signal, else its weights over
    the table's signals normalized by the training rows' distribution."""
    ids = {s.signal_id for s in train.signals}
    if base_given and set(base.all_signal_ids()) <= ids:
        return base, f"the base model {base.version} as given"
    return table_model(base, train, version=f"{base.version[:30]}-table"), (
        f"{base.version}'s dimension weights; the table's signals normalized by the training rows' distribution"
    )


def recalibrate(table: ByoTable, base: ModelConfig, *, base_given: bool = False) -> Recalibration:
    """Fit on the training part, choose lines out-of-fold, evaluate both models on the held-out part."""
    if not _both_classes(table.y):
        raise ByoInputError(
            f"outcome column {table.outcome!r} holds only {int(table.y[0])}s; recalibration needs churned and retained rows"
        )
    split = holdout_split(table)
    train, test = table.subset(split.train), table.subset(split.test)
    folds, fold_kind = cv_folds(train)
    penalty, per_segment, candidates = choose_penalty(train, folds)

    # Out-of-fold scores through the engine, for the band lines.
    version = _version(base, table)
    oof = np.full(len(train), np.nan)
    for tr, va in folds:
        fitted = fit_pipeline(train.subset(tr), penalty, per_segment)
        fold_model = model_from_fit(base, train.subset(tr), fitted, version=version, description="fold")
        oof[va] = score_table(fold_model, train.subset(va))["score"].to_numpy(dtype=float)
    own = segments_with_data(train)
    validated = np.isfinite(oof)
    lines = band_lines(
        oof,
        train.y,
        train.segments,
        [s for s in own if _enough(train, np.flatnonzero(validated & (train.segments == s)))],
    )

    fitted = fit_pipeline(train, penalty, per_segment)
    description = (
        f"Recalibrated from {base.version} on {Path(table.source).name}: curves, non-negative weights and band lines "
        f"learned from {split.description['train']['rows']} training rows; held-out figures in metrics.json"
    )
    model = model_from_fit(base, train, fitted, version=version, description=description, lines=lines)
    baseline, baseline_how = baseline_model(base, train, base_given)

    notes = list(table.notes)
    scored = {
        "baseline": score_table(baseline, test, notes),
        "recalibrated": score_table(model, test, notes),
    }
    held_out = {
        name: score_metrics(frame, test, m)
        for (name, frame), m in zip(scored.items(), (baseline, model), strict=True)
    }
    signals_report = []
    for j, sig in enumerate(train.signals):
        signals_report.append(
            {
                "column": sig.column,
                "signal_id": sig.signal_id,
                "dimension": sig.dimension,
                "direction": sig.direction,
                "curve": fitted.curves[sig.signal_id].__dict__,
                "curve_by_segment": {
                    s: c[sig.signal_id].__dict__
                    for s, c in fitted.segment_curves.items()
                    if sig.signal_id in c
                },
                "how": fitted.curve_how[sig.signal_id],
                "coefficient": float(fitted.coef[j]),
                "dropped": bool(fitted.coef[j] == 0),
            }
        )
    b_auc = held_out["baseline"]["overall"]["auc"]
    r_auc = held_out["recalibrated"]["overall"]["auc"]
    b_f1 = (held_out["baseline"]["overall"].get("decision") or {}).get("f1")
    r_f1 = (held_out["recalibrated"]["overall"].get("decision") or {}).get("f1")
    metrics = {
        "command": "recalibrate",
        "table": table.source,
        "outcome": table.outcome,
        "rows": len(table),
        "accounts": int(np.unique(table.accounts).size),
        "evaluation": {
            "held_out": True,
            "in_sample_figures": "none: every figure below is on held-out rows the fit never saw",
            **split.description,
        },
        "baseline": {
            "version": baseline.version,
            "config_hash": baseline.config_hash,
            "how": baseline_how,
            "held_out": held_out["baseline"],
        },
        "recalibrated": {
            "version": model.version,
            "config_hash": model.config_hash,
            "held_out": held_out["recalibrated"],
        },
        "improvement": {
            "auc": None if b_auc is None or r_auc is None else r_auc - b_auc,
            "f1": None if b_f1 is None or r_f1 is None else r_f1 - b_f1,
        },
        "cross_validation": {
            "folds": fold_kind,
            "selected": {"penalty": penalty[0], "strength": penalty[1], "per_segment_weights": per_segment},
            "candidates": candidates,
            "figure": "mean validation AUC of the regression",
        },
        "weights": {s: model.weights_for(s) for s in SEGMENTS},
        "baseline_weights": {s: baseline.weights_for(s) for s in SEGMENTS},
        "segments_with_own_fit": fitted.segments_fitted,
        "lines": {
            "healthy_at_or_above": lines.healthy,
            "at_risk_below": lines.at_risk,
            "critical_below": lines.critical,
            "how": lines.how,
            "target_recall": TARGET_RECALL,
        },
        "signals": signals_report,
        "dropped_signals": [s["column"] for s in signals_report if s["dropped"]],
        "notes": notes,
    }
    return Recalibration(model, baseline, table, split, scored, metrics)


def run_recalibrate(
    table_path: Path | str,
    mapping_path: Path | str,
    outcome: str,
    out: Path | str,
    model_path: Path | str | None = None,
) -> Recalibration:
    """``healthscore recalibrate``: write DIR/model.yaml, DIR/metrics.json and DIR/report.html."""
    from healthscore.reports.byo import recalibration_report

    base = load_model_arg(model_path)
    dims = tuple(dict.fromkeys((*DIMENSIONS, *base.dimensions)))
    table = load_byo(table_path, mapping_path, outcome, dimensions=dims)
    out_dir = prepare_out_dir(out)
    # Small matrices: BLAS threads only spin (measured 25x slower on 2 busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        result = recalibrate(table, base, base_given=model_path is not None)
    header = (
        f"healthscore model {result.model.version}, recalibrated by `healthscore recalibrate` from "
        f"{base.version}\non {table.source} (outcome column {outcome!r}); config_hash {result.model.config_hash}.\n"
        "Held-out figures against the baseline: metrics.json and report.html beside this file."
    )
    write_model_yaml(out_dir / "model.yaml", result.model, header)
    write_json(out_dir / "metrics.json", result.metrics)
    (out_dir / "report.html").write_text(recalibration_report(result), encoding="utf-8")
    return result
