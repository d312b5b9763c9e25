"""Binary-classification metrics for churn prediction, pure numpy.

Why a module of our own rather than calling scikit-learn everywhere: every figure a report shows must
come with its sample sizes and must say "undefined" instead of crashing or printing a warning-laden 0
when a window holds one class only (a quiet month with no churn is normal). The test suite checks every
figure against scikit-learn on the same data.

Conventions (one place, so the accuracy DAG, the backtest and the recalibration agree):

- ``y_true``: 1 = churned (the positive class), 0 = retained. Anything else is an error.
- ``risk``: higher = more likely to churn. A health score (0-100, higher = healthier) becomes a risk with
  :func:`risk_from_health`, ``risk = (100 - score) / 100``, which is also the probability-like value the
  Brier score uses for a score that is not a calibrated probability (say so when you report it).
- A risk threshold predicts churn when ``risk >= threshold`` (scikit-learn's ``roc_curve`` convention).
  A band line "At Risk below L" predicts churn when ``score < L``: :func:`predicted_at_risk`.
- Undefined figures (a zero denominator, AUC with one class) are ``None``, never NaN or 0, so they
  survive JSON and nobody mistakes them for a measured value. Rows whose risk is missing are left out
  and counted (``n_excluded``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
HEALTH_SCALE = 100.0


# ---------------------------------------------------------------------------------------- conventions


def risk_from_health(score: ArrayLike, scale: float = HEALTH_SCALE) -> np.ndarray:
    """Turn a health score (higher = healthier, 0..scale) into a churn risk in 0..1 (higher = riskier)."""
    values = np.asarray(score, dtype=float)
    return (scale - values) / scale


def predicted_at_risk(score: ArrayLike, at_risk_below: float) -> np.ndarray:
    """A band line as a classifier: an account is predicted to churn when its score is below the line."""
    return np.asarray(score, dtype=float) < at_risk_below


def _labels(y_true: ArrayLike) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int8)
    numeric = y.astype(float)
    if np.isnan(numeric).any():
        raise ValueError("y_true has missing values; outcomes must be 0 (retained) or 1 (churned)")
    bad = ~np.isin(numeric, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"y_true must be 0 or 1, found {numeric[bad][0]:g}")
    return numeric.astype(np.int8)


def _paired(y_true: ArrayLike, values: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels and finite values of the same length; rows with a missing value are dropped and counted."""
    y = _labels(y_true)
    v = np.asarray(values, dtype=float)
    if v.shape != y.shape:
        raise ValueError(f"{name} has shape {v.shape}, y_true has {y.shape}")
    keep = np.isfinite(v)
    return y[keep], v[keep], int((~keep).sum())


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


# ----------------------------------------------------------------------------------- confusion matrix


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one decision rule; the derived rates are ``None`` when their denominator is 0."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        """Sensitivity: the share of churners the rule catches."""
        return _ratio(self.tp, self.tp + self.fn)

    sensitivity = recall

    @property
    def specificity(self) -> float | None:
        """The share of retained accounts the rule leaves alone."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def f1(self) -> float | None:
        # 2TP / (2TP + FP + FN): defined whenever anything was predicted or actually positive.
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "n": self.n,
            "positives": self.positives,
            "negatives": self.negatives,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "specificity": self.specificity,
            "f1": self.f1,
        }


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike) -> ConfusionMatrix:
    """Counts of a 0/1 (or boolean) prediction against 0/1 outcomes."""
    y = _labels(y_true)
    p = _labels(y_pred)
    if p.shape != y.shape:
        raise ValueError(f"y_pred has shape {p.shape}, y_true has {y.shape}")
    tp = int(np.sum((y == 1) & (p == 1)))
    fp = int(np.sum((y == 0) & (p == 1)))
    tn = int(np.sum((y == 0) & (p == 0)))
    fn = int(np.sum((y == 1) & (p == 0)))
    return ConfusionMatrix(tp=tp, fp=fp, tn=tn, fn=fn)


