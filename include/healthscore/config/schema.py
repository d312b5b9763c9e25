"""Pydantic v2 schema of the health model (model-as-code).

The YAML is the single source of truth for how a score is built, so every rule that would otherwise
surface as a wrong number weeks later (weights not summing to 100, a band gap, a typo in a signal id)
is rejected here, with the key path of the offending value.

Cross-field checks raise a ``ValidationError`` whose locations point at the exact key; pydantic
prefixes them with the path of the enclosing model, so the loader can report ``weights.smb`` or
``dimensions.usage.signals.logins_per_user_week.cap`` instead of "somewhere in the model".

The model's sections live in their own modules (``base``: helpers, scalar types and enums;
``dimensions``: signals, normalization and weights; ``scoring``; ``bands``: bands and thresholds;
``lifecycle``: stages, renewal window, momentum, carry-forward and value segments; ``playbooks``;
``evaluation``). This module holds ``ModelConfig``, the checks across sections, and re-exports the
sections' names so ``from healthscore.config.schema import ...`` keeps working.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from healthscore.config.bands import Band, SegmentThresholds, Thresholds, _band_coverage_problems
from healthscore.config.base import (
    COMPUTABLE_SIGNALS_CONTEXT,
    SIGNED_KINDS,
    WEIGHT_SUM_TOLERANCE,
    Direction,
    Identifier,
    Loc,
    NonEmptyStr,
    NotifyRole,
    Score,
    ScoringMethod,
    Segment,
    Severity,
    SignalKind,
    SignalSource,
    _Frozen,
    _num,
    _raise_if,
    _suggest,
    as_segment,
    config_error,
)
from healthscore.config.dimensions import (
    BaselineOverride,
    DimensionSpec,
    DimensionWeights,
    Normalization,
    SignalSpec,
    SignalWeightOverrides,
    SignalWeights,
    WeightsBySegment,
)
from healthscore.config.evaluation import AccuracyTargets, DriftThresholds, Evaluation, OutcomeName
from healthscore.config.lifecycle import (
    CarryForward,
    ExitGate,
    Lifecycle,
    LifecycleStage,
    Momentum,
    RenewalWindow,
    ValueSegments,
)
from healthscore.config.playbooks import (
    BandEntered,
    BandTransition,
    Hysteresis,
    HysteresisOverride,
    PlaybookDefaults,
    PlaybookRule,
    Playbooks,
    RenewalApproaching,
    ScoreDrop,
    ScoreReached,
    SustainedBand,
    Trigger,
)
from healthscore.config.scoring import (
    IsotonicCalibrator,
    ModelProbabilityOptions,
    PercentileRankOptions,
    PointsOptions,
    PointsRule,
    ProbabilityArtifact,
    ProbabilityMember,
    RagOptions,
    RagRule,
    ScoringSpec,
    SigmoidCalibrator,
    WeightedAverageOptions,
)

__all__ = [
    "AccuracyTargets",
    "Band",
    "BandEntered",
    "BandTransition",
    "BaselineOverride",
    "COMPUTABLE_SIGNALS_CONTEXT",
    "CarryForward",
    "DimensionSpec",
    "DimensionWeights",
    "Direction",
    "DriftThresholds",
    "Evaluation",
    "ExitGate",
    "Hysteresis",
    "HysteresisOverride",
    "Identifier",
    "Lifecycle",
    "LifecycleStage",
    "Loc",
    "ModelConfig",
    "IsotonicCalibrator",
    "ModelProbabilityOptions",
    "ProbabilityArtifact",
    "ProbabilityMember",
    "Momentum",
    "NonEmptyStr",
    "Normalization",
    "NotifyRole",
    "OutcomeName",
    "PercentileRankOptions",
    "PlaybookDefaults",
    "PlaybookRule",
    "Playbooks",
    "PointsOptions",
    "PointsRule",
    "RagOptions",
    "SigmoidCalibrator",
    "RagRule",
    "RenewalApproaching",
    "RenewalWindow",
    "SIGNED_KINDS",
    "Score",
    "ScoreDrop",
    "ScoreReached",
    "ScoringMethod",
    "ScoringSpec",
    "Segment",
    "SegmentThresholds",
    "Severity",
    "SignalKind",
    "SignalSource",
    "SignalSpec",
    "SignalWeightOverrides",
    "SignalWeights",
    "SustainedBand",
    "Thresholds",
    "Trigger",
    "ValueSegments",
    "WEIGHT_SUM_TOLERANCE",
    "WeightedAverageOptions",
    "WeightsBySegment",
    "allowed_top_level_keys",
    "as_segment",
    "config_error",
    "describe_input",
]


class ModelConfig(_Frozen):
    """The whole health model; ``config_hash`` identifies it in every score row."""

    version: Annotated[str, StringConstraints(pattern=r"^v[0-9][0-9A-Za-z._-]*$", max_length=40)]
    description: str = ""
    dimensions: dict[Identifier, DimensionSpec] = Field(min_length=1)
    weights: WeightsBySegment
    signal_weight_overrides: SignalWeightOverrides = Field(default_factory=SignalWeightOverrides)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    bands: list[Band] = Field(min_length=3)
    segment_thresholds: SegmentThresholds
    lifecycle: Lifecycle
    momentum: Momentum
    playbooks: Playbooks
    value_segments: ValueSegments = Field(default_factory=ValueSegments)
    carry_forward: CarryForward = Field(default_factory=CarryForward)
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @field_validator("bands")
    @classmethod
    def _bands_cover_0_to_100_once(cls, bands: list[Band]) -> list[Band]:
        _raise_if("bands", _band_coverage_problems(bands))
        # Stored best-first: list order in the YAML then doesn't change the hash.
        return sorted(bands, key=lambda b: b.min, reverse=True)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> ModelConfig:
        problems: list[tuple[Loc, str]] = []
        owner: dict[str, str] = {}
        for dim_id, dim in self.dimensions.items():
            for sig_id in dim.signals:
                if sig_id in owner:
                    problems.append(
                        (
                            ("dimensions", dim_id, "signals", sig_id),
                            f"signal id {sig_id!r} is already defined in dimension {owner[sig_id]!r}",
                        )
                    )
                owner.setdefault(sig_id, dim_id)
        stage_names = [s.name for s in self.lifecycle.stages]
        for dim_id, dim in self.dimensions.items():
            for sig_id, sig in dim.signals.items():
                for stage in sig.by_stage:
                    if stage not in stage_names:
                        problems.append(
                            (
                                ("dimensions", dim_id, "signals", sig_id, "by_stage", stage),
                                f"unknown lifecycle stage {stage!r}{_suggest(stage, stage_names)}",
                            )
                        )
        computable = (info.context or {}).get(COMPUTABLE_SIGNALS_CONTEXT)
        if computable is not None:
            for dim_id, dim in self.dimensions.items():
                for sig_id in dim.signals:
                    if sig_id not in computable:
                        problems.append((
                            ("dimensions", dim_id, "signals", sig_id),
                            f"no code computes signal {sig_id!r}{_suggest(sig_id, computable)} "
                            "(a model may only use the signals the pipeline computes)",
                        ))
        problems += self._weight_problems(owner)
        problems += self._scoring_problems(owner)
        problems += self._playbook_problems()
        problems += self._evaluation_problems()
        _raise_if("ModelConfig", problems)
        return self

    def _evaluation_problems(self) -> list[tuple[Loc, str]]:
        ev = self.evaluation
        names = [b.name for b in self.bands]
        problems: list[tuple[Loc, str]] = [
            (("evaluation", "at_risk_bands", band), f"unknown band {band!r}{_suggest(band, names)}")
            for band in ev.at_risk_bands if band not in names]
        if ev.headline_horizon_days not in ev.horizons_days:
            problems.append((("evaluation", "headline_horizon_days"),
                             f"{ev.headline_horizon_days} is not one of horizons_days {ev.horizons_days}"))
        if ev.drift.score_psi_warn > ev.drift.score_psi_alert:
            problems.append((("evaluation", "drift", "score_psi_warn"), "must not exceed score_psi_alert"))
        return problems

    def _weight_problems(self, owner: Mapping[str, str]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        for segment in Segment:
            weights = self.weights.get(segment)
            for dim_id in weights:
                if dim_id not in self.dimensions:
                    problems.append(
                        (
                            ("weights", segment.value, dim_id),
                            f"unknown dimension {dim_id!r}{_suggest(dim_id, self.dimensions)}",
                        )
                    )
            for dim_id in self.dimensions:
                if dim_id not in weights:
                    problems.append((("weights", segment.value), f"missing weight for dimension {dim_id!r}"))
            overrides = self.signal_weight_overrides.get(segment)
            for sig_id in overrides:
                if sig_id not in owner:
                    problems.append(
                        (
                            ("signal_weight_overrides", segment.value, sig_id),
                            f"unknown signal {sig_id!r}{_suggest(sig_id, owner)}",
                        )
                    )
            for dim_id, dim in self.dimensions.items():
                if weights.get(dim_id, 0) > 0:
                    total = sum(overrides.get(s, spec.weight) for s, spec in dim.signals.items())
                    if total <= 0:
                        problems.append(
                            (
                                ("signal_weight_overrides", segment.value),
                                f"dimension {dim_id!r} weighs {_num(weights[dim_id])} for {segment.value} "
                                "but all its signals weigh 0",
                            )
                        )
        return problems

    def _scoring_problems(self, owner: Mapping[str, str]) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        for i, rule in enumerate(self.scoring.points.rules):
            if rule.signal not in owner:
                problems.append(
                    (
                        ("scoring", "points", "rules", i, "signal"),
                        f"unknown signal {rule.signal!r}{_suggest(rule.signal, owner)}",
                    )
                )
        for i, rag in enumerate(self.scoring.rag_rules.rules):
            loc: Loc = ("scoring", "rag_rules", "rules", i)
            if rag.signal not in owner:
                problems.append(
                    ((*loc, "signal"), f"unknown signal {rag.signal!r}{_suggest(rag.signal, owner)}")
                )
                continue
            higher = (
                self.dimensions[owner[rag.signal]].signals[rag.signal].direction is Direction.HIGHER_IS_BETTER
            )
            if (higher and rag.red_at > rag.green_at) or (not higher and rag.red_at < rag.green_at):
                relation = "at or below" if higher else "at or above"
                problems.append(
                    (
                        (*loc, "red_at"),
                        f"red_at {_num(rag.red_at)} must be {relation} green_at {_num(rag.green_at)} "
                        f"for {'higher' if higher else 'lower'}_is_better signal {rag.signal!r}",
                    )
                )
        artifact = self.scoring.model_probability.artifact
        if artifact is not None:
            known = {*owner, *self.dimensions}
            for j, name in enumerate(artifact.features):
                if name not in known:
                    problems.append(
                        (
                            ("scoring", "model_probability", "artifact", "features", j),
                            f"unknown feature {name!r}: a feature is a signal id or a dimension id"
                            f"{_suggest(name, known)}",
                        )
                    )
        return problems

    def _playbook_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        names = [b.name for b in self.bands]
        for rule_id, rule in self.playbooks.rules.items():
            trig = rule.trigger
            refs = {
                "band": getattr(trig, "band", None),
                "from_band": getattr(trig, "from_band", None),
                "to_band": getattr(trig, "to_band", None),
            }
            for field, band in refs.items():
                if band is not None and band not in names:
                    problems.append(
                        (
                            ("playbooks", "rules", rule_id, "trigger", field),
                            f"unknown band {band!r}{_suggest(band, names)}",
                        )
                    )
            if isinstance(trig, BandTransition) and trig.from_band == trig.to_band:
                problems.append(
                    (("playbooks", "rules", rule_id, "trigger", "to_band"), "to_band equals from_band")
                )
            here = f"playbooks.rules.{rule_id}.trigger"
            if isinstance(trig, ScoreDrop) and trig.points != self.momentum.rapid_decline_points:
                problems.append((("playbooks", "rules", rule_id, "trigger", "points"), (
                    f"{here}.points {_num(trig.points)} disagrees with momentum.rapid_decline_points "
                    f"{_num(self.momentum.rapid_decline_points)}: the drop a playbook acts on is the drop the "
                    "model calls rapid; change both together")))
            window = self.lifecycle.renewal_window.days_before_renewal
            if isinstance(trig, RenewalApproaching) and trig.days_before_renewal != window:
                problems.append((("playbooks", "rules", rule_id, "trigger", "days_before_renewal"), (
                    f"{here}.days_before_renewal {trig.days_before_renewal} disagrees with "
                    f"lifecycle.renewal_window.days_before_renewal {window}: the renewal playbook must act on "
                    "the window in which scores are judged by renewal thresholds; change both together")))
        return problems

    # ------------------------------------------------------------------------------- identity

    def canonical_json(self) -> str:
        """Comment-, whitespace- and key-order-free form of the validated model."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    @cached_property
    def config_hash(self) -> str:
        """sha256 of ``canonical_json()``: stored with every score so a row names its exact model."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def ordered_json(self) -> str:
        """The validated model in its author's key order: what the registry stores, so a model read back lists
        its dimensions (reasons, breakdowns, reports) in the order its YAML does."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)

    @cached_property
    def layout_key(self) -> tuple[str, str]:
        """``config_hash`` plus the key order: two equal models (one hash) read from YAML and from a
        sorted-JSON registry row list their dimensions in different orders, so compiled tables are cached
        by both (else a process's output would depend on which one it compiled first)."""
        return self.config_hash, hashlib.sha256(self.ordered_json().encode("utf-8")).hexdigest()

    # -------------------------------------------------------------------------------- lookups

    @cached_property
    def _signal_owner(self) -> dict[str, str]:
        return {sig: dim_id for dim_id, dim in self.dimensions.items() for sig in dim.signals}

    def all_signal_ids(self) -> tuple[str, ...]:
        """Catalogue order (dimension, then signal), which is the column order the pipeline uses."""
        return tuple(self._signal_owner)

    def dimension_of(self, signal_id: str) -> str:
        try:
            return self._signal_owner[signal_id]
        except KeyError:
            raise KeyError(f"unknown signal {signal_id!r}{_suggest(signal_id, self._signal_owner)}") from None

    def signal(self, signal_id: str) -> SignalSpec:
        return self.dimensions[self.dimension_of(signal_id)].signals[signal_id]

    def weights_for(self, segment: str | Segment) -> dict[str, float]:
        """Dimension -> percent of the composite for a segment (sums to 100)."""
        return dict(self.weights.get(segment))

    def signal_weights_for(self, segment: str | Segment, dimension: str) -> dict[str, float]:
        """Signal -> relative weight inside ``dimension`` for a segment, overrides applied."""
        overrides = self.signal_weight_overrides.get(segment)
        return {s: overrides.get(s, spec.weight) for s, spec in self.dimensions[dimension].signals.items()}

    def normalization_for(
        self, signal_id: str, segment: str | Segment | None = None, stage: str | None = None
    ) -> Normalization:
        if stage is not None:
            self._stage(stage)
        return self.signal(signal_id).normalization(segment, stage)

    def band_for(
        self,
        score: float,
        segment: str | Segment | None = None,
        stage: str | None = None,
        days_to_renewal: int | None = None,
    ) -> str:
        """Band name for a score; with context, thresholds move the top two bands' lower edges.

        The score is rounded half-up first so the band always agrees with the integer shown to users.
        With segment/stage/renewal context: Healthy from ``healthy_at_or_above``, the second band from
        ``at_risk_below``; below that the plain bands apply, except that a score the plain bands call
        Healthy/Moderate is reported as the third band (e.g. SMB 55 is At Risk).
        """
        if score is None or math.isnan(score) or not 0 <= score <= 100:
            raise ValueError(f"score must be within 0..100, got {score!r}")
        rounded = math.floor(score + 0.5)
        plain = next(i for i, b in enumerate(self.bands) if b.min <= rounded <= b.max)
        if segment is None and stage is None and days_to_renewal is None:
            return self.bands[plain].name
        t = self.thresholds_for(segment, stage, days_to_renewal)
        if rounded >= t.healthy_at_or_above:
            return self.bands[0].name
        if rounded >= t.at_risk_below:
            return self.bands[1].name
        return self.bands[max(plain, 2)].name

    def thresholds_for(
        self,
        segment: str | Segment | None = None,
        stage: str | None = None,
        days_to_renewal: int | None = None,
    ) -> Thresholds:
        """Effective thresholds for an account's context.

        Segment thresholds are calibrated on mature accounts; younger stages get the more lenient of
        stage and segment values, so a new enterprise account is not judged by year-two standards.
        Inside the renewal window the at-risk line rises to the renewal value.
        """
        if segment is not None:
            healthy, at_risk = _pair(self.segment_thresholds.get(segment))
        else:
            healthy, at_risk = float(self.bands[0].min), float(self.bands[1].min)
        if stage is not None:
            spec = self._stage(stage)
            if segment is None:
                healthy, at_risk = _pair(spec.thresholds)
            elif not spec.use_segment_thresholds:
                healthy = min(healthy, spec.thresholds.healthy_at_or_above)
                at_risk = min(at_risk, spec.thresholds.at_risk_below)
        window = self.lifecycle.renewal_window
        if days_to_renewal is not None and 0 <= days_to_renewal <= window.days_before_renewal:
            at_risk = max(at_risk, window.at_risk_below)
            healthy = max(healthy, at_risk)
        return Thresholds(healthy_at_or_above=healthy, at_risk_below=at_risk)

    def stage_for(self, tenure_days: int) -> str:
        """Calendar stage; exit gates (holding an account back on a low score) are the engine's job."""
        if tenure_days < 0:
            raise ValueError(f"tenure_days must be >= 0, got {tenure_days}")
        for stage in self.lifecycle.stages:
            if stage.end_day is None or tenure_days < stage.end_day:
                return stage.name
        raise AssertionError("validated stages are contiguous and open-ended")  # pragma: no cover

    def _stage(self, name: str) -> LifecycleStage:
        for stage in self.lifecycle.stages:
            if stage.name == name:
                return stage
        names = [s.name for s in self.lifecycle.stages]
        raise ValueError(f"unknown lifecycle stage {name!r}{_suggest(name, names)}")

    def hysteresis_for(self, rule_id: str) -> Hysteresis:
        """Global hysteresis with the rule's partial override applied."""
        base = self.playbooks.defaults.hysteresis
        override = self.playbooks.rules[rule_id].hysteresis
        if override is None:
            return base
        return Hysteresis(
            margin_points=base.margin_points if override.margin_points is None else override.margin_points,
            persistence_days=base.persistence_days
            if override.persistence_days is None
            else override.persistence_days,
        )

    def cooldown_days_for(self, rule_id: str) -> int:
        rule = self.playbooks.rules[rule_id]
        return self.playbooks.defaults.cooldown_days if rule.cooldown_days is None else rule.cooldown_days


def _pair(t: Thresholds) -> tuple[float, float]:
    return t.healthy_at_or_above, t.at_risk_below


def allowed_top_level_keys() -> list[str]:
    return list(ModelConfig.model_fields)


def describe_input(value: Any) -> str:
    """Short repr for error messages; containers are summarized, not dumped."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
