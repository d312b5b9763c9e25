"""The scoring method and its options (weighted average, points, RAG rules, percentile rank, model)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from healthscore.config.base import Identifier, Score, ScoringMethod, _Frozen, config_error

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


class ModelProbabilityOptions(_Frozen):
    predicts: Literal["churn", "retention"] = "churn"


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
        return self
