"""Test helpers around healthscore.local_airflow: throw-away Airflow homes and landing snapshots."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from healthscore.local_airflow import LocalAirflow
from healthscore.local_airflow import pipeline_env as _pipeline_env

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