def confusion_at(y_true: ArrayLike, risk: ArrayLike, threshold: float) -> ConfusionMatrix:
    """Confusion matrix of "churn when risk >= threshold"; rows with missing risk are left out."""
    y, r, _ = _paired(y_true, risk, "risk")
    return confusion_matrix(y, r >= threshold)


# --------------------------------------------------------------------------------------- rank metrics


def roc_auc(y_true: ArrayLike, risk: ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``None`` with fewer than two classes."""
    y, r, _ = _paired(y_true, risk, "risk")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(r)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (scipy's rankdata 'average')."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], sorted_values.size]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


@dataclass(frozen=True)
class RocCurve:
    """ROC points from the strictest threshold down; ``thresholds[i]`` gives ``(fpr[i], tpr[i])``."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve(y_true: ArrayLike, risk: ArrayLike) -> RocCurve | None:
    """Every distinct threshold's (FPR, TPR), starting at (0, 0) with threshold +inf; ``None`` with one class."""
    y, r, _ = _paired(y_true, risk, "risk")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-r, kind="mergesort")
    r_sorted, y_sorted = r[order], y[order]
    last_of_run = np.r_[r_sorted[1:] != r_sorted[:-1], True]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (np.arange(1, y.size + 1) - np.cumsum(y_sorted))[last_of_run]
    thresholds = r_sorted[last_of_run]
    return RocCurve(
        fpr=np.r_[0.0, fps / n_neg],
        tpr=np.r_[0.0, tps / n_pos],
        thresholds=np.r_[np.inf, thresholds],
    )


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold on the risk and what it achieves; ``None`` fields when nothing qualifies."""

    threshold: float | None
    recall: float | None
    specificity: float | None
    target: float


def recall_at_specificity(y_true: ArrayLike, risk: ArrayLike, specificity: float = 0.85) -> OperatingPoint:
    """The best recall among thresholds whose specificity is at least ``specificity`` (no interpolation)."""
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be within 0..1, got {specificity}")
    curve = roc_curve(y_true, risk)
    if curve is None:
        return OperatingPoint(None, None, None, specificity)
    spec = 1.0 - curve.fpr
    ok = spec >= specificity - 1e-12
    i = int(np.flatnonzero(ok)[np.argmax(curve.tpr[ok])])  # the +inf point always qualifies
    return OperatingPoint(float(curve.thresholds[i]), float(curve.tpr[i]), float(spec[i]), specificity)


def specificity_at_recall(y_true: ArrayLike, risk: ArrayLike, recall: float = 0.75) -> OperatingPoint:
    """The strictest threshold whose recall is at least ``recall``: the best specificity that reaches it.

    This is how an "At Risk" line is set: catch at least 75% of churners, flag as few others as possible.
    """
    if not 0.0 <= recall <= 1.0:
        raise ValueError(f"recall must be within 0..1, got {recall}")
    curve = roc_curve(y_true, risk)
    if curve is None:
        return OperatingPoint(None, None, None, recall)
    ok = curve.tpr >= recall - 1e-12
    i = int(np.flatnonzero(ok)[0])  # tpr grows as the threshold falls; the first hit has the lowest fpr
    return OperatingPoint(float(curve.thresholds[i]), float(curve.tpr[i]), float(1.0 - curve.fpr[i]), recall)


def top_fraction_lift(y_true: ArrayLike, risk: ArrayLike, fraction: float = 0.1) -> float | None:
    """Churn rate among the riskiest ``fraction`` of accounts divided by the overall churn rate.

    Ties at the cut share the remaining slots in proportion (the expected value of a random tie-break),
    so the figure does not depend on row order. ``None`` when nobody churned or the table is empty.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be within (0, 1], got {fraction}")
    y, r, _ = _paired(y_true, risk, "risk")
    n = y.size
    if n == 0 or y.sum() == 0:
        return None
    k = max(1, int(round(fraction * n)))
    order = np.argsort(-r, kind="mergesort")
    r_sorted, y_sorted = r[order], y[order].astype(float)
    cut_value = r_sorted[k - 1]
    above = r_sorted > cut_value
    tied = r_sorted == cut_value
    slots = k - int(above.sum())
    caught = y_sorted[above].sum() + slots * y_sorted[tied].mean()
    return float((caught / k) / y.mean())


