"""Playbook rules: their triggers, hysteresis, cooldowns, suppression and the replayed look-back."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from healthscore.config.base import (
    Identifier,
    Loc,
    NonEmptyStr,
    NotifyRole,
    Score,
    Severity,
    _Frozen,
    _raise_if,
    _suggest,
)

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
