"""health_model_recalibration runs in Airflow (`airflow dags test`) over a year of stored history, stops at the
human approval, promotes nothing until a person answers, and promotes the challenger once approved.

One Airflow run: the warehouse is ``recalibration_history``'s (point-in-time signal snapshots and renewal
outcomes; the steps' figures are tested over the same history in ``test_recalibration``). The approval is
given through Airflow's HITL REST route (``hitl_respond``), as the Required Actions page does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from healthscore.local_airflow import REPO, LocalAirflow
from healthscore.warehouse.models import ModelVersion
from tests.integration.recalibration_history import RUN_LOGICAL_DATE, seed_history

pytestmark = [pytest.mark.slow, pytest.mark.airflow]
DAG_ID = "health_model_recalibration"


def _states(home: LocalAirflow) -> dict[str, str | None]:
    return {task: state for task, state, _ in home.run_tasks(RUN_LOGICAL_DATE, dag_id=DAG_ID)}


def _wait(home: LocalAirflow, proc: subprocess.Popen, until, timeout: float, log: Path) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _states(home)
        if until(states):
            return states
        if proc.poll() is not None and not until(_states(home)):
            raise AssertionError(f"dags test ended early ({proc.returncode}): {states}\n{log.read_text()[-4000:]}")
        time.sleep(2)
    raise AssertionError(f"timed out: {_states(home)}\n{log.read_text()[-4000:]}")


def _roles(url: str) -> dict[str, tuple[str, str | None]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ModelVersion.version, ModelVersion.role, ModelVersion.approved_by)).all()
    engine.dispose()
    return {r.version: (r.role, r.approved_by) for r in rows}


@pytest.mark.timeout(900)
def test_quarterly_dag_waits_for_approval_then_promotes_the_better_challenger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    seed_history(url)
    home = LocalAirflow(tmp_path / "airflow")
    home.migrate()
    env = {"HEALTHSCORE_WAREHOUSE_URL": url, "HEALTHSCORE_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "dags_test.log"
    proc = home.start(RUN_LOGICAL_DATE, env, log, dag_id=DAG_ID)
    try:
        states = _wait(home, proc, lambda s: s.get("approve_challenger") == "awaiting_input", 600, log)
        assert {k: states[k] for k in ("build_training_set", "recalibrate", "backtest", "decide")} == dict.fromkeys(
            ("build_training_set", "recalibrate", "backtest", "decide"), "success")
        assert states["auto_approved"] == "skipped" and states.get("promote_challenger") in (None, "none")
        roles = _roles(url)
        challenger = next(v for v, (role, _) in roles.items() if role == "challenger")
        assert roles["v1"] == ("champion", None)  # waiting for a person: nothing promoted
        subject = home.query("select subject from hitl_detail")
        assert subject == [(f"Promote health model {challenger}?",)]
        run_id = home.query("select run_id from dag_run where dag_id = :d", d=DAG_ID)[0][0]
        answer = subprocess.run([sys.executable, "-m", "tests.integration.hitl_respond", DAG_ID, run_id,
                                 "approve_challenger", "Approve", "alice"], cwd=REPO, env={**home.env, **env},
                                capture_output=True, text=True, timeout=300)
        assert answer.returncode == 0, answer.stdout[-2000:] + answer.stderr[-3000:]
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    output = log.read_text()
    assert "DagRun Finished" in output and "state=success" in output, output[-4000:]
    states = _states(home)
    assert states["approve_challenger"] == "success" and states["promote_challenger"] == "success", states
    roles = _roles(url)
    assert roles[challenger] == ("champion", "alice") and roles["v1"][0] == "retired"
    report = tmp_path / "data" / "reports" / "recalibration" / "2026-11-30"
    assert (report / "report.html").exists() and (report / "backtest_metrics.csv").exists()