def top_decile_lift(y_true: ArrayLike, risk: ArrayLike) -> float | None:
    """Lift of the riskiest 10%: how many times the base churn rate the top decile shows."""
    return top_fraction_lift(y_true, risk, 0.1)


def brier_score(y_true: ArrayLike, probability: ArrayLike) -> float | None:
    """Mean squared error of a churn probability (0..1) against the outcome; ``None`` on an empty set."""
    y, p, _ = _paired(y_true, probability, "probability")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probabilities must be within 0..1; convert a health score with risk_from_health")
    if y.size == 0:
        return None
    return float(np.mean((p - y) ** 2))


# -------------------------------------------------------------------------------------------- summary


def binary_metrics(
    y_true: ArrayLike,
    risk: ArrayLike,
    *,
    threshold: float | None = None,
    y_pred: ArrayLike | None = None,
    probability: ArrayLike | None = None,
    specificity_target: float = 0.85,
) -> dict[str, Any]:
    """Every figure for one set of predictions, with its sample sizes, as a JSON-ready dict.

    The confusion-matrix figures use ``y_pred`` when given (e.g. a band rule), else ``risk >= threshold``;
    with neither they are left out. ``probability`` defaults to ``risk`` (which must then be in 0..1) for
    the Brier score. Rows whose risk is missing are excluded from everything and counted.
    """
    y_all = _labels(y_true)
    r_all = np.asarray(risk, dtype=float)
    if r_all.shape != y_all.shape:
        raise ValueError(f"risk has shape {r_all.shape}, y_true has {y_all.shape}")
    keep = np.isfinite(r_all)
    y, r = y_all[keep], r_all[keep]
    out: dict[str, Any] = {
        "n": int(y.size),
        "positives": int(y.sum()),
        "negatives": int(y.size - y.sum()),
        "n_excluded": int((~keep).sum()),
        "base_rate": _ratio(int(y.sum()), y.size),
    }
    auc = roc_auc(y, r)
    out["auc"] = auc
    if auc is None:
        out["auc_note"] = "undefined: the outcomes hold one class only"
    op = recall_at_specificity(y, r, specificity_target)
    out["recall_at_specificity"] = {"specificity_target": specificity_target, **_point(op)}
    out["top_decile_lift"] = top_decile_lift(y, r)
    p_all = r_all if probability is None else np.asarray(probability, dtype=float)
    if p_all.shape != y_all.shape:
        raise ValueError(f"probability has shape {p_all.shape}, y_true has {y_all.shape}")
    p = p_all[keep]
    in_unit = bool(np.isfinite(p).all() and (p.size == 0 or (p.min() >= 0.0 and p.max() <= 1.0)))
    out["brier"] = brier_score(y, p) if in_unit else None
    if y_pred is not None:
        pred_all = _labels(y_pred)
        if pred_all.shape != y_all.shape:
            raise ValueError(f"y_pred has shape {pred_all.shape}, y_true has {y_all.shape}")
        out["decision"] = {"rule": "given predictions", **confusion_matrix(y, pred_all[keep]).to_dict()}
    elif threshold is not None:
        out["decision"] = {"rule": f"risk >= {threshold:g}", **confusion_matrix(y, r >= threshold).to_dict()}
    return out


def _point(op: OperatingPoint) -> dict[str, Any]:
    # +inf (flag nobody) is not JSON; None there means "no finite threshold", recall says what it got.
    threshold = op.threshold if op.threshold is not None and np.isfinite(op.threshold) else None
    return {"threshold": threshold, "recall": op.recall, "specificity": op.specificity}
