"""Run this project's DAGs in a local Airflow (its own SQLite metadata DB) as subprocesses.

Used by `healthscore demo` and by the tests, so both exercise real Airflow (`airflow dags test`):
the DAG is parsed from dags/, tasks run with real connections, XComs, pools and asset events.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import healthscore
from healthscore.preload import ENV_FLAG

REPO = Path(healthscore.__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
POOLS_FILE = REPO / "airflow" / "pools.json"
CONFIG_DIR = REPO / "airflow" / "config"  # airflow_local_settings.py, linked as $AIRFLOW_HOME/config
BIN = Path(sys.executable).parent


@dataclass
class DagRunResult:
    returncode: int
    output: str

    @property
    def state(self) -> str | None:
        match = re.search(r"DagRun Finished: .*?state=(\w+)", self.output)
        return match.group(1) if match else None


def _psycopg3(url: str) -> str:
    """PostgreSQL URLs through psycopg 3 (installed; psycopg2 is not), whatever driver they name."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class LocalAirflow:
    """An AIRFLOW_HOME with the repository's dags/ folder and its own metadata DB.

    The metadata DB is SQLite in the home unless ``metadata_url`` names another (PostgreSQL, as in
    production: a scheduler, api-server and dag-processor writing at once can lock SQLite out).
    """

    def __init__(self, home: Path, base_env: dict[str, str] | None = None, metadata_url: str | None = None) -> None:
        self.home = home.resolve()
        self.metadata_url = _psycopg3(metadata_url) if metadata_url else f"sqlite:///{self.home / 'airflow.db'}"
        base = {k: v for k, v in (base_env or dict(os.environ)).items() if not k.startswith(("AIRFLOW", "HEALTHSCORE_"))}
        self.env = {
            **base,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "GX_ANALYTICS_ENABLED": "false",
        }
        if self.metadata_url.startswith("postgresql"):  # Airflow's async engine would want asyncpg; psycopg 3 does both
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = self.metadata_url

    def _airflow(self, *args: str, extra_env: dict[str, str] | None = None, timeout: int = 600) -> DagRunResult:
        proc = subprocess.run([str(BIN / "airflow"), *args], env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def link_config(self) -> None:
        """$AIRFLOW_HOME/config is the repository's airflow/config (airflow_local_settings.py)."""
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "config"
        if not config.exists():
            config.symlink_to(CONFIG_DIR, target_is_directory=True)

    def migrate(self) -> None:
        self.link_config()
        result = self._airflow("db", "migrate", timeout=300)
        if result.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{result.output[-3000:]}")
        pools = self._airflow("pools", "import", str(POOLS_FILE))
        if pools.returncode:
            raise RuntimeError(f"airflow pools import failed:\n{pools.output[-3000:]}")

    def command(self, logical_date: str, dag_id: str) -> list[str]:
        return [str(BIN / "airflow"), "dags", "test", dag_id, logical_date]

    def dags_test(self, logical_date: str, extra_env: dict[str, str], dag_id: str = "customer_health_daily",
                  timeout: int = 900) -> DagRunResult:
        return self._airflow("dags", "test", dag_id, logical_date, extra_env=extra_env, timeout=timeout)

    def start(self, logical_date: str, extra_env: dict[str, str], log_path: Path,
              dag_id: str = "customer_health_daily") -> subprocess.Popen:
        handle = log_path.open("w")
        return subprocess.Popen(self.command(logical_date, dag_id), env={**self.env, **extra_env}, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def query(self, sql: str, **params: object) -> list[tuple]:
        """Rows of a read-only query on the metadata DB; datetimes as text, as SQLite stores them."""
        from datetime import datetime

        import sqlalchemy as sa

        engine = sa.create_engine(self.metadata_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(sql), params).all()
        finally:
            engine.dispose()
        return [tuple(str(v) if isinstance(v, datetime) else v for v in row) for row in rows]

    def asset_events(self) -> list[str]:
        return [row[0] for row in self.query(
            "select a.uri from asset_event e join asset a on a.id = e.asset_id order by e.id")]


def sandbox_connections(base_url: str, timeout: float | None = None) -> dict[str, str]:
    """Airflow connections (AIRFLOW_CONN_* JSON) pointing every source at a sandbox."""
    from healthscore.sandbox import credentials as cred

    def conn(login: str | None, password: str, **extra: object) -> str:
        extra = {"sandbox": True, **extra, **({"timeout": timeout} if timeout is not None else {})}
        return json.dumps({"conn_type": "http", "host": base_url, "login": login, "password": password,
                           "extra": extra})

    return {
        "AIRFLOW_CONN_CRM_HUBSPOT": conn(None, cred.HUBSPOT_TOKEN),
        "AIRFLOW_CONN_SUPPORT_ZENDESK": conn(cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
        "AIRFLOW_CONN_BILLING_STRIPE": conn(None, cred.STRIPE_SECRET_KEY),
        "AIRFLOW_CONN_PRODUCT_MIXPANEL": conn(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                              project_id=cred.MIXPANEL_PROJECT_ID),
    }


def pipeline_env(base_url: str, warehouse_url: str, data_dir: Path, timeout: float | None = None,
                 **extra: str) -> dict[str, str]:
    """Environment of one pipeline run: sandbox connections, the warehouse, the data folder."""
    from sqlalchemy.engine import make_url

    env = sandbox_connections(base_url, timeout)
    url = make_url(warehouse_url)
    if url.get_backend_name() == "postgresql":  # through the Airflow connection, as in production
        env["AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE"] = url.set(drivername="postgresql").render_as_string(
            hide_password=False)
    else:
        env["HEALTHSCORE_WAREHOUSE_URL"] = warehouse_url
    env["HEALTHSCORE_DATA_DIR"] = str(data_dir.resolve())
    env.update(extra)
    return env


class AirflowServices:
    """A LocalAirflow's api-server, scheduler and dag-processor (LocalExecutor): DAG runs as in production.

    Used as a context manager; on exit every component (and the executor's workers) is stopped by its
    process group. ``backfill`` creates an Airflow backfill that the scheduler then runs. The scheduler
    preloads the task runtime (``healthscore.preload``) unless ``preload_task_runtime=False``.
    """

    def __init__(self, airflow: LocalAirflow, extra_env: dict[str, str], log_dir: Path, parallelism: int = 4,
                 use_job_schedule: bool = False, preload_task_runtime: bool = True) -> None:
        import secrets

        from healthscore.sandbox.runner import free_port

        self.airflow = airflow
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {
            **airflow.env, **extra_env,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            # Without it an unpaused catchup=False DAG also gets a run for the latest interval (wall clock).
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(use_job_schedule),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
        # The LocalExecutor forks its workers, and they every task, from the scheduler: warm it only.
        self.component_env = {"scheduler": {ENV_FLAG: str(preload_task_runtime).lower()}}
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> AirflowServices:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for component in ("api-server", "dag-processor", "scheduler"):
                handle = (self.log_dir / f"{component}.log").open("w")
                self.processes[component] = subprocess.Popen(
                    [str(BIN / "airflow"), component], env={**self.env, **self.component_env.get(component, {})},
                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        import signal

        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # executor workers share the component's group
                os.killpg(proc.pid, signal.SIGKILL)

    def _wait_healthy(self, timeout: float = 180) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    log = (self.log_dir / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as r:
                    health = json.loads(r.read())
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow services not healthy after {timeout:.0f} s; logs in {self.log_dir}")

    def cli(self, *args: str, timeout: int = 300) -> DagRunResult:
        proc = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the dag-processor has serialized the DAG (backfills and triggers need it)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.airflow.query("select 1 from serialized_dag where dag_id = :dag_id", dag_id=dag_id):
                return
            time.sleep(1)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout:.0f} s; see {self.log_dir}/dag-processor.log")

    def backfill(self, dag_id: str, from_date: str, to_date: str, *options: str) -> None:
        self.wait_for_dag(dag_id)
        for args in (("dags", "unpause", dag_id),
                     ("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
                      *options)):
            result = self.cli(*args)
            if result.returncode:
                raise RuntimeError(f"airflow {' '.join(args)} failed:\n{result.output[-3000:]}")

    def dag_runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        """(logical_date, run_type, state) of every run of the DAG, oldest first."""
        return self.airflow.query("select logical_date, run_type, state from dag_run where dag_id = :dag_id "
                                  "order by logical_date", dag_id=dag_id)

    def wait_for_runs(self, dag_id: str, count: int, timeout: float) -> list[tuple[str, str, str]]:
        """Until ``count`` runs have finished (success or failed); the runs, or TimeoutError with the tail."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            runs = self.dag_runs(dag_id)
            done = [r for r in runs if r[2] in ("success", "failed")]
            if len(done) >= count or any(r[2] == "failed" for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{count} runs finished after {timeout:.0f} s: {runs[-3:]}")
            time.sleep(2)

    def run_spans(self, dag_id: str) -> list[tuple[str, str]]:
        """(first task start, last task end) of each run, in logical-date order."""
        return self.airflow.query(
            "select min(ti.start_date), max(ti.end_date) from task_instance ti join dag_run r "
            "on r.dag_id = ti.dag_id and r.run_id = ti.run_id where r.dag_id = :dag_id "
            "group by r.logical_date order by r.logical_date", dag_id=dag_id)
