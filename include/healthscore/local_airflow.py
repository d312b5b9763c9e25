"""Run this project's DAGs in a local Airflow (its own SQLite metadata DB) as subprocesses.

Used by `healthscore demo` and by the tests, so both exercise real Airflow (`airflow dags test`):
the DAG is parsed from dags/, tasks run with real connections, XComs, pools and asset events.
"""

from __future__ import annotations

import json
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
BIN = Path(sys.executable).parent


@dataclass
class DagRunResult:
    returncode: int
    output: str

    @property
    def state(self) -> str | None:
        match = re.search(r"DagRun Finished: .*?state=(\w+)", self.output)
        return match.group(1) if match else None


class LocalAirflow:
    """An AIRFLOW_HOME with a SQLite metadata DB and the repository's dags/ folder."""

    def __init__(self, home: Path, base_env: dict[str, str] | None = None) -> None:
        self.home = home.resolve()
        self.db = self.home / "airflow.db"
        base = {k: v for k, v in (base_env or dict(os.environ)).items() if not k.startswith(("AIRFLOW", "HEALTHSCORE_"))}
        self.env = {
            **base,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
            "GX_ANALYTICS_ENABLED": "false",
        }

    def _airflow(self, *args: str, extra_env: dict[str, str] | None = None, timeout: int = 600) -> DagRunResult:
        proc = subprocess.run([str(BIN / "airflow"), *args], env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)
        return DagRunResult(proc.returncode, proc.stdout + proc.stderr)

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
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

    def asset_events(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.db) as conn:
            return [row[0] for row in conn.execute(
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
