"""A backfill run by Airflow's scheduler gives the same history as single-day runs of the same dates.

Single-day runs: ``airflow dags test`` once per date, in order (what daily scheduling does). Backfill:
``airflow backfill create`` over the range with Airflow's default backfill concurrency (10 runs), run by
a real scheduler, dag-processor and api-server (LocalExecutor) on a PostgreSQL metadata DB. Each side has
its own sandbox (same seed) and warehouse, so they share nothing but the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from healthscore.local_airflow import LocalAirflow
from healthscore.warehouse.models import AccountSignals, BatchReconciliation, HealthScore, PlaybookEvent
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port
from tests.integration.airflow_harness import crm_task_properties, landing_snapshot, pipeline_env, table_rows
from tests.integration.airflow_services import AirflowServices

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.postgres]
DAG_ID = "customer_health_daily"
DATES = ("2026-09-02", "2026-09-03")
HISTORY = (HealthScore, AccountSignals, PlaybookEvent, BatchReconciliation)
VOLATILE = {"id", "created_at", "sent_at", "run_id", "computed_at", "built_at"}  # ids and wall-clock stamps


@contextmanager
def sandbox(port: int) -> Iterator[ThreadedSandbox]:
    """Both sides use the same port: Zendesk payloads carry their own URL."""
    state = build_state(SandboxOptions(seed=11, accounts=40, rate_limit_scale=1000))
    with ThreadedSandbox(state, port=port) as server:
        yield server


@pytest.mark.timeout(1500)
def test_scheduler_backfill_equals_single_day_runs(airflow_home: LocalAirflow, tmp_path: Path,
                                                   postgres_url: str) -> None:
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    port = free_port()
    with sandbox(port) as server:
        env = pipeline_env(server.url, single_url, tmp_path / "single")
        for day in DATES:
            run = airflow_home.dags_test(day, env)
            assert run.state == "success", run.output[-4000:]
        single_tasks = crm_task_properties(server.url)

    backfill_url = f"sqlite:///{tmp_path / 'backfill.db'}"
    home = LocalAirflow(tmp_path / "airflow_backfill", metadata_url=postgres_url)  # as in production
    home.migrate()
    with sandbox(port) as server:
        env = pipeline_env(server.url, backfill_url, tmp_path / "backfill")
        with AirflowServices(home, env, tmp_path / "logs") as services:
            services.backfill(DAG_ID, DATES[0], DATES[-1], "--reprocess-behavior", "failed")
            runs = services.wait_for_runs(DAG_ID, len(DATES), timeout=1200)
            spans = services.run_spans(DAG_ID)
        backfill_tasks = crm_task_properties(server.url)

    assert [(r[1], r[2]) for r in runs] == [("backfill", "success")] * len(DATES), runs
    assert [r[0][:10] for r in runs] == list(DATES)
    # Ten runs may be active at once, yet the second run started only after the first had finished.
    for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False):
        assert later_start >= earlier_end, spans

    single, backfilled = (table_rows(url, HISTORY, VOLATILE) for url in (single_url, backfill_url))
    assert {d.isoformat() for d in {r["as_of_date"] for r in single["health_scores"]}} == {"2026-09-01", "2026-09-02"}
    for table in single:
        assert backfilled[table] == single[table], table
    assert landing_snapshot(backfill_url) == landing_snapshot(single_url)
    assert backfill_tasks == single_tasks
