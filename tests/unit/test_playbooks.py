"""Playbook decision engine: every rule on and off its trigger, hysteresis, cooldown, budget, keys, text."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
import yaml

from healthscore.config import ModelConfig, default_model_text, load_model_config, model_config_from_dict
from healthscore.playbooks.rules import (
    EVENT_COLUMNS,
    PlaybookDecision,
    daily_digest,
    decide_playbook_events,
    task_body,
    task_subject,
)

END = dt.date(2025, 3, 31)


@functools.cache
def default_model() -> ModelConfig:
    return load_model_config()


def model_with(edits: dict[str, Any]) -> ModelConfig:
    """Default model with ``{"a/b/c": value}`` edits applied to its YAML mapping."""
    data = yaml.safe_load(default_model_text())
    for path, value in edits.items():
        node = data
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(value)
    return model_config_from_dict(data)


def day(offset: int) -> dt.date:
    return END + dt.timedelta(days=offset)


def score_rows(
    account_id: str,
    scores: Sequence[float | None],
    *,
    end: dt.date = END,
    model: ModelConfig | None = None,
    segment: str | None = "mid_market",
    stage: str | None = "maturity",
    arr_cents: int | None = 10_000_000,
    owner_id: str | None = "csm-1",
    renewal_date: dt.date | None = None,
    model_version: str = "v1",
    is_shadow: bool = False,
    name: str | None = None,
    override_band: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """One row per day ending at ``end``; bands come from the config, as the scorer archives them."""
    model = model or default_model()
    out = []
    n = len(scores)
    for i, s in enumerate(scores):
        d = end - dt.timedelta(days=n - 1 - i)
        dtr = (renewal_date - d).days if renewal_date else None
        out.append(
            {
                "account_id": account_id,
                "account_name": name or f"Account {account_id}",
                "as_of_date": d,
                "score": s,
                "band": model.band_for(s, segment, stage, dtr) if s is not None else None,
                "trend_30d": None,
                "segment": segment,
                "lifecycle_stage": stage,
                "arr_cents": arr_cents,
                "renewal_date": renewal_date,
                "owner_id": owner_id,
                "dimension_scores": {"usage": 50.0, "engagement": 60.0},
                "attribution": [
                    {"dimension": "usage", "delta": -6.5},
                    {"dimension": "engagement", "delta": 1.0},
                    {"dimension": "relationship", "delta": -9.0},
                    {"dimension": "financial", "delta": 0.5},
                ],
                "model_version": model_version,
                "is_shadow": is_shadow,
                "override_band": override_band[i] if override_band is not None else None,
                "override_score": None,
            }
        )
    return pd.DataFrame(out)


def decide(
    frame: pd.DataFrame,
    on: dt.date = END,
    *,
    model: ModelConfig | None = None,
    past: pd.DataFrame | None = None,
    deferred: pd.DataFrame | None = None,
) -> PlaybookDecision:
    dates = pd.to_datetime(frame["as_of_date"]).dt.date
    return decide_playbook_events(
        frame[dates == on], frame[dates < on], past, model or default_model(), deferred=deferred
    )


def simulate(
    frame: pd.DataFrame, model: ModelConfig | None = None, *, start: dt.date | None = None
) -> list[PlaybookDecision]:
    """Run every day in order, feeding back events (as past_events) and deferrals like the DAG will.

    ``start`` skips deciding earlier days; only used where that prefix is flat and cannot fire.
    """
    dates = pd.to_datetime(frame["as_of_date"]).dt.date
    past = pd.DataFrame(columns=["account_id", "playbook", "crossing_date", "status", "idempotency_key"])
    deferred = None
    out = []
    for d in sorted(x for x in set(dates) if start is None or x >= start):
        decision = decide_playbook_events(
            frame[dates == d], frame[dates < d], past, model or default_model(), deferred=deferred
        )
        out.append(decision)
        if not decision.events.empty:
            past = pd.concat([past, decision.events[list(past.columns)]], ignore_index=True)
            past = past.drop_duplicates("idempotency_key", keep="last")
        deferred = decision.deferred
    return out


def fired(decisions: Sequence[PlaybookDecision] | PlaybookDecision) -> list[tuple[str, str, dt.date]]:
    """(account, playbook, crossing date) of every new event, in decision order."""
    if isinstance(decisions, PlaybookDecision):
        decisions = [decisions]
    seen: dict[str, tuple[str, str, dt.date]] = {}
    for d in decisions:
        for _, e in d.events.iterrows():
            seen.setdefault(e["idempotency_key"], (e["account_id"], e["playbook"], e["crossing_date"]))
    return list(seen.values())


def playbooks(decision: PlaybookDecision) -> list[str]:
    return sorted(decision.events["playbook"])


# ---------------------------------------------------------------------------------------- the rules


def test_save_plan_fires_after_margin_and_persistence_with_the_why() -> None:
    # mid_market maturity: At Risk below 55 -> with margin 2 entering needs <= 52, on 2 days.
    frame = score_rows("a1", [65] * 20 + [54, 52, 51], name="Acme Corp")
    assert playbooks(decide(frame, day(-1))) == []  # 54 is inside the margin, 52 is day 1 of 2
    decision = decide(frame)
    assert playbooks(decision) == ["save_plan"]
    event = decision.events.iloc[0]
    p = event["payload"]
    assert p["band_change"] == {"from": "Moderate", "to": "At Risk"}
    assert p["score_change"] == {"from": 65.0, "to": 51.0}
    assert p["suggested_actions"][0].startswith("CSM check-in")
    assert any("Pause expansion" in a for a in p["suggested_actions"])
    assert [d["dimension"] for d in p["top_dimension_deltas"]] == ["relationship", "usage", "engagement"]
    assert p["arr_cents"] == 10_000_000 and p["renewal_date"] is None
    assert task_subject(event) == "Save plan: Acme Corp entered At Risk (65 -> 51)"
    json.dumps(p)  # the JSON column must accept it


def test_save_plan_not_for_shallow_dips_nor_on_improvement() -> None:
    assert fired(simulate(score_rows("a1", [65] * 10 + [54, 53] * 10))) == []
    # Critical -> At Risk is a recovery: no save plan.
    assert "save_plan" not in playbooks(decide(score_rows("a1", [15] * 10 + [35, 36])))


def test_executive_escalation_same_day_and_notifies_leaders() -> None:
    frame = score_rows("a1", [40] * 10 + [20], name="Acme Corp")
    decision = decide(frame)
    assert playbooks(decision) == ["executive_escalation"]
    event = decision.events.iloc[0]
    assert event["severity"] == "critical"
    assert event["payload"]["notify_targets"] == ["cs_leader", "exec_sponsor"]
    body = task_body(event)
    assert "the CS leader" in body and "our executive sponsor" in body
    assert event["due_at"] == pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=1, hours=24)
    # Already Critical yesterday: nothing new.
    assert playbooks(decide(score_rows("a1", [40] * 3 + [20] * 8 + [19]))) == []
    # Within the margin (25 - 2): 23 is Critical on paper but not yet "entered".
    assert playbooks(decide(score_rows("a1", [40] * 10 + [23]))) == []


def test_rapid_decline_needs_15_points_within_30_days() -> None:
    # Healthy 90 -> 74 is a 16-point drop.
    drop16 = simulate(score_rows("a1", [90] * 40 + [82, 76, 74, 74]), start=day(-5))
    # 74 is Moderate on paper but inside the margin (75 - 2), so only the drop fires.
    assert [(pb, d) for _, pb, d in fired(drop16)] == [("rapid_decline", END)]
    event = drop16[-1].events.set_index("playbook").loc["rapid_decline"]
    assert event["payload"]["detail"]["drop_points"] == 16.0
    assert task_subject(event) == "Rapid decline: Account a1 dropped 16 points within 30 days (90 -> 74)"
    drop14 = simulate(score_rows("a1", [90] * 40 + [82, 76, 76, 76]), start=day(-5))
    assert "rapid_decline" not in [pb for _, pb, _ in fired(drop14)]
    # A slow 20-point slide over 60 days is never 15 within 30.
    slow = [90 - i / 3 for i in range(61)]
    assert "rapid_decline" not in [pb for _, pb, _ in fired(simulate(score_rows("a1", slow), start=day(-35)))]


def test_engagement_sequence_only_on_healthy_to_moderate() -> None:
    assert [pb for _, pb, _ in fired(simulate(score_rows("a1", [80] * 10 + [70, 70])))] == [
        "engagement_sequence"
    ]
    # Straight from Healthy to At Risk is a save plan (and a rapid decline), not Healthy->Moderate.
    jump = [pb for _, pb, _ in fired(simulate(score_rows("a1", [85] * 10 + [45, 45])))]
    assert sorted(jump) == ["rapid_decline", "save_plan"]
    # Moderate -> Healthy is good news.
    assert fired(simulate(score_rows("a1", [65] * 10 + [80, 80]))) == []


def test_expansion_opportunity_at_80_plus_margin_and_suppressed_by_open_save_plan() -> None:
    rise = score_rows("a1", [70] * 10 + [82, 83])
    assert playbooks(decide(rise)) == ["expansion_opportunity"]
    assert (
        task_subject(decide(rise).events.iloc[0]) == "Expansion opportunity: Account a1 reached 83 (from 82)"
    )
    assert playbooks(decide(score_rows("a1", [70] * 10 + [81, 81]))) == []  # 81 < 80 + 2
    past = pd.DataFrame(
        [
            {
                "account_id": "a1",
                "playbook": "save_plan",
                "crossing_date": day(-10),
                "status": "sent",
                "idempotency_key": f"a1|save_plan|{day(-10)}|v1",
            }
        ]
    )
    muted = decide(rise, past=past)
    assert muted.events.empty
    assert list(muted.suppressed["playbook"]) == ["expansion_opportunity"]
    assert muted.suppressed.iloc[0]["status"] == "suppressed"
    assert muted.suppressed.iloc[0]["payload"]["suppressed_by"] == "save_plan"


def test_renewal_prep_when_renewal_within_60_days_and_score_below_70() -> None:
    # 66 stays Moderate inside the renewal window (its at-risk line is 65), so only renewal_prep fires.
    renewal = END + dt.timedelta(days=59)
    decision = decide(score_rows("a1", [66] * 10, renewal_date=renewal, name="Acme Corp"))
    assert playbooks(decision) == ["renewal_prep"]
    event = decision.events.iloc[0]
    assert event["payload"]["renewal_date"] == renewal.isoformat()
    assert task_subject(event) == "Renewal prep: Acme Corp renews in 59 days at score 66"
    # A day earlier only one day was inside the window: persistence 2 not met yet.
    assert playbooks(decide(score_rows("a1", [66] * 9, end=day(-1), renewal_date=renewal), day(-1))) == []
    assert playbooks(decide(score_rows("a1", [69] * 10, renewal_date=renewal))) == []  # 69 >= 70 - 2
    far = END + dt.timedelta(days=90)
    assert playbooks(decide(score_rows("a1", [66] * 10, renewal_date=far))) == []


def test_advocacy_after_90_days_healthy_then_cooldown() -> None:
    frame = score_rows("a1", [88] * 100)
    decisions = simulate(frame, start=day(-15))
    assert fired(decisions) == [("a1", "advocacy", day(-10))]  # the 90th day: days -99..-10
    assert "advocacy" not in playbooks(decide(score_rows("a1", [88] * 89)))
    # A confirmed two-day slip to Moderate restarts the count.
    dipped = [85] * 60 + [71, 71] + [85] * 38
    # (Back at 85 after dropping below 78 also re-arms and fires the expansion playbook.)
    assert fired(simulate(score_rows("a1", dipped), start=day(-41))) == [
        ("a1", "engagement_sequence", day(-38)),
        ("a1", "expansion_opportunity", day(-36)),
    ]
    # A one-day dip is not confirmed (persistence 2), so it does not break "sustained".
    blip = [85] * 60 + [71] + [85] * 39
    assert [pb for _, pb, _ in fired(simulate(score_rows("a1", blip), start=day(-41)))] == ["advocacy"]


def test_no_advocacy_ask_while_healthy_score_is_sliding() -> None:
    # Enterprise is Healthy from 70: 95 days Healthy, but 84 -> 72 in the last 30 days (an alert drop).
    sliding = [84.0] * 65 + [84 - 12 * i / 30 for i in range(1, 31)]
    assert fired(simulate(score_rows("a1", sliding, segment="enterprise"), start=day(-31))) == []
    steady = [84.0] * 95
    steady_events = fired(simulate(score_rows("a1", steady, segment="enterprise"), start=day(-10)))
    assert steady_events == [("a1", "advocacy", day(-5))]


def test_disabled_rule_never_fires() -> None:
    model = model_with({"playbooks/rules/executive_escalation/enabled": False})
    assert playbooks(decide(score_rows("a1", [40] * 10 + [20], model=model), model=model)) == []


# --------------------------------------------------------------------------- hysteresis and cooldown


@pytest.mark.parametrize(
    ("hysteresis", "expected"),
    [
        (None, 0),  # default margin 2 + persistence 2: 49 never clears 50 - 2
        ({"margin_points": 0, "persistence_days": 2}, 0),  # never two days in a row
        ({"margin_points": 0, "persistence_days": 0}, 1),  # no hysteresis: cooldown alone holds it to 1
    ],
)
def test_flapping_account_fires_at_most_once(hysteresis: dict[str, int] | None, expected: int) -> None:
    edits = {} if hysteresis is None else {"playbooks/defaults/hysteresis": hysteresis}
    model = model_with(edits)
    # enterprise maturity: At Risk below 50, so 49/51 straddles the line every day.
    frame = score_rows("a1", [60] * 30 + [49, 51] * 10, segment="enterprise", model=model)
    events = fired(simulate(frame, model))
    assert len(events) == expected <= 1
    assert {pb for _, pb, _ in events} <= {"save_plan"}


def test_cooldown_blocks_a_second_save_plan_for_30_days() -> None:
    # Enter At Risk, recover for 10 days, fall again: muted; fall again after 30 days: fires.
    path = [65] * 10 + [45] * 5 + [65] * 10 + [45] * 5 + [65] * 10 + [45] * 5
    events = [(pb, d) for _, pb, d in fired(simulate(score_rows("a1", path)))]
    assert [d for pb, d in events if pb == "save_plan"] == [day(-33), day(-3)]
    # rapid_decline (20 points) has a 14-day cooldown, so it fires for each fall.
    assert [d for pb, d in events if pb == "rapid_decline"] == [day(-33), day(-18), day(-3)]


def test_cooldown_counts_from_past_events_of_any_status_but_suppressed() -> None:
    frame = score_rows("a1", [60] * 10 + [48, 48])

    def past(status: str, ago: int) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "account_id": "a1",
                    "playbook": "save_plan",
                    "crossing_date": day(-ago),
                    "status": status,
                    "idempotency_key": "k",
                }
            ]
        )

    assert "save_plan" not in playbooks(decide(frame, past=past("failed", 29)))
    assert "save_plan" in playbooks(decide(frame, past=past("sent", 30)))
    assert "save_plan" in playbooks(decide(frame, past=past("suppressed", 5)))


# ------------------------------------------------------------------------------------------- budget


def _falling_accounts(arrs: dict[str, int | None], owner: str | None = "csm-1") -> pd.DataFrame:
    return pd.concat(
        [score_rows(acc, [60] * 10 + [48, 48], arr_cents=arr, owner_id=owner) for acc, arr in arrs.items()],
        ignore_index=True,
    )


def test_budget_ranks_by_arr_times_severity_and_defers_the_rest() -> None:
    model = model_with({"playbooks/csm_daily_task_budget": 2})
    # save_plan is 'high' (x4); the critical one (x8) on a small account outranks a bigger 'high'.
    frame = pd.concat(
        [
            _falling_accounts({"big": 90_000_000, "mid": 30_000_000, "small": 1_000_000, "none": None}),
            score_rows("crit", [30] * 11 + [20], arr_cents=20_000_000),
        ],
        ignore_index=True,
    )
    decision = decide(frame, model=model)
    got = decision.events[["account_id", "playbook", "status", "priority_score"]].values.tolist()
    assert got == [
        ["big", "save_plan", "pending", 3_600_000.0],
        ["crit", "executive_escalation", "pending", 1_600_000.0],
        ["mid", "save_plan", "deferred", 1_200_000.0],
        ["small", "save_plan", "deferred", 40_000.0],
        ["none", "save_plan", "deferred", 0.0],
    ]
    deferred = decision.deferred
    assert list(deferred["account_id"]) == ["mid", "small", "none"]
    assert all(p["deferred_since"] == END.isoformat() for p in deferred["payload"])

    # Next day nothing new crosses: two deferred are released with their original keys, one waits on.
    tomorrow = pd.concat(
        [frame, frame[pd.to_datetime(frame["as_of_date"]).dt.date == END].assign(as_of_date=day(1))]
    )
    nxt = decide(tomorrow, day(1), model=model, deferred=deferred)
    assert nxt.events[["idempotency_key", "status"]].values.tolist() == [
        [f"mid|save_plan|{END}|v1", "pending"],
        [f"small|save_plan|{END}|v1", "pending"],
        [f"none|save_plan|{END}|v1", "deferred"],
    ]
    assert nxt.pending.iloc[0]["payload"]["released_on"] == day(1).isoformat()
    # And the day after, the last one goes out: nothing lost.
    later = pd.concat(
        [
            tomorrow,
            tomorrow[pd.to_datetime(tomorrow["as_of_date"]).dt.date == day(1)].assign(as_of_date=day(2)),
        ]
    )
    last = decide(later, day(2), model=model, deferred=nxt.deferred)
    assert last.events[["account_id", "status"]].values.tolist() == [["none", "pending"]]


def test_overdue_deferred_events_escalate_and_are_never_dropped() -> None:
    model = model_with({"playbooks/csm_daily_task_budget": 1})
    frame = _falling_accounts({"big": 90_000_000, "small": 1_000_000})
    first = decide(frame, model=model)
    assert first.deferred["account_id"].tolist() == ["small"]
    # Decided at the end of END+5 (save_plan due END+3d): 72h late -> 1 level + 1 per full 48h SLA.
    later_day = day(5)
    big_new = score_rows("big2", [60] * 10 + [48, 48], end=later_day, arr_cents=500_000_000)
    carried = decide(big_new, later_day, model=model, deferred=first.deferred)
    row = carried.events.set_index("account_id").loc["small"]
    assert row["status"] == "deferred"
    assert row["severity"] == "critical" and row["payload"]["escalated_from"] == "high"
    assert row["priority_score"] == 80_000.0
    assert row["idempotency_key"] == f"small|save_plan|{END}|v1"


def test_deferred_expansion_is_muted_once_a_suppressing_playbook_opens() -> None:
    model = model_with({"playbooks/csm_daily_task_budget": 1})
    frame = pd.concat(
        [
            score_rows("big", [60] * 10 + [48, 48], arr_cents=90_000_000),
            score_rows("x", [70] * 10 + [82, 83], arr_cents=1_000_000),
        ],
        ignore_index=True,
    )
    first = decide(frame, model=model)
    assert first.deferred[["account_id", "playbook"]].values.tolist() == [["x", "expansion_opportunity"]]
    # Next day a human pins x to Critical: the escalation goes out, the waiting expansion task does not.
    nxt_day = score_rows("x", [83], end=day(1), arr_cents=1_000_000, override_band=["Critical"])
    nxt = decide(pd.concat([frame, nxt_day], ignore_index=True), day(1), model=model, deferred=first.deferred)
    assert nxt.events[["account_id", "playbook", "status"]].values.tolist() == [
        ["x", "executive_escalation", "pending"]
    ]
    muted = nxt.suppressed.iloc[0]
    assert muted["idempotency_key"] == f"x|expansion_opportunity|{END}|v1"
    assert muted["status"] == "suppressed" and muted["payload"]["suppressed_by"] == "executive_escalation"


def test_unassigned_events_are_not_budgeted() -> None:
    model = model_with({"playbooks/csm_daily_task_budget": 1})
    decision = decide(_falling_accounts({"a": 1, "b": 2, "c": 3}, owner=None), model=model)
    assert set(decision.events["status"]) == {"pending"}
    assert all(p["unassigned"] for p in decision.events["payload"])


# --------------------------------------------------------------------------- determinism and contract


def test_event_columns_keys_and_due_dates() -> None:
    decision = decide(score_rows("a1", [60] * 10 + [48, 48]))
    events = decision.events
    assert tuple(events.columns) == EVENT_COLUMNS
    e = events.iloc[0]
    assert e["idempotency_key"] == f"a1|save_plan|{END.isoformat()}|v1"
    assert e["crossing_date"] == END and e["model_version"] == "v1" and e["owner_id"] == "csm-1"
    assert e["due_at"] == pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=1, hours=48)
    assert e["status"] == "pending" and e["priority_score"] == 400_000.0


def test_reruns_and_backfills_are_identical() -> None:
    long = pd.concat(
        [
            score_rows("a1", [90] * 150 + [72, 71, 45, 44] + [44] * 5),
            score_rows("a2", [60] * 150 + [61, 40, 20, 19] + [19] * 5),
            score_rows("a3", [88] * 159),
        ],
        ignore_index=True,
    )
    first = decide(long, day(-5))
    assert not first.events.empty
    again = decide(long, day(-5))
    pd.testing.assert_frame_equal(first.events, again.events)
    # Later days already archived (backfill), past events of the same day (rerun after writing),
    # and history beyond the look-back do not change anything.
    same_day_past = first.events[["account_id", "playbook", "crossing_date", "status", "idempotency_key"]]
    dates = pd.to_datetime(long["as_of_date"]).dt.date
    trimmed = long[dates >= day(-5) - dt.timedelta(days=125)]
    for hist in (long[dates != day(-5)], trimmed[pd.to_datetime(trimmed["as_of_date"]).dt.date < day(-5)]):
        rerun = decide_playbook_events(long[dates == day(-5)], hist, same_day_past, default_model())
        pd.testing.assert_frame_equal(first.events, rerun.events)
    # Row order of the inputs does not matter either.
    shuffled = long.sample(frac=1.0, random_state=7)
    pd.testing.assert_frame_equal(first.events, decide(shuffled, day(-5)).events)


def test_shadow_rows_never_fire_and_never_feed_the_state() -> None:
    challenger = score_rows("a1", [60] * 10 + [48, 48], model_version="v2", is_shadow=True)
    assert decide(challenger).events.empty
    # Mixed day: champion rows decide, shadow rows of another version are ignored.
    champion = score_rows("a1", [65] * 12)
    mixed = pd.concat([champion, challenger], ignore_index=True)
    assert decide(mixed).events.empty
    # Shadow history claiming the account was Healthy yesterday does not make today a crossing.
    shadow_hist = score_rows("a2", [85] * 11, model_version="v2", is_shadow=True, end=day(-1))
    real = score_rows("a2", [70] * 12)
    assert decide(pd.concat([real, shadow_hist], ignore_index=True)).events.empty


def test_override_band_is_the_effective_band() -> None:
    # Computed 60 (Moderate) but a human pinned At Risk today: save plan now, no persistence wait.
    frame = score_rows("a1", [60] * 12, override_band=[None] * 11 + ["At Risk"])
    decision = decide(frame)
    assert playbooks(decision) == ["save_plan"]
    assert decision.events.iloc[0]["payload"]["override"] == {"band": "At Risk", "score": None}
    assert "manual override" in task_body(decision.events.iloc[0])
    # An override holding Moderate masks a computed fall into At Risk.
    held = score_rows("a1", [60] * 10 + [50, 50], override_band=[None] * 10 + ["Moderate"] * 2)
    assert decide(held).events.empty
    # When it expires, the archived override state is the previous state: the fall is now a crossing.
    expired = score_rows(
        "a1", [60] * 10 + [50] * 4, override_band=[None] * 10 + ["Moderate"] * 2 + [None] * 2
    )
    assert playbooks(decide(expired)) == ["save_plan"]


def test_input_validation() -> None:
    frame = score_rows("a1", [60] * 3)
    with pytest.raises(ValueError, match="as-of dates"):
        decide_playbook_events(frame, None, None, default_model())
    two = pd.concat([score_rows("a1", [60]), score_rows("a2", [60], model_version="v2")])
    with pytest.raises(ValueError, match="model versions"):
        decide_playbook_events(two, None, None, default_model())
    with pytest.raises(ValueError, match="missing required columns: band"):
        decide_playbook_events(frame.drop(columns="band"), None, None, default_model())
    empty = decide_playbook_events(frame.iloc[0:0], None, None, default_model())
    assert empty.events.empty and tuple(empty.events.columns) == EVENT_COLUMNS


def test_unscored_today_decides_nothing_and_gaps_do_not_break_persistence() -> None:
    assert decide(score_rows("a1", [60] * 10 + [50, None])).events.empty
    # A missing day between the two low days: still two consecutive observations.
    frame = score_rows("a1", [60] * 10 + [50, None, 50])
    frame = frame[frame["score"].notna()]
    assert playbooks(decide(frame)) == ["save_plan"]


# ---------------------------------------------------------------------------------- field examples


def test_field_examples() -> None:
    # Rising: 62 -> 70 over 30 days (+8), flat before. Falling: 90 -> 84 over 60 days, then
    # 84 -> 72 over 30 days: -12 over 30, -18 over 90. Simulated day by day for 91 days.
    rising = [62.0] * 61 + [62 + 8 * i / 30 for i in range(1, 31)]
    falling = [90 - 6 * i / 60 for i in range(61)] + [84 - 12 * i / 30 for i in range(1, 31)]
    assert len(rising) == len(falling) == 91
    frame = pd.concat(
        [
            score_rows(f"{segment}-{name}", path, segment=segment)
            for segment in ("mid_market", "enterprise")
            for name, path in (("rising", rising), ("falling", falling))
        ],
        ignore_index=True,
    )
    events = fired(simulate(frame))
    # mid_market (Healthy from 75): the falling account slips Healthy -> Moderate, confirmed when two
    # days round below 73, i.e. exactly on the last day; its drop is 12 within 30 days, under the 15
    # of rapid_decline. enterprise (Healthy from 70): 72 is still Healthy and 70 is only "reached"
    # (no rule for that); the falling one is also not asked for advocacy while it slides.
    # No rule fires for the rising account in either segment.
    assert events == [("mid_market-falling", "engagement_sequence", END)]


# ------------------------------------------------------------------------------------------- text


def test_task_text_and_digest() -> None:
    model = model_with({"playbooks/csm_daily_task_budget": 2})
    frame = pd.concat(
        [
            # SMB: Moderate from 60 to 79, so 78 -> 48 enters At Risk (and is a rapid decline).
            score_rows("acme", [78] * 10 + [50, 48], name="Acme Corp", segment="smb", arr_cents=50_000_000),
            score_rows("beta", [80] * 10 + [70, 70], name="Beta GmbH"),
            score_rows("other", [80] * 10 + [70, 70], owner_id="csm-2"),
        ],
        ignore_index=True,
    )
    decision = decide(frame, model=model)
    acme = decision.events.set_index("playbook").loc["save_plan"]
    assert task_subject(acme) == "Save plan: Acme Corp entered At Risk (78 -> 48)"
    body = task_body(acme)
    assert "Score: 78 -> 48; band: Moderate -> At Risk" in body
    assert "ARR: $500,000" in body and "1. CSM check-in" in body and "relationship: -9.0" in body
    assert "Due" not in body and "due by 2025-04-03 00:00 UTC (48h SLA)" in body
    subject, digest = daily_digest(decision.events, "csm-1")
    assert subject == f"Customer health {END}: 2 new tasks (2 urgent), 1 deferred"
    lines = digest.splitlines()
    assert "  - [HIGH] Save plan: Acme Corp entered At Risk (78 -> 48); due 2025-04-03 00:00 UTC" in lines
    assert "  - [MEDIUM] Engagement sequence: Beta GmbH slipped from Healthy to Moderate (80 -> 70)" in lines
    assert "Account other" not in digest
    assert daily_digest(decision.events, "csm-9", as_of=END)[0] == f"Customer health {END}: no new tasks"
