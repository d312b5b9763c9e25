"""customer_health_daily, extract + validate, run by Airflow (`airflow dags test`) against the sandbox."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy as sa

from healthscore.warehouse.models import (
    BatchReconciliation,
    ExtractRun,
    QualityResult,
    landing_table,
)
from healthscore_sandbox.runner import ThreadedSandbox
from tests.integration.airflow_harness import landing_snapshot, pipeline_env
from tests.integration.extract_fixtures import ADMIN, LOGICAL_DATE, extract_sandbox, fault_switch

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

AS_OF = datetime(2026, 9, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with extract_sandbox() as server:
        yield server


@pytest.fixture
def faults(sandbox):
    set_faults = fault_switch(sandbox)
    yield set_faults
    set_faults()


@pytest.fixture(scope="module")
def clean_run(airflow_home, sandbox, tmp_path_factory) -> dict:
    """One fault-free run of the batch on SQLite: the reference the other tests compare against."""
    tmp = tmp_path_factory.mktemp("clean")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    result = airflow_home.dags_test(LOGICAL_DATE, pipeline_env(sandbox.url, url, tmp / "data"))
    assert result.state == "success", result.output[-4000:]
    return {"url": url, "data_dir": tmp / "data", "result": result, "snapshot": landing_snapshot(url)}


def _count(url: str, query) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(query).scalar_one()
    engine.dispose()
    return value


def assert_landed_and_reconciled(url: str, sandbox: ThreadedSandbox) -> None:
    world = sandbox.state.world
    companies = landing_table("hubspot", "companies")
    expected = int((world.accounts["created_ts"] <= AS_OF.timestamp()).sum())
    assert _count(url, sa.select(sa.func.count()).select_from(companies)) == expected
    for source, obj in [("zendesk", "tickets"), ("stripe", "invoices"), ("hubspot", "deals")]:
        assert _count(url, sa.select(sa.func.count()).select_from(landing_table(source, obj))) > 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        recs = conn.execute(sa.select(BatchReconciliation)).mappings().all()
        assert {(r["source"], r["object"]) for r in recs} >= {("hubspot", "companies"), ("zendesk", "tickets"),
                                                             ("stripe", "invoices"), ("mixpanel", "events"),
                                                             ("mixpanel", "usage_daily")}
        for r in recs:
            assert r["landed"] == r["accepted"] + r["quarantined"] + r["out_of_scope"], dict(r)
        assert conn.execute(sa.select(sa.func.count()).select_from(QualityResult)).scalar_one() > 20
    engine.dispose()


def test_extract_and_validate_in_airflow_on_sqlite(clean_run, sandbox, airflow_home):
    assert_landed_and_reconciled(clean_run["url"], sandbox)
    docs = clean_run["data_dir"] / "data_docs" / "index.html"
    assert docs.exists() and "hubspot.companies" in docs.read_text()
    assert "Data Docs for RevOps" in clean_run["result"].output
    events = airflow_home.asset_events()
    for name in ("hubspot", "zendesk", "stripe", "mixpanel"):
        assert f"healthscore://warehouse/landing/{name}" in events
        assert f"healthscore://warehouse/validated/{name}" in events


def test_extract_and_validate_in_airflow_on_postgres(airflow_home, sandbox, postgres_url, tmp_path, clean_run):
    result = airflow_home.dags_test(LOGICAL_DATE, pipeline_env(sandbox.url, postgres_url, tmp_path / "data"))
    assert result.state == "success", result.output[-4000:]
    assert_landed_and_reconciled(postgres_url, sandbox)
    assert landing_snapshot(postgres_url) == clean_run["snapshot"]


def test_a_rerun_of_one_date_gives_identical_tables_and_the_next_day_is_incremental(
        airflow_home, sandbox, tmp_path, clean_run):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    env = pipeline_env(sandbox.url, url, tmp_path / "data")
    snapshots = []
    for _ in range(2):  # a run and its rerun on the same warehouse; clean_run is an independent third
        result = airflow_home.dags_test(LOGICAL_DATE, env)
        assert result.state == "success", result.output[-4000:]
        snapshots.append(landing_snapshot(url))
    assert snapshots[0] == snapshots[1] == clean_run["snapshot"]

    result = airflow_home.dags_test("2026-09-21", env)
    assert result.state == "success", result.output[-4000:]
    companies = landing_table("hubspot", "companies")
    full = _count(url, sa.select(sa.func.count()).select_from(companies).where(companies.c.batch_date == "2026-09-19"))
    changed = _count(url, sa.select(sa.func.count()).select_from(companies).where(companies.c.batch_date == "2026-09-20"))
    assert 0 <= changed < full  # only what changed since the previous batch's cursor
    tickets = landing_table("zendesk", "tickets")
    assert _count(url, sa.select(sa.func.count()).select_from(tickets).where(tickets.c.batch_date == "2026-09-20")) < \
        _count(url, sa.select(sa.func.count()).select_from(tickets).where(tickets.c.batch_date == "2026-09-19"))


def test_faults_land_exactly_what_a_clean_run_lands(airflow_home, sandbox, faults, tmp_path, clean_run):
    faults(seed=9, error_5xx_rate=0.10, rate_429_rate=0.05, timeout_rate=0.02, timeout_seconds=3,
           malformed_pages=1)
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    result = airflow_home.dags_test(LOGICAL_DATE, pipeline_env(sandbox.url, url, tmp_path / "data", timeout="1"))
    assert result.state == "success", result.output[-4000:]
    assert landing_snapshot(url) == clean_run["snapshot"]
    assert "retry" in result.output and ("502" in result.output or "503" in result.output or "500" in result.output)
    injected = requests.get(f"{sandbox.url}/_sandbox/faults", headers=ADMIN, timeout=5).json()["injected"]
    assert injected.get("5xx", 0) > 0 and injected.get("malformed_page") == 1
    retries = _count(url, sa.select(sa.func.sum(ExtractRun.retries)))
    assert retries > 0


def test_killed_extraction_reruns_without_gap_or_duplicate(airflow_home, sandbox, faults, tmp_path, clean_run):
    faults(latency_ms=40)  # slow enough to kill it mid-way
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    env = pipeline_env(sandbox.url, url, tmp_path / "data")
    proc = airflow_home.start(LOGICAL_DATE, env, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no extraction committed within 300 s"
            if os.path.exists(tmp_path / "warehouse.db"):
                try:
                    if _count(url, sa.select(sa.func.count()).select_from(ExtractRun)) >= 2:
                        break
                except sa.exc.OperationalError:
                    pass  # tables not migrated yet, or a writer holds the lock
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = landing_snapshot(url)
    assert partial != clean_run["snapshot"], "the kill came too late to test anything"
    faults()
    result = airflow_home.dags_test(LOGICAL_DATE, env)
    assert result.state == "success", result.output[-4000:]
    assert landing_snapshot(url) == clean_run["snapshot"]


def test_extraction_split_in_parts_lands_what_one_part_lands(airflow_home, tmp_path):
    """HEALTHSCORE_EXTRACT_PARTS=3: HubSpot and Mixpanel each run plan -> 3 mapped fetches -> one landing, on the first
    batch (a full load: objects spread over the parts; Mixpanel's backfill by days) and the next (HubSpot windows on
    the modification date). The landing tables equal those of one-part runs of the same dates. Each chain has a
    sandbox of its own (the same world): a run's CRM writes change what a later run of the same dates would read."""
    snapshots = {}
    for parts in ("3", "1"):
        url = f"sqlite:///{tmp_path / f'parts-{parts}.db'}"
        with extract_sandbox() as sandbox:
            env = pipeline_env(sandbox.url, url, tmp_path / f"data-{parts}", HEALTHSCORE_EXTRACT_PARTS=parts)
            for logical_date in (LOGICAL_DATE, "2026-09-21"):
                result = airflow_home.dags_test(logical_date, env)
                assert result.state == "success", result.output[-4000:]
                if parts == "3":
                    assert "hubspot part 3 of 3" in result.output and "mixpanel part 3 of 3" in result.output
            if parts == "3":  # the increment was cut into modification-date windows
                assert "companies [" in result.output and ", open)" in result.output
        snapshots[parts] = landing_snapshot(url)
    split, whole = snapshots["3"], snapshots["1"]
    assert whole["raw_hubspot_companies"] and whole["raw_mixpanel_usage_daily"]
    # The split sources' tables (Zendesk's payloads carry each sandbox's own port in their URLs).
    for name in [n for n in whole if n.startswith(("raw_hubspot_", "raw_mixpanel_"))]:
        assert split[name] == whole[name], (name, sorted(set(split[name]) - set(whole[name]))[:3],
                                            sorted(set(whole[name]) - set(split[name]))[:3])
