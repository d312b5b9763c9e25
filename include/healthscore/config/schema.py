"""Pydantic v2 schema of the health model (model-as-code).

The YAML is the single source of truth for how a score is built, so every rule that would otherwise
surface as a wrong number weeks later (weights not summing to 100, a band gap, a typo in a signal id)
is rejected here, with the key path of the offending value.

Cross-field checks raise a ``ValidationError`` whose locations point at the exact key; pydantic
prefixes them with the path of the enclosing model, so the loader can report ``weights.smb`` or
``dimensions.usage.signals.logins_per_user_week.cap`` instead of "somewhere in the model".
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]
# Validation-context key: the signal ids the pipeline computes (see ``loader``); absent: not checked.
COMPUTABLE_SIGNALS_CONTEXT = "computable_signals"
WEIGHT_SUM_TOLERANCE = 1e-6

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Score = Annotated[float, Field(ge=0, le=100)]


def config_error(title: str, problems: Iterable[tuple[Loc, str]]) -> ValidationError:
    """Build a ValidationError at explicit locations, so cross-field problems name their key."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("healthscore_config", "{problem}", {"problem": message}),
            loc=loc,
            input=None,
        )
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)


def _raise_if(title: str, problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise config_error(title, problems)


def _suggest(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if len(known) <= 12 else ""


def _num(value: float) -> str:
    """Format 40.0 as 40 and keep real fractions, so messages read like the YAML."""
    return f"{value:g}" if math.isfinite(value) else str(value)


class _Frozen(BaseModel):
    # Frozen: one config object flows through the pipeline and its hash must keep describing it.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- enums


class Segment(StrEnum):
    ENTERPRISE = "enterprise"
    MID_MARKET = "mid_market"
    SMB = "smb"


def as_segment(value: str | Segment) -> Segment:
    """Segments arrive as plain strings from the warehouse; fail loudly on an unmapped one."""
    try:
        return Segment(value)
    except ValueError:
        raise ValueError(
            f"unknown segment {value!r}; expected one of {', '.join(s.value for s in Segment)}"
        ) from None


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher_is_better"
    LOWER_IS_BETTER = "lower_is_better"


class SignalKind(StrEnum):
    """What a raw value measures; decides whether negative floors and caps make sense."""

    COUNT = "count"
    RATE = "rate"
    PERCENT = "percent"
    RATIO = "ratio"
    BINARY = "binary"
    RATING = "rating"
    CURRENCY = "currency"
    DAYS = "days"
    CHANGE_PCT = "change_pct"


SIGNED_KINDS = frozenset({SignalKind.CHANGE_PCT})


class SignalSource(StrEnum):
    CRM = "crm"
    SUPPORT = "support"
    BILLING = "billing"
    PRODUCT = "product"


class ScoringMethod(StrEnum):
    WEIGHTED_AVERAGE = "weighted_average"
    POINTS = "points"
    RAG_RULES = "rag_rules"
    PERCENTILE_RANK = "percentile_rank"
    MODEL_PROBABILITY = "model_probability"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class NotifyRole(StrEnum):
    CSM = "csm"
    CS_LEADER = "cs_leader"
    EXEC_SPONSOR = "exec_sponsor"
    ACCOUNT_EXECUTIVE = "account_executive"
    SUPPORT_LEAD = "support_lead"


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


# ------------------------------------------------------------------------------- bands and thresholds


class Band(_Frozen):
    """Integer-inclusive score range; scores are rounded half-up before lookup."""

    name: NonEmptyStr
    min: int = Field(ge=0, le=100)
    max: int = Field(ge=0, le=100)
    color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")] | None = None

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"max {value} is below min {low}")
        return value


def _band_coverage_problems(bands: list[Band]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, band in enumerate(bands):
        if band.name in seen:
            problems.append(
                ((i, "name"), f"duplicate band name {band.name!r} (also bands[{seen[band.name]}])")
            )
        seen.setdefault(band.name, i)
    order = sorted(range(len(bands)), key=lambda i: (bands[i].min, bands[i].max))
    next_uncovered = 0
    previous: int | None = None
    for i in order:
        band = bands[i]
        if band.min > next_uncovered:
            problems.append(((i, "min"), f"gap: no band covers {next_uncovered}-{band.min - 1}"))
        elif band.min < next_uncovered and previous is not None:
            other = bands[previous]
            problems.append(
                (
                    (i, "min"),
                    f"band {band.name!r} ({band.min}-{band.max}) overlaps band {other.name!r} "
                    f"({other.min}-{other.max}) on {band.min}-{min(band.max, next_uncovered - 1)}",
                )
            )
        if band.max + 1 > next_uncovered:
            next_uncovered, previous = band.max + 1, i
    if bands and next_uncovered <= 100:
        problems.append(((order[-1], "max"), f"gap: no band covers {next_uncovered}-100"))
    return problems


class Thresholds(_Frozen):
    """Healthy at or above one score, at risk below another; between the two is moderate."""

    healthy_at_or_above: Score
    at_risk_below: Score

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.at_risk_below > self.healthy_at_or_above:
            raise config_error(
                "Thresholds",
                [
                    (
                        ("at_risk_below",),
                        f"at_risk_below {_num(self.at_risk_below)} is above "
                        f"healthy_at_or_above {_num(self.healthy_at_or_above)}",
                    )
                ],
            )
        return self


class SegmentThresholds(_Frozen):
    enterprise: Thresholds
    mid_market: Thresholds
    smb: Thresholds

    def get(self, segment: str | Segment) -> Thresholds:
        return getattr(self, as_segment(segment).value)


class ExitGate(_Frozen):
    """Hold an account in its stage past the calendar end until the score clears ``min_score``."""

    min_score: Score
    max_extra_days: int = Field(ge=0, description="Release the hold after this many extra days anyway.")


class LifecycleStage(_Frozen):
    name: Identifier
    start_day: int = Field(ge=0, description="Tenure day the stage starts (inclusive).")
    end_day: int | None = Field(
        default=None, description="Tenure day the stage ends (exclusive); None: open."
    )
    thresholds: Thresholds
    use_segment_thresholds: bool = False
    exit_gate: ExitGate | None = None

    @field_validator("end_day")
    @classmethod
    def _after_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start_day")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"end_day {value} must be after start_day {start}")
        return value


class RenewalWindow(_Frozen):
    days_before_renewal: int = Field(gt=0, le=730)
    at_risk_below: Score


class Lifecycle(_Frozen):
    stages: list[LifecycleStage] = Field(min_length=1)
    renewal_window: RenewalWindow

    @field_validator("stages")
    @classmethod
    def _contiguous(cls, stages: list[LifecycleStage]) -> list[LifecycleStage]:
        problems: list[tuple[Loc, str]] = []
        names: dict[str, int] = {}
        for i, stage in enumerate(stages):
            if stage.name in names:
                problems.append(((i, "name"), f"duplicate stage name {stage.name!r}"))
            names.setdefault(stage.name, i)
        order = sorted(range(len(stages)), key=lambda i: stages[i].start_day)
        expected: int | None = 0
        for i in order:
            stage = stages[i]
            if expected is None:
                problems.append(((i, "start_day"), "stage starts after an open-ended stage"))
            elif stage.start_day != expected:
                problems.append(
                    (
                        (i, "start_day"),
                        f"start_day {stage.start_day} must be {expected} (stages are contiguous)",
                    )
                )
            expected = stage.end_day
        if expected is not None and not problems:
            problems.append(((order[-1], "end_day"), "the last stage must be open-ended (end_day: null)"))
        _raise_if("Lifecycle", problems)
        return [stages[i] for i in order]


class Momentum(_Frozen):
    window_days: int = Field(gt=0)
    stable_band_points: float = Field(ge=0, le=100)
    alert_drop_points: float = Field(gt=0, le=100)
    rapid_decline_points: float = Field(gt=0, le=100)
    trend_windows_days: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    lookup_tolerance_days: int = Field(
        default=3,
        ge=0,
        le=31,
        description="A trend compares with the newest archived score at most this many days older "
        "than as-of minus the window (daily runs skip days).",
    )
    history_days: int = Field(
        default=400,  # the value scoring used before it was a key: stored older models keep their behaviour
        gt=0,
        le=3660,
        description="Days of archived scores the scoring step reads back (trends, momentum, attribution); "
        "must reach the longest trend window plus the lookup tolerance.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Momentum:
        problems: list[tuple[Loc, str]] = []
        if self.alert_drop_points <= self.stable_band_points:
            problems.append((("alert_drop_points",), "alert_drop_points must exceed stable_band_points"))
        if self.rapid_decline_points < self.alert_drop_points:
            problems.append((("rapid_decline_points",), "rapid_decline_points must be >= alert_drop_points"))
        longest = max(self.trend_windows_days) + self.lookup_tolerance_days
        if self.history_days < longest:
            problems.append((("history_days",), (
                f"momentum.history_days {self.history_days} is shorter than the longest trend window: "
                f"momentum.trend_windows_days reaches {max(self.trend_windows_days)} days back, plus "
                f"momentum.lookup_tolerance_days {self.lookup_tolerance_days} = {longest}; that trend would "
                "always be empty")))
        _raise_if("Momentum", problems)
        return self


class CarryForward(_Frozen):
    """A dimension the quality gate blocks keeps its last good value, with decaying confidence.

    Optional: a model without it gets the values the pipeline used before they were keys.
    """

    decay_per_day: float = Field(
        default=0.9, gt=0, le=1, allow_inf_nan=False,
        description="Confidence of a carried value is decay_per_day ** age in days (1 = no decay).")
    max_days: int = Field(
        default=30, ge=1, le=365,
        description="Older good values are not carried: the dimension has no data (NaN, confidence 0).")

    def confidence(self, age_days: int) -> float:
        """Confidence of a value carried ``age_days``; 0 beyond ``max_days`` or for a same-day value."""
        return float(self.decay_per_day ** age_days) if 0 < age_days <= self.max_days else 0.0


class ValueSegments(_Frozen):
    """ARR line of the health x value matrix (High-Value At-Risk, Emerging Champions, ...).

    Optional: a model without it gets the default line, so older model files stay valid.
    """

    high_value_min_arr: float = Field(
        default=100_000, ge=0, allow_inf_nan=False, description="USD per year; at or above is High-Value."
    )
    by_segment: dict[Segment, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Per-segment replacement of high_value_min_arr."
    )

    def high_value_min_arr_for(self, segment: str | Segment) -> float:
        return self.by_segment.get(as_segment(segment), self.high_value_min_arr)


# ----------------------------------------------------------------------------------------- playbooks


class BandEntered(_Frozen):
    type: Literal["band_entered"]
    band: NonEmptyStr


class BandTransition(_Frozen):
    type: Literal["band_transition"]
    from_band: NonEmptyStr
    to_band: NonEmptyStr


class ScoreDrop(_Frozen):
    type: Literal["score_drop"]
    points: float = Field(gt=0, le=100)
    within_days: int = Field(gt=0)


class ScoreReached(_Frozen):
    type: Literal["score_reached"]
    score: Score


class RenewalApproaching(_Frozen):
    type: Literal["renewal_window"]
    days_before_renewal: int = Field(gt=0, le=730)
    below_score: Score


class SustainedBand(_Frozen):
    type: Literal["sustained_band"]
    band: NonEmptyStr
    days: int = Field(gt=0)


Trigger = Annotated[
    BandEntered | BandTransition | ScoreDrop | ScoreReached | RenewalApproaching | SustainedBand,
    Field(discriminator="type"),
]


class Hysteresis(_Frozen):
    """A crossing counts once it clears the boundary by ``margin_points`` and lasts ``persistence_days``.

    Zero disables either guard; both exist so a score wobbling around 75 doesn't page a CSM daily.
    """

    margin_points: float = Field(default=0, ge=0, le=100)
    persistence_days: int = Field(default=0, ge=0)


class HysteresisOverride(_Frozen):
    margin_points: float | None = Field(default=None, ge=0, le=100)
    persistence_days: int | None = Field(default=None, ge=0)


class PlaybookRule(_Frozen):
    description: NonEmptyStr
    enabled: bool = True
    trigger: Trigger
    severity: Severity
    sla_hours: int = Field(gt=0)
    cooldown_days: int | None = Field(default=None, ge=0, description="None: playbooks.defaults.")
    notify: list[NotifyRole] = Field(default_factory=lambda: [NotifyRole.CSM], min_length=1)
    actions: list[NonEmptyStr] = Field(min_length=1)
    suppresses: list[Identifier] = Field(
        default_factory=list, description="Rules muted while this one is open (e.g. expansion during a save)."
    )
    hysteresis: HysteresisOverride | None = None


def _rule_lookback(trigger: Any) -> tuple[int | None, str]:
    """(days of archived history a trigger looks back over including the day before, its key)."""
    if isinstance(trigger, SustainedBand):
        return trigger.days + 1, "days"
    if isinstance(trigger, ScoreDrop):
        return trigger.within_days + 1, "within_days"
    return None, ""


class PlaybookDefaults(_Frozen):
    cooldown_days: int = Field(ge=0)
    hysteresis: Hysteresis


class Playbooks(_Frozen):
    defaults: PlaybookDefaults
    csm_daily_task_budget: int = Field(gt=0, description="Tasks per CSM per day; overflow is deferred.")
    lookback_days: int = Field(
        default=120,  # the value the act step used before it was a key: stored older models keep their behaviour
        gt=0,
        le=3660,
        description="Days of archived champion scores replayed to decide crossings (read by the act step, "
        "replayed by the decision engine); must cover every rule's own look-back.",
    )
    rules: dict[Identifier, PlaybookRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _suppressed_rules_exist(self) -> Playbooks:
        problems: list[tuple[Loc, str]] = []
        for rule_id, rule in self.rules.items():
            need, key = _rule_lookback(rule.trigger)
            if need is not None and need > self.lookback_days:
                problems.append((("lookback_days",), (
                    f"playbooks.lookback_days {self.lookback_days} is shorter than "
                    f"playbooks.rules.{rule_id}.trigger.{key} needs ({need} days of archived scores); "
                    "the act step would replay too little history")))
        for rule_id, rule in self.rules.items():
            for i, other in enumerate(rule.suppresses):
                if other not in self.rules:
                    problems.append(
                        (
                            ("rules", rule_id, "suppresses", i),
                            f"unknown rule {other!r}{_suggest(other, self.rules)}",
                        )
                    )
                elif other == rule_id:
                    problems.append((("rules", rule_id, "suppresses", i), "a rule can't suppress itself"))
        _raise_if("Playbooks", problems)
        return self


# ------------------------------------------------------------------------------------------ the model


OutcomeName = Literal["renewed", "churned", "contracted", "expanded"]


class AccuracyTargets(_Frozen):
    """Targets from the field for the monthly accuracy report; a missed one is flagged and notified."""

    recall: float = Field(default=0.75, ge=0, le=1)
    specificity: float = Field(default=0.85, ge=0, le=1)
    accuracy: float = Field(default=0.80, ge=0, le=1)
    f1: float = Field(default=0.70, ge=0, le=1)


class DriftThresholds(_Frozen):
    """When a month's distributions or accuracy have moved enough to alert."""

    score_psi_alert: float = Field(default=0.25, gt=0, description="PSI of the score distribution vs last month.")
    score_psi_warn: float = Field(default=0.10, gt=0)
    dimension_psi_alert: float = Field(default=0.25, gt=0, description="PSI of one dimension's scores.")
    signal_psi_alert: float = Field(default=0.25, gt=0, description="PSI of one signal's raw values.")
    psi_bins: int = Field(default=10, ge=2, le=50, description="Equal-width bins over 0-100 (signals: deciles).")
    accuracy_decline_months: int = Field(default=3, ge=2, description="Months in a row of falling accuracy.")


class Evaluation(_Frozen):
    """How the monthly accuracy DAG judges the model against renewal outcomes."""

    positive_outcomes: list[OutcomeName] = Field(
        default_factory=lambda: ["churned", "contracted"], min_length=1, max_length=3,
        description="Outcomes counted as the positive class (the model should flag them).")
    at_risk_bands: list[NonEmptyStr] = Field(
        default_factory=lambda: ["At Risk", "Critical"], min_length=1,
        description="Bands that count as a prediction of the positive class.")
    horizons_days: list[Annotated[int, Field(gt=0, le=365)]] = Field(default_factory=lambda: [30, 60, 90],
                                                                      min_length=1)
    headline_horizon_days: int = Field(default=60, gt=0, description="The horizon targets are checked at.")
    lookup_tolerance_days: int = Field(
        default=3, ge=0, description="The prediction 'h days before' is the newest archived in [d-h-tol, d-h].")
    min_group_size: int = Field(default=20, ge=1, description="Smaller groups are flagged, not given figures.")
    lead_time_lookback_days: int = Field(default=180, gt=0, description="How far back a first At Risk flag counts.")
    targets: AccuracyTargets = Field(default_factory=AccuracyTargets)
    drift: DriftThresholds = Field(default_factory=DriftThresholds)


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
