"""The plays section of the monthly report over a real (SQLite) warehouse: table, HTML, CSV and the evidence
the next day's task bodies read (healthscore.pipeline.accuracy, healthscore.pipeline.act.best_actions).

Reuses the accuracy test's synthetic archive (tests/integration/test_accuracy_month.py) and adds delivered
save_plan events, 90 days before each renewal, with their tasks read back as completed or left open.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.evaluation import effectiveness
from healthscore.pipeline.accuracy import AccuracyPaths, run_month
from healthscore.pipeline.act import best_actions
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.models import AccuracyReport, PlaybookEvent
from tests.integration.test_accuracy_month import MONTH, seed_warehouse


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("plays")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    seeded = seed_warehouse(url)
    scores = seeded["scores"]
    engine = make_engine(url)
    events = []
    for n, (account, renewal, _) in enumerate(seeded["truth"]):
        crossing = renewal - timedelta(days=90)
        done = n % 3 != 0
        events.append({"idempotency_key": f"{account}|save_plan|{crossing}|v1", "account_id": account,
                       "playbook": "save_plan", "crossing_date": crossing, "model_version": seeded["model"].version,
                       "status": "sent", "crm_task_id": str(90_000_000_001 + n), "attempts": 1,
                       "due_at": datetime(crossing.year, crossing.month, crossing.day, tzinfo=UTC) + timedelta(days=3),
                       "task_status": "COMPLETED" if done else "NOT_STARTED",
                       "task_completed_at": (datetime(crossing.year, crossing.month, crossing.day, tzinfo=UTC)
                                             + timedelta(days=2 + n % 5)) if done else None,
                       "payload": {"band": None, "segment": None}})
    with engine.begin() as conn:
        conn.execute(sa.insert(PlaybookEvent), events)
    paths = AccuracyPaths.under(tmp / "data")
    summary = run_month(engine, MONTH, paths)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(AccuracyReport.__table__)).mappings()]
        evidence = best_actions(conn, seeded["model"].version, MONTH + timedelta(days=40))
        before = best_actions(conn, seeded["model"].version, MONTH)
    engine.dispose()
    return {"summary": summary, "rows": rows, "evidence": evidence, "before": before, "scores": scores,
            "events": pd.DataFrame(events), **seeded}


def test_the_plays_table_report_and_csv_agree(stored: dict) -> None:
    head = next(r for r in stored["rows"] if r["horizon_days"] == 60)
    metrics = json.loads(head["metrics"]) if isinstance(head["metrics"], str) else head["metrics"]
    plays = metrics["playbooks"]
    (row,) = plays["playbooks"]
    n = len(stored["truth"])
    assert row["playbook"] == "save_plan" and row["fired"] == n
    assert row["completed"] == sum(1 for i in range(n) if i % 3 != 0)
    assert row["completed_late"] == sum(1 for i in range(n) if i % 3 != 0 and 2 + i % 5 > 3)
    rec = row["recovery"]["all"]
    assert rec["n"] > 20 and not rec["too_small"]  # fired in At Risk or Critical, window elapsed by month end
    page = Path(head["report_path"]).read_text()
    assert "Do the playbooks work?" in page and "Next best action" in page
    assert f"{100 * rec['rate']:.1f}%" in page
    csv = pd.read_csv(Path(head["report_path"]).parent / "playbook_effectiveness.csv")
    assert csv.loc[0, "fired"] == n and csv.loc[0, "recovery_n"] == rec["n"]
    # the stored figures are the pure computation's on the same frames
    scores = stored["scores"].assign(band=lambda f: f["score"].map(lambda s: "Healthy" if s >= 75 else "Moderate"
                                                                  if s >= 50 else "At Risk" if s >= 25 else "Critical"),
                                     trend_30d=None)
    again = effectiveness.playbook_effectiveness(
        stored["events"], scores, pd.DataFrame(columns=["account_id", "renewal_date", "outcome"]),
        end=date(2026, 6, 30), at_risk_bands=["At Risk", "Critical"],
        positive_outcomes=["churned", "contracted"], min_group_size=20)
    assert again["playbooks"][0]["recovery"] == row["recovery"]


def test_next_day_tasks_read_the_newest_finished_report(stored: dict) -> None:
    assert stored["before"] == []  # no report had ended before the month began
    head = next(r for r in stored["rows"] if r["horizon_days"] == 60)
    metrics = json.loads(head["metrics"]) if isinstance(head["metrics"], str) else head["metrics"]
    assert stored["evidence"] == metrics["playbooks"]["next_best_action"]
    # ~160 renewals over three segments leave fewer than 20 completed plays per (band, segment): nothing claimed
    assert stored["evidence"] == []
