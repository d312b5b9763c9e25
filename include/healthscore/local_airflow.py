"""Run this project's DAGs in a local Airflow (its own SQLite metadata DB) as subprocesses.

Used by `healthscore demo` and by the tests, so both exercise real Airflow (`airflow dags test`):
the DAG is parsed from dags/, tasks run with real connections, XComs, pools and asset events.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import healthscore

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

    def _airflow(self, *args: str, extra_env: dict[str, str] | None = None, timeout: int | None = 600) -> DagRunResult:
        proc = subprocess.run([str(BIN / "airflow"), *args], env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def link_config(self) -> None:
        """$AIRFLOW_HOME/config is the repository's airflow/config (airflow_local_settings.py)."""
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "config"
        if not config.exists():
            config.symlink_to(CONFIG_DIR, target_is_directory=True)

    def migrate(self, timeout: int | None = 300) -> None:
        """Migrate the metadata DB and import the pools (``timeout`` None: wait as long as it takes)."""
        self.link_config()
        result = self._airflow("db", "migrate", timeout=timeout)
        if result.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{result.output[-3000:]}")
        pools = self._airflow("pools", "import", str(POOLS_FILE), timeout=timeout)
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

    def run_tasks(self, logical_date: str, dag_id: str = "customer_health_daily"
                  ) -> list[tuple[str, str | None, float | None]]:
        """(task_id, state, duration s) of the newest run of ``dag_id`` whose logical date is ``logical_date``
        (YYYY-MM-DD), in start order; [] while there is none or while the metadata DB is busy (a progress
        poll simply tries again). Run ids of `dags test` carry the wall time, not the logical date."""
        import sqlalchemy as sa

        try:
            runs = self.query("select run_id, logical_date from dag_run where dag_id = :dag order by id desc",
                              dag=dag_id)
            run_id = next((r for r, logical in runs if str(logical)[:10] == logical_date[:10]), None)
            if run_id is None:
                return []
            rows = self.query(
                "select task_id, state, duration from task_instance where dag_id = :dag and run_id = :run "
                "order by start_date is null, start_date, task_id", dag=dag_id, run=run_id)
        except sa.exc.OperationalError:
            return []
        return [(str(t), s, float(d) if d is not None else None) for t, s, d in rows]

    def asset_events(self) -> list[str]:
        return [row[0] for row in self.query(
            "select a.uri from asset_event e join asset a on a.id = e.asset_id order by e.id")]
