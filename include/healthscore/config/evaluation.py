"""How the monthly accuracy DAG judges the model: outcomes, horizons, targets and drift thresholds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from healthscore.config.base import NonEmptyStr, _Frozen

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
