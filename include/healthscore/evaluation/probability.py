"""Fit the ``model_probability`` classifier and store it in the model YAML (no pickle).

Stable interface (the quarterly recalibration DAG and ``healthscore recalibrate --probability`` call it):

``probability_features(signals, model, features=None) -> DataFrame``
    The 0..100 features of ``account_signals``-shaped rows as the daily scoring computes them: one column
    per feature, a signal id (its normalized score) or a dimension id (its dimension score); NaN = no data.
    Default features: the model's dimensions. (Calendar lifecycle stage: exit gates need history.)

``fit_probability_model(frame, outcome, features, *, time_column="as_of_date", account_column="account_id",
calibration="sigmoid", splits=None, strengths=STRENGTHS, missing_value=50.0) -> ProbabilityArtifact``
    ``frame``: one row per account and date with the feature columns (0..100, NaN allowed, read as
    ``missing_value`` like the daily scoring does) and ``outcome`` (0/1, 1 = churned). Fits
    ``CalibratedClassifierCV(Pipeline(StandardScaler, LogisticRegression(class_weight="balanced")),
    method=calibration, cv=<time-ordered splits>, ensemble=True)``: each member trains on earlier dates
    and is calibrated on later ones, so the balanced weights (class imbalance) do not bias the
    probabilities. The L2 strength is chosen first by the mean held-out AUC over the same splits.
    ``splits`` (row positions ``[(train, valid), ...]``) overrides the default: ``time_splits``.
    Raises ``ProbabilityFitError`` (a ValueError) with a one-line message on unusable input.

``with_probability_model(model, artifact, *, version=None, description=None) -> ModelConfig``
    ``model`` with ``scoring.method: model_probability`` and the artifact in
    ``scoring.model_probability.artifact``, validated (features must be the model's signals or
    dimensions). Bands, segment and lifecycle thresholds stay the model's: they apply to the
    probability score, 100 x P(retained).

``ArtifactClassifier(artifact).predict_proba(X)`` (``healthscore.scoring.probability``) scores a feature
matrix with the stored numbers; it matches scikit-learn's ``predict_proba`` of the fitted estimator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.config.schema import ProbabilityArtifact
from healthscore.scoring import dimension_scores, normalize_signals

STRENGTHS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)  # LogisticRegression C (inverse L2 strength)
TIME_SPLITS = 3
MIN_CLASS_ROWS = 5

__all__ = [
    "STRENGTHS",
    "ProbabilityFitError",
    "fit_probability_model",
    "probability_features",
    "time_splits",
    "with_probability_model",
]


class ProbabilityFitError(ValueError):
    """The training frame cannot fit a classifier (missing column, not 0/1, one class, too few dates)."""


def probability_features(
    signals: pd.DataFrame, model: ModelConfig, features: Sequence[str] | None = None
) -> pd.DataFrame:
    """The features of ``signals`` rows (same index): normalized signal scores and dimension scores."""
    names = list(model.dimensions) if features is None else list(features)
    signal_ids = set(model.all_signal_ids())
    unknown = [n for n in names if n not in signal_ids and n not in model.dimensions]
    if unknown:
        raise ProbabilityFitError(f"unknown features {unknown}: a feature is a signal id or a dimension id")
    if "as_of_date" in signals.columns and signals["as_of_date"].nunique(dropna=False) > 1:
        # The scoring reads one day at a time (one row per account); a history is many days.
        days = [probability_features(rows, model, names) for _, rows in signals.groupby("as_of_date", sort=True)]
        return pd.concat(days).reindex(signals.index)
    parts: dict[str, pd.Series] = {}
    if any(n in model.dimensions for n in names):
        dims = dimension_scores(signals, model)
        parts.update({n: dims[n] for n in names if n in model.dimensions})
    if any(n in signal_ids for n in names):
        normalized = normalize_signals(signals, model)
        parts.update({n: normalized[n] for n in names if n in signal_ids})
    return pd.DataFrame({n: parts[n] for n in names}, index=signals.index)


def _account_group(accounts: np.ndarray, k: int, seed: int) -> np.ndarray:
    unique, inverse = np.unique(accounts.astype(str), return_inverse=True)
    draw = np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{a}".encode()).digest()[:8], "big") / 2**64 for a in unique]
    )
    return np.minimum((draw * k).astype(int), k - 1)[inverse]


def time_splits(
    dates: np.ndarray, accounts: np.ndarray | None = None, k: int = TIME_SPLITS, seed: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` forward-chaining splits: split i trains on the dates before its cut, validates on the next
    block of dates (cuts at the row quantiles of the dates). With ``accounts``, split i validates only
    account group i and trains only on the others, so no account is on both sides. With fewer than
    ``k + 1`` dates and ``accounts`` given: ``k`` splits by account group only."""
    days = np.unique(dates)
    if days.size < k + 1:
        if accounts is not None and np.unique(np.asarray(accounts)).size >= k:
            # As ``holdout.cv_folds``: too few dates to order the splits in time, so by account only.
            group = _account_group(np.asarray(accounts), k, seed)
            return [(np.flatnonzero(group != g), np.flatnonzero(group == g)) for g in range(k)]
        raise ProbabilityFitError(
            f"{days.size} distinct dates: time-ordered cross-validation needs at least {k + 1}"
        )
    order = np.sort(dates)
    bounds = [order[min(int(q * (order.size - 1)), order.size - 1)] for q in np.linspace(0.4, 1.0, k + 1)]
    group = None if accounts is None else _account_group(np.asarray(accounts), k, seed)
    out = []
    for i in range(k):
        cut = bounds[i]
        cut = days[min(max(int(np.searchsorted(days, cut, side="left")), 1), days.size - 1)]
        end = bounds[i + 1]
        train = dates < cut
        valid = (dates >= cut) & ((dates <= end) if i < k - 1 else np.ones(dates.size, bool))
        if group is not None:
            train &= group != i
            valid &= group == i
        out.append((np.flatnonzero(train), np.flatnonzero(valid)))
    return out


