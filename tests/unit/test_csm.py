"""Simulated CSMs (healthscore_sandbox.csm): deterministic task fates, one play per key, an exact effect."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from healthscore_sandbox.csm import DAY, CsmConfig, PlayEffects, play_effects, task_as_of, task_fate, task_key
from healthscore_sandbox.world import WorldSpec, build_world

CONFIG = CsmConfig()
T0 = 1_780_000_000


def _task(task_id: str, key: str, company: str, created: int, due: int) -> dict:
    stamp = pd.Timestamp(created, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"id": task_id, "createdAt": stamp, "updatedAt": stamp,
            "properties": {"hs_task_body": f"Save the account.\nhealthscore-key: {key} hsk0123",
                           "hs_createdate": stamp, "hs_task_status": "NOT_STARTED",
                           "hs_timestamp": pd.Timestamp(due, unit="s", tz="UTC").isoformat()},
            "associations": {"companies": {"results": [{"id": company, "type": "task_to_company"}]}}}


def test_fates_are_deterministic_and_mixed():
    keys = [f"{1000 + i}|save_plan|2026-03-01|v1" for i in range(2000)]
    fates = [task_fate(7, k, T0, T0 + 2 * DAY, CONFIG) for k in keys]
    assert fates == [task_fate(7, k, T0, T0 + 2 * DAY, CONFIG) for k in keys]  # no hidden state
    kinds = Counter("open" if f.completed_ts < 0 else "late" if f.late else "on_time" for f in fates)
    assert abs(kinds["open"] / 2000 - (1 - CONFIG.p_completed)) < 0.04
    assert abs(kinds["late"] / 2000 - CONFIG.p_completed * CONFIG.p_late) < 0.04
    for f in fates:
        assert f.playbook == "save_plan"
        if f.completed_ts >= 0:
            assert f.completed_ts > T0
            assert (f.completed_ts > T0 + 2 * DAY) == f.late
    other_seed = [task_fate(8, k, T0, T0 + 2 * DAY, CONFIG).completed_ts for k in keys]
    assert other_seed != [f.completed_ts for f in fates]


def test_status_is_served_as_of_now_never_the_future():
    key = next(k for k in (f"{i}|save_plan|2026-03-01|v1" for i in range(100))
               if task_fate(1, k, T0, T0 + 2 * DAY, CONFIG).completed_ts > 0)
    task = _task("9", key, "1000000001", T0, T0 + 2 * DAY)
    fate = task_fate(1, task_key(task), T0, T0 + 2 * DAY, CONFIG)
    before = task_as_of(task, fate, fate.completed_ts - 1)
    after = task_as_of(task, fate, fate.completed_ts)
    assert before["properties"]["hs_task_status"] == "NOT_STARTED"
    assert "hs_task_completion_date" not in before["properties"]
    assert after["properties"]["hs_task_status"] == "COMPLETED"
    assert pd.Timestamp(after["properties"]["hs_task_completion_date"]).timestamp() == fate.completed_ts


@pytest.fixture(scope="module")
def world():
    return build_world(WorldSpec(seed=5, n_accounts=60, days=120), use_cache=False)


def _completed_key(world, playbook: str) -> str:
    return next(k for k in (f"a{i}|{playbook}|2026-01-01|v1" for i in range(200))
                if task_fate(world.spec.seed, k, world.start_ts + 20 * DAY, world.start_ts + 22 * DAY,
                             CONFIG).completed_ts > 0)


def test_completed_play_raises_usage_from_the_day_after_and_duplicates_count_once(world):
    company = str(world.accounts["hubspot_company_id"].iat[3])
    index = {str(c): i for i, c in enumerate(world.accounts["hubspot_company_id"])}
    created = world.start_ts + 20 * DAY
    key = _completed_key(world, "executive_escalation")
    task = _task("1", key, company, created, created + 2 * DAY)
    effects, fates = play_effects([task], seed=world.spec.seed, start_ts=world.start_ts, company_index=index,
                                  config=CONFIG)
    twice, fates2 = play_effects([task, {**task, "id": "2"}], seed=world.spec.seed, start_ts=world.start_ts,
                                 company_index=index, config=CONFIG)
    assert twice.signature(119) == effects.signature(119)  # the same play created twice is one play
    assert fates2["2"] == fates["1"]
    start = int(effects.start_day[0])
    assert start == (fates["1"].completed_ts - world.start_ts) // DAY + 1
    assert effects.amount.tolist() == [CONFIG.effect("executive_escalation")]

    def day(d: int) -> dt.date:
        return world.spec.start + dt.timedelta(days=d)

    # before the effect starts, and for a world with no completed play, nothing changes, bit for bit
    pd.testing.assert_frame_equal(world.product_events(day(start - 1), effects), world.product_events(day(start - 1)))
    pd.testing.assert_frame_equal(world.product_events(day(start + 5), PlayEffects.empty()),
                                  world.product_events(day(start + 5)))
    # after it, the account's raised latent shows in its usage (the day's draws are shared, so other
    # accounts' events may move too: deterministically, as a function of the plays)
    later = [day(d) for d in range(start + 14, min(start + 40, world.spec.days))]
    mine = 0
    for d in later:
        base, raised = world.product_events(d), world.product_events(d, effects)
        assert world.product_events(d, twice).equals(raised)
        mine += int((raised["company_id"] == company).sum()) - int((base["company_id"] == company).sum())
    assert mine > 0


def test_latent_rows_ramp_in_and_clip(world):
    effects = PlayEffects(np.array([2]), np.array([10]), np.array([14.0]), ramp_days=7)
    days = np.arange(8, 20)
    rows, raised = effects.latent_rows(world.latent, 19, days)
    assert rows.tolist() == [2]
    added = raised[0] - world.latent[2, days].astype(float)
    expected = 14.0 * np.clip((days - 10 + 1) / 7, 0, 1)
    assert np.allclose(added, np.minimum(expected, 100 - world.latent[2, days].astype(float)))
    assert effects.upto(9).signature(9) == ()


def test_config_from_json_keeps_defaults_and_refuses_unknown_keys():
    config = CsmConfig.from_json('{"p_completed": 0.5, "true_effects": {"save_plan": 10}}')
    assert config.p_completed == 0.5 and config.p_late == CsmConfig().p_late
    assert config.effect("save_plan") == 10.0 and config.effect("rapid_decline") == 0.0
    with pytest.raises(ValueError, match="unknown"):
        CsmConfig.from_json('{"p_complete": 0.5}')
    with pytest.raises(ValueError, match="within"):
        CsmConfig.from_json('{"p_completed": 1.5}')
