"""Lifecycle stages and the renewal window, momentum and trend windows, carry-forward of blocked
dimensions, and the ARR line of the value segments.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from healthscore.config.bands import Thresholds
from healthscore.config.base import Identifier, Loc, Score, Segment, _Frozen, _raise_if, as_segment


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
