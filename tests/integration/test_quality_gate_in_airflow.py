"""The quality gate in Airflow (`airflow dags test`): bad records quarantined by their expectation, critical
failures blocking their dimensions and alerting, and HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL failing the run.

Its own module (the sandbox of ``extract_fixtures``, built for this module) so that the suite's workers can run
it beside ``test_daily_dag_extract``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from healthscore.warehouse.models import BatchReconciliation, QualityResult, Quarantine
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import ThreadedSandbox
from tests.integration.airflow_harness import pipeline_env
from tests.integration.extract_fixtures import LOGICAL_DATE, extract_sandbox, fault_switch

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with extract_sandbox() as server:
        yield server


@pytest.fixture
def faults(sandbox):
    set_faults = fault_switch(sandbox)
    yield set_faults
    set_faults()


def test_bad_records_are_quarantined_by_their_expectation_and_critical_failures_block_and_notify(
        airflow_home, sandbox, faults, tmp_path):
    faults(seed=2, bad_record_rate=0.3)
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    env = pipeline_env(sandbox.url, url, tmp_path / "data")
    result = airflow_home.dags_test(LOGICAL_DATE, env)
    assert result.state == "success", result.output[-4000:]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        quarantined = conn.execute(sa.select(Quarantine.object, Quarantine.expectation, Quarantine.reason,
                                             Quarantine.payload)).all()
        recs = conn.execute(sa.select(BatchReconciliation)).mappings().all()
        blocked = conn.execute(sa.select(QualityResult.source).where(
            QualityResult.expectation == "gate_max_quarantine_share", QualityResult.success.is_(False))).scalars().all()
    engine.dispose()
    reasons = {}
    for obj, expectation, reason, payload in quarantined:
        reasons.setdefault(obj, []).append(f"{expectation}: {reason}")
        assert payload, "a quarantined record keeps its payload"
    text = {obj: "\n".join(r) for obj, r in reasons.items()}
    # Each injected kind is caught by the expectation meant for it.
    assert "priority" in text["tickets"] and "status" in text["tickets"] and "organization_id" in text["tickets"]
    assert "amount_due" in text["invoices"] and "customer_id" in text["invoices"]
    assert "quantity" in text["subscriptions"] and "status" in text["subscriptions"]
    assert "licensed_seats" in text["companies"] and "name" in text["companies"]
    assert "company_id" in text["events"] and "distinct_id" in text["events"]
    for r in recs:
        assert r["landed"] == r["accepted"] + r["quarantined"] + r["out_of_scope"]
        assert r["quarantined"] > 0 or r["object"] in ("owners", "usage_daily")
    assert set(blocked) >= {"zendesk", "stripe"}
    alerts = _alerts(tmp_path / "data")
    assert any(a["critical_failed"] and a["blocked_dimensions"] for a in alerts)
    assert all(cred.STRIPE_SECRET_KEY not in json.dumps(a) for a in alerts)

    failing = airflow_home.dags_test(LOGICAL_DATE, {**env, "HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL": "true"})
    assert failing.state == "failed"
    assert "QualityGateError" in failing.output


def _alerts(data_dir) -> list[dict]:
    return [json.loads(line) for path in data_dir.rglob("*.jsonl") for line in path.read_text().splitlines() if line]
