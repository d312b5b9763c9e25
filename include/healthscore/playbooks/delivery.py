"""Playbook events -> HubSpot tasks exactly once.

Two steps, each safe to rerun:

``record_events``
    Stores the decision in ``playbook_events`` BEFORE anything is sent, keyed by ``idempotency_key``
    (insert-if-absent). Only a 'deferred' row is ever rewritten (released to 'pending', muted to
    'suppressed', or re-escalated while it waits); 'pending', 'sent', 'failed' and 'suppressed' rows are
    left as they are, so a rerun never duplicates nor downgrades a delivered event.

``deliver_pending``
    One HubSpot task per 'pending' (or retryable 'failed') row. Exactly once rests on three rules:

    1. Write-ahead attempt: ``attempts`` is incremented and committed before every POST (an
       optimistic ``WHERE attempts = <seen>`` claim), so "a POST may have happened" survives a crash.
    2. Find before you create again: a row with ``attempts > 0`` and no ``crm_task_id`` first searches
       HubSpot for a task carrying its key (``hs_task_body`` CONTAINS_TOKEN of a hash token written in
       the body's last line) and adopts it. This covers a crash between the 201 and our commit, and a
       5xx/timeout/lost answer after HubSpot did create the task. (The sandbox answers its injected
       5xx before creating anything; the search is what makes the other case safe.) If the search
       itself cannot be answered the row is NOT posted blind; it waits for the next run.
    3. Only 201 Created counts as success (VENDOR-APIS: official clients treat other 2xx as "no
       object"); any other 2xx, 5xx, timeout or unreadable 201 body is "ambiguous" and handled by 2.
       429 is retried under the same attempt: HubSpot rejects it before doing anything.

    4xx validation errors mark the row 'failed' with ``last_error`` (redacted, no secret); it is
    retried on later runs until ``max_attempts`` POSTs were made. One deliverer at a time (Airflow pool
    of one): two concurrent deliverers could both miss a just-created task in the search.
    Real HubSpot indexes search asynchronously (seconds); ``settle_seconds`` waits before an in-run
    search, and crash recovery happens on a later run, long after indexing.

Health scores go to company properties in ``healthscore.playbooks.publication`` (``publish_scores``,
re-exported here); the request helpers both use are in ``healthscore.playbooks.crm_http``.

``account_id`` is the HubSpot company id (the CRM is the account root); a payload
``hubspot_company_id`` overrides it for portfolios keyed otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.playbooks.crm_http import (
    _CHUNK,
    MAX_ERROR_CHARS,
    _Ambiguous,
    _backoff,
    _secrets,
    _send,
    _summary,
    redact,
)
from healthscore.playbooks.publication import (
    BATCH_LIMIT,
    BATCH_UPDATE_PATH,
    COMPANY_PROPERTIES_PATH,
    HEALTH_PROPERTIES,
    TRANSIENT_CATEGORIES,
    Publication,
    PublishSummary,
    ensure_health_properties,
    publish_scores,
)
from healthscore.playbooks.rules import EVENT_COLUMNS, PlaybookDecision
from healthscore.playbooks.text import task_body, task_subject
from healthscore.sources.base import HttpClient, SourceAuthError, SourceError
from healthscore.warehouse.models import PlaybookEvent
from healthscore.warehouse.types import dumps_json, utcnow
from healthscore.warehouse.upsert import bulk_upsert

__all__ = [
    "BATCH_LIMIT",
    "BATCH_UPDATE_PATH",
    "COMPANY_PROPERTIES_PATH",
    "HEALTH_PROPERTIES",
    "KEY_LINE_PREFIX",
    "MAX_ERROR_CHARS",
    "TASKS_PATH",
    "TASK_SEARCH_PATH",
    "TASK_TO_COMPANY",
    "TRANSIENT_CATEGORIES",
    "URGENT_SEVERITIES",
    "DeliverySummary",
    "Publication",
    "PublishSummary",
    "deliver_pending",
    "delivery_token",
    "ensure_health_properties",
    "find_task",
    "key_line",
    "publish_scores",
    "record_events",
    "redact",
    "task_request",
]

log = logging.getLogger(__name__)

TASKS_PATH = "/crm/v3/objects/tasks"
TASK_SEARCH_PATH = "/crm/v3/objects/tasks/search"
TASK_TO_COMPANY = 192
KEY_LINE_PREFIX = "healthscore-key:"
URGENT_SEVERITIES = frozenset({"high", "critical"})
_EVENTS = PlaybookEvent.__table__


# --------------------------------------------------------------------------------------------- helpers

class _RateLimited(Exception):
    """HubSpot kept answering 429; nothing was created."""


def delivery_token(key: str) -> str:
    """A single alphanumeric word derived from the key, so CONTAINS_TOKEN finds it whatever HubSpot's
    tokenizer does with the key's '|' and '-' characters."""
    return "hsk" + hashlib.sha256(key.encode()).hexdigest()[:32]


