"""The ``model_probability`` classifier read from the model YAML: plain arrays, no pickle, no sklearn.

``scoring.model_probability.artifact`` (``config.scoring.ProbabilityArtifact``) holds a calibrated
logistic regression as numbers: per member a scaler (``center``, ``scale``), ``coefficients`` and an
``intercept`` over the artifact's ``features``, and a calibrator (Platt ``sigmoid`` or ``isotonic``
steps) of the linear predictor. ``ArtifactClassifier.predict_proba`` reproduces scikit-learn's
``CalibratedClassifierCV(Pipeline(StandardScaler, LogisticRegression), ensemble=True).predict_proba``:
the mean of the members' calibrated probabilities.

Why a score moved: ``contributions`` splits ``p - p0`` (p0: the probability of an account whose
features sit at each member's training mean) over the features, exactly (they sum to it). Each member's
linear terms are scaled by the slope of its calibrator between the reference and the account's
predictor (the secant), so a feature that moves the predictor a lot moves the probability in
proportion. The engine turns that into score points per dimension.
"""

from __future__ import annotations

import numpy as np

from healthscore.config.schema import ModelConfig, ProbabilityArtifact, ProbabilityMember
from healthscore.scoring.compiled import CompiledModel

# Below this distance of the predictor from the reference, the secant is replaced by the derivative.
SECANT_EPS = 1e-9
DERIVATIVE_STEP = 1e-6


def _calibrate(member: ProbabilityMember, f: np.ndarray) -> np.ndarray:
    if member.sigmoid is not None:
        z = member.sigmoid.a * f + member.sigmoid.b
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(z))
    assert member.isotonic is not None  # the schema requires exactly one calibrator
    x = np.asarray(member.isotonic.x, dtype=float)
    y = np.asarray(member.isotonic.y, dtype=float)
    if x.size == 1:
        return np.full(f.shape, y[0])
    return np.interp(f, x, y)


