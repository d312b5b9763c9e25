"""customer_health_daily end to end in Airflow: archive, shadow challenger, overrides, CRM tasks exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.config import load_model_config, model_config_from_dict
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.models import (
    AccountSignals,
    CrmPublication,
    HealthScore,
    PlaybookEvent,
    ScoreOverride,
)
from healthscore.warehouse.registry import register_model_version
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.airflow_harness import crm_tasks, pipeline_env

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
CHALLENGER_WEIGHTS = {"usage": 60, "engagement": 10, "value": 10, "relationship": 10, "support": 5, "financial": 5}


def _dims(row: dict) -> dict:
    value = row["dimension_scores"]
    return json.loads(value) if isinstance(value, str) else dict(value or {})


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(build_state(SandboxOptions(seed=8, accounts=100, rate_limit_scale=1000))) as server:
        yield server


def archive(engine: sa.Engine) -> list[dict]:
    columns = [c for c in HealthScore.__table__.columns if c.name != "id"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(HealthScore.model_version, HealthScore.as_of_date,
                                                         HealthScore.account_id)).mappings().all()
    return [dict(r) for r in rows]


def test_reruns_give_an_identical_archive_and_one_crm_task_per_event(airflow_home, sandbox, tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    # Two scoring shards: the mapped score_and_archive and combine_shards run in Airflow here (the other DAG
    # tests run the default single shard); the archive and Parquet checks below hold for any shard count.
    env = pipeline_env(sandbox.url, url, tmp_path / "data", HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="35",
                       HEALTHSCORE_SCORE_SHARDS="2")
    first = airflow_home.dags_test("2026-09-20", env)
    assert first.state == "success", first.output[-4000:]
    engine = make_engine(url)
    day1 = archive(engine)
    assert day1 and {r["as_of_date"] for r in day1} == {date(2026, 9, 19)}
    assert sum(r["score"] is not None for r in day1) > 0.8 * len(day1)
    assert all(r["score"] is None or 0 <= r["score"] <= 100 for r in day1)
    assert all(r["config_hash"] == load_model_config().config_hash for r in day1)
    parquet = tmp_path / "data" / "archive" / "health_scores" / "as_of_date=2026-09-19" / "model_version=v1"
    assert len(pd.read_parquet(parquet / "scores.parquet")) == len(day1)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AccountSignals)).scalar_one() == len(day1)
        published = conn.execute(sa.select(sa.func.count()).select_from(CrmPublication)).scalar_one()
    assert published == sum(r["score"] is not None for r in day1)

    # A CSM override into At Risk and a challenger model registered before day 2.
    account = next(r for r in day1 if r["band"] == "Healthy")["account_id"]
    with engine.begin() as conn:
        conn.execute(sa.insert(ScoreOverride).values(
            account_id=account, override_band="At Risk", override_score=40.0, reason="champion left last week",
            author="csm@example.com", expires_on=date(2026, 12, 31)))
    # The challenger weighs usage far more (the same signals and dimension scores, another composite), so a
    # mix-up of the two in the archive shows up as wrong scores, not only as a wrong version label.
    data = json.loads(load_model_config().canonical_json())
    data["version"] = "v2-challenger"
    data["weights"] = dict.fromkeys(data["weights"], CHALLENGER_WEIGHTS)
    challenger = model_config_from_dict(data, "challenger")
    register_model_version(engine, challenger, role="challenger")

    archives, tasks = [], []
    for _ in range(2):  # a run and its rerun
        run = airflow_home.dags_test("2026-09-21", env)
        assert run.state == "success", run.output[-4000:]
        archives.append(archive(engine))
        tasks.append(crm_tasks(sandbox.url))
    assert archives[0] == archives[1]
    assert tasks[0] == tasks[1]

    with engine.connect() as conn:
        events = conn.execute(sa.select(PlaybookEvent)).mappings().all()
    sent = [e for e in events if e["status"] == "sent"]
    assert any(e["account_id"] == account and e["playbook"] == "save_plan" for e in sent)
    assert len(tasks[0]) == len(sent) == len({e["idempotency_key"] for e in sent})
    assert {t["id"] for t in tasks[0]} == {e["crm_task_id"] for e in sent}
    save_plan = next(t for t in tasks[0] if account in t["properties"]["hs_task_body"]
                     or t["associations"]["companies"]["results"][0]["id"] == account)
    assert "At Risk" in save_plan["properties"]["hs_task_subject"] + save_plan["properties"]["hs_task_body"]
    assert "healthscore-key" in save_plan["properties"]["hs_task_body"]

    day2 = [r for r in archives[0] if r["as_of_date"] == date(2026, 9, 20)]
    shadow = [r for r in day2 if r["model_version"] == "v2-challenger"]
    assert shadow and all(r["is_shadow"] for r in shadow)
    champion = {r["account_id"]: r for r in day2 if r["model_version"] == "v1"}
    assert {r["account_id"] for r in shadow} == set(champion)
    assert {r["config_hash"] for r in shadow} == {challenger.config_hash} != {load_model_config().config_hash}
    pairs = [(champion[r["account_id"]], r) for r in shadow]
    # Same inputs, same dimension scores, except where the onboarding exit gate (which reads each model's own
    # scores) holds an account in another stage under one of them.
    assert all(c["dimension_scores"] == s["dimension_scores"] for c, s in pairs
               if c["lifecycle_stage"] == s["lifecycle_stage"])
    # Where the dimensions disagree, the weights matter: the two archived scores must differ there.
    weighted = [(c, s) for c, s in pairs if c["score"] is not None and s["score"] is not None
                and len({round(v, 1) for v in _dims(c).values() if v is not None}) > 1]
    assert len(weighted) > 0.5 * len(pairs)
    differ = sum(abs(c["score"] - s["score"]) > 0.05 for c, s in weighted)
    assert differ > 0.8 * len(weighted), f"{differ} of {len(weighted)} scores differ between the models"
    files = tmp_path / "data" / "archive" / "health_scores" / "as_of_date=2026-09-20"
    shadow_file = pd.read_parquet(files / "model_version=v2-challenger" / "scores.parquet")
    champion_file = pd.read_parquet(files / "model_version=v1" / "scores.parquet")
    assert set(shadow_file["config_hash"]) == {challenger.config_hash}
    assert set(champion_file["config_hash"]) == {load_model_config().config_hash}
    by_account = champion_file.set_index("account_id")["score"]
    assert (shadow_file.set_index("account_id")["score"].reindex(by_account.index) != by_account).sum() >= differ
    assert all(e["model_version"] == "v1" for e in events), "a challenger never fires playbooks"
    overridden = next(r for r in day2 if r["account_id"] == account and r["model_version"] == "v1")
    assert overridden["override_band"] == "At Risk" and overridden["band"] != "At Risk"  # both archived
    engine.dispose()
