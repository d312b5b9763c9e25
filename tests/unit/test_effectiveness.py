"""Playbook effectiveness on small frames (healthscore.evaluation.effectiveness): definitions, thin evidence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from healthscore.evaluation import effectiveness as eff

AT_RISK = ["At Risk", "Critical"]
POSITIVE = ["churned", "contracted"]
START = dt.date(2026, 1, 1)


def _band(score: float) -> str:
    return "Healthy" if score >= 75 else "Moderate" if score >= 50 else "At Risk" if score >= 25 else "Critical"


def _scores(account: str, path: list[float], segment: str = "smb") -> list[dict]:
    return [{"account_id": account, "as_of_date": START + dt.timedelta(days=i), "score": s, "band": _band(s),
             "segment": segment, "trend_30d": -10.0 if i >= 10 else 0.0} for i, s in enumerate(path)]


def _world(n: int, *, done_recovers: bool = True):
    """n accounts enter At Risk on day 10 (save_plan fires); even ones complete the task on day 12 and
    (if ``done_recovers``) climb back to Moderate on day 40; odd ones stay At Risk. 20 control accounts sit
    in the same situation without the play. Renewals on day 100: recovered accounts renew, the rest churn."""
    scores, events, outcomes = [], [], []
    for i in range(n):
        account, done = f"a{i}", i % 2 == 0
        recovers = done and done_recovers
        path = [70.0] * 10 + [40.0] * 30 + ([60.0] if recovers else [40.0]) * 80
        scores += _scores(account, path)
        events.append({"account_id": account, "playbook": "save_plan", "crossing_date": START + dt.timedelta(days=10),
                       "task_status": "COMPLETED" if done else "NOT_STARTED",
                       "task_completed_at": pd.Timestamp(START + dt.timedelta(days=12), tz="UTC") if done else None,
                       "due_at": pd.Timestamp(START + dt.timedelta(days=11), tz="UTC")})
        outcomes.append({"account_id": account, "renewal_date": START + dt.timedelta(days=100),
                         "outcome": "renewed" if recovers else "churned"})
    for j in range(20):
        account = f"c{j}"
        scores += _scores(account, [70.0] * 10 + [40.0] * 110)
        outcomes.append({"account_id": account, "renewal_date": START + dt.timedelta(days=100),
                         "outcome": "churned" if j % 4 else "renewed"})
    return pd.DataFrame(events), pd.DataFrame(scores), pd.DataFrame(outcomes)


def _report(events, scores, outcomes, end=START + dt.timedelta(days=119), min_n=10):
    return eff.playbook_effectiveness(events, scores, outcomes, end=end, at_risk_bands=AT_RISK,
                                      positive_outcomes=POSITIVE, min_group_size=min_n)


def test_wilson_matches_the_closed_form():
    lo, hi = eff.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = eff.wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert eff.wilson(0, 0) is None


def test_fired_completed_recovery_churn_and_velocity():
    report = _report(*_world(40))
    (row,) = report["playbooks"]
    assert row["playbook"] == "save_plan" and row["fired"] == 40 and row["completed"] == 20
    assert row["completed_late"] == 20  # completed on day 12, due on day 11
    rec = row["recovery"]
    assert rec["all"]["k"] == 20 and rec["all"]["n"] == 40 and rec["all"]["rate"] == 0.5
    assert rec["completed"]["rate"] == 1.0 and rec["left_open"]["rate"] == 0.0
    lo, hi = rec["all"]["ci_low"], rec["all"]["ci_high"]
    assert (lo, hi) == pytest.approx(eff.wilson(20, 40))
    churn = row["churn"]
    assert churn["fired"]["n"] == 40 and churn["fired"]["rate"] == 0.5
    assert churn["comparable"]["n"] == 20 and churn["comparable"]["rate"] == 0.75  # 15 of 20 controls churn
    assert churn["difference"] == pytest.approx(-0.25) and churn["strata"] == 1
    vel = row["velocity"]
    assert vel["all"]["n"] == 40 and vel["all"]["mean"] == 10.0  # +20 for the completed, 0 for the rest
    assert vel["completed"]["mean"] == 20.0 and vel["left_open"]["mean"] == 0.0
    # next best action: the only play with enough completed evidence in (At Risk, smb)
    (best,) = report["next_best_action"]
    assert (best["band"], best["segment"], best["playbook"], best["n"], best["recovered"]) == (
        "At Risk", "smb", "save_plan", 20, 20)
    text = eff.best_action_for(report["next_best_action"], "At Risk", "smb")
    assert text.startswith("Save plan recovered 100% of 20 similar accounts")
    assert eff.best_action_for(report["next_best_action"], "At Risk", "enterprise") is None


def test_thin_evidence_claims_nothing():
    report = _report(*_world(6))
    (row,) = report["playbooks"]
    assert row["fired"] == 6 and row["completed"] == 3
    for part in ("all", "completed", "left_open"):
        assert row["recovery"][part]["too_small"] is True and "rate" not in row["recovery"][part]
        assert row["velocity"][part]["too_small"] is True and "mean" not in row["velocity"][part]
    assert row["churn"]["too_small"] is True and "difference" not in row["churn"]
    assert report["next_best_action"] == []


def test_a_play_that_recovered_nobody_is_not_named():
    report = _report(*_world(40, done_recovers=False))
    (row,) = report["playbooks"]
    assert row["recovery"]["completed"]["rate"] == 0.0  # enough evidence, and it says the play did not work
    assert report["next_best_action"] == []


def test_nothing_after_the_report_end_is_used():
    events, scores, outcomes = _world(40)
    # on day 40 the recovery window (60 days from day 10) has not elapsed: no recovery figure, no claim;
    # the completions of day 12 count, renewals of day 100 do not exist yet
    early = _report(events, scores, outcomes, end=START + dt.timedelta(days=40))
    (row,) = early["playbooks"]
    assert row["completed"] == 20 and row["recovery"]["all"]["n"] == 0
    assert row["churn"]["fired"]["n"] == 0 and early["next_best_action"] == []
    before_done = _report(events, scores, outcomes, end=START + dt.timedelta(days=11))
    assert before_done["playbooks"][0]["completed"] == 0


def test_velocity_measures_the_climb():
    events, scores, outcomes = _world(40)
    scores = scores.copy()
    climbing = scores["account_id"].isin([f"a{i}" for i in range(0, 40, 2)])
    day = pd.to_datetime(scores["as_of_date"])
    scores.loc[climbing & (day >= pd.Timestamp(START + dt.timedelta(days=35))), "score"] = 55.0
    report = _report(events, scores, outcomes)
    vel = report["playbooks"][0]["velocity"]
    assert vel["completed"]["mean"] == pytest.approx(15.0) and vel["left_open"]["mean"] == 0.0
    assert np.isclose(vel["all"]["mean"], 7.5)


def test_new_task_bodies_name_the_best_play_only_with_evidence():
    from healthscore.playbooks.text import task_body

    table = _report(*_world(40))["next_best_action"]
    events = pd.DataFrame([
        {"idempotency_key": "a|save_plan|2026-05-01|v1", "playbook": "save_plan", "severity": "high",
         "payload": {"band": "At Risk", "segment": "smb", "description": "Entered At Risk."}},
        {"idempotency_key": "b|save_plan|2026-05-01|v1", "playbook": "save_plan", "severity": "high",
         "payload": {"band": "At Risk", "segment": "enterprise", "description": "Entered At Risk."}},
    ])
    out = eff.with_best_actions(events, table)
    first, second = (task_body(row) for _, row in out.iterrows())
    assert "What worked for similar accounts: Save plan recovered 100% of 20 similar accounts" in first
    assert "What worked" not in second  # no evidence for enterprise: nothing claimed
    thin = eff.with_best_actions(events, _report(*_world(6))["next_best_action"])
    assert all("next_best_action" not in p for p in thin["payload"])
    assert "payload" in events and "next_best_action" not in events["payload"].iloc[0]  # input untouched
