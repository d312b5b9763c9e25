"""One quality-gate path: a clean sandbox day gives a clean report, an injected fault does not, and every object
(Mixpanel events, validated while they stream, included) is blocked, alerted and failed the same way.

The DAG's task functions run directly (``healthscore.pipeline.tasks``), one batch each, against the sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from healthscore.demo import pipeline_env
from healthscore.pipeline import tasks
from healthscore.quality.gate import QualityGateError
from healthscore.sources import registry
from healthscore.warehouse.models import BatchReconciliation, QualityResult, Quarantine
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state

pytestmark = pytest.mark.slow

END = datetime(2026, 9, 10, tzinfo=UTC)  # batch 2026-09-09: this world has a prospect's open deal that day
CONTEXT = {"data_interval_end": END, "logical_date": END, "run_id": "quality-path"}
ADMIN = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=5, accounts=60, rate_limit_scale=1000))) as server:
        yield server


def run_batch(sandbox: ThreadedSandbox, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict]:
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    for key, value in pipeline_env(sandbox.url, url, tmp / "data", HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="2").items():
        monkeypatch.setenv(key, value)
    tasks.run_prepare(CONTEXT)
    for spec in registry.sources():
        tasks.run_extract(spec.name, spec.conn_id, CONTEXT)
    return url, {spec.name: tasks.run_validate(spec.name, CONTEXT) for spec in registry.sources()}


def report(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        recs = {(r["source"], r["object"]): r for r in conn.execute(sa.select(BatchReconciliation)).mappings()}
        quarantined = conn.execute(sa.select(Quarantine.source, Quarantine.object, Quarantine.reason)).all()
        critical = conn.execute(sa.select(QualityResult.suite, QualityResult.expectation).where(
            QualityResult.severity == "critical", QualityResult.success.is_(False))).all()
    engine.dispose()
    return {"recs": recs, "quarantined": quarantined, "critical": critical}


def alerts(data_dir: Path) -> list[dict]:
    path = data_dir / "outbox" / "quality_alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_clean_day_gives_a_clean_report_and_prospect_deals_are_out_of_scope(sandbox, tmp_path, monkeypatch):
    url, summaries = run_batch(sandbox, tmp_path, monkeypatch)
    got = report(url)
    assert got["quarantined"] == [] and got["critical"] == []
    assert alerts(tmp_path / "data") == []
    assert set(got["recs"]) == set(registry.quality_objects())  # streamed events are reconciled too
    for key, rec in got["recs"].items():
        assert rec["quarantined"] == 0 and rec["landed"] == rec["accepted"] + rec["out_of_scope"], key
    deals = got["recs"][("hubspot", "deals")]
    assert deals["out_of_scope"] >= 1, "this world has a prospect's new-business deal on this day"
    assert all(r["out_of_scope"] == 0 for k, r in got["recs"].items() if k != ("hubspot", "deals"))
    assert [s["suite"] for s in summaries["mixpanel"]] == ["mixpanel.events", "mixpanel.usage_daily"]
    assert not any(s["critical_failed"] for ss in summaries.values() for s in ss)


def test_an_injected_fault_is_quarantined_blocked_alerted_and_fails_every_object_alike(sandbox, tmp_path, monkeypatch):
    requests.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={"seed": 2, "bad_record_rate": 0.5},
                  timeout=5).raise_for_status()
    try:
        url, summaries = run_batch(sandbox, tmp_path, monkeypatch)
    finally:
        requests.post(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, json={}, timeout=5).raise_for_status()
    got = report(url)
    assert got["quarantined"] and got["critical"]
    blocked = {s["suite"] for ss in summaries.values() for s in ss if s["critical_failed"]}
    assert "mixpanel.events" in blocked, blocked
    sent = alerts(tmp_path / "data")
    assert {a["suite"] for a in sent} == blocked  # one alert per blocked object, events included
    events = next(a for a in sent if a["suite"] == "mixpanel.events")
    assert events["blocked_dimensions"] == {"mixpanel": ["usage", "relationship", "value"]}
    assert "rows quarantined" in events["body"]

    monkeypatch.setenv("HEALTHSCORE_QUALITY_FAIL_ON_CRITICAL", "true")
    with pytest.raises(QualityGateError, match=r"mixpanel\.events"):
        tasks.run_validate("mixpanel", CONTEXT)
    with pytest.raises(QualityGateError):
        tasks.run_validate("stripe", CONTEXT)
