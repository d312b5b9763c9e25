"""Read back the CRM tasks the pipeline created: were the plays done, and when?

Why here and not a source in the registry: the act step knows the ids of exactly the tasks it created
(``playbook_events.crm_task_id``), so a batch read of those ids answers the question in one request per 100
open tasks. A ``tasks`` source would land every task of every team in the CRM (most not ours) into a raw table
and then have to match them back by the key token in their bodies; tasks are no scoring signal either.

Each open task (sent, not yet read as COMPLETED, crossed within ``horizon_days``) is read with
``hs_task_status`` and ``hs_task_completion_date``, and the event row stores them with the instant of the read
(``task_checked_at``). A completed task is not read again: its completion date does not move. In the sandbox
the read carries the batch's instant as X-Sandbox-Now (the client sets it), so a backfill sees the statuses
of its day, never later ones. If HubSpot keeps failing (5xx, 429 after the client's retries) the read stops and
the rest waits for the next run: the act step goes on to the digests. A rerun of an earlier day may find a
task already stored as completed later than that day; it is not read again, and the report only counts
completions on or before its own end (``task_completed_at``), so reads stay point-in-time.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.sources.base import HttpClient, RetryableError, parse_timestamp
from healthscore.warehouse.models import PlaybookEvent

log = logging.getLogger(__name__)

BATCH_READ_PATH = "/crm/v3/objects/tasks/batch/read"
BATCH_SIZE = 100
COMPLETED = "COMPLETED"
HORIZON_DAYS = 180  # an open task older than this is not read again (the plays report looks 60-90 days out)
_EVENTS = PlaybookEvent.__table__


@dataclass
class FollowupSummary:
    read: int = 0
    completed: int = 0
    newly_completed: int = 0
    missing: int = 0
    stopped: str | None = None  # HubSpot kept failing: the rest is read on the next run


def _open_tasks(conn: sa.Connection, day: dt.date, horizon_days: int) -> list[tuple[int, str, str | None]]:
    query = (sa.select(_EVENTS.c.id, _EVENTS.c.crm_task_id, _EVENTS.c.task_status)
             .where(_EVENTS.c.crm_task_id.is_not(None),
                    sa.or_(_EVENTS.c.task_status.is_(None), _EVENTS.c.task_status != COMPLETED),
                    _EVENTS.c.crossing_date <= day,
                    _EVENTS.c.crossing_date >= day - dt.timedelta(days=horizon_days))
             .order_by(_EVENTS.c.id))
    return [(int(r.id), str(r.crm_task_id), r.task_status) for r in conn.execute(query)]


def read_task_statuses(engine: Engine, hubspot: HttpClient, *, as_of: dt.datetime,
                       horizon_days: int = HORIZON_DAYS) -> FollowupSummary:
    """Store the status of every open task the pipeline created; returns what was read."""
    checked = as_of.astimezone(dt.UTC) if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)
    summary = FollowupSummary()
    with engine.connect() as conn:
        rows = _open_tasks(conn, checked.date(), horizon_days)
    by_task: dict[str, list[tuple[int, str | None]]] = {}
    for event_id, task_id, status in rows:
        by_task.setdefault(task_id, []).append((event_id, status))
    ids = list(by_task)
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        try:
            body = hubspot.post_json(BATCH_READ_PATH, idempotent=True, body={
                "inputs": [{"id": i} for i in chunk], "properties": ["hs_task_status", "hs_task_completion_date"]})
        except RetryableError as exc:  # an outage must not hold back today's digests; auth errors still raise
            summary.stopped = str(exc)[:300]
            log.warning("task follow-up stopped after %d tasks: %s", summary.read, exc)
            break
        found = {str(r["id"]): r.get("properties") or {} for r in body.get("results") or []}
        summary.missing += len(set(chunk) - set(found))
        updates = []
        for task_id, props in found.items():
            status = props.get("hs_task_status")
            completed = parse_timestamp(props.get("hs_task_completion_date")) if status == COMPLETED else None
            summary.read += 1
            summary.completed += status == COMPLETED
            for event_id, before in by_task.get(task_id, []):
                summary.newly_completed += status == COMPLETED and before != COMPLETED
                updates.append({"b_id": event_id, "task_status": status, "task_completed_at": completed,
                                "task_checked_at": checked})
        if updates:
            with engine.begin() as conn:
                conn.execute(_EVENTS.update().where(_EVENTS.c.id == sa.bindparam("b_id")).values(
                    task_status=sa.bindparam("task_status"), task_completed_at=sa.bindparam("task_completed_at"),
                    task_checked_at=sa.bindparam("task_checked_at")), updates)
    log.info("task follow-up as of %s: %s", checked.isoformat(), summary)
    return summary