def _usable(y: np.ndarray, rows: np.ndarray) -> bool:
    positives = int(y[rows].sum())
    return positives >= MIN_CLASS_ROWS and rows.size - positives >= MIN_CLASS_ROWS


def _pipeline(strength: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("logit", LogisticRegression(C=strength, class_weight="balanced", max_iter=2000)),
        ]
    )


def _member(calibrated: Any) -> dict[str, Any]:
    """One ``_CalibratedClassifier`` as plain numbers (``ProbabilityMember``)."""
    scaler = calibrated.estimator.named_steps["scale"]
    logit = calibrated.estimator.named_steps["logit"]
    if list(logit.classes_) != [0, 1]:  # pragma: no cover - y is checked to be 0/1
        raise ProbabilityFitError(f"classes {list(logit.classes_)}, expected [0, 1]")
    (calibrator,) = calibrated.calibrators
    out: dict[str, Any] = {
        "center": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "coefficients": [float(v) for v in logit.coef_[0]],
        "intercept": float(logit.intercept_[0]),
    }
    if calibrated.method == "sigmoid":
        out["sigmoid"] = {"a": float(calibrator.a_), "b": float(calibrator.b_)}
    else:
        out["isotonic"] = {
            "x": [float(v) for v in calibrator.X_thresholds_],
            "y": [float(v) for v in calibrator.y_thresholds_],
        }
    return out


