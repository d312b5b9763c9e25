"""`healthscore demo`: the main job on the embedded defaults.

SQLite warehouse under data/, Airflow on its own SQLite metadata DB under data/airflow/, and the
sandbox started as a separate process, exactly as an operator would run them. The daily DAG runs in
Airflow for a few consecutive days, then the demo prints what landed, what the quality gate did and
where the reports are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from healthscore.settings import Settings
from healthscore_sandbox import credentials as cred

DEMO_LAST_DAY = date(2026, 9, 30)


@contextmanager
def sandbox_process(port: int, accounts: int, seed: int) -> Iterator[str]:
    """Run `healthscore sandbox serve` as a child process until the block ends."""
    command = [sys.executable, "-m", "healthscore.cli", "sandbox", "serve", "--port", str(port),
               "--accounts", str(accounts), "--seed", str(seed)]
    proc = subprocess.Popen(command)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with code {proc.returncode}")
            try:
                if requests.get(f"{base}/_sandbox/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not become healthy within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sandbox_connections(base_url: str, timeout: float | None = None) -> dict[str, str]:
    """Airflow connections (AIRFLOW_CONN_* JSON) pointing every source at a sandbox."""
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


def run_demo(settings: Settings, accounts: int = 300, seed: int = 42, days: int = 3) -> int:
    from healthscore.config import load_model_config
    from healthscore.local_airflow import LocalAirflow
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url
    from healthscore.warehouse.migrate import upgrade
    from healthscore.warehouse.registry import register_model_version
    from healthscore_sandbox.runner import free_port

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_warehouse_url(settings)
    upgrade(url)
    engine = make_engine(url)
    model = load_model_config(settings.model_config_path)
    register_model_version(engine, model)
    print(f"warehouse: {engine.url.render_as_string(hide_password=True)}; model {model.version} "
          f"(config {model.config_hash[:12]})", flush=True)

    airflow = LocalAirflow(data_dir / "airflow")
    print(f"airflow: home {airflow.home} (SQLite metadata DB); migrating and importing pools ...", flush=True)
    airflow.migrate()
    logs = data_dir / "airflow" / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with sandbox_process(free_port(), accounts, seed) as base:
        print(f"sandbox: {base} ({accounts} accounts, seed {seed})", flush=True)
        env = pipeline_env(base, url, data_dir)
        for offset in range(days - 1, -1, -1):
            logical = DEMO_LAST_DAY - timedelta(days=offset)
            started = time.monotonic()
            result = airflow.dags_test(logical.isoformat(), env)
            (logs / f"customer_health_daily-{logical}.log").write_text(result.output)
            print(f"customer_health_daily {logical}: {result.state} in {time.monotonic() - started:.0f} s",
                  flush=True)
            if result.state != "success":
                print(result.output[-3000:], file=sys.stderr)
                return 1
    print_summary(engine, data_dir)
    engine.dispose()
    return 0


def print_summary(engine: sa.Engine, data_dir) -> None:
    from healthscore.warehouse.models import BatchReconciliation, HealthScore, QualityResult

    with engine.connect() as conn:
        recon = conn.execute(sa.select(BatchReconciliation.batch_date, BatchReconciliation.source,
                                       BatchReconciliation.object, BatchReconciliation.landed,
                                       BatchReconciliation.accepted, BatchReconciliation.quarantined,
                                       BatchReconciliation.out_of_scope)
                             .order_by(BatchReconciliation.batch_date.desc(), BatchReconciliation.source,
                                       BatchReconciliation.object)).all()
        failed = conn.execute(sa.select(sa.func.count()).select_from(QualityResult)
                              .where(QualityResult.success.is_(False))).scalar_one()
        bands = conn.execute(sa.select(HealthScore.band, sa.func.count()).where(
            HealthScore.as_of_date == sa.select(sa.func.max(HealthScore.as_of_date)).scalar_subquery(),
            HealthScore.is_shadow.is_(False)).group_by(HealthScore.band)).all()
    if recon:
        latest = recon[0][0]
        print(f"\nbatch {latest}: landed = accepted + quarantined + out of scope (not scored by design)")
        for _, source, obj, landed, accepted, quarantined, outside in (r for r in recon if r[0] == latest):
            print(f"  {source}.{obj:22s} {landed:7d} = {accepted:7d} + {quarantined} + {outside}")
    print(f"failed expectations across runs: {failed}")
    if bands:
        print("latest scores by band: " + ", ".join(f"{band or 'unscored'}: {n}" for band, n in sorted(
            bands, key=lambda b: str(b[0]))))
    print(f"Data Docs (RevOps): {data_dir / 'data_docs' / 'index.html'}")
    print(f"Task logs: {data_dir / 'airflow' / 'demo-logs'}")
