"""A flapping account: its band changes every day, yet it does not get a CRM task every day.

The account closest to a band threshold on day one has its licensed seats PATCHed in the CRM every day,
alternately 50 times the real number and the real number again (stamped at noon of the batch day through
the sandbox clock), so its active-user share and contract coverage swing and its score crosses the
threshold back and forth.

The days run the daily DAG's own task functions in this process (``pipeline.history.run_day``, as the history
bootstrap does); the DAG's wiring in Airflow is proved by the full-DAG, backfill and Celery tests. Real HTTP
against the sandbox, a real warehouse, the real CRM task writes.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa

from healthscore.config import load_model_config
from healthscore.pipeline.history import day_context, env_overrides, run_day
from healthscore.sources.base import SANDBOX_CLOCK_HEADER
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.models import HealthScore, PlaybookEvent, landing_table
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.airflow_harness import pipeline_env

pytestmark = [pytest.mark.slow]
FIRST = date(2026, 9, 22)  # logical date of the first run; its batch is the day before
DAYS = 5


def patch_seats(base: str, company_id: str, seats: int, at: datetime) -> None:
    response = requests.patch(
        f"{base}/crm/v3/objects/companies/{company_id}",
        headers={"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}", SANDBOX_CLOCK_HEADER: at.isoformat() + "Z"},
        json={"properties": {"licensed_seats": str(seats)}}, timeout=10)
    assert response.status_code == 200, response.text


def nearest_to_a_threshold(rows: list[dict]) -> str:
    model = load_model_config()

    def distance(row: dict) -> float:
        limits = model.thresholds_for(row["segment"], row["lifecycle_stage"])
        return min(abs(row["score"] - limits.healthy_at_or_above), abs(row["score"] - limits.at_risk_below))

    return min((r for r in rows if r["score"] is not None), key=distance)["account_id"]


def test_a_flapping_account_does_not_get_a_task_every_day(tmp_path):
    with ThreadedSandbox(build_state(SandboxOptions(seed=8, accounts=60, rate_limit_scale=1000))) as server:
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        env = pipeline_env(server.url, url, tmp_path / "data", HEALTHSCORE_MIXPANEL_BACKFILL_DAYS="35",  # usage needs days
                           HEALTHSCORE_DATA_DOCS_PUBLISH="false")
        with env_overrides(env):
            run_day(day_context(FIRST - timedelta(days=1)))
        engine = make_engine(url)
        columns = (HealthScore.account_id, HealthScore.as_of_date, HealthScore.score, HealthScore.band,
                   HealthScore.segment, HealthScore.lifecycle_stage)
        with engine.connect() as conn:
            day_one = [dict(r) for r in conn.execute(sa.select(*columns)).mappings()]
        account = nearest_to_a_threshold(day_one)
        companies = landing_table("hubspot", "companies")
        with engine.connect() as conn:
            payload = conn.execute(sa.select(companies.c.payload).where(companies.c.record_id == account)).scalar()
        seats = int(json.loads(payload)["properties"]["licensed_seats"])

        for i in range(1, DAYS):
            logical = FIRST + timedelta(days=i)
            noon = datetime.combine(logical - timedelta(days=1), datetime.min.time()) + timedelta(hours=12)
            patch_seats(server.url, account, seats * 50 if i % 2 else seats, noon)
            with env_overrides(env):
                run_day(day_context(logical - timedelta(days=1)), prepare=False)

        with engine.connect() as conn:
            path = conn.execute(sa.select(HealthScore.as_of_date, HealthScore.score, HealthScore.band)
                                .where(HealthScore.account_id == account, HealthScore.model_version == "v1")
                                .order_by(HealthScore.as_of_date)).all()
            events = conn.execute(sa.select(PlaybookEvent.playbook, PlaybookEvent.crossing_date)
                                  .where(PlaybookEvent.account_id == account)).all()
        engine.dispose()

    bands = [band for _, _, band in path]
    changes = sum(a != b for a, b in zip(bands, bands[1:], strict=False))
    assert len(path) == DAYS and changes >= DAYS - 2, f"the account did not flap: {path}"
    per_playbook = Counter(playbook for playbook, _ in events)
    assert all(n == 1 for n in per_playbook.values()), events  # cooldown: never the same playbook twice
    assert len(events) < changes, (path, events)  # far fewer tasks than band changes
    # Band-entry playbooks need two days in the new band (hysteresis): alternating days never confirm.
    assert not {"save_plan", "engagement_sequence", "expansion_opportunity"} & set(per_playbook), (path, events)
