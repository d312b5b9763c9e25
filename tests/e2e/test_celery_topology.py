"""The compose topology as processes (`python -m deploy.native start|stop`): CeleryExecutor over Redis,
PostgreSQL metadata DB, started and stopped with the operator's commands.

One Airflow run, shared by the assertions: customer_health_daily triggered through the authenticated REST API
runs on two Celery workers; the task-instance records name the workers and the queue; the scores are in the
PostgreSQL warehouse; stopping leaves no process of the run behind. About 3 minutes on an idle 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from deploy.compose import REPO
from deploy.native import SCALED_SERVICE, run_processes
from healthscore.playbooks.text import task_body, task_subject
from healthscore_sandbox import credentials as cred
from healthscore_sandbox.faults import HOSTILE_NAMES
from tests.conftest import PG_ADMIN_URL, _pg_admin_engine

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "customer_health_daily"
LOGICAL_DATE = "2026-09-30T00:00:00Z"
ACCOUNTS = 40
HOSTILE = 6  # the sandbox names the first companies from HOSTILE_NAMES (SQL, quotes, emoji, newlines, Jinja)
# Canary secrets in the connections the run uses (the warehouse's and the metadata DB's passwords: trust auth
# accepts any), searched for afterwards in every file the run wrote and in the outbox.
CANARIES = {"WAREHOUSE_DB_PASSWORD": f"canary-wh-{uuid.uuid4().hex}", "POSTGRES_PASSWORD": f"canary-pg-{uuid.uuid4().hex}"}


def _drop_databases(names: list[str]) -> None:
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n "
                                 "and pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@dataclass
class Run:
    """A native topology started by the operator's command; what the tests read of it."""

    run_dir: Path
    variables: dict[str, str]
    postgres: str

    @property
    def state(self) -> dict:
        return json.loads((self.run_dir / "native.json").read_text())

    @property
    def api_url(self) -> str:
        return self.state["api_url"]

    def db_url(self, name: str) -> str:
        return f"postgresql+psycopg://{self.variables['POSTGRES_USER']}@{self.postgres}/{self.variables[name]}"