def key_line(key: str) -> str:
    """The task body's last line: the human-readable key plus its search token."""
    return f"{KEY_LINE_PREFIX} {key} {delivery_token(key)}"


def _hs_time(value: Any) -> str:
    """HubSpot ISO timestamp with milliseconds, in UTC."""
    ts = pd.Timestamp(value) if value is not None else pd.Timestamp(utcnow())
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _as_date(value: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


# ------------------------------------------------------------------------------------------- recording


def _existing(conn: sa.Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cols = [
        _EVENTS.c[c]
        for c in ("idempotency_key", "status", "severity", "priority_score", "due_at", "owner_id", "payload")
    ]
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for row in conn.execute(sa.select(*cols).where(_EVENTS.c.idempotency_key.in_(chunk))).mappings():
            found[row["idempotency_key"]] = dict(row)
    return found


def _clean(value: Any) -> Any:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a stored deferred row already says what the new decision says."""
    old_due, new_due = old["due_at"], new["due_at"]
    same_due = (old_due is None and new_due is None) or (
        old_due is not None and new_due is not None and pd.Timestamp(old_due) == pd.Timestamp(new_due)
    )
    old_p, new_p = old["priority_score"], new["priority_score"]
    same_priority = (old_p is None and new_p is None) or (
        old_p is not None and new_p is not None and abs(float(old_p) - float(new_p)) < 1e-9
    )
    return (
        old["status"] == new["status"]
        and old["severity"] == new["severity"]
        and old["owner_id"] == new["owner_id"]
        and same_due
        and same_priority
        and dumps_json(old["payload"], canonical=True) == dumps_json(new["payload"], canonical=True)
    )


def record_events(engine: Engine, decision: PlaybookDecision) -> int:
    """Store the decision's events (pending, deferred, suppressed) before any send; rows written.

    Insert-if-absent on ``idempotency_key``; an existing row changes only while it is 'deferred'
    (released, muted or escalated by today's decision). A 'sent' row is never touched.
    """
    frames = [f for f in (decision.events, decision.suppressed) if f is not None and not f.empty]
    if not frames:
        return 0
    rows = pd.concat([f[list(EVENT_COLUMNS)] for f in frames], ignore_index=True)
    rows = rows.drop_duplicates("idempotency_key", keep="first").reset_index(drop=True)
    keys = [str(k) for k in rows["idempotency_key"]]
    # IMMEDIATE: read-then-write; on SQLite a concurrent writer waits instead of failing the unit.
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        existing = _existing(conn, keys)
        fresh = rows[[k not in existing for k in keys]]
        written = bulk_upsert(conn, PlaybookEvent, fresh, ["idempotency_key"], update_columns=[])
        changes = []
        for rec in rows.to_dict("records"):
            old = existing.get(str(rec["idempotency_key"]))
            if old is None or old["status"] != "deferred":
                continue
            new = {
                c: _clean(rec[c])
                for c in ("status", "severity", "priority_score", "due_at", "owner_id", "payload")
            }
            if not _same(old, new):
                changes.append({f"b_{k}": v for k, v in new.items()} | {"b_key": str(rec["idempotency_key"])})
        if changes:
            stmt = (
                sa.update(_EVENTS)
                .where(_EVENTS.c.idempotency_key == sa.bindparam("b_key"), _EVENTS.c.status == "deferred")
                .values(
                    {
                        c: sa.bindparam(f"b_{c}", type_=_EVENTS.c[c].type)
                        for c in ("status", "severity", "priority_score", "due_at", "owner_id", "payload")
                    }
                )
            )
            count = conn.execute(stmt, changes).rowcount
            written += count if count >= 0 else len(changes)  # some drivers report -1 for executemany
    return written


# -------------------------------------------------------------------------------------------- delivery


@dataclass
class DeliverySummary:
    """What one delivery run did; ``task_ids`` maps idempotency key -> HubSpot task id."""

    sent: int = 0
    adopted: int = 0
    failed: int = 0
    exhausted: int = 0
    waiting: int = 0
    stopped_early: bool = False
    task_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def delivered(self) -> int:
        return self.sent + self.adopted


def task_request(event: Mapping[str, Any]) -> dict[str, Any]:
    """The POST /crm/v3/objects/tasks body for one stored event (a playbook_events row)."""
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    key = str(event["idempotency_key"])
    severity = str(event.get("severity") or payload.get("severity") or "")
    props = {
        "hs_timestamp": _hs_time(event.get("due_at")),
        "hs_task_subject": task_subject(event),
        "hs_task_body": f"{task_body(event)}\n{key_line(key)}",
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH" if severity in URGENT_SEVERITIES else "MEDIUM",
        "hs_task_type": "TODO",
    }
    owner = event.get("owner_id")
    if owner:  # an unassigned account still gets its task, visible in the CRM's unassigned queue
        props["hubspot_owner_id"] = str(owner)
    company = str(payload.get("hubspot_company_id") or event["account_id"])
    types = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_COMPANY}]
    return {"properties": props, "associations": [{"to": {"id": company}, "types": types}]}


def find_task(client: HttpClient, key: str) -> str | None:
    """Id of an existing task carrying ``key`` (oldest if a duplicate slipped in), else None.

    Raises ``SourceError`` when HubSpot cannot answer: the caller must then not create blindly.
    """
    token = delivery_token(key)
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": token}]}
        ],
        "properties": ["hs_task_body", "hubspot_owner_id"],
        "limit": 10,
    }
    found = client.post_json(TASK_SEARCH_PATH, body, idempotent=True)  # a search: a read sent as POST
    ids = [
        str(r["id"])
        for r in found.get("results", [])
        if token in str((r.get("properties") or {}).get("hs_task_body") or "")
    ]
    if len(ids) > 1:
        log.warning("%d HubSpot tasks carry key %s; adopting the oldest", len(ids), key)
    return min(ids, key=lambda i: (len(i), i)) if ids else None


def _post_task(client: HttpClient, body: dict[str, Any]) -> str:
    """POST one task; its id on 201. 429 is retried here (nothing was created); a 4xx raises
    SourceError/SourceAuthError; anything that may have created the task raises _Ambiguous."""
    for attempt in range(client.policy.attempts):
        response = _send(client, "POST", TASKS_PATH, body)
        status = response.status_code
        if status == 201:
            try:
                return str(response.json()["id"])
            except (ValueError, KeyError, TypeError) as exc:
                raise _Ambiguous(f"201 without a readable task id: {exc}") from exc
        if status == 429:
            client.stats.retries += 1
            time.sleep(_backoff(client, attempt, client.retry_after(response)))
            continue
        if 200 <= status < 300:
            raise _Ambiguous(f"{_summary(response)} (only 201 Created means a task exists)")
        if status >= 500 or status == 408:
            raise _Ambiguous(_summary(response))
        client.check(response)  # 401/403 -> SourceAuthError, other 4xx -> SourceError
        raise SourceError(_summary(response))
    raise _RateLimited(f"POST {TASKS_PATH}: still rate-limited after {client.policy.attempts} tries")


class _Rows:
    """Single-row state transitions, each its own committed transaction (the exactly-once journal)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, row_id: int, seen_attempts: int) -> bool:
        """attempts+1, committed before the POST; False if another run got there first."""
        t = _EVENTS
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(t)
                .where(
                    t.c.id == row_id,
                    t.c.attempts == seen_attempts,
                    t.c.crm_task_id.is_(None),
                    t.c.status.in_(("pending", "failed")),
                )
                .values(attempts=t.c.attempts + 1, status="pending")
            ).rowcount
        return done == 1

    def note(self, row_id: int, error: str, *, failed: bool) -> None:
        values: dict[str, Any] = {"last_error": error}
        if failed:
            values["status"] = "failed"
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(_EVENTS)
                .where(_EVENTS.c.id == row_id, _EVENTS.c.crm_task_id.is_(None))
                .values(values)
            )


