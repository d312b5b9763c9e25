"""`healthscore demo`: the main job on the embedded defaults (SQLite warehouse + local sandbox).

It starts the sandbox as a separate process, exactly as an operator would, points the Airflow
connections at it, and runs whatever part of the pipeline exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import requests

from healthscore.sandbox import credentials as cred
from healthscore.settings import Settings

DEMO_NOW = datetime(2026, 9, 30, 6, tzinfo=UTC)


def sandbox_connections(base_url: str) -> dict[str, str]:
    """Airflow connections (as AIRFLOW_CONN_* JSON) that point every source at a sandbox."""
    def conn(login: str | None, password: str, **extra: object) -> str:
        return json.dumps({"conn_type": "http", "host": base_url, "login": login, "password": password,
                           "extra": {"sandbox": True, **extra}})

    return {
        "AIRFLOW_CONN_CRM_HUBSPOT": conn(None, cred.HUBSPOT_TOKEN),
        "AIRFLOW_CONN_SUPPORT_ZENDESK": conn(cred.ZENDESK_EMAIL, cred.ZENDESK_API_TOKEN),
        "AIRFLOW_CONN_BILLING_STRIPE": conn(None, cred.STRIPE_SECRET_KEY),
        "AIRFLOW_CONN_PRODUCT_MIXPANEL": conn(cred.MIXPANEL_SERVICE_ACCOUNT, cred.MIXPANEL_SECRET,
                                              project_id=cred.MIXPANEL_PROJECT_ID),
    }


@contextmanager
def sandbox_process(port: int, accounts: int, seed: int, now: datetime) -> Iterator[str]:
    """Run `healthscore sandbox serve` as a child process until the block ends."""
    command = [sys.executable, "-m", "healthscore.cli", "sandbox", "serve", "--port", str(port),
               "--accounts", str(accounts), "--seed", str(seed), "--now", now.isoformat()]
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


def run_demo(settings: Settings, accounts: int = 300, seed: int = 42) -> int:
    from healthscore.config import load_model_config
    from healthscore.sandbox.runner import free_port
    from healthscore.sources import SOURCES, SourceConnection
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url
    from healthscore.warehouse.migrate import upgrade
    from healthscore.warehouse.registry import register_model_version

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_warehouse_url(settings)
    upgrade(url)
    model = load_model_config(settings.model_config_path)
    engine = make_engine(url)
    register_model_version(engine, model)
    print(f"warehouse: {engine.url.render_as_string(hide_password=True)} (migrated)")
    print(f"model: {model.version} config_hash={model.config_hash[:12]}")

    with sandbox_process(free_port(), accounts, seed, DEMO_NOW) as base:
        os.environ.update(sandbox_connections(base))
        print(f"sandbox: {base} ({accounts} accounts, seed {seed}, clock {DEMO_NOW.isoformat()})")
        for name, source_cls in SOURCES.items():
            connection = SourceConnection.from_airflow(source_cls.default_conn_id)
            with source_cls(connection, as_of=DEMO_NOW) as source:
                for obj in source_cls.objects:
                    if name == "mixpanel":
                        day = (DEMO_NOW - timedelta(days=1)).date()
                        count = source.fold_day(day, lambda: [0], _count_event)[0]
                        print(f"  {name}.{obj}: {count} events on {day}")
                        continue
                    count = sum(len(page.records) for page in source.pages(obj))
                    print(f"  {name}.{obj}: {count} records")
                print(f"  {name}: {source.client.stats.requests} requests, {source.client.stats.retries} retries")
    print(f"demo finished {date.today().isoformat()}: the daily DAG lands here as its issues are resolved")
    return 0


def _count_event(acc: list[int], _event: dict) -> None:
    acc[0] += 1
