"""healthscore.warehouse: schema (models + Alembic migrations), engines and bulk-load helpers.

Typical use::

    url = resolve_warehouse_url(settings)
    upgrade(url)                       # schema changes only through migrations
    engine = make_engine(url)
    with engine.begin() as conn:       # one transaction per unit of work
        bulk_upsert(conn, HealthScore, rows, ["account_id", "as_of_date", "model_version"])

Names are resolved lazily (PEP 562) so ``import healthscore.warehouse.models`` in a DAG file does not pay
for pandas and Alembic.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "make_engine": "engine",
    "normalize_url": "engine",
    "resolve_warehouse_url": "engine",
    "current_revision": "migrate",
    "downgrade": "migrate",
    "head_revision": "migrate",
    "upgrade": "migrate",
    "Base": "models",
    "LANDING_MODELS": "models",
    "LANDING_OBJECTS": "models",
    "landing_table": "models",
    "canonical_json": "types",
    "dumps_json": "types",
    "utcnow": "types",
    "bulk_upsert": "upsert",
    "replace_partition": "upsert",
}

__all__ = [
    "LANDING_MODELS",
    "LANDING_OBJECTS",
    "Base",
    "bulk_upsert",
    "canonical_json",
    "current_revision",
    "downgrade",
    "dumps_json",
    "head_revision",
    "landing_table",
    "make_engine",
    "normalize_url",
    "replace_partition",
    "resolve_warehouse_url",
    "upgrade",
    "utcnow",
]

if TYPE_CHECKING:
    from healthscore.warehouse.engine import make_engine, normalize_url, resolve_warehouse_url
    from healthscore.warehouse.migrate import current_revision, downgrade, head_revision, upgrade
    from healthscore.warehouse.models import LANDING_MODELS, LANDING_OBJECTS, Base, landing_table
    from healthscore.warehouse.types import canonical_json, dumps_json, utcnow
    from healthscore.warehouse.upsert import bulk_upsert, replace_partition


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
