"""Test helpers around healthscore.local_airflow: throw-away Airflow homes and landing snapshots."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import requests
import sqlalchemy as sa

from healthscore.demo import pipeline_env as _pipeline_env
from healthscore.local_airflow import LocalAirflow

AirflowHome = LocalAirflow


def pipeline_env(base_url: str, warehouse_url: str, data_dir: Path, timeout: str | None = None,
                 **extra: str) -> dict[str, str]:
    """A short Mixpanel backfill keeps each Airflow run in tests to seconds."""
    return _pipeline_env(base_url, warehouse_url, data_dir, float(timeout) if timeout else None,
                         **{"HEALTHSCORE_MIXPANEL_BACKFILL_DAYS": "3", **extra})


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


def table_rows(warehouse_url: str, models: Iterable[type], ignore: Collection[str]) -> dict[str, list[dict]]:
    """Rows of each model's table without the ``ignore`` columns (ids, wall-clock stamps), in a stable order."""
    engine = sa.create_engine(warehouse_url)
    out = {}
    with engine.connect() as conn:
        for model in models:
            columns = [c for c in model.__table__.columns if c.name not in ignore]
            out[model.__tablename__] = [dict(r) for r in conn.execute(
                sa.select(*columns).order_by(*columns[:4])).mappings()]
    engine.dispose()
    return out


def crm_tasks(base_url: str) -> list[dict]:
    """Every task object in the sandbox CRM, all pages, in the CRM's order."""
    from healthscore_sandbox import credentials as cred

    headers = {"Authorization": f"Bearer {cred.HUBSPOT_TOKEN}"}
    tasks, after = [], None
    while True:
        page = requests.get(f"{base_url}/crm/v3/objects/tasks", headers=headers,
                            params={"limit": 100, **({"after": after} if after else {})}, timeout=10).json()
        tasks += page["results"]
        after = (page.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return tasks


def crm_task_properties(base_url: str) -> list[dict]:
    """Every task's properties, in an order that does not depend on CRM ids (for comparing two sandboxes)."""
    return sorted((t["properties"] for t in crm_tasks(base_url)),
                  key=lambda p: (p["hs_timestamp"], p["hs_task_subject"], p["hs_task_body"]))