def native(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.native", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=420)


@pytest.fixture(scope="module")
def topology(tmp_path_factory, _pg_available) -> Iterator[Run]:
    """`python -m deploy.native start` (the README's command) with a small portfolio and its own databases."""
    tag = uuid.uuid4().hex[:10]
    admin = sa.engine.make_url(PG_ADMIN_URL)
    variables = {
        "POSTGRES_USER": admin.username or "postgres", "WAREHOUSE_DB_USER": admin.username or "postgres",
        "AIRFLOW_DB_NAME": f"hs_airflow_{tag}", "WAREHOUSE_DB_NAME": f"hs_warehouse_{tag}",
        # Its own queue, so a concurrent run elsewhere on this Redis never takes these tasks.
        "AIRFLOW_CELERY_QUEUE": f"healthscore-{tag}", "AIRFLOW_CELERY_WORKER_CONCURRENCY": "2",
        "AIRFLOW_USE_JOB_SCHEDULE": "false",  # only the triggered run (no run for the wall-clock interval)
        "HEALTHSCORE_SANDBOX_ACCOUNTS": str(ACCOUNTS), "HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": "3",
        **CANARIES,
    }
    run = Run(tmp_path_factory.mktemp("native"), variables, f"{admin.host}:{admin.port or 5432}")
    try:
        started = native("start", "--run-dir", str(run.run_dir), "--workers", "2", "--postgres", run.postgres,
                         *(f"--set={key}={value}" for key, value in variables.items()))
        assert started.returncode == 0, started.stdout + started.stderr
        run.variables["AIRFLOW_ADMIN_PASSWORD"] = (run.run_dir / "admin-password").read_text().strip()
        run.variables.setdefault("AIRFLOW_ADMIN_USERNAME", "admin")
        yield run
    finally:
        native("stop", "--run-dir", str(run.run_dir))
        _drop_databases([variables["AIRFLOW_DB_NAME"], variables["WAREHOUSE_DB_NAME"]])


@pytest.fixture(scope="module")
def api(topology) -> requests.Session:
    """A session authenticated as the admin, with the password airflow-init wrote from AIRFLOW_ADMIN_PASSWORD."""
    variables = topology.variables
    response = requests.post(f"{topology.api_url}/auth/token", timeout=30, json={
        "username": variables["AIRFLOW_ADMIN_USERNAME"], "password": variables["AIRFLOW_ADMIN_PASSWORD"]})
    assert response.status_code in (200, 201), response.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return session


@pytest.fixture(scope="module")
def dag_run(topology, api) -> dict:
    """customer_health_daily for 2026-09-30, triggered through the REST API; the finished run."""
    base = f"{topology.api_url}/api/v2/dags/{DAG_ID}"
    deadline = time.monotonic() + 120
    while api.get(base, timeout=30).status_code != 200:  # until the dag-processor has serialized it
        assert time.monotonic() < deadline, "the DAG was not parsed within 120 s"
        time.sleep(2)
    faults = requests.post(f"{topology.state['sandbox_url']}/_sandbox/faults", json={"hostile_names": HOSTILE},
                           headers={"Authorization": f"Bearer {cred.ADMIN_TOKEN}"}, timeout=30)
    assert faults.ok, faults.text
    assert api.patch(base, json={"is_paused": False}, timeout=30).ok
    created = api.post(f"{base}/dagRuns", json={"logical_date": LOGICAL_DATE}, timeout=30)
    assert created.ok, created.text
    run_id = created.json()["dag_run_id"]
    deadline = time.monotonic() + 300
    run: dict = {}
    while time.monotonic() < deadline:
        try:  # on a loaded machine the single api-server worker can stall for tens of seconds: poll on
            run = api.get(f"{base}/dagRuns/{run_id}", timeout=60).json()
        except requests.RequestException:
            continue
        if run["state"] in ("success", "failed"):
            break
        time.sleep(3)
    return run


@pytest.fixture(scope="module")
def task_instances(topology, api, dag_run) -> list[dict]:
    url = f"{topology.api_url}/api/v2/dags/{DAG_ID}/dagRuns/{dag_run['dag_run_id']}/taskInstances"
    return api.get(url, params={"limit": 100}, timeout=30).json()["task_instances"]


def test_rest_api_needs_a_token(topology):
    assert requests.get(f"{topology.api_url}/api/v2/dags", timeout=30).status_code == 401


def test_triggered_run_succeeds(dag_run, task_instances, topology):
    failed = {ti["task_id"]: ti["state"] for ti in task_instances if ti["state"] != "success"}
    assert dag_run["state"] == "success", f"{failed}; logs in {topology.run_dir / 'airflow-home' / 'logs'}"
    assert len(task_instances) >= 10


def test_tasks_ran_on_the_celery_workers(task_instances, topology):
    """Every task instance: the CeleryExecutor, the configured queue, one of the two workers as its host."""
    workers = {c["name"] for c in topology.state["components"] if c["service"] == SCALED_SERVICE}
    assert len(workers) == 2
    queue = topology.variables["AIRFLOW_CELERY_QUEUE"]
    hosts = {}
    for ti in task_instances:
        assert ti["queue"] == queue, ti
        assert ti["executor"] in (None, "CeleryExecutor"), ti
        hosts.setdefault(ti["hostname"].split("@")[0], []).append(ti["task_id"])
    assert set(hosts) <= workers, hosts
    # The executor itself: one Celery result per task try, in the result backend (the metadata DB).
    engine = sa.create_engine(topology.db_url("AIRFLOW_DB_NAME"), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        results = conn.execute(sa.text("select status, count(*) from celery_taskmeta group by status")).all()
    engine.dispose()
    # (The last may still read STARTED: Celery records the end after the task has told Airflow; a try that
    # failed and was retried reads FAILURE.)
    tries = sum(ti["try_number"] for ti in task_instances)
    assert sum(n for _, n in results) == tries, (results, tries)
    assert {s for s, _ in results} <= {"STARTED", "SUCCESS", "FAILURE"}, results
    print(f"tasks per worker: { {host: len(tasks) for host, tasks in hosts.items()} }")


def test_scores_are_in_the_postgresql_warehouse(dag_run, topology):
    """A score row for every account with signals, for the run's batch (the day before its interval end)."""
    assert dag_run["state"] == "success"
    end = dag_run.get("data_interval_end") or dag_run["logical_date"]
    batch = (datetime.fromisoformat(end.replace("Z", "+00:00")) - timedelta(seconds=1)).date().isoformat()
    engine = sa.create_engine(topology.db_url("WAREHOUSE_DB_NAME"), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        scored = conn.execute(sa.text(
            "select count(distinct account_id), count(score), count(unscored_reason) from health_scores "
            "where as_of_date = :d and not is_shadow"), {"d": batch}).one()
        signals = conn.execute(sa.text(
            "select count(distinct account_id) from account_signals where as_of_date = :d"), {"d": batch}).scalar_one()
        dates = conn.execute(sa.text("select as_of_date, count(*) from health_scores group by 1")).all()
    engine.dispose()
    assert 0 < scored[0] == signals <= ACCOUNTS, (batch, scored, signals, dates)
    assert scored[1] + scored[2] == scored[0], "every row is a score or says why it is not"


def test_hostile_account_names_are_stored_verbatim_and_break_nothing(dag_run, topology):
    """Landing keeps the exact name, the account is scored, the CRM PATCH reached it, task texts carry it as is."""
    assert dag_run["state"] == "success"
    sandbox, headers = topology.state["sandbox_url"], {"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}
    companies = requests.get(f"{sandbox}/crm/v3/objects/companies", headers=headers, timeout=30,
                             params={"limit": 100, "properties": "name,health_score,health_band"}).json()["results"]
    hostile = {c["id"]: c["properties"] for c in companies if c["properties"]["name"] in HOSTILE_NAMES}
    assert len(hostile) >= 3, companies[:3]
    engine = sa.create_engine(topology.db_url("WAREHOUSE_DB_NAME"), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        landed = {rid: json.loads(payload)["properties"]["name"] for rid, payload in conn.execute(sa.text(
            "select record_id, payload from raw_hubspot_companies where record_id in :ids").bindparams(
            sa.bindparam("ids", expanding=True)), {"ids": list(hostile)})}
        scored = dict(conn.execute(sa.text(
            "select account_id, count(score) from health_scores where account_id in :ids and not is_shadow "
            "group by account_id").bindparams(sa.bindparam("ids", expanding=True)), {"ids": list(hostile)}).all())
        tables = conn.execute(sa.text("select count(*) from information_schema.tables where table_name in "
                                      "('health_scores', 'raw_hubspot_companies')")).scalar_one()
    engine.dispose()
    assert landed == {cid: props["name"] for cid, props in hostile.items()}  # byte for byte, newlines included
    assert tables == 2
    assert set(scored) == set(hostile), scored
    # The CRM PATCH: every hostile-named company with a numeric score has it in the CRM (as every other does).
    published = {c["id"] for c in companies if c["properties"].get("health_score") is not None}
    with_score = {cid for cid, n in scored.items() if n}
    assert with_score <= published, (with_score, published)
    print(f"hostile-named: {len(hostile)}, with a numeric score: {len(with_score)}, in the CRM: "
          f"{len(with_score & published)}; companies with a CRM score: {len(published)}")
    for name in HOSTILE_NAMES:
        event = {"payload": {"account_name": name, "account_id": "1", "score_change": {"from": 70, "to": 40},
                             "band_change": {"from": "Moderate", "to": "At Risk"}}, "severity": "high"}
        assert name in task_body(event) and name.replace("\n", " ") in task_subject(event).replace("\n", " ")


def test_canary_secrets_appear_in_no_file_and_no_outbox(dag_run, topology):
    """Every file the run wrote (task and component logs, Data Docs, reports, archive, outbox, Airflow home),
    except the admin password the operator is given, and the outbox table: no canary anywhere."""
    assert dag_run["state"] == "success"
    skip = {topology.run_dir / "admin-password", topology.run_dir / "airflow-home" / "auth" / "passwords.json"}
    searched, found = 0, []
    for path in topology.run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in skip:
            searched += 1
            data = path.read_bytes()
            found += [(str(path), name) for name, canary in CANARIES.items() if canary.encode() in data]
    assert searched > 20 and not found, found
    engine = sa.create_engine(topology.db_url("WAREHOUSE_DB_NAME"), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        outbox = " ".join(str(v) for row in conn.execute(sa.text("select * from notifications_outbox")) for v in row)
    engine.dispose()
    assert not [name for name, canary in CANARIES.items() if canary in outbox]


def test_stop_leaves_no_process_behind(topology, dag_run):
    """Last: the stop an operator runs. Workers' pools, task supervisors and every component end."""
    run_id = topology.state["run_id"]
    status = native("status", "--run-dir", str(topology.run_dir))
    assert status.returncode == 0 and all(json.loads(status.stdout)["running"].values()), status.stdout
    pids = topology.state["pids"]
    running = run_processes(run_id, pids.values())
    # 7 components, and their children: Celery pools (2 each), log servers, the api-server's and scheduler's.
    assert len(running) >= len(pids) + 4, running
    stopped = native("stop", "--run-dir", str(topology.run_dir))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert run_processes(run_id, pids.values()) == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{topology.api_url}/api/v2/monitor/health", timeout=5)
