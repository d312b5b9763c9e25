"""The scoring method and its options (weighted average, points, RAG rules, percentile rank, model)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from healthscore.config.base import Identifier, Loc, Score, ScoringMethod, _Frozen, config_error

# ------------------------------------------------------------------------------------------- scoring


class WeightedAverageOptions(_Frozen):
    min_weight_coverage: float = Field(
        default=0.6, gt=0, le=1, description="Share of composite weight that must have data, else no score."
    )


class PointsRule(_Frozen):
    signal: Identifier
    op: Literal["gte", "gt", "lte", "lt", "eq"]
    value: float = Field(allow_inf_nan=False)
    points: float = Field(allow_inf_nan=False)


class PointsOptions(_Frozen):
    rules: list[PointsRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_positive(self) -> PointsOptions:
        if self.rules and sum(r.points for r in self.rules if r.points > 0) <= 0:
            raise config_error(
                "PointsOptions", [(("rules",), "at least one rule must award positive points")]
            )
        return self


class RagRule(_Frozen):
    """Green at or beyond ``green_at``, red beyond ``red_at`` (direction taken from the signal)."""

    signal: Identifier
    green_at: float = Field(allow_inf_nan=False)
    red_at: float = Field(allow_inf_nan=False)


class RagOptions(_Frozen):
    green_score: Score = 100
    amber_score: Score = 50
    red_score: Score = 0
    rules: list[RagRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> RagOptions:
        if not self.red_score < self.amber_score < self.green_score:
            raise config_error(
                "RagOptions", [(("amber_score",), "need red_score < amber_score < green_score")]
            )
        return self


class PercentileRankOptions(_Frozen):
    peer_group: Literal["all", "segment", "segment_and_stage"] = "segment"
    min_peers: int = Field(default=30, ge=1)


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]


class SigmoidCalibrator(_Frozen):
    """Platt scaling of the linear predictor f: p = 1 / (1 + exp(a * f + b))."""

    a: FiniteFloat
    b: FiniteFloat


class IsotonicCalibrator(_Frozen):
    """Monotone step map of the linear predictor: p = interp(f, x, y), clipped to the ends."""

    x: list[FiniteFloat] = Field(min_length=1)
    y: list[Probability] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> IsotonicCalibrator:
        problems: list[tuple[Loc, str]] = []
        if len(self.x) != len(self.y):
            problems.append((("y",), f"has {len(self.y)} values but x has {len(self.x)}"))
        elif any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            problems.append((("x",), "must be non-decreasing"))
        elif any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            problems.append((("y",), "must be non-decreasing (a higher predictor never lowers p)"))
        if problems:
            raise config_error("IsotonicCalibrator", problems)
        return self


class ProbabilityMember(_Frozen):
    """One fitted (scaler, logistic regression, calibrator) of the calibrated ensemble.

    Linear predictor ``f = intercept + sum(coefficients * (x - center) / scale)`` over the artifact's
    features in order; ``p = calibrator(f)`` is the probability of the positive class (``predicts``).
    """

    center: list[FiniteFloat]
    scale: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]]
    coefficients: list[FiniteFloat]
    intercept: FiniteFloat
    sigmoid: SigmoidCalibrator | None = None
    isotonic: IsotonicCalibrator | None = None

    @model_validator(mode="after")
    def _one_calibrator(self) -> ProbabilityMember:
        if (self.sigmoid is None) == (self.isotonic is None):
            raise config_error(
                "ProbabilityMember", [(("sigmoid",), "give exactly one calibrator: sigmoid or isotonic")]
            )
        return self


class ProbabilityArtifact(_Frozen):
    """A calibrated logistic classifier stored as plain numbers (safe to load: no pickle, no code).

    ``features`` are signal ids (the signal's 0..100 normalized score) or dimension ids (the
    dimension's 0..100 score); a missing feature value is read as ``missing_value``. The probability
    is the mean of the members' calibrated probabilities (scikit-learn's ``CalibratedClassifierCV``
    with ``ensemble=True``). ``fit`` records how it was fitted (free-form, for people).
    """

    kind: Literal["calibrated_logistic"] = "calibrated_logistic"
    features: list[Identifier] = Field(min_length=1)
    missing_value: Score = 50.0
    members: list[ProbabilityMember] = Field(min_length=1)
    fit: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shapes(self) -> ProbabilityArtifact:
        problems: list[tuple[Loc, str]] = []
        n = len(self.features)
        seen: set[str] = set()
        for j, name in enumerate(self.features):
            if name in seen:
                problems.append((("features", j), f"feature {name!r} is listed twice"))
            seen.add(name)
        for i, member in enumerate(self.members):
            for key in ("center", "scale", "coefficients"):
                got = len(getattr(member, key))
                if got != n:
                    problems.append(
                        (("members", i, key), f"has {got} values but there are {n} features")
                    )
        if problems:
            raise config_error("ProbabilityArtifact", problems)
        return self


class ModelProbabilityOptions(_Frozen):
    """``predicts``: the artifact's positive class (score = 100 x (1 - p) for churn, 100 x p for retention)."""

    predicts: Literal["churn", "retention"] = "churn"
    artifact: ProbabilityArtifact | None = None

    @model_serializer(mode="wrap")
    def _omit_no_artifact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Without an artifact the dump (hence the config hash of every existing model) stays as it was.
        data = handler(self)
        if data.get("artifact", 0) is None:
            del data["artifact"]
        return data


class ScoringSpec(_Frozen):
    method: ScoringMethod = ScoringMethod.WEIGHTED_AVERAGE
    weighted_average: WeightedAverageOptions = Field(default_factory=WeightedAverageOptions)
    points: PointsOptions = Field(default_factory=PointsOptions)
    rag_rules: RagOptions = Field(default_factory=RagOptions)
    percentile_rank: PercentileRankOptions = Field(default_factory=PercentileRankOptions)
    model_probability: ModelProbabilityOptions = Field(default_factory=ModelProbabilityOptions)

    @model_validator(mode="after")
    def _selected_method_has_rules(self) -> ScoringSpec:
        for method in (ScoringMethod.POINTS, ScoringMethod.RAG_RULES):
            if self.method is method and not getattr(self, method.value).rules:
                raise config_error(
                    "ScoringSpec",
                    [((method.value, "rules"), f"method {method.value!r} needs at least one rule")],
                )
        if self.method is ScoringMethod.MODEL_PROBABILITY and self.model_probability.artifact is None:
            raise config_error(
                "ScoringSpec",
                [
                    (
                        ("model_probability", "artifact"),
                        "method 'model_probability' needs a fitted classifier here: write one with "
                        "`healthscore recalibrate ... --probability` (or evaluation.probability."
                        "with_probability_model), or choose method weighted_average",
                    )
                ],
            )
        return self
