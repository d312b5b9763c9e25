"""health_model_accuracy in Airflow over a bootstrapped history: the report renders and shows the table's figures.

Two months of the demo portfolio are bootstrapped with the daily DAG's tasks (``healthscore.pipeline.history``),
then ``airflow dags test health_model_accuracy 2026-10-01`` evaluates September's renewals. The 30-day lead has
predictions for every renewal; the 60/90-day leads reach before the history and say so (coverage).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.demo import pipeline_env
from healthscore.local_airflow import LocalAirflow
from healthscore.pipeline.history import BootstrapPlan, bootstrap
from healthscore.warehouse.models import AccuracyReport, RenewalOutcome
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state, free_port

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.airflow, pytest.mark.timeout(3600)]


def test_monthly_dag_runs_in_airflow_over_bootstrapped_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    home = LocalAirflow(tmp_path / "airflow")
    home.migrate()
    with ThreadedSandbox(build_state(SandboxOptions(seed=42, accounts=300, rate_limit_scale=1000)),
                         port=free_port()) as server:
        env = pipeline_env(server.url, url, tmp_path / "data", HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="3")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = bootstrap(BootstrapPlan(date(2026, 7, 28), date(2026, 9, 30)), progress=False)
        assert result.days_run == 65
        run = home.dags_test("2026-10-01", env, dag_id="health_model_accuracy")
    assert run.state == "success", run.output[-4000:]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {(r.model_version, r.horizon_days): r for r in conn.execute(sa.select(AccuracyReport.__table__))}
        september = conn.execute(sa.select(sa.func.count()).select_from(RenewalOutcome.__table__).where(
            RenewalOutcome.kind == "renewal", RenewalOutcome.renewal_date >= date(2026, 9, 1),
            RenewalOutcome.renewal_date <= date(2026, 9, 30))).scalar_one()
    engine.dispose()
    assert set(rows) == {("v1", 30), ("v1", 60), ("v1", 90)} or set(rows) >= {("v1", 30)}
    head = rows[("v1", 30)]
    metrics = json.loads(head.metrics) if isinstance(head.metrics, str) else head.metrics
    assert metrics["coverage"]["outcomes"] == september > 10
    assert metrics["coverage"]["with_prediction"] == september  # 30 days before each: inside the history
    page = Path(head.report_path).read_text()
    overall = pd.read_csv(Path(head.report_path).parent / "metrics_overall.csv")
    row30 = overall[overall["horizon_days"] == 30].iloc[0]
    assert int(row30["n"]) == metrics["overall"]["n"]
    if not metrics["overall"]["too_small"]:
        assert f"{metrics['overall']['accuracy']:.3f}" in page
        assert row30["accuracy"] == pytest.approx(metrics["overall"]["accuracy"])
    assert "<svg" in page
