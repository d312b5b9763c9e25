"""Dimension scores and the five composite methods, as array functions over all accounts at once.

Every method returns NaN for an account it cannot score; the engine turns that into ``score=None`` with
an ``unscored_reason``, so no NaN ever reaches a stored score.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from healthscore.config import Direction
from healthscore.scoring.compiled import CompiledModel


class ChurnModel(Protocol):
    """What ``model_probability`` needs from a fitted classifier (any scikit-learn classifier fits)."""

    def predict_proba(self, X: Any) -> Any: ...  # noqa: N803 - scikit-learn's argument name


class ScoringInputError(ValueError):
    """The inputs break the engine's contract (missing column, unknown stage, no churn model, ...)."""


# ------------------------------------------------------------------------------------- dimensions


def dimension_matrix(
    normalized: np.ndarray, segment_code: np.ndarray, cm: CompiledModel
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the present normalized signals of each dimension.

    Returns ``(dims, signal_coverage)``, both (n, D): ``dims`` is NaN where no weighted signal of the
    dimension has data; ``signal_coverage`` is the share of the dimension's signal weight that has data.
    """
    present = ~np.isnan(normalized)
    w = cm.signal_weights[segment_code]
    w *= present
    weighted = np.where(present, normalized, 0.0)
    weighted *= w
    num = np.add.reduceat(weighted, cm.dim_starts, axis=1)
    den = np.add.reduceat(w, cm.dim_starts, axis=1)
    total = cm.dim_signal_weight[segment_code]
    with np.errstate(divide="ignore", invalid="ignore"):
        dims = np.where(den > 0, num / den, np.nan)
        coverage = np.where(total > 0, den / total, 0.0)
    return dims, coverage


def weighted_average(
    dims: np.ndarray, segment_code: np.ndarray, cm: CompiledModel
) -> tuple[np.ndarray, np.ndarray]:
    """Composite over the present dimensions with their segment weights renormalized.

    Returns ``(composite, contributions)``: contributions (n, D) are the points each dimension adds to
    the composite (they sum to it); NaN for a missing dimension; the composite is NaN when no weighted
    dimension has data. Weights stay in percent so integer inputs give exact results (74.0, not 73.999).
    """
    weights = cm.dim_weights[segment_code]
    present = ~np.isnan(dims)
    eff = np.where(present, weights, 0.0)
    total = eff.sum(axis=1)
    part = eff * np.where(present, dims, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        composite = np.where(total > 0, part.sum(axis=1) / total, np.nan)
        contributions = np.where(present & (total > 0)[:, None], part / total[:, None], np.nan)
    np.clip(composite, 0.0, 100.0, out=composite)  # guards the last ulp; NaN stays NaN
    return composite, contributions


# ----------------------------------------------------------------------------------- rule methods


def _clipped(raw: np.ndarray, signal_id: str, cm: CompiledModel) -> np.ndarray:
    """A signal's raw column clipped to [floor, cap], as normalization sees it (so rules stay monotone)."""
    spec = cm.model.signal(signal_id)
    return np.clip(raw[:, cm.signal_ids.index(signal_id)], spec.floor, spec.cap)


_OPS = {
    "gte": np.greater_equal,
    "gt": np.greater,
    "lte": np.less_equal,
    "lt": np.less,
    "eq": np.equal,
}


def points_score(raw: np.ndarray, cm: CompiledModel) -> np.ndarray:
    """Points of matching rules over the positive points that could be earned, x 100, clipped.

    Values are clipped to the signal's [floor, cap] first. A rule whose signal has no data is left out of both sides (missing data neither earns nor costs
    points, mirroring the renormalization of weights); NaN when no rule with positive points has data.
    """
    rules = cm.model.scoring.points.rules
    earned = np.zeros(raw.shape[0])
    possible = np.zeros(raw.shape[0])
    for rule in rules:
        x = _clipped(raw, rule.signal, cm)
        known = ~np.isnan(x)
        hit = _OPS[rule.op](x, rule.value) & known
        earned += np.where(hit, rule.points, 0.0)
        if rule.points > 0:
            possible += np.where(known, rule.points, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(possible > 0, earned / possible * 100.0, np.nan)
    return np.clip(score, 0.0, 100.0)


def rag_score(raw: np.ndarray, cm: CompiledModel) -> np.ndarray:
    """Mean of red/amber/green scores over the rules whose signal has data; NaN when none has.

    Green at or beyond ``green_at``, red strictly beyond ``red_at`` (both in the signal's direction).
    """
    opts = cm.model.scoring.rag_rules
    total = np.zeros(raw.shape[0])
    count = np.zeros(raw.shape[0])
    for rule in opts.rules:
        x = _clipped(raw, rule.signal, cm)
        known = ~np.isnan(x)
        if cm.model.signal(rule.signal).direction is Direction.HIGHER_IS_BETTER:
            green, red = x >= rule.green_at, x < rule.red_at
        else:
            green, red = x <= rule.green_at, x > rule.red_at
        value = np.where(green, opts.green_score, np.where(red, opts.red_score, opts.amber_score))
        total += np.where(known, value, 0.0)
        count += known
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def percentile_rank_score(
    composite: np.ndarray,
    segment_code: np.ndarray,
    stage_code: np.ndarray,
    eligible: np.ndarray,
    cm: CompiledModel,
) -> np.ndarray:
    """Mid-rank percentile (0..100) of the weighted-average composite among peers scored the same day.

    Peers are ``peer_group`` (all / segment / segment_and_stage) among the ``eligible`` accounts; a peer
    group smaller than ``min_peers`` is ranked against all eligible accounts instead. Ties share a rank,
    so equal composites get equal scores and raising one account's composite never lowers its rank.
    """
    opts = cm.model.scoring.percentile_rank
    out = np.full(composite.shape[0], np.nan)
    idx = np.flatnonzero(eligible & ~np.isnan(composite))
    if idx.size == 0:
        return out
    values = pd.Series(composite[idx])
    overall = (values.rank(method="average").to_numpy() - 0.5) / idx.size * 100.0
    if opts.peer_group == "all":
        out[idx] = overall
        return out
    key = segment_code[idx].astype(np.int64)
    if opts.peer_group == "segment_and_stage":
        key = key * (len(cm.stages) + 1) + stage_code[idx]
    grouped = values.groupby(key)
    rank = grouped.rank(method="average").to_numpy()
    size = grouped.transform("size").to_numpy()
    peer = (rank - 0.5) / size * 100.0
    out[idx] = np.where(size >= opts.min_peers, peer, overall)
    return out


def model_probability_score(
    normalized: np.ndarray, cm: CompiledModel, churn_model: ChurnModel | None
) -> np.ndarray:
    """100 x (1 - p(churn)) (or 100 x p(retained)) from an injected fitted classifier.

    Features are the normalized 0..100 signal scores in catalogue order, named by signal id, with a
    missing signal imputed as 50 (its baseline: "as expected, no evidence either way"). A model fitted
    on a subset of signals (``feature_names_in_``) gets exactly those columns.
    """
    if churn_model is None or not hasattr(churn_model, "predict_proba"):
        raise ScoringInputError(
            "scoring.method is 'model_probability' but no fitted churn model was given: pass "
            "score_accounts(..., churn_model=<fitted classifier with predict_proba>)"
        )
    features = pd.DataFrame(np.where(np.isnan(normalized), 50.0, normalized), columns=list(cm.signal_ids))
    names = getattr(churn_model, "feature_names_in_", None)
    if names is not None:
        unknown = [str(n) for n in names if n not in features.columns]
        if unknown:
            raise ScoringInputError(f"churn model expects features the config does not define: {unknown}")
        features = features[[str(n) for n in names]]
        X = features  # noqa: N806 - scikit-learn convention
    else:
        X = features.to_numpy()  # noqa: N806
    proba = np.asarray(churn_model.predict_proba(X), dtype=float)
    if proba.ndim != 2 or proba.shape[0] != normalized.shape[0]:
        raise ScoringInputError(
            f"predict_proba returned shape {proba.shape}, expected ({normalized.shape[0]}, 2)"
        )
    classes = list(getattr(churn_model, "classes_", range(proba.shape[1])))
    positive = next((i for i, c in enumerate(classes) if c is True or c == 1), proba.shape[1] - 1)
    p = proba[:, positive]
    opts = cm.model.scoring.model_probability
    score = 100.0 * (1.0 - p) if opts.predicts == "churn" else 100.0 * p
    score[~np.isfinite(score)] = np.nan
    return np.clip(score, 0.0, 100.0)
