"""Per-CSM daily task budget: rank by ARR x severity, defer the overflow, escalate what waited too long.

A CSM who gets 30 tasks on a bad day acts on none of them, so only ``csm_daily_task_budget`` tasks per
owner are released each day. Nothing is dropped: the rest is returned as ``deferred`` (same idempotency
key) and re-ranked with the next day's events. A deferred event past its due time is escalated one
severity level per elapsed SLA period (from its original severity, so re-runs agree), which raises its
priority; it can still lose to larger accounts, but it is never discarded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SEVERITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")
SEVERITY_WEIGHTS: dict[str, float] = {"low": 1.0, "medium": 2.0, "high": 4.0, "critical": 8.0}


def severity_weight(severity: str | None) -> float:
    """Unknown severities weigh like 'low' rather than failing a whole day's run."""
    return SEVERITY_WEIGHTS.get(str(severity), SEVERITY_WEIGHTS["low"])


def priority_score(arr_cents: Any, severity: str | None) -> float:
    """ARR in currency units x severity weight; unknown ARR counts as 0 (severity then breaks ties)."""
    try:
        arr = float(arr_cents)
    except (TypeError, ValueError):
        arr = 0.0
    if math.isnan(arr) or arr < 0:
        arr = 0.0
    return round(arr / 100.0 * severity_weight(severity), 2)


def escalate(severity: str, levels: int) -> str:
    """Raise a severity by ``levels`` steps, capped at the top."""
    try:
        i = SEVERITY_ORDER.index(severity)
    except ValueError:
        i = 0
    return SEVERITY_ORDER[min(i + max(levels, 0), len(SEVERITY_ORDER) - 1)]


def overdue_levels(due_at: pd.Timestamp, decided_at: pd.Timestamp, sla_hours: float) -> int:
    """0 while on time, then 1 + one more per full SLA period past due."""
    if pd.isna(due_at) or decided_at <= due_at:
        return 0
    hours = (decided_at - due_at) / pd.Timedelta(hours=1)
    return 1 + int(hours // max(float(sla_hours), 1.0))


def rank_order(events: pd.DataFrame) -> pd.DataFrame:
    """Deterministic best-first order: priority, severity, earliest due, oldest crossing, then ids."""
    if events.empty:
        return events
    keyed = events.assign(
        _w=events["severity"].map(severity_weight),
        _due=pd.to_datetime(events["due_at"], utc=True),
        _cd=events["crossing_date"].map(lambda d: d.isoformat()),
    )
    keyed = keyed.sort_values(
        ["priority_score", "_w", "_due", "_cd", "account_id", "playbook", "idempotency_key"],
        ascending=[False, False, True, True, True, True, True],
        kind="mergesort",
    )
    return keyed.drop(columns=["_w", "_due", "_cd"]).reset_index(drop=True)


def apply_budget(events: pd.DataFrame, budget: int) -> pd.DataFrame:
    """Mark the top ``budget`` events per owner 'pending' and the rest 'deferred'.

    Events without an owner are not a CSM's workload and are never deferred (CS ops triages them).
    """
    ranked = rank_order(events)
    if ranked.empty:
        return ranked
    owner = ranked["owner_id"].map(lambda o: o if isinstance(o, str) else "")
    position = ranked.groupby(owner, sort=False).cumcount().to_numpy()
    over = (position >= budget) & (owner != "").to_numpy()
    return ranked.assign(status=np.where(over, "deferred", "pending"))