def _mark_sent(engine: Engine, row_id: int, task_id: str) -> None:
    """Record the HubSpot task id: from here on the event is delivered for good."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(_EVENTS)
            .where(_EVENTS.c.id == row_id, _EVENTS.c.crm_task_id.is_(None))
            .values(status="sent", crm_task_id=task_id, sent_at=utcnow(), last_error=None)
        )


def _deliverable(engine: Engine, day: dt.date, max_attempts: int) -> list[dict[str, Any]]:
    t = _EVENTS
    query = (
        sa.select(t)
        .where(
            t.c.crm_task_id.is_(None),
            t.c.crossing_date <= day,
            sa.or_(t.c.status == "pending", sa.and_(t.c.status == "failed", t.c.attempts < max_attempts)),
        )
        .order_by(t.c.priority_score.desc().nulls_last(), t.c.due_at, t.c.id)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def deliver_pending(
    engine: Engine,
    hubspot_client: HttpClient,
    *,
    as_of: dt.date | dt.datetime | str,
    max_attempts: int = 5,
    attempts_per_run: int = 3,
    settle_seconds: float = 1.0,
    max_consecutive_failures: int = 10,
) -> DeliverySummary:
    """Create one HubSpot task per undelivered event crossed on or before ``as_of``.

    ``max_attempts`` caps POSTs per event over all runs, ``attempts_per_run`` per run (an outage must
    not burn them all at once). After ``max_consecutive_failures`` events in a row could not be
    delivered for transient reasons the run stops (HubSpot is down; the rest waits for a retry).
    Deferred and suppressed events are never sent. Auth errors raise at once.
    """
    day = _as_date(as_of)
    rows = _Rows(engine)
    summary = DeliverySummary()
    secrets = _secrets(hubspot_client)
    streak = 0
    for event in _deliverable(engine, day, max_attempts):
        if streak >= max_consecutive_failures:
            summary.stopped_early = True
            log.warning("stopping delivery after %d consecutive transient failures", streak)
            break
        outcome = _deliver_one(
            rows,
            hubspot_client,
            event,
            summary,
            secrets,
            max_attempts=max_attempts,
            attempts_per_run=attempts_per_run,
            settle_seconds=settle_seconds,
        )
        streak = streak + 1 if outcome == "transient" else 0
        if outcome == "rate_limited":
            summary.stopped_early = True
            break
    log.info(
        "delivery %s: sent %d, adopted %d, failed %d, exhausted %d, waiting %d",
        day,
        summary.sent,
        summary.adopted,
        summary.failed,
        summary.exhausted,
        summary.waiting,
    )
    return summary


def _deliver_one(
    rows: _Rows,
    client: HttpClient,
    event: dict[str, Any],
    summary: DeliverySummary,
    secrets: tuple[str | None, ...],
    *,
    max_attempts: int,
    attempts_per_run: int,
    settle_seconds: float,
) -> str:
    """Deliver one event: 'sent', 'adopted', 'failed', 'exhausted', 'skipped', 'transient', 'rate_limited'."""
    key, row_id, attempts = str(event["idempotency_key"]), int(event["id"]), int(event["attempts"])

    def adopt_if_found() -> str | None:
        """'adopted' / None (not there) / 'transient' (cannot tell: do not create blind)."""
        try:
            task_id = find_task(client, key)
        except SourceAuthError:
            raise
        except SourceError as exc:
            error = redact(f"cannot verify an earlier attempt: {exc}", secrets)
            rows.note(row_id, error, failed=False)
            summary.errors[key] = error
            summary.waiting += 1
            return "transient"
        if task_id is None:
            return None
        _mark_sent(rows.engine, row_id, task_id)
        summary.adopted += 1
        summary.task_ids[key] = task_id
        summary.errors.pop(key, None)
        return "adopted"

    if attempts > 0:  # an earlier POST may have landed (crash, lost answer): look before creating
        found = adopt_if_found()
        if found is not None:
            return found
    if attempts >= max_attempts:
        error = redact(
            f"gave up after {attempts} attempts: {event.get('last_error') or 'no answer'}", secrets
        )
        rows.note(row_id, error, failed=True)
        summary.exhausted += 1
        summary.errors[key] = error
        return "exhausted"

    body = task_request(event)
    for tried in range(attempts_per_run):
        if attempts >= max_attempts:
            break
        if not rows.claim(row_id, attempts):
            log.warning("event %s was claimed by another delivery run; skipping", key)
            return "skipped"
        attempts += 1
        try:
            task_id = _post_task(client, body)
        except _RateLimited as exc:
            rows.note(row_id, redact(str(exc), secrets), failed=False)
            summary.waiting += 1
            return "rate_limited"
        except _Ambiguous as exc:
            error = redact(f"attempt {attempts}: {exc}", secrets)
            rows.note(row_id, error, failed=False)
            summary.errors[key] = error
            time.sleep(max(settle_seconds, _backoff(client, tried)))
            found = adopt_if_found()
            if found is not None:
                return found
            continue
        except SourceAuthError as exc:
            rows.note(row_id, redact(str(exc), secrets), failed=True)
            raise
        except SourceError as exc:  # 4xx: HubSpot refused the task; nothing was created
            error = redact(f"attempt {attempts}: {exc}", secrets)
            rows.note(row_id, error, failed=True)
            summary.failed += 1
            summary.errors[key] = error
            return "failed"
        _mark_sent(rows.engine, row_id, task_id)
        summary.sent += 1
        summary.task_ids[key] = task_id
        summary.errors.pop(key, None)
        return "sent"
    rows.note(row_id, summary.errors.get(key, "no answer"), failed=True)
    summary.failed += 1
    return "transient"