class ArtifactClassifier:
    """``predict_proba`` over a feature matrix (n, F) in ``artifact.features`` order, NaN = missing."""

    classes_ = np.array([0, 1])

    def __init__(self, artifact: ProbabilityArtifact) -> None:
        self.artifact = artifact
        self.features: tuple[str, ...] = tuple(artifact.features)
        self._center = np.array([m.center for m in artifact.members], dtype=float)  # (M, F)
        self._scale = np.array([m.scale for m in artifact.members], dtype=float)
        self._coef = np.array([m.coefficients for m in artifact.members], dtype=float)
        self._intercept = np.array([m.intercept for m in artifact.members], dtype=float)  # (M,)

    def _filled(self, X: np.ndarray) -> np.ndarray:  # noqa: N803 - scikit-learn's argument name
        X = np.asarray(X, dtype=float)  # noqa: N806
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected a (n, {len(self.features)}) feature matrix, got shape {X.shape}")
        return np.where(np.isnan(X), self.artifact.missing_value, X)

    def _terms(self, X: np.ndarray, i: int) -> np.ndarray:  # noqa: N803
        """(n, F) linear terms of member ``i``, computed in scikit-learn's order of operations."""
        z = (X - self._center[i]) / self._scale[i]
        return z

    def member_probabilities(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """(M, n) calibrated positive-class probability of each member."""
        X = self._filled(X)  # noqa: N806
        out = np.empty((len(self.artifact.members), X.shape[0]))
        for i, member in enumerate(self.artifact.members):
            f = self._terms(X, i) @ self._coef[i] + self._intercept[i]
            out[i] = _calibrate(member, f)
        return out

    def positive_probability(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = self.member_probabilities(X).mean(axis=0)
        return np.clip(p, 0.0, 1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        p = self.positive_probability(X)
        return np.column_stack([1.0 - p, p])

    def reference_probability(self) -> float:
        """p0: the mean calibrated probability at each member's training mean (all terms 0)."""
        return float(
            np.mean(
                [
                    _calibrate(m, np.array([self._intercept[i]]))[0]
                    for i, m in enumerate(self.artifact.members)
                ]
            )
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """(n, F) share of ``p - p0`` due to each feature; rows sum to ``positive_probability - p0``."""
        X = self._filled(X)  # noqa: N806
        out = np.zeros(X.shape)
        for i, member in enumerate(self.artifact.members):
            terms = self._terms(X, i) * self._coef[i]
            b = self._intercept[i]
            f = terms.sum(axis=1) + b
            delta = f - b
            g0 = _calibrate(member, np.array([b]))[0]
            near = np.abs(delta) < SECANT_EPS
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(near, 0.0, (_calibrate(member, f) - g0) / delta)
            if near.any():
                step = np.array([b - DERIVATIVE_STEP, b + DERIVATIVE_STEP])
                lo, hi = _calibrate(member, step)
                slope[near] = (hi - lo) / (2 * DERIVATIVE_STEP)
            out += terms * slope[:, None]
        out /= len(self.artifact.members)
        return out


def feature_sources(model: ModelConfig, features: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Per feature ``("signal" | "dimension", id)`` (the schema has checked every name is one of them)."""
    signals = set(model.all_signal_ids())
    return [("signal", f) if f in signals else ("dimension", f) for f in features]


def feature_dimension(model: ModelConfig, features: tuple[str, ...] | list[str]) -> list[str]:
    """The dimension each feature belongs to (a signal's own dimension; a dimension itself)."""
    return [model.dimension_of(name) if kind == "signal" else name for kind, name in feature_sources(model, features)]


class ProbabilityScorer:
    """The artifact bound to one compiled model: features from the engine's arrays, score and points."""

    def __init__(self, cm: CompiledModel) -> None:
        opts = cm.model.scoring.model_probability
        if opts.artifact is None:  # the schema refuses this for method model_probability
            raise ValueError("scoring.model_probability.artifact is not set")
        self.classifier = ArtifactClassifier(opts.artifact)
        self.sign = -100.0 if opts.predicts == "churn" else 100.0
        sources = feature_sources(cm.model, opts.artifact.features)
        self._signal_cols = np.array(
            [cm.signal_ids.index(n) if k == "signal" else -1 for k, n in sources], dtype=np.intp
        )
        self._dim_cols = np.array(
            [cm.dimension_ids.index(n) if k == "dimension" else -1 for k, n in sources], dtype=np.intp
        )
        self.dimension_features_only = bool(np.all(self._dim_cols >= 0))
        dims = feature_dimension(cm.model, opts.artifact.features)
        self._to_dims = np.zeros((len(sources), len(cm.dimension_ids)))  # (F, D) one-hot
        for j, d in enumerate(dims):
            self._to_dims[j, cm.dimension_ids.index(d)] = 1.0
        p0 = self.classifier.reference_probability()
        self.base_score = 100.0 * (1.0 - p0) if opts.predicts == "churn" else 100.0 * p0

    def features(self, normalized: np.ndarray, dims: np.ndarray) -> np.ndarray:
        """(n, F) feature matrix: normalized signal scores and dimension scores, NaN = missing."""
        out = np.empty((dims.shape[0], self._signal_cols.size))
        is_signal = self._signal_cols >= 0
        out[:, is_signal] = normalized[:, self._signal_cols[is_signal]]
        out[:, ~is_signal] = dims[:, self._dim_cols[~is_signal]]
        return out

    def score(self, features: np.ndarray) -> np.ndarray:
        p = self.classifier.positive_probability(features)
        return 100.0 * (1.0 - p) if self.sign < 0 else 100.0 * p

    def dimension_points(self, features: np.ndarray) -> np.ndarray:
        """(n, D) score points per dimension relative to ``base_score``: they sum to score - base_score."""
        return (self.sign * self.classifier.contributions(features)) @ self._to_dims

    def attribution_deltas(self, contributions_now: np.ndarray, past_dims: np.ndarray) -> np.ndarray:
        """Change of each dimension's points since the reference day (dimension features only)."""
        past = self.dimension_points(past_dims[:, self._dim_cols])
        return np.nan_to_num(contributions_now) - past


_SCORERS: dict[tuple[str, str], ProbabilityScorer] = {}


def probability_scorer(cm: CompiledModel) -> ProbabilityScorer:
    """The scorer of ``cm``'s artifact, cached by config hash like ``compile_model``."""
    key = cm.model.layout_key
    hit = _SCORERS.get(key)
    if hit is None:
        hit = ProbabilityScorer(cm)
        if len(_SCORERS) > 16:
            _SCORERS.clear()
        _SCORERS[key] = hit
    return hit
