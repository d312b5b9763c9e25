"""Sixty days of history three ways: daily runs, an Airflow backfill, and a rebuild from landed data.

- **Daily.** ``healthscore history bootstrap``'s entry point (``healthscore.pipeline.history.bootstrap``) runs the
  DAG's task functions in the DAG's order for each of 60 consecutive dates, in one process, with the per-day Data
  Docs builds deferred to the end, as the bootstrap does: what 60 single-day runs record.
- **Backfill.** ``airflow backfill create`` over the same 60 dates, from an empty warehouse against a fresh
  sandbox of the same seed, run by a real scheduler, dag-processor and api-server (LocalExecutor, Airflow's
  default of 10 concurrent backfill runs, a PostgreSQL metadata DB). It must land the same bytes and record the same history.
- **Rebuild.** A copy of the daily warehouse keeps the landed, validated data of all 60 batches but loses
  every derived table (signals, scores, playbook events, CRM publications, notifications); signals -> score
  -> act run again for the 60 dates. Every read of a batch must be point-in-time (later batches have landed
  by then), and trends, crossings, hysteresis, cooldowns and budgets must come out the same when the
  history they read is rebuilt day by day.

All three sandboxes serve on one port: Zendesk payloads carry the URL they were served from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from healthscore.demo import pipeline_env
from healthscore.local_airflow import LocalAirflow
from healthscore.pipeline import tasks
from healthscore.pipeline.history import BootstrapPlan, bootstrap
from healthscore.sources import registry
from healthscore.warehouse.models import (
    AccountSignals,
    BillingSubscriptionState,
    CrmPublication,
    HealthScore,
    NotificationOutbox,
    PlaybookEvent,
    RenewalOutcome,
)
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port
from tests.integration.airflow_harness import crm_task_properties, landing_snapshot, table_rows
from tests.integration.airflow_services import AirflowServices

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.airflow, pytest.mark.postgres]  # `make test-long`
DAG_ID = "customer_health_daily"
FIRST = date(2026, 9, 2)
DAYS = 60
DERIVED = (AccountSignals, HealthScore, PlaybookEvent, CrmPublication, NotificationOutbox, RenewalOutcome,
           BillingSubscriptionState)
COMPARED = (AccountSignals, HealthScore, PlaybookEvent, CrmPublication, RenewalOutcome, BillingSubscriptionState)
VOLATILE = {"id", "created_at", "sent_at", "computed_at", "built_at", "published_at", "run_id"}  # wall clock, ids
# A short index keeps 60 days of Data Docs builds cheap; the pages themselves are all written.
RUN_SETTINGS = {"HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": "3", "HEALTHSCORE_DATA_DOCS_INDEX_LIMIT": "20"}


def contexts() -> Iterator[dict]:
    for i in range(DAYS):
        end = datetime.combine(FIRST + timedelta(days=i), datetime.min.time(), UTC)
        yield {"data_interval_end": end, "logical_date": end, "run_id": f"scheduled__{end.isoformat()}"}


@contextmanager
def sandbox(port: int) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=5, accounts=30, rate_limit_scale=1000)), port=port) as server:
        yield server


def score_and_act(context: dict) -> None:
    tasks.run_signals(context)
    tasks.run_score(context)
    tasks.run_outcomes(context)
    tasks.run_act(registry.source("hubspot").conn_id, context)


@pytest.mark.timeout(3600)
def test_sixty_days_daily_backfilled_and_rebuilt_give_the_same_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    port = free_port()
    daily_url = f"sqlite:///{tmp_path / 'daily.db'}"
    with sandbox(port) as server:
        for key, value in pipeline_env(server.url, daily_url, tmp_path / "daily", **RUN_SETTINGS).items():
            monkeypatch.setenv(key, value)
        # the DAG's order, one date after another (batch dates end one day before the interval ends)
        plan = BootstrapPlan(FIRST - timedelta(days=1), FIRST + timedelta(days=DAYS - 2))
        result = bootstrap(plan, progress=False)
        assert result.days_run == DAYS
        daily_tasks = crm_task_properties(server.url)

    backfill_url = f"sqlite:///{tmp_path / 'backfill.db'}"
    home = LocalAirflow(tmp_path / "airflow", metadata_url=postgres_url)  # SQLite locks out 60 backfill runs
    home.migrate()
    last = FIRST + timedelta(days=DAYS - 1)
    with sandbox(port) as server:
        env = pipeline_env(server.url, backfill_url, tmp_path / "backfill", **RUN_SETTINGS)
        with AirflowServices(home, env, tmp_path / "logs") as services:
            services.backfill(DAG_ID, FIRST.isoformat(), last.isoformat(), "--reprocess-behavior", "failed")
            runs = services.wait_for_runs(DAG_ID, DAYS, timeout=3000)
            spans = services.run_spans(DAG_ID)
        backfill_tasks = crm_task_properties(server.url)
    assert [(r[1], r[2]) for r in runs] == [("backfill", "success")] * DAYS, runs
    for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False):
        assert later_start >= earlier_end, spans

    shutil.copy(tmp_path / "daily.db", tmp_path / "rebuilt.db")
    rebuilt_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    engine = sa.create_engine(rebuilt_url)
    with engine.begin() as conn:
        for model in DERIVED:
            conn.execute(sa.delete(model))
    engine.dispose()
    with sandbox(port) as server:
        for key, value in pipeline_env(server.url, rebuilt_url, tmp_path / "rebuilt").items():
            monkeypatch.setenv(key, value)
        for context in contexts():
            score_and_act(context)
        rebuilt_tasks = crm_task_properties(server.url)

    daily, backfilled, rebuilt = (table_rows(url, COMPARED, VOLATILE)
                                  for url in (daily_url, backfill_url, rebuilt_url))
    scores = daily["health_scores"]
    assert len({r["as_of_date"] for r in scores}) == DAYS
    assert sum(r["score"] is not None for r in scores) > 0.8 * len(scores)
    assert any(r["trend_30d"] is not None for r in scores), "60 days must give 30-day trends"
    assert daily["playbook_events"], "60 days of a real portfolio cross thresholds"
    for table in daily:
        assert backfilled[table] == daily[table], f"backfill: {table}"
        assert rebuilt[table] == daily[table], f"rebuild: {table}"
    assert landing_snapshot(backfill_url) == landing_snapshot(daily_url)
    assert len(daily_tasks) == sum(e["status"] == "sent" for e in daily["playbook_events"])
    assert backfill_tasks == daily_tasks
    assert rebuilt_tasks == daily_tasks
