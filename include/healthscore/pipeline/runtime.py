"""What a task needs from its Airflow context, resolved in one place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.engine import Engine

from healthscore.batch import Batch
from healthscore.settings import Settings


def batch_from_context(context: Mapping[str, Any]) -> Batch:
    """The batch a run processes: the day that ends at the data interval end.

    Airflow 3's cron timetables give zero-length intervals (start == end == the run's logical time);
    interval timetables give [day, next day). Both mean "data as of the interval end" and the day
    just before it, so backfills and manual runs land the same batch for the same date.
    """
    end = context.get("data_interval_end") or context["logical_date"]
    end = end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)
    return Batch((end - timedelta(seconds=1)).date(), datetime.fromtimestamp(end.timestamp(), UTC),
                 str(context["run_id"]))


def warehouse_engine(settings: Settings | None = None, migrate: bool = False) -> Engine:
    from healthscore.warehouse.engine import make_engine, resolve_warehouse_url
    from healthscore.warehouse.migrate import upgrade

    settings = settings or Settings.from_env()
    url = resolve_warehouse_url(settings)
    if migrate:
        upgrade(url)
    return make_engine(url)


class TaskScope(NamedTuple):
    """What a task entry point works with: the settings, its batch (None without a context) and an engine."""

    settings: Settings
    batch: Batch | None
    engine: Engine


@contextmanager
def task_scope(context: Mapping[str, Any] | None = None, *, migrate: bool = False) -> Iterator[TaskScope]:
    """Settings from the environment, the context's batch, and a warehouse engine disposed on the way out."""
    settings = Settings.from_env()
    batch = batch_from_context(context) if context is not None else None
    engine = warehouse_engine(settings, migrate=migrate)
    try:
        yield TaskScope(settings, batch, engine)
    finally:
        engine.dispose()
