"""The archive reads of the score and act steps: exact against the whole window, and bounded by the windows.

- Exact: on an archive with gaps, unscored days, stage runs that begin inside, before and long before the
  ``momentum.history_days`` window, accounts without history and accounts last scored months ago,
  ``score_accounts`` on ``load_needed_history`` equals ``score_accounts`` on the full ``load_history``.
- Bounded: PostgreSQL's own row counts (EXPLAIN ANALYZE) for those reads, for act's replay window and
  for the events a cooldown reads stay flat from 200 to 420 days of archive, while the full-window read
  they replace grows with it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.pipeline import act, score_history
from healthscore.pipeline.score import load_history
from healthscore.scoring import score_accounts
from healthscore.warehouse import make_engine, upgrade
from healthscore.warehouse.models import HealthScore, PlaybookEvent
from healthscore.warehouse.registry import register_model_version
from tests.integration.test_point_in_time import rows_read
from tests.unit.test_scoring import DIMS, default_model, random_signals

MODEL = default_model()
T = date(2026, 9, 30)


def archive_rows(accounts: list[str], today: date, days: int, seed: int) -> list[dict[str, Any]]:
    """Score rows of ``days`` days before ``today``: gaps, unscored days, stage runs of every length."""
    rng = random.Random(seed)
    stages = [s.name for s in MODEL.lifecycle.stages] + [None]
    rows = []
    for i, account in enumerate(accounts):
        kind = i % 6
        if kind == 0:
            continue  # no history
        change_every = {1: 7, 2: 10_000, 3: 20, 4: 150, 5: 45}[kind]  # 2: one run longer than the window
        gaps = 0.6 if kind == 5 else 0.15  # 5: trends often found only at the tolerance's far end
        stage = rng.choice(stages)
        for back in range(days, 0, -1):
            if kind == 3 and not 140 <= back < 200:
                continue  # last scored months ago
            if rng.random() < gaps:
                continue  # a day without a row
            if rng.random() < 1 / change_every:
                stage = rng.choice(stages)
            scored = rng.random() > 0.05
            value = round(rng.uniform(20, 95), 1)
            rows.append({
                "account_id": account, "as_of_date": today - timedelta(days=back), "model_version": MODEL.version,
                "score": value if scored else None, "unscored_reason": None if scored else "too little data",
                "band": "Moderate" if scored else None, "lifecycle_stage": stage,
                "dimension_scores": {d: round(rng.uniform(0, 100), 1) for d in DIMS if rng.random() > 0.1},
                "is_shadow": False,
            })
    return rows


def fill(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        for at in range(0, len(rows), 5000):
            conn.execute(sa.insert(HealthScore), rows[at : at + 5000])
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[sa.Engine]:
    upgrade(warehouse_url)
    engine = make_engine(warehouse_url)
    register_model_version(engine, MODEL, role="champion")
    yield engine
    engine.dispose()


def test_needed_rows_score_exactly_as_the_whole_window(engine: sa.Engine) -> None:
    signals = random_signals(MODEL, 48, seed=3)
    accounts = list(signals["account_id"])
    fill(engine, archive_rows(accounts, T, 460, seed=5))
    for day in (T, T - timedelta(days=23)):  # reads that start inside the archive, not at its end
        today = signals.assign(as_of_date=day)
        full = load_history(engine, MODEL.version, day, MODEL.momentum.history_days)
        needed = score_history.load_needed_history(engine, MODEL, MODEL.version, day, accounts)
        assert len(needed) < len(full) / 3
        expected = score_accounts(today, MODEL, history=full, model_version=MODEL.version)
        got = score_accounts(today, MODEL, history=needed, model_version=MODEL.version)
        pd.testing.assert_frame_equal(got, expected)
        # The archive exercises what the reads must get right.
        assert expected["trend_365d"].notna().any() and expected["projection_90d"].notna().any()
        assert expected["attribution"].notna().any() and expected["days_in_stage"].nunique() > 10


@pytest.mark.postgres
def test_reads_stay_flat_from_200_to_420_days_of_archive(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    register_model_version(engine, MODEL, role="champion")
    accounts = [f"acc-{i}" for i in range(40)]
    lookback = MODEL.playbooks.lookback_days
    first = T - timedelta(days=420)
    events = [{"account_id": a, "playbook": "save_plan", "crossing_date": first + timedelta(days=k),
               "model_version": MODEL.version, "status": "sent", "idempotency_key": f"{a}|{k}"}
              for a in accounts for k in range(0, 420, 5)]
    rows = [{"account_id": a, "as_of_date": first + timedelta(days=k), "model_version": MODEL.version,
             "score": 60.0, "band": "Moderate", "lifecycle_stage": "maturity" if k % 200 < 100 else "adoption",
             "dimension_scores": dict.fromkeys(DIMS, 60.0), "is_shadow": False}
            for a in accounts for k in range(420)]
    measured: dict[int, dict[str, int]] = {}
    try:
        fill(engine, rows)
        with engine.begin() as conn:
            conn.execute(sa.insert(PlaybookEvent), events)
            conn.exec_driver_sql("ANALYZE")
            # Tables this small are cheapest to scan whole: without sequential scans the plan shows what
            # the indexes bound each read to. The full-window read has to read every row in it either way.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            for history in (200, 420):
                day = first + timedelta(days=history)
                starts = [(a, day - timedelta(days=MODEL.momentum.history_days)) for a in accounts]
                full = sa.select(HealthScore.__table__).where(
                    HealthScore.model_version == MODEL.version, HealthScore.as_of_date < day,
                    HealthScore.as_of_date >= day - timedelta(days=MODEL.momentum.history_days))
                measured[history] = {
                    "dated": rows_read(conn, score_history.dated_query(MODEL, MODEL.version, day)),
                    "stages": rows_read(conn, score_history.newest_per_stage_query(MODEL, MODEL.version, day,
                                                                                  accounts)),
                    "first": rows_read(conn, score_history.first_after_query(MODEL, MODEL.version, day, starts)),
                    "replay": rows_read(conn, act.scores_query(MODEL.version, day - timedelta(days=lookback),
                                                               day - timedelta(days=1), act.HISTORY_COLUMNS)),
                    "events": rows_read(conn, sa.select(PlaybookEvent.account_id).where(
                        *act.past_events_where(MODEL, day))),
                    "full": rows_read(conn, full),
                }
    finally:
        engine.dispose()
    few, many = measured[200], measured[420]
    n = len(accounts)
    tol = MODEL.momentum.lookup_tolerance_days
    # Dated rows: the projection's 90 days, the 90-day trend's tolerance, and (at 420 only) the 365-day trend's.
    assert few["dated"] == n * (90 + tol) and many["dated"] == n * (90 + tol + tol + 1), measured
    for read in ("stages", "first", "replay", "events"):
        assert many[read] <= few[read] * 1.05 + 5, (read, measured)
    assert many["stages"] + many["first"] <= n * (len(MODEL.lifecycle.stages) + 2), measured
    assert many["replay"] == n * lookback, measured
    # Control: the full-window read grows with the archive, so the count is able to tell.
    assert few["full"] == n * 200 and many["full"] == n * MODEL.momentum.history_days, measured
    assert np.isclose(many["full"] / few["full"], MODEL.momentum.history_days / 200)
