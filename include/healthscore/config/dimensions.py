"""Dimensions, their signals and how each signal is normalized to 0-100; the per-segment weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from healthscore.config.base import (
    SIGNED_KINDS,
    WEIGHT_SUM_TOLERANCE,
    Direction,
    Identifier,
    Loc,
    NonEmptyStr,
    Segment,
    SignalKind,
    SignalSource,
    _Frozen,
    _num,
    _raise_if,
    as_segment,
)

# ------------------------------------------------------------------------------------------- signals


@dataclass(frozen=True)
class Normalization:
    """Resolved normalization of one signal for one (segment, stage).

    Piecewise linear in "goodness" order: worst end (floor, or cap when lower is better) scores 0,
    baseline scores 50, target and beyond score 100. Raw values are clipped to [floor, cap] first.
    """

    direction: Direction
    floor: float
    cap: float
    baseline: float
    target: float

    def score(self, raw: float) -> float:
        """Reference scalar semantics; the vectorized engine must agree with it."""
        if raw is None or math.isnan(raw):
            return math.nan
        x = min(max(raw, self.floor), self.cap)
        if self.direction is Direction.HIGHER_IS_BETTER:
            if x >= self.target:
                return 100.0
            if x >= self.baseline:
                return 50.0 + 50.0 * (x - self.baseline) / (self.target - self.baseline)
            return 50.0 * (x - self.floor) / (self.baseline - self.floor)
        if x <= self.target:
            return 100.0
        if x <= self.baseline:
            return 50.0 + 50.0 * (self.baseline - x) / (self.baseline - self.target)
        return 50.0 * (self.cap - x) / (self.cap - self.baseline)


def _ordering_problems(
    direction: Direction, floor: float, cap: float, baseline: float, target: float
) -> list[tuple[str, str]]:
    """(field, problem) pairs when baseline/target don't sit inside [floor, cap] in the right order."""
    out: list[tuple[str, str]] = []
    b, t = _num(baseline), _num(target)
    if direction is Direction.HIGHER_IS_BETTER:
        # floor <= baseline < target <= cap
        if baseline < floor:
            out.append(("baseline", f"baseline {b} is below floor {_num(floor)}"))
        if target <= baseline:
            out.append(("target", f"target {t} must be above baseline {b} for a higher_is_better signal"))
        if target > cap:
            out.append(("target", f"target {t} is above cap {_num(cap)}, so 100 could never be reached"))
    else:
        # floor <= target < baseline <= cap
        if baseline > cap:
            out.append(("baseline", f"baseline {b} is above cap {_num(cap)}"))
        if target >= baseline:
            out.append(("target", f"target {t} must be below baseline {b} for a lower_is_better signal"))
        if target < floor:
            out.append(("target", f"target {t} is below floor {_num(floor)}, so 100 could never be reached"))
    return out


class BaselineOverride(_Frozen):
    """Plan-specific expectations: 40 logins/week is poor for 2000 seats, great for 5."""

    baseline: float = Field(allow_inf_nan=False)
    target: float = Field(allow_inf_nan=False)


