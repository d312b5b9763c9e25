"""Sixty days of history: what the daily runs recorded equals what a backfill rebuilds afterwards.

The daily side runs the DAG's task entry points (``healthscore.pipeline.tasks``) in the DAG's order for each
of 60 consecutive dates, in one process. Then the history is rebuilt after the fact: a copy of the
warehouse keeps the landed, validated data of all 60 batches but loses every derived table (signals, scores,
playbook events, CRM publications, notifications), and signals -> score -> act run again for the 60 dates
against a fresh sandbox of the same seed. Every read of a batch must be point-in-time (later batches have
landed by then), and trends, crossings, hysteresis, cooldowns and budgets must come out the same when the
history they read is rebuilt day by day. (A scheduler-driven backfill in Airflow is tested, over fewer
days, in test_backfill.py: 60 Airflow runs do not fit this suite's time budget.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from healthscore.local_airflow import pipeline_env
from healthscore.pipeline import tasks
from healthscore.sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from healthscore.warehouse.models import (
    AccountSignals,
    CrmPublication,
    HealthScore,
    NotificationOutbox,
    PlaybookEvent,
)
from tests.integration.airflow_harness import crm_task_properties, table_rows

pytestmark = [pytest.mark.slow, pytest.mark.long]  # about 9 minutes: `make test-long`
FIRST = date(2026, 9, 2)
DAYS = 60
SOURCES = (("hubspot", "crm_hubspot"), ("zendesk", "support_zendesk"), ("stripe", "billing_stripe"),
           ("mixpanel", "product_mixpanel"))
DERIVED = (AccountSignals, HealthScore, PlaybookEvent, CrmPublication, NotificationOutbox)
COMPARED = (AccountSignals, HealthScore, PlaybookEvent, CrmPublication)
VOLATILE = {"id", "created_at", "sent_at", "computed_at", "built_at", "published_at"}  # ids, wall-clock stamps


def contexts() -> Iterator[dict]:
    for i in range(DAYS):
        end = datetime.combine(FIRST + timedelta(days=i), datetime.min.time(), UTC)
        yield {"data_interval_end": end, "logical_date": end, "run_id": f"scheduled__{end.isoformat()}"}


@contextmanager
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=5, accounts=30, rate_limit_scale=1000))) as server:
        yield server


def score_and_act(context: dict) -> None:
    tasks.run_signals(context)
    tasks.run_score(context)
    tasks.run_act("crm_hubspot", context)


@pytest.mark.timeout(1200)
def test_sixty_daily_runs_and_a_rebuild_give_the_same_history(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    daily_url = f"sqlite:///{tmp_path / 'daily.db'}"
    with sandbox() as server:
        # A short index keeps 60 days of Data Docs builds cheap; the pages themselves are all written.
        for key, value in pipeline_env(server.url, daily_url, tmp_path / "daily", HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="3",
                                       HEALTHSCORE_DATA_DOCS_INDEX_LIMIT="20").items():
            monkeypatch.setenv(key, value)
        for context in contexts():  # the DAG's order, one date after another
            tasks.run_prepare(context)
            for source, conn_id in SOURCES:
                tasks.run_extract(source, conn_id, context)
            for source, _ in SOURCES:
                tasks.run_validate(source, context)
            score_and_act(context)
        daily_tasks = crm_task_properties(server.url)

    shutil.copy(tmp_path / "daily.db", tmp_path / "rebuilt.db")
    rebuilt_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    engine = sa.create_engine(rebuilt_url)
    with engine.begin() as conn:
        for model in DERIVED:
            conn.execute(sa.delete(model))
    engine.dispose()
    with sandbox() as server:
        for key, value in pipeline_env(server.url, rebuilt_url, tmp_path / "rebuilt").items():
            monkeypatch.setenv(key, value)
        for context in contexts():
            score_and_act(context)
        rebuilt_tasks = crm_task_properties(server.url)

    daily, rebuilt = (table_rows(url, COMPARED, VOLATILE) for url in (daily_url, rebuilt_url))
    scores = daily["health_scores"]
    assert len({r["as_of_date"] for r in scores}) == DAYS
    assert sum(r["score"] is not None for r in scores) > 0.8 * len(scores)
    assert any(r["trend_30d"] is not None for r in scores), "60 days must give 30-day trends"
    assert daily["playbook_events"], "60 days of a real portfolio cross thresholds"
    for table in daily:
        assert rebuilt[table] == daily[table], table
    assert rebuilt_tasks == daily_tasks and len(daily_tasks) == sum(
        e["status"] == "sent" for e in daily["playbook_events"])
