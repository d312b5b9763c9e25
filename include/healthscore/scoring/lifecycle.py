"""Journey velocity: stage exit gates, days in stage, and time in stage per band.

A stage's ``exit_gate`` holds an account in it past the calendar end until its score (computed under
that stage's expectations, i.e. the score the CSM sees while onboarding) reaches ``min_score``, for at
most ``max_extra_days``. An account history shows already past the gated stage is never pulled back,
so a dip after graduating does not reopen onboarding; without history each day is judged on its own.
A ``lifecycle_stage`` given in the signals is taken as the calendar stage; the gate still applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthscore.scoring.compiled import CompiledModel


@dataclass
class GatePlan:
    candidate: np.ndarray  # bool: past a gated stage's calendar end, inside its grace period
    held_stage: np.ndarray  # stage code the candidate is held in
    min_score: np.ndarray  # gate score per row (NaN when not a candidate)


def plan_gates(
    calendar: np.ndarray, tenure: np.ndarray, prior_stage: np.ndarray, cm: CompiledModel
) -> GatePlan:
    """Accounts that must clear an exit gate today, and the stage they stay in if they don't."""
    n = calendar.size
    candidate = np.zeros(n, dtype=bool)
    held = calendar.copy()
    min_score = np.full(n, np.nan)
    stages = cm.model.lifecycle.stages
    for i, stage in enumerate(stages[:-1]):
        gate = stage.exit_gate
        if gate is None or stage.end_day is None:
            continue
        with np.errstate(invalid="ignore"):
            within = tenure < stage.end_day + gate.max_extra_days
        rows = (calendar == i + 1) & within & ~(prior_stage >= i + 1)
        candidate |= rows
        held[rows] = i
        min_score[rows] = gate.min_score
    return GatePlan(candidate=candidate, held_stage=held, min_score=min_score)


def days_in_stage(
    stage: np.ndarray,
    tenure: np.ndarray,
    prior_stage: np.ndarray,
    days_since_run_start: np.ndarray,
    observed_entry: np.ndarray,
    cm: CompiledModel,
) -> np.ndarray:
    """Days since the account entered today's stage (float, NaN when unknowable).

    History decides when it shows the entry (a stage change); 0 when the stage changed today; otherwise
    the tenure-based estimate (tenure - stage start day), never less than the days history has seen.
    """
    known_stage = stage < cm.no_stage
    start_day = np.append(cm.stage_starts, 0)[stage].astype(float)
    estimate = np.where(known_stage, np.maximum(tenure - start_day, 0.0), np.nan)
    seen = days_since_run_start.astype(float)
    same = prior_stage == stage
    out = np.where(
        prior_stage < 0,
        estimate,
        np.where(
            same,
            np.where(observed_entry, seen, np.fmax(seen, estimate)),
            0.0,
        ),
    )
    return np.where(known_stage, out, np.nan)


def time_in_stage_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Days in stage per (lifecycle_stage, band): how long accounts of each health linger in a stage.

    Takes ``score_accounts`` output (or archive rows of one day). Unscored rows count under band
    "Unscored". Columns: accounts, mean_days, median_days, p90_days, gate_blocked (accounts held by an
    exit gate, when ``stage_gate_blocked`` is present).
    """
    frame = pd.DataFrame(
        {
            "lifecycle_stage": scores["lifecycle_stage"],
            "band": scores["band"].astype(object).where(scores["band"].notna(), "Unscored"),
            "days": pd.to_numeric(scores["days_in_stage"], errors="coerce").astype(float),
            "blocked": (
                scores["stage_gate_blocked"].fillna(False).astype(bool)
                if "stage_gate_blocked" in scores.columns
                else False
            ),
        }
    )
    grouped = frame.groupby(["lifecycle_stage", "band"], sort=True, dropna=False)
    out = grouped.agg(
        accounts=("days", "size"),
        mean_days=("days", "mean"),
        median_days=("days", "median"),
        p90_days=("days", lambda s: s.quantile(0.9)),
        gate_blocked=("blocked", "sum"),
    )
    return out.reset_index()