class SignalSpec(_Frozen):
    """One raw signal the pipeline computes per account per day, and how to normalize it to 0-100."""

    description: NonEmptyStr
    unit: NonEmptyStr
    kind: SignalKind
    source: SignalSource
    direction: Direction
    floor: float = Field(allow_inf_nan=False)
    cap: float = Field(allow_inf_nan=False)
    baseline: float = Field(allow_inf_nan=False, description="Raw value that scores 50.")
    target: float = Field(allow_inf_nan=False, description="Raw value that scores 100.")
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False, description="Relative, within dimension.")
    by_segment: dict[Segment, BaselineOverride] = Field(default_factory=dict)
    by_stage: dict[Identifier, Annotated[float, Field(gt=0, le=10)]] = Field(
        default_factory=dict,
        description="Lifecycle stage -> factor applied to the (segment) baseline and target.",
    )

    @field_validator("floor")
    @classmethod
    def _floor_sign(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if kind is not None and kind not in SIGNED_KINDS and value < 0:
            raise ValueError(f"floor {_num(value)} is negative; a {kind.value} signal can't be negative")
        return value

    @field_validator("cap")
    @classmethod
    def _cap_sign_and_order(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if kind is not None and kind not in SIGNED_KINDS and value < 0:
            raise ValueError(f"cap {_num(value)} is negative; a {kind.value} signal can't be negative")
        floor = info.data.get("floor")
        if floor is not None and value < floor:
            raise ValueError(f"cap {_num(value)} is below floor {_num(floor)}")
        if kind is SignalKind.BINARY and (floor, value) != (0, 1):
            raise ValueError("a binary signal must have floor 0 and cap 1")
        return value

    @model_validator(mode="after")
    def _baselines_fit(self) -> SignalSpec:
        problems: list[tuple[Loc, str]] = []
        for field, msg in self._problems_for(self.baseline, self.target):
            problems.append(((field,), msg))
        for segment, override in self.by_segment.items():
            for field, msg in self._problems_for(override.baseline, override.target):
                problems.append((("by_segment", segment.value, field), msg))
        if not problems:
            # A stage factor rescales every plan's expectations; each combination must still fit.
            plans: list[tuple[str, float, float]] = [("default", self.baseline, self.target)]
            plans += [(s.value, o.baseline, o.target) for s, o in self.by_segment.items()]
            for stage, factor in self.by_stage.items():
                for plan, baseline, target in plans:
                    for _, msg in self._problems_for(baseline * factor, target * factor):
                        problems.append(
                            (("by_stage", stage), f"factor {_num(factor)} with {plan} baselines: {msg}")
                        )
                        break
        _raise_if("SignalSpec", problems)
        return self

    def _problems_for(self, baseline: float, target: float) -> list[tuple[str, str]]:
        return _ordering_problems(self.direction, self.floor, self.cap, baseline, target)

    def normalization(self, segment: str | Segment | None = None, stage: str | None = None) -> Normalization:
        """Resolve plan (segment) override first, then scale by the lifecycle stage factor."""
        baseline, target = self.baseline, self.target
        if segment is not None:
            override = self.by_segment.get(as_segment(segment))
            if override is not None:
                baseline, target = override.baseline, override.target
        factor = self.by_stage.get(stage, 1.0) if stage is not None else 1.0
        return Normalization(self.direction, self.floor, self.cap, baseline * factor, target * factor)


class DimensionSpec(_Frozen):
    description: NonEmptyStr
    signals: dict[Identifier, SignalSpec] = Field(min_length=1)


# ------------------------------------------------------------------------------------------- weights


def _sums_to_100(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if abs(total - 100.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(f"weights sum to {round(float(total), 6)}, must sum to 100")
    return weights


DimensionWeights = Annotated[
    dict[Identifier, Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]],
    AfterValidator(_sums_to_100),
]
SignalWeights = dict[Identifier, Annotated[float, Field(ge=0, allow_inf_nan=False)]]


class WeightsBySegment(_Frozen):
    """Percent of the composite each dimension contributes, per segment."""

    enterprise: DimensionWeights
    mid_market: DimensionWeights
    smb: DimensionWeights

    def get(self, segment: str | Segment) -> dict[str, float]:
        return getattr(self, as_segment(segment).value)


class SignalWeightOverrides(_Frozen):
    """Per-segment replacement of a signal's within-dimension weight (0 switches it off)."""

    enterprise: SignalWeights = Field(default_factory=dict)
    mid_market: SignalWeights = Field(default_factory=dict)
    smb: SignalWeights = Field(default_factory=dict)

    def get(self, segment: str | Segment) -> dict[str, float]:
        return getattr(self, as_segment(segment).value)