def fit_probability_model(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    *,
    time_column: str = "as_of_date",
    account_column: str | None = "account_id",
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid",
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    strengths: Sequence[float] = STRENGTHS,
    missing_value: float = 50.0,
) -> ProbabilityArtifact:
    """A calibrated logistic classifier of ``outcome`` (1 = churned) on ``features``; see the module doc."""
    features = list(features)
    missing = [c for c in (*features, outcome) if c not in frame.columns]
    if splits is None and time_column not in frame.columns:
        missing.append(time_column)
    if missing:
        raise ProbabilityFitError(f"training frame has no column {missing[0]!r}")
    if not features:
        raise ProbabilityFitError("no features given")
    X = frame[features].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)  # noqa: N806
    bad = [c for j, c in enumerate(features) if np.any(np.isinf(X[:, j]))]
    if bad:
        raise ProbabilityFitError(f"feature column {bad[0]!r} has infinite values")
    X = np.where(np.isnan(X), missing_value, X)  # noqa: N806 - as the daily scoring reads a gap
    y_raw = pd.to_numeric(frame[outcome], errors="coerce")
    if y_raw.isna().any() or not set(np.unique(y_raw.to_numpy())) <= {0, 1}:
        raise ProbabilityFitError(f"outcome column {outcome!r} must hold 0/1 (1 = churned) on every row")
    y = y_raw.to_numpy(dtype=int)

    if splits is None:
        dates = pd.to_datetime(frame[time_column]).to_numpy()
        accounts = None
        if account_column is not None and account_column in frame.columns:
            accounts = frame[account_column].to_numpy()
        splits = time_splits(dates, accounts)
        if np.unique(dates).size < TIME_SPLITS + 1:
            split_how = f"{len(splits)} splits grouped by account (too few dates to order them in time)"
        else:
            split_how = f"{len(splits)} forward-chaining time splits" + (
                ", grouped by account" if accounts is not None else ""
            )
    else:
        split_how = f"{len(splits)} given splits"
    splits = [(np.asarray(tr), np.asarray(va)) for tr, va in splits if _usable(y, np.asarray(tr)) and _usable(y, np.asarray(va))]
    if not splits:
        raise ProbabilityFitError(
            f"outcome column {outcome!r}: no time split has at least {MIN_CLASS_ROWS} churned and "
            f"{MIN_CLASS_ROWS} retained rows on both sides"
        )

    # Small matrices: BLAS threads only spin on a busy machine (as in ``recalibrate``).
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(X, y, features, splits, split_how, frame, time_column, calibration, strengths, missing_value)


def _fit(
    X: np.ndarray,  # noqa: N803
    y: np.ndarray,
    features: list[str],
    splits: list[tuple[np.ndarray, np.ndarray]],
    split_how: str,
    frame: pd.DataFrame,
    time_column: str,
    calibration: str,
    strengths: Sequence[float],
    missing_value: float,
) -> ProbabilityArtifact:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.metrics import roc_auc_score

    candidates: dict[str, float] = {}
    for strength in strengths:
        aucs = []
        for tr, va in splits:
            est = _pipeline(strength).fit(X[tr], y[tr])
            aucs.append(float(roc_auc_score(y[va], est.decision_function(X[va]))))
        candidates[repr(float(strength))] = float(np.mean(aucs))
    best = max(strengths, key=lambda s: (round(candidates[repr(float(s))], 6), -s))

    fitted = CalibratedClassifierCV(_pipeline(best), method=calibration, cv=splits, ensemble=True).fit(X, y)
    members = [_member(c) for c in fitted.calibrated_classifiers_]
    fit_info: dict[str, Any] = {
        "estimator": "CalibratedClassifierCV(StandardScaler + LogisticRegression(class_weight=balanced, L2))",
        "calibration": calibration,
        "strength_C": float(best),
        "cv": split_how,
        "cv_auc_by_C": candidates,
        "cv_auc": candidates[repr(float(best))],
        "rows": int(len(y)),
        "churned": int(y.sum()),
    }
    if time_column in frame.columns:
        stamps = pd.to_datetime(frame[time_column])
        fit_info["first_date"] = stamps.min().date().isoformat()
        fit_info["last_date"] = stamps.max().date().isoformat()
    return ProbabilityArtifact(features=features, missing_value=missing_value, members=members, fit=fit_info)


def with_probability_model(
    model: ModelConfig,
    artifact: ProbabilityArtifact,
    *,
    version: str | None = None,
    description: str | None = None,
) -> ModelConfig:
    """``model`` scoring with ``artifact`` (method model_probability, predicts churn); validated."""
    data = model.model_dump(mode="json")
    data["scoring"]["method"] = "model_probability"
    data["scoring"]["model_probability"] = {"predicts": "churn", "artifact": artifact.model_dump(mode="json")}
    if version is not None:
        data["version"] = version
    if description is not None:
        data["description"] = description
    return model_config_from_dict(data, f"{model.version} with a probability model")
