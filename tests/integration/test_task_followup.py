"""Task status read back from HubSpot (healthscore.playbooks.followup) against the sandbox over HTTP.

The simulated CSMs (healthscore_sandbox.csm) complete some tasks, late or on time, and leave others open;
the act step's follow-up stores what HubSpot shows as of the batch's instant, never a later status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from healthscore.playbooks.delivery import deliver_pending, record_events
from healthscore.playbooks.followup import read_task_statuses
from healthscore.playbooks.rules import decide_playbook_events
from healthscore.sources import HubSpotSource
from healthscore.sources.base import RetryPolicy, SourceConnection
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import upgrade
from healthscore.warehouse.models import ModelVersion, PlaybookEvent
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.csm import fate_of
from healthscore_sandbox.runner import SandboxOptions, ThreadedSandbox, build_state
from tests.integration.test_delivery import AS_OF, NOW, history, model

FAST = RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05, timeout=5)
EVENTS = PlaybookEvent.__table__


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    state = build_state(SandboxOptions(seed=23, accounts=40, now=int(NOW.timestamp()), rate_limit_scale=1000))
    with ThreadedSandbox(state) as server:
        yield server


def _hubspot(sandbox, at: datetime) -> HubSpotSource:
    conn = SourceConnection("crm_hubspot", sandbox.url, password=cred.HUBSPOT_TOKEN, extra={"sandbox": True})
    return HubSpotSource(conn, as_of=at, policy=FAST)


def test_statuses_follow_the_simulated_csms_as_of_each_day(sandbox, sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(ModelVersion.__table__).values(version="v1", config_hash="t", config_yaml="{}",
                                                              role="champion"))
    world = sandbox.state.world
    companies = world.accounts[["hubspot_company_id", "owner_id"]].astype(str).head(24)
    frame = pd.concat([history(c, o, [60] * 11 + [15]) for c, o in companies.itertuples(index=False)],
                      ignore_index=True)  # every account crashes to Critical: executive_escalation
    decision = decide_playbook_events(frame[frame["as_of_date"] == AS_OF], frame[frame["as_of_date"] < AS_OF],
                                      None, model(budget=50))
    record_events(engine, decision)
    with _hubspot(sandbox, NOW) as source:
        sent = deliver_pending(engine, source.client, as_of=AS_OF, settle_seconds=0)
        assert sent.sent >= 20
        first = read_task_statuses(engine, source.client, as_of=NOW)
    assert first.read == sent.sent and first.completed == 0  # nothing is done the moment it is created

    later = NOW + dt.timedelta(days=40)
    with _hubspot(sandbox, later) as source:
        second = read_task_statuses(engine, source.client, as_of=later)
    tasks = {t["id"]: t for t in sandbox.state.hubspot.tasks}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(EVENTS).where(EVENTS.c.crm_task_id.is_not(None))).mappings().all()
    expected_done = 0
    for row in rows:
        fate = fate_of(world.spec.seed, tasks[row["crm_task_id"]], sandbox.state.csm)
        done = 0 <= fate.completed_ts <= later.timestamp()
        expected_done += done
        assert row["task_status"] == ("COMPLETED" if done else "NOT_STARTED"), fate
        assert row["task_checked_at"] == later
        if done:
            assert row["task_completed_at"] == datetime.fromtimestamp(fate.completed_ts, UTC)
        else:
            assert row["task_completed_at"] is None
    assert second.completed == second.newly_completed == expected_done
    assert 0 < expected_done < len(rows)  # some done, some left open
    # a completed task is not read again; the open ones are
    with _hubspot(sandbox, later) as source:
        third = read_task_statuses(engine, source.client, as_of=later)
    assert third.read == len(rows) - expected_done and third.newly_completed == 0
    engine.dispose()


def test_an_outage_stops_the_read_without_failing_the_act_step(sandbox, sqlite_url):
    import requests

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(ModelVersion.__table__).values(version="v1", config_hash="t", config_yaml="{}",
                                                              role="champion"))
        conn.execute(sa.insert(EVENTS).values(idempotency_key="k", account_id="1", playbook="save_plan",
                                              crossing_date=AS_OF, model_version="v1", status="sent",
                                              crm_task_id="90000000001", attempts=1))
    admin = {"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}
    requests.post(f"{sandbox.url}/_sandbox/faults", headers=admin, json={"error_5xx_rate": 1.0},
                  timeout=5).raise_for_status()
    try:
        with _hubspot(sandbox, NOW) as source:
            summary = read_task_statuses(engine, source.client, as_of=NOW)
    finally:
        requests.post(f"{sandbox.url}/_sandbox/faults", headers=admin, json={}, timeout=5).raise_for_status()
    assert summary.stopped and summary.read == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(EVENTS.c.task_status)).scalar() is None
    engine.dispose()
