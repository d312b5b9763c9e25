"""health_model_accuracy runs in Airflow (`airflow dags test`) and its report shows the figures the table holds.

The warehouse is the one ``test_accuracy_month`` seeds (renewals in June 2026 and their archived scores), so
only what Airflow adds is tested here: the DAG parses, its task runs with the run's context (the month before
the data interval end), and the table, HTML and CSVs it writes agree; the executive report task follows it. The
demo (``make demo``) runs the same DAG over bootstrapped history.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.local_airflow import LocalAirflow
from healthscore.warehouse.models import AccuracyReport, NotificationOutbox
from tests.integration.test_accuracy_month import N, seed_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def test_monthly_dag_runs_in_airflow_and_its_report_shows_the_tables_figures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    seed_warehouse(url)
    home = LocalAirflow(tmp_path / "airflow")
    home.migrate()
    env = {"HEALTHSCORE_WAREHOUSE_URL": url, "HEALTHSCORE_DATA_DIR": str(tmp_path / "data")}
    run = home.dags_test("2026-07-01", env, dag_id="health_model_accuracy")
    assert run.state == "success", run.output[-4000:]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {(r.model_version, r.horizon_days): r for r in conn.execute(sa.select(AccuracyReport.__table__))}
        alerts = conn.execute(sa.select(NotificationOutbox.subject)).scalars().all()
    engine.dispose()
    assert set(rows) == {("v1", 30), ("v1", 60), ("v1", 90)}
    head = rows[("v1", 60)]
    assert str(head.period_start) == "2026-06-01"  # the month before the interval end
    metrics = json.loads(head.metrics) if isinstance(head.metrics, str) else head.metrics
    assert metrics["coverage"] == {"outcomes": N, "with_prediction": N}
    page = Path(head.report_path).read_text()
    overall = pd.read_csv(Path(head.report_path).parent / "metrics_overall.csv")
    for h, row in rows.items():
        m = json.loads(row.metrics) if isinstance(row.metrics, str) else row.metrics
        csv = overall[overall["horizon_days"] == h[1]].iloc[0]
        assert csv["accuracy"] == pytest.approx(m["overall"]["accuracy"])
        assert csv["auc"] == pytest.approx(m["overall"]["auc"])
        assert f"{m['overall']['accuracy']:.3f}" in page and f"{m['overall']['auc']:.3f}" in page
    assert "<svg" in page
    assert any("below the target" in s for s in alerts) and any("PSI" in s for s in alerts)
    # The executive report task ran after it, over the same month, and was sent once.
    executive = tmp_path / "data" / "reports" / "executive" / "2026-06"
    assert (executive / "executive.pdf").read_bytes().startswith(b"%PDF")
    assert "Model accuracy (v1, 60-day lead)" in (executive / "executive.html").read_text()
    assert alerts.count("Customer health: executive report, June 2026") == 1
