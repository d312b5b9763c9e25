"""Steps 1-2 of recalibration over a whole table: backfitted curves, non-negative logistic weights
(universal and per segment), the engine's imputation of missing values, and the penalty chosen by
cross-validation (see ``healthscore.evaluation.recalibrate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from healthscore.evaluation.backtest import SEGMENTS, Curve, mapped_dimensions
from healthscore.evaluation.byo import ByoTable
from healthscore.evaluation.curve_fit import apply_curve, fit_curve
from healthscore.evaluation.holdout import MIN_CLASS_ROWS
from healthscore.evaluation.metrics import roc_auc

MIN_SEGMENT_ACCOUNTS = 100  # "more than 100 accounts with outcomes in the segment"
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
SEGMENT_SHRINKAGE_ROWS = 10.0  # per-segment fit: extra L2 pull toward the universal weights, worth ~this/n
BACKFIT_ROUNDS = 2
BACKFIT_CHOICES = (0, BACKFIT_ROUNDS)  # chosen by cross-validation (choose_penalty)
BALANCED = True  # class-balanced sample weights (measured: unweighted fits ranked no better on bench_byo)
IMPUTE_ROUNDS = 2  # refits of the weights with missing values imputed as the engine treats them


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
    sw = _balanced(y)
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


def fit_curves(table: ByoTable, per_segment: bool = True, rounds: int = BACKFIT_ROUNDS) -> Fitted:
    """Step 1 on ``table``: universal curves, and a segment's own baseline/target where it has the data.

    Each curve starts from the signal's own relation with retention, then ``rounds`` rounds of
    backfitting (the local-scoring algorithm of additive models) refit every curve to its partial residual
    given the others: signals that all follow one latent health would otherwise each take the shape of
    the others' effects too. Whether that helps depends on the table (measured on bench_byo's generators:
    it helps where a few drivers hide among correlated signals, it hurts where one strong signal's partial
    residual is mostly noise), so ``choose_penalty`` lets cross-validation choose 0 or ``BACKFIT_ROUNDS``.
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
    for _ in range(rounds):
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
    present = (~np.isnan(norm)).sum(axis=0)  # a signal with no value at all is filled with 0.5, without a warning
    means = np.divide(np.nansum(norm, axis=0), present, out=np.full(norm.shape[1], np.nan), where=present > 0)
    fitted.fill = np.nan_to_num(means / 100.0, nan=0.5)
    fitted.design = _design(norm, fitted.fill)


def _balanced(y: np.ndarray) -> np.ndarray:
    if not BALANCED:
        return np.ones(y.size)
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


def fit_pipeline(
    table: ByoTable, penalty: tuple[str, float], per_segment: bool = True, rounds: int = BACKFIT_ROUNDS
) -> Fitted:
    """Curves, then non-negative weights, universal and per segment, from ``table`` (training rows only)."""
    return fit_weights(table, fit_curves(table, per_segment, rounds), penalty)


def linear_health(table: ByoTable, fitted: Fitted) -> np.ndarray:
    """The regression's linear predictor of retention, missing values as the engine treats them: it ranks
    accounts as the weighted-average score does."""
    X = engine_imputed(normalized_matrix(table, fitted) / 100.0, table, fitted)  # noqa: N806
    return (X * _row_coef(table, fitted)).sum(axis=1)


def choose_penalty(
    table: ByoTable, folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> tuple[tuple[str, float], bool, int, list[dict[str, Any]]]:
    """(penalty, per_segment, backfit rounds, all results): the best mean validation AUC of the ranking.

    Per-segment curves and weights are a candidate too, where segments have the data: they must earn
    their place on validation rows; so are curves without backfitting (``BACKFIT_CHOICES``). Ties (within
    0.0002) go to the universal model, then to fewer backfitting rounds, then to L1 and the stronger penalty.
    """
    variants = [False, True] if segments_with_data(table) else [False]
    aucs: dict[tuple[str, float, bool, int], list[float | None]] = {
        (*p, v, r): [] for v in variants for r in BACKFIT_CHOICES for p in PENALTIES
    }
    for train, valid in folds:
        part_train, part_valid = table.subset(train), table.subset(valid)
        for per_segment in variants:
            for rounds in BACKFIT_CHOICES:
                curves = fit_curves(part_train, per_segment, rounds)  # independent of the penalty
                for penalty in PENALTIES:
                    fitted = fit_weights(part_train, curves, penalty)
                    aucs[(*penalty, per_segment, rounds)].append(
                        roc_auc(part_valid.y, -linear_health(part_valid, fitted))
                    )
    results = []
    for (name, strength, per_segment, rounds), fold_auc in aucs.items():
        values = [a for a in fold_auc if a is not None]
        results.append(
            {
                "penalty": name,
                "strength": strength,
                "per_segment": per_segment,
                "backfit_rounds": rounds,
                "fold_auc": fold_auc,
                "mean_auc": float(np.mean(values)) if values else None,
            }
        )
    best_auc = max(r["mean_auc"] or 0.0 for r in results)
    chosen = [r for r in results if (r["mean_auc"] or 0.0) >= best_auc - 2e-4]
    pick = max(
        chosen,
        key=lambda r: (not r["per_segment"], -r["backfit_rounds"], r["penalty"] == "l1", r["strength"]),
    )
    return (pick["penalty"], pick["strength"]), pick["per_segment"], pick["backfit_rounds"], results
