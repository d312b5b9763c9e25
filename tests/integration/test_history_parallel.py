"""The history bootstrap's day tasks side by side in worker processes give what one task after another gives.

The same days of the same sandbox world, twice from an empty warehouse: once sequentially in this process
(``workers=1``: the DAG's tasks one after another, ``pipeline.history.run_day``) and once with two worker
processes (``DayPool``: each task as soon as the DAG's upstream tasks are done, as Airflow runs them), that one
interrupted after two days and resumed. Every derived table, the quality verdicts (results, quarantine,
reconciliation), the landed bytes and the CRM tasks must be equal; the Data Docs built at the end must link
every validation. ``test_sixty_days`` (``make test-long``) proves the bootstrap equal to Airflow runs.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from healthscore.demo import pipeline_env
from healthscore.pipeline.history import PROGRESS_FILE, BootstrapPlan, bootstrap, day_graph
from healthscore.warehouse.models import (
    AccountSignals,
    BatchReconciliation,
    BillingSubscriptionState,
    CrmPublication,
    HealthScore,
    PlaybookEvent,
    QualityResult,
    Quarantine,
    RenewalOutcome,
)
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port
from tests.integration.airflow_harness import crm_task_properties, landing_snapshot, table_rows

pytestmark = [pytest.mark.slow]
FIRST = date(2026, 8, 20)
DAYS = 4
COMPARED = (AccountSignals, HealthScore, PlaybookEvent, CrmPublication, RenewalOutcome, BillingSubscriptionState,
            QualityResult, Quarantine, BatchReconciliation)
VOLATILE = {"id", "created_at", "sent_at", "computed_at", "built_at", "published_at"}
RUN_SETTINGS = {"HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": "3", "HEALTHSCORE_DATA_DOCS_INDEX_LIMIT": "200"}


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, port: int, workers: int,
         stop_after: int | None = None) -> tuple[str, list]:
    url = f"sqlite:///{tmp_path / f'{name}.db'}"
    plan = BootstrapPlan(FIRST, FIRST + timedelta(days=DAYS - 1))
    with ThreadedSandbox(build_state(SandboxOptions(seed=5, accounts=30, rate_limit_scale=1000)), port=port) as server:
        for key, value in pipeline_env(server.url, url, tmp_path / name, **RUN_SETTINGS).items():
            monkeypatch.setenv(key, value)
        if stop_after:
            first = bootstrap(plan, progress=False, workers=workers, stop_after=stop_after)
            assert (first.days_run, first.skipped) == (stop_after, 0)
            progress = json.loads((tmp_path / name / PROGRESS_FILE).read_text())
            assert progress["done"] == (FIRST + timedelta(days=stop_after - 1)).isoformat()
        result = bootstrap(plan, progress=False, workers=workers)
        assert result.days_run == DAYS - (stop_after or 0) and result.skipped == (stop_after or 0)
        assert set(result.task_seconds) == set(day_graph()) | {"data_docs (once)"}
        return url, crm_task_properties(server.url)


def test_tasks_in_worker_processes_give_what_sequential_tasks_give(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # one port for both: Zendesk payloads carry the URL they were served from
    sequential_url, sequential_tasks = _run(tmp_path, monkeypatch, "sequential", port, workers=1)
    parallel_url, parallel_tasks = _run(tmp_path, monkeypatch, "parallel", port, workers=2, stop_after=2)

    sequential, parallel = (table_rows(url, COMPARED, VOLATILE) for url in (sequential_url, parallel_url))
    assert len({r["as_of_date"] for r in sequential["health_scores"]}) == DAYS
    assert sequential["quality_results"], "every day stores its quality verdicts"
    for table in sequential:
        assert parallel[table] == sequential[table], table
    assert landing_snapshot(parallel_url) == landing_snapshot(sequential_url)
    assert parallel_tasks == sequential_tasks

    def validation_pages(name: str) -> set[str]:
        validations = tmp_path / name / "data_docs" / "validations"
        return {str(p.relative_to(validations)).split("/")[0] for p in validations.rglob("*.html")}

    # Data Docs: the workers' pages side by side, then one index that links them all
    assert validation_pages("parallel") == validation_pages("sequential") != set()
    index = (tmp_path / "parallel" / "data_docs" / "index.html").read_text()
    assert all(suite in index for suite in validation_pages("sequential"))
