"""Run the project's DAGs in real Airflow (`airflow dags test`) from tests, in a throw-away AIRFLOW_HOME."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class DagRunResult:
    returncode: int
    output: str

    @property
    def state(self) -> str | None:
        match = re.search(r"DagRun Finished: .*?state=(\w+)", self.output)
        return match.group(1) if match else None


class AirflowHome:
    """An AIRFLOW_HOME with a migrated SQLite metadata DB and the repository's dags/ folder."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db = home / "airflow.db"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HEALTHSCORE_"))}
        self.env = {
            **base,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def migrate(self) -> None:
        subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=self.env, check=True, capture_output=True,
                       timeout=300)

    def command(self, logical_date: str, dag_id: str) -> list[str]:
        return [str(BIN / "airflow"), "dags", "test", dag_id, logical_date]

    def dags_test(self, logical_date: str, extra_env: dict[str, str], dag_id: str = "customer_health_daily",
                  timeout: int = 600) -> DagRunResult:
        proc = subprocess.run(self.command(logical_date, dag_id), env={**self.env, **extra_env},
                              capture_output=True, text=True, timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def start(self, logical_date: str, extra_env: dict[str, str], log_path: Path,
              dag_id: str = "customer_health_daily") -> subprocess.Popen:
        handle = log_path.open("w")
        return subprocess.Popen(self.command(logical_date, dag_id), env={**self.env, **extra_env}, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def asset_events(self) -> list[str]:
        with sqlite3.connect(self.db) as conn:
            return [row[0] for row in conn.execute(
                "select a.uri from asset_event e join asset a on a.id = e.asset_id order by e.id")]


def sandbox_connection_env(base_url: str, timeout: float | None = None) -> dict[str, str]:
    from healthscore.demo import sandbox_connections

    env = sandbox_connections(base_url)
    if timeout is not None:
        for key, value in env.items():
            conn = json.loads(value)
            conn["extra"]["timeout"] = timeout
            env[key] = json.dumps(conn)
    return env


def pipeline_env(base_url: str, warehouse_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of one pipeline run: sandbox connections, warehouse connection, data dir."""
    env = sandbox_connection_env(base_url, extra.pop("timeout", None))
    conn_url = sa.engine.make_url(warehouse_url)
    if conn_url.get_backend_name() == "postgresql":
        env["AIRFLOW_CONN_HEALTHSCORE_WAREHOUSE"] = conn_url.set(drivername="postgresql").render_as_string(
            hide_password=False)
    else:
        env["HEALTHSCORE_WAREHOUSE_URL"] = warehouse_url
    env["HEALTHSCORE_DATA_DIR"] = str(data_dir)
    env["HEALTHSCORE_MIXPANEL_BACKFILL_DAYS"] = "3"
    env.update(extra)
    return env


def landing_snapshot(warehouse_url: str) -> dict[str, list[tuple]]:
    """Every landing table's rows in key order, for byte-for-byte comparisons."""
    from healthscore.warehouse.models import LANDING_MODELS, MixpanelUsageDaily

    engine = sa.create_engine(warehouse_url)
    tables = [m.__table__ for m in LANDING_MODELS.values()] + [MixpanelUsageDaily.__table__]
    out = {}
    with engine.connect() as conn:
        for table in tables:
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(str(v) for v in row) for row in rows]
    engine.dispose()
    return out
