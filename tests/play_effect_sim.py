"""A simulated portfolio in which one playbook fires, for tests/unit/test_play_effect.py and bench/bench_play_effect.py.

In process, no warehouse, no Airflow: the sandbox world generates each day's product events; a usage-only
health estimate stands in for the score (it inverts the sandbox's usage model: 14-day active share ->
engagement -> latent points, so it is on the latent's scale); the play fires on ``fire_day`` for every account
the estimate puts in At Risk or Critical; its HubSpot tasks are created the next morning and the simulated CSMs
(``healthscore_sandbox.csm``) complete some and leave others open. The world with those plays then generates
the days after, and ``healthscore.evaluation.effectiveness`` measures the play as the monthly report does.

Because the CSMs complete tasks by a hash of the task's key (independent of the account), completed against
left open is a randomised comparison: the measured difference estimates the configured true effect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from healthscore.evaluation import effectiveness
from healthscore_sandbox.csm import DAY, CsmConfig, play_effects, task_as_of
from healthscore_sandbox.world import WorldSpec, build_world
from healthscore_sandbox.world_events import SEG_ACTIVE_SHARE, WEEKDAY_USAGE

WINDOW = 14
NOISE_MEAN = float(np.exp(0.3**2 / 2))  # the sandbox's lognormal activity noise has this mean


@dataclass
class Simulation:
    playbook: str
    true_effect: float
    fired: int
    completed: int
    report: dict
    level_gap: float  # mean estimate, completed minus left open, 45-60 days after firing (latent points)
    level_gap_ci: tuple[float, float]


def _band(score: np.ndarray) -> np.ndarray:
    return np.where(score >= 75, "Healthy", np.where(score >= 50, "Moderate",
                                                     np.where(score >= 25, "At Risk", "Critical")))


def _daily_active(world, day: dt.date, plays) -> np.ndarray:
    events = world.product_events(day, plays)
    logins = events[events["event"] == "Login"]
    per = logins.groupby("company_id")["distinct_id"].nunique()
    index = pd.Index(world.accounts["hubspot_company_id"].astype(str))
    out = np.zeros(len(index))
    where = index.get_indexer(per.index.astype(str))
    out[where[where >= 0]] = per.to_numpy()[where >= 0]
    return out


def _estimate(active: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Latent-scale health from the window's active users: invert p = share * (0.2 + 1.6 e) * weekday."""
    engage = (active.sum(axis=0) / np.maximum(expected.sum(axis=0), 1e-9) / NOISE_MEAN - 0.2) / 1.6
    engage = np.clip(engage, 0.01, 0.99)
    return np.clip(50 + 10 * np.log(engage / (1 - engage)), 0, 100)


def simulate(accounts: int = 400, seed: int = 11, fire_day: int = 60, follow_days: int = 75,
             playbook: str = "executive_escalation", config: CsmConfig | None = None,
             min_group_size: int = 20) -> Simulation:
    config = config or CsmConfig()
    days = fire_day + follow_days + 2
    world = build_world(WorldSpec(seed=seed, n_accounts=accounts, days=days, onboarding_share=0.0),
                        use_cache=False)
    seg = world._internal["seg"]
    seats = world.accounts["seats"].to_numpy().astype(float)
    live = world._internal["active_end"] >= world.start_ts + days * DAY  # no churn within the simulation
    companies = world.accounts["hubspot_company_id"].astype(str).to_numpy()
    index = {c: i for i, c in enumerate(companies)}

    def day_of(d: int) -> dt.date:
        return world.spec.start + dt.timedelta(days=d)

    def expected(d: int) -> np.ndarray:
        return seats * SEG_ACTIVE_SHARE[seg] * WEEKDAY_USAGE[day_of(d).weekday()]

    # before the play: the usage estimate on fire_day decides who is At Risk or Critical
    first = fire_day - WINDOW + 1
    active = np.stack([_daily_active(world, day_of(d), None) for d in range(first, fire_day + 1)])
    exp = np.stack([expected(d) for d in range(first, fire_day + 1)])
    score0 = _estimate(active, exp)
    fire = np.flatnonzero((score0 < 50) & live)
    created = world.start_ts + (fire_day + 1) * DAY + 6 * 3600
    stamp = pd.Timestamp(created, unit="s", tz="UTC")
    crossing = day_of(fire_day)
    tasks = []
    for n, acc in enumerate(fire.tolist()):
        key = f"{companies[acc]}|{playbook}|{crossing.isoformat()}|sim"
        tasks.append({"id": str(90_000_000_001 + n), "createdAt": stamp.isoformat(), "updatedAt": stamp.isoformat(),
                      "properties": {"hs_task_body": f"Play.\nhealthscore-key: {key} hsk0",
                                     "hs_createdate": stamp.isoformat(), "hs_task_status": "NOT_STARTED",
                                     "hs_timestamp": (stamp + pd.Timedelta(days=2)).isoformat()},
                      "associations": {"companies": {"results": [{"id": companies[acc]}]}}})
    plays, fates = play_effects(tasks, seed=world.spec.seed, start_ts=world.start_ts, company_index=index,
                                config=config)

    # after it: the world with the plays, the estimate every day from the crossing to the end
    rows = []
    actives = list(active)
    exps = list(exp)
    rows.append(score0)
    for d in range(fire_day + 1, fire_day + follow_days + 1):
        actives = [*actives[1:], _daily_active(world, day_of(d), plays)]
        exps = [*exps[1:], expected(d)]
        rows.append(_estimate(np.stack(actives), np.stack(exps)))
    est = np.stack(rows)  # (day, account)
    end = day_of(fire_day + follow_days)
    end_ts = world.start_ts + (fire_day + follow_days + 1) * DAY - 1
    scores = pd.DataFrame({
        "account_id": np.tile(companies, len(rows)),
        "as_of_date": np.repeat([day_of(fire_day + i) for i in range(len(rows))], accounts),
        "score": est.ravel(), "band": _band(est.ravel()),
        "segment": np.tile(world.accounts["segment"].astype(str).to_numpy(), len(rows)), "trend_30d": 0.0})
    events = []
    for task in tasks:
        now = task_as_of(task, fates[task["id"]], end_ts)["properties"]
        events.append({"account_id": task["associations"]["companies"]["results"][0]["id"], "playbook": playbook,
                       "crossing_date": crossing, "task_status": now["hs_task_status"],
                       "task_completed_at": now.get("hs_task_completion_date"),
                       "due_at": task["properties"]["hs_timestamp"]})
    events = pd.DataFrame(events)
    report = effectiveness.playbook_effectiveness(
        events, scores, pd.DataFrame(columns=["account_id", "renewal_date", "outcome"]), end=end,
        at_risk_bands=["At Risk", "Critical"], positive_outcomes=["churned", "contracted"],
        min_group_size=min_group_size)
    done = np.array([fates[t["id"]].completed_ts >= 0 for t in tasks])
    late = est[45:61][:, fire].mean(axis=0)
    gap = float(late[done].mean() - late[~done].mean())
    se = float(np.sqrt(late[done].var(ddof=1) / done.sum() + late[~done].var(ddof=1) / (~done).sum()))
    return Simulation(playbook, config.effect(playbook), len(fire), int(done.sum()), report, gap,
                      (gap - 1.96 * se, gap + 1.96 * se))
