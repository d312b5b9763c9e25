"""Properties of the playbook engine over random score paths, simulated day by day like the DAG runs it.

A stressed config (short cooldowns, random hysteresis, budget 1-2 per CSM, 6-day advocacy, 7-day drop
window) makes every rule, cooldown and deferral reachable within a few weeks of random scores.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthscore.config import ModelConfig
from healthscore.pipeline.act import HISTORY_COLUMNS, PAST_EVENT_COLUMNS, SCORE_COLUMNS, cooldown_horizon
from healthscore.playbooks.rules import EVENT_COLUMNS, PlaybookDecision, decide_playbook_events
from tests.unit.test_playbooks import model_with, score_rows

END = dt.date(2025, 6, 30)
PAST_COLUMNS = ["account_id", "playbook", "crossing_date", "status", "idempotency_key"]
RULES = (
    "save_plan",
    "executive_escalation",
    "rapid_decline",
    "engagement_sequence",
    "expansion_opportunity",
    "renewal_prep",
    "advocacy",
)


@st.composite
def stressed_models(draw: st.DrawFn) -> ModelConfig:
    edits: dict[str, Any] = {
        "playbooks/csm_daily_task_budget": draw(st.integers(1, 2)),
        "playbooks/defaults/hysteresis": {
            "margin_points": draw(st.sampled_from([0, 1, 2])),
            "persistence_days": draw(st.integers(0, 2)),
        },
        "playbooks/rules/advocacy/trigger/days": 6,
        "playbooks/rules/rapid_decline/trigger/within_days": 7,
    }
    for rule in RULES:
        edits[f"playbooks/rules/{rule}/cooldown_days"] = draw(st.integers(1, 6))
    return model_with(edits)


@st.composite
def portfolios(draw: st.DrawFn) -> pd.DataFrame:
    n_days = draw(st.integers(12, 22))
    frames = []
    for i in range(draw(st.integers(1, 3))):
        level = draw(st.integers(15, 95))
        path: list[float | None] = []
        for _ in range(n_days):
            level = min(100, max(0, level + draw(st.integers(-14, 14))))
            path.append(None if draw(st.integers(0, 15)) == 0 else float(level))
        renewal = END + dt.timedelta(days=draw(st.integers(-5, 40))) if draw(st.booleans()) else None
        frames.append(
            score_rows(
                f"acc{i}",
                path,
                end=END,
                segment=draw(st.sampled_from(["smb", "mid_market", "enterprise"])),
                arr_cents=draw(st.sampled_from([None, 1_000_000, 50_000_000])),
                owner_id=draw(st.sampled_from(["csm-1", "csm-1", "csm-2", None])),
                renewal_date=renewal,
            )
        )
    return pd.concat(frames, ignore_index=True)


def _run(frame: pd.DataFrame, model: ModelConfig) -> list[tuple[dt.date, PlaybookDecision, Any]]:
    dates = pd.to_datetime(frame["as_of_date"]).dt.date
    past = pd.DataFrame(columns=PAST_COLUMNS)
    deferred = None
    out = []
    for d in sorted(set(dates)):
        inputs = (frame[dates == d], frame[dates < d], past.copy(), deferred)
        decision = decide_playbook_events(*inputs[:3], model, deferred=deferred, lookback_days=10)
        out.append((d, decision, inputs))
        if not decision.events.empty:
            past = pd.concat([past, decision.events[PAST_COLUMNS]], ignore_index=True)
            past = past.drop_duplicates("idempotency_key", keep="last")
        deferred = decision.deferred
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=portfolios(), model=stressed_models())
def test_cooldowns_unique_keys_and_nothing_dropped(frame: pd.DataFrame, model: ModelConfig) -> None:
    days = _run(frame, model)
    first_seen: dict[str, tuple[str, str, dt.date, str]] = {}
    by_rule: dict[tuple[str, str], set[dt.date]] = defaultdict(set)
    budget = model.playbooks.csm_daily_task_budget
    for i, (d, decision, _) in enumerate(days):
        events = decision.events
        assert tuple(events.columns) == EVENT_COLUMNS
        assert events["idempotency_key"].is_unique
        pending = events[events["status"] == "pending"]
        assert pending["owner_id"].dropna().value_counts().le(budget).all()
        for _, e in events.iterrows():
            ident = (e["account_id"], e["playbook"], e["crossing_date"], e["model_version"])
            key = e["idempotency_key"]
            assert key == f"{ident[0]}|{ident[1]}|{ident[2].isoformat()}|{ident[3]}"
            assert first_seen.setdefault(key, ident) == ident
            assert e["crossing_date"] <= d and (
                e["crossing_date"] == d or key in set(days[i - 1][1].events["idempotency_key"])
            )
            by_rule[(e["account_id"], e["playbook"])].add(e["crossing_date"])
        if i + 1 < len(days):  # every deferral is carried into the next day (or muted there), never dropped
            nxt = days[i + 1][1]
            tomorrow = set(nxt.events["idempotency_key"]) | set(nxt.suppressed["idempotency_key"])
            assert set(events.loc[events["status"] == "deferred", "idempotency_key"]) <= tomorrow
    for (_, playbook), crossings in by_rule.items():
        ordered = sorted(crossings)
        gaps = [(b - a).days for a, b in zip(ordered, ordered[1:], strict=False)]
        assert all(g >= model.cooldown_days_for(playbook) for g in gaps), (playbook, ordered)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=portfolios(), model=stressed_models(), noise=st.integers(0, 2**16))
def test_reruns_identical_and_shadow_rows_change_nothing(
    frame: pd.DataFrame, model: ModelConfig, noise: int
) -> None:
    days = _run(frame, model)
    d, decision, (today, history, past, deferred) = days[-1]
    events = decision.events
    rerun = decide_playbook_events(today, history, past, model, deferred=deferred, lookback_days=10)
    pd.testing.assert_frame_equal(events, rerun.events)
    shadow = frame.assign(
        model_version="v2",
        is_shadow=True,
        score=frame["score"].sample(frac=1.0, random_state=noise).to_numpy(),
    )
    shadow["band"] = [model.band_for(s) if pd.notna(s) else None for s in shadow["score"]]
    sdates = pd.to_datetime(shadow["as_of_date"]).dt.date
    noisy = decide_playbook_events(
        pd.concat([today, shadow[sdates == d]], ignore_index=True),
        pd.concat([history, shadow[sdates < d]], ignore_index=True),
        past,
        model,
        deferred=deferred,
        lookback_days=10,
    )
    pd.testing.assert_frame_equal(events, noisy.events)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=portfolios(), model=stressed_models())
def test_the_act_steps_narrow_reads_decide_the_same_events(frame: pd.DataFrame, model: ModelConfig) -> None:
    """pipeline.act reads earlier days' state columns only (not the JSON breakdowns it reads for today), and
    only the events young enough to hold a cooldown: the same decisions as the whole rows and every event."""
    horizon = dt.timedelta(days=cooldown_horizon(model))
    for d, _, (today, history, past, deferred) in _run(frame, model):
        whole = history[[c for c in SCORE_COLUMNS if c in history.columns]]
        narrow = history[[c for c in HISTORY_COLUMNS if c in history.columns]]
        young = past[pd.to_datetime(past["crossing_date"]).dt.date >= d - horizon][list(PAST_EVENT_COLUMNS)]
        before = decide_playbook_events(today, whole, past, model, deferred=deferred, lookback_days=10)
        again = decide_playbook_events(today, narrow, young, model, deferred=deferred, lookback_days=10)
        pd.testing.assert_frame_equal(before.events, again.events)
        pd.testing.assert_frame_equal(before.suppressed, again.suppressed)
