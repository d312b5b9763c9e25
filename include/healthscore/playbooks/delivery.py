"""Playbook events -> HubSpot tasks exactly once; health scores -> company properties only on change.

Three steps, each safe to rerun:

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

``publish_scores``
    Ensures the company properties ``health_score``/``health_band``/``health_trend``/``health_score_computed``/
    ``health_score_override_reason`` exist (409 means already there), then sends the companies whose shown
    values (rounded score and band, momentum, computed score, override reason) differ from
    ``crm_publications`` through HubSpot's batch update, 100 per request, reading the answer input by
    input (200, or 207 Multi-Status with per-record errors). Shadow rows never publish. Tasks stay one
    POST each: batch create has no idempotency key, and exactly-once matters more there. While a CSM
    override stands the CRM shows its score and/or band, flagged by a non-empty reason, beside the computed
    score; once it expires or is revoked the next run publishes the computed values with an empty reason.

``account_id`` is the HubSpot company id (the CRM is the account root); a payload
``hubspot_company_id`` overrides it for portfolios keyed otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd
import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from healthscore.notify.outbox import redact as _redact
from healthscore.playbooks.rules import EVENT_COLUMNS, PlaybookDecision
from healthscore.playbooks.text import task_body, task_subject
from healthscore.sources.base import HttpClient, RetryableError, SourceAuthError, SourceError
from healthscore.warehouse.models import CrmPublication, CrmPublicationError, PlaybookEvent
from healthscore.warehouse.types import dumps_json, utcnow
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

TASKS_PATH = "/crm/v3/objects/tasks"
TASK_SEARCH_PATH = "/crm/v3/objects/tasks/search"
COMPANY_PROPERTIES_PATH = "/crm/v3/properties/companies"
TASK_TO_COMPANY = 192
KEY_LINE_PREFIX = "healthscore-key:"
URGENT_SEVERITIES = frozenset({"high", "critical"})
MAX_ERROR_CHARS = 500
_EVENTS = PlaybookEvent.__table__
_PUBLICATIONS = CrmPublication.__table__
_CHUNK = 500

HEALTH_PROPERTIES: tuple[dict[str, str], ...] = (
    {
        "name": "health_score",
        "label": "Health score",
        "type": "number",
        "fieldType": "number",
        "groupName": "companyinformation",
        "description": "Customer health score 0-100 (healthscore).",
    },
    {
        "name": "health_band",
        "label": "Health band",
        "type": "string",
        "fieldType": "text",
        "groupName": "companyinformation",
        "description": "Health band, e.g. Healthy or At Risk (healthscore).",
    },
    {
        "name": "health_trend",
        "label": "Health trend",
        "type": "string",
        "fieldType": "text",
        "groupName": "companyinformation",
        "description": "30-day momentum: up, flat or down (healthscore).",
    },
    {
        "name": "health_score_computed",
        "label": "Health score (computed)",
        "type": "number",
        "fieldType": "number",
        "groupName": "companyinformation",
        "description": "The model's score; differs from Health score while a CSM override stands (healthscore).",
    },
    {
        "name": "health_score_override_reason",
        "label": "Health score override reason",
        "type": "string",
        "fieldType": "text",
        "groupName": "companyinformation",
        "description": "Why a CSM overrode the score, while the override stands; empty otherwise (healthscore).",
    },
)


# --------------------------------------------------------------------------------------------- helpers


class _Ambiguous(Exception):
    """The POST may or may not have created the task: search before trying again."""


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


def _round_half_up(value: float) -> int:
    """The integer shown in the UI (same rounding as the band lookup and task text)."""
    return math.floor(float(value) + 0.5)


def redact(text: str, secrets: tuple[str | None, ...] = (), *, limit: int | None = MAX_ERROR_CHARS) -> str:
    """Text safe to store (``notify.outbox.redact``, capped at ``MAX_ERROR_CHARS`` by default)."""
    return _redact(text, secrets, limit=limit)


def _secrets(client: HttpClient) -> tuple[str | None, ...]:
    conn = client.connection
    return (conn.password, conn.login if conn.password is None else None)


def _send(client: HttpClient, method: str, path: str, body: Any) -> requests.Response:
    """One request, no retry: the caller decides what a failure means for exactly-once."""
    client.stats.requests += 1
    try:
        return client.session.request(method, client.url(path), json=body, timeout=client.policy.timeout)
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise _Ambiguous(f"{method} {path}: {type(exc).__name__}") from exc


def _summary(response: requests.Response) -> str:
    return f"{response.request.method} {response.url.split('?')[0]} -> {response.status_code}: {response.text[:300]}"


def _backoff(client: HttpClient, attempt: int, retry_after: float | None = None) -> float:
    if retry_after is not None:
        return min(retry_after, client.policy.backoff_max * 3)
    return min(client.policy.backoff_max, client.policy.backoff_base * 2**attempt)


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


# ---------------------------------------------------------------------------------------- publishing


def ensure_health_properties(client: HttpClient) -> None:
    """Create the custom company properties if missing; 409 means another run already did."""
    retrying = Retrying(
        retry=retry_if_exception_type((RetryableError, _Ambiguous)),
        stop=stop_after_attempt(client.policy.attempts),
        wait=wait_exponential(multiplier=client.policy.backoff_base, max=client.policy.backoff_max),
        reraise=True,
    )
    for prop in HEALTH_PROPERTIES:
        for attempt in retrying:
            with attempt:
                response = _send(client, "POST", COMPANY_PROPERTIES_PATH, prop)
                if response.status_code not in (200, 201, 409):
                    client.check(response)


class Publication(NamedTuple):
    """What the CRM shows for one account: the override's score/band while one stands, else the computed."""

    account_id: str
    score: int
    band: str | None
    trend: str | None
    computed: int
    override_reason: str  # '' when no override stands

    @property
    def shown(self) -> tuple[int, str | None, str | None, int, str]:
        return (self.score, self.band, self.trend, self.computed, self.override_reason)

    def properties(self) -> dict[str, str]:
        return {"health_score": str(self.score), "health_band": self.band or "", "health_trend": self.trend or "",
                "health_score_computed": str(self.computed), "health_score_override_reason": self.override_reason}


def _text_or_none(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


def _publishable(scores: pd.DataFrame) -> list[Publication]:
    """One Publication per account from champion rows with a score (the latest if an as-of date is given).

    An active override (``override_score``/``override_band``, with its ``override_reason``) replaces what it
    names; the computed score is published beside it. Plain values: pandas' string inference would turn None
    into NaN.
    """
    frame = scores
    if "is_shadow" in frame.columns:
        frame = frame[~frame["is_shadow"].fillna(False).astype(bool)]
    frame = frame[frame["score"].notna()]
    if "as_of_date" in frame.columns:
        frame = frame.sort_values("as_of_date", kind="mergesort")
    frame = frame.drop_duplicates("account_id", keep="last")
    out = []
    for acc, score, band, trend, o_score, o_band, o_id, o_reason in zip(
            frame["account_id"].tolist(), frame["score"].tolist(), _column(frame, "band"),
            _column(frame, "momentum"), _column(frame, "override_score"), _column(frame, "override_band"),
            _column(frame, "override_id"), _column(frame, "override_reason"), strict=True):
        computed = _round_half_up(score)
        o_score = None if o_score is None or pd.isna(o_score) else float(o_score)
        o_band = _text_or_none(o_band)
        overridden = o_score is not None or o_band is not None or _text_or_none(o_id) is not None
        reason = (_text_or_none(o_reason) or "CSM override") if overridden else ""
        out.append(Publication(str(acc), computed if o_score is None else _round_half_up(o_score),
                               o_band or _text_or_none(band), _text_or_none(trend), computed, reason))
    return out


def _published(engine: Engine, accounts: list[str]) -> dict[str, tuple[int | None, str | None, str | None, int | None, str]]:
    t = _PUBLICATIONS
    out: dict[str, tuple[int | None, str | None, str | None, int | None, str]] = {}
    with engine.connect() as conn:
        for start in range(0, len(accounts), _CHUNK):
            chunk = accounts[start : start + _CHUNK]
            query = sa.select(t.c.account_id, t.c.health_score, t.c.health_band, t.c.health_trend,
                              t.c.health_score_computed, t.c.override_reason).where(t.c.account_id.in_(chunk))
            for acc, score, band, trend, computed, reason in conn.execute(query):
                # Rows published before the computed score was stored showed the computed score.
                computed = score if computed is None else computed
                out[acc] = (None if score is None else _round_half_up(score), band, trend,
                            None if computed is None else _round_half_up(computed), reason or "")
    return out


BATCH_UPDATE_PATH = "/crm/v3/objects/companies/batch/update"
#: HubSpot's documented cap on inputs per batch request.
BATCH_LIMIT = 100
#: Per-record error categories of a 207 answer that a later try can cure; the rest (OBJECT_NOT_FOUND,
#: VALIDATION_ERROR, ...) are recorded in ``crm_publication_errors`` at once.
TRANSIENT_CATEGORIES = frozenset({"INTERNAL_ERROR", "RATE_LIMITS", "LOCKED", "CONFLICT", "TIMEOUT",
                                  "SERVICE_UNAVAILABLE", "NO_RESULT"})
_PUBLICATION_ERRORS = CrmPublicationError.__table__


@dataclass
class PublishSummary:
    """What one publishing run did. ``failed`` accounts are in ``crm_publication_errors``."""

    changed: int = 0
    published: int = 0
    failed: int = 0
    requests: int = 0
    retried_records: int = 0
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _BatchOutcome:
    ok: list[str] = field(default_factory=list)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # account -> (category, message)


def _batch_update(client: HttpClient, chunk: list[Publication], summary: PublishSummary) -> _BatchOutcome:
    """One batch update, retried whole on 429/5xx/timeouts/unreadable answers (setting the same values
    again is idempotent). A 400 refusing the whole batch is split in halves until the bad input stands
    alone, so one bad record never holds back 99 good ones. Raises RetryableError when HubSpot stays
    unavailable (the run fails, Airflow retries it, ``crm_publications`` says what already landed)."""
    body = {"inputs": [{"id": row.account_id, "properties": row.properties()} for row in chunk]}
    last = "no answer"
    for attempt in range(client.policy.attempts):
        summary.requests += 1
        try:
            response = _send(client, "POST", BATCH_UPDATE_PATH, body)
        except _Ambiguous as exc:
            last = str(exc)
            time.sleep(_backoff(client, attempt))
            continue
        status = response.status_code
        if status in (200, 207):
            try:
                return _read_batch_answer([c[0] for c in chunk], response.json())
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                last = f"{_summary(response)}: unreadable batch answer ({exc})"
                time.sleep(_backoff(client, attempt))
                continue
        if status == 429 or status >= 500 or status == 408:
            last = _summary(response)
            client.stats.retries += 1
            time.sleep(_backoff(client, attempt, client.retry_after(response) if status == 429 else None))
            continue
        if status in (401, 403):
            client.check(response)
        if len(chunk) > 1:
            half = len(chunk) // 2
            first = _batch_update(client, chunk[:half], summary)
            second = _batch_update(client, chunk[half:], summary)
            return _BatchOutcome(first.ok + second.ok, first.failed | second.failed)
        category = "VALIDATION_ERROR"
        with contextlib.suppress(ValueError, AttributeError):
            category = str(response.json().get("category") or category)
        return _BatchOutcome(failed={chunk[0][0]: (category, _summary(response))})
    raise RetryableError(f"{BATCH_UPDATE_PATH}: HubSpot did not take the batch after "
                         f"{client.policy.attempts} tries: {last}")


def _read_batch_answer(ids: list[str], answer: dict) -> _BatchOutcome:
    """Each input is in the results (published) or in an error's context ids (failed, with the error's
    category); an input in neither is a transient failure (NO_RESULT), never assumed published."""
    outcome = _BatchOutcome()
    wanted = set(ids)
    done = {str(r["id"]) for r in answer.get("results") or []} & wanted
    for error in answer.get("errors") or []:
        category = str(error.get("category") or "UNKNOWN")
        message = str(error.get("message") or "")
        for acc in (error.get("context") or {}).get("ids") or []:
            if str(acc) in wanted and str(acc) not in done:
                outcome.failed[str(acc)] = (category, message)
    outcome.ok = [i for i in ids if i in done]
    for acc in ids:
        if acc not in done and acc not in outcome.failed:
            outcome.failed[acc] = ("NO_RESULT", "neither in the results nor in the errors of the batch answer")
    return outcome


def _record_published(engine: Engine, rows: list[Publication]) -> None:
    if not rows:
        return
    now = utcnow()
    with engine.begin() as conn:
        bulk_upsert(conn, CrmPublication, [
            {"account_id": r.account_id, "health_score": float(r.score), "health_band": r.band,
             "health_trend": r.trend, "health_score_computed": float(r.computed), "override_reason": r.override_reason,
             "published_at": now} for r in rows], ["account_id"])
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), _CHUNK):
            conn.execute(sa.delete(_PUBLICATION_ERRORS).where(
                _PUBLICATION_ERRORS.c.account_id.in_(ids[start : start + _CHUNK])))


def _record_failed(engine: Engine, rows: list[tuple[Publication, str, str]]) -> None:
    if not rows:
        return
    now = utcnow()
    records = [{"account_id": r.account_id, "health_score": float(r.score), "health_band": r.band,
                "health_trend": r.trend, "category": category, "message": message, "first_failed_at": now,
                "last_failed_at": now}
               for r, category, message in rows]
    with engine.begin() as conn:
        bulk_upsert(conn, CrmPublicationError, records, ["account_id"],
                    update_columns=["health_score", "health_band", "health_trend", "category", "message",
                                    "last_failed_at"])


def _clear_stale_errors(engine: Engine, unchanged: set[str]) -> None:
    """An account that failed once and now shows what the CRM already holds has nothing left to send."""
    with engine.begin() as conn:
        failed = set(conn.execute(sa.select(_PUBLICATION_ERRORS.c.account_id)).scalars())
        stale = sorted(failed & unchanged)
        for start in range(0, len(stale), _CHUNK):
            conn.execute(sa.delete(_PUBLICATION_ERRORS).where(
                _PUBLICATION_ERRORS.c.account_id.in_(stale[start : start + _CHUNK])))


def publish_scores(engine: Engine, hubspot_client: HttpClient, scores: pd.DataFrame, *,
                   batch_size: int = BATCH_LIMIT, record_rounds: int = 4) -> PublishSummary:
    """Write health_score/health_band/health_trend to companies whose shown values changed, 100 per
    HubSpot batch update (100k accounts: 1,000 requests, not 100,000).

    ``scores``: account_id, score, band, momentum (optional is_shadow, as_of_date). Each batch's
    answer is read input by input: successes go to ``crm_publications`` at once; transient per-record
    errors are re-sent in later batches (up to ``record_rounds`` rounds); permanent ones (company
    merged or deleted, invalid value) and transient ones that outlast the rounds go to
    ``crm_publication_errors`` with their category and message, and since ``crm_publications`` still
    holds the old values the next run tries them again.
    """
    summary = PublishSummary()
    rows = _publishable(scores)
    if not rows:
        return summary
    batch_size = max(1, min(batch_size, BATCH_LIMIT))
    ensure_health_properties(hubspot_client)
    last = _published(engine, [r[0] for r in rows])
    pending = [r for r in rows if last.get(r.account_id) != r.shown]
    summary.changed = len(pending)
    _clear_stale_errors(engine, {r[0] for r in rows} - {r[0] for r in pending})
    secrets = _secrets(hubspot_client)
    for round_no in range(record_rounds):
        retry: list[tuple[Publication, str, str]] = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            outcome = _batch_update(hubspot_client, chunk, summary)
            by_id = {r[0]: r for r in chunk}
            _record_published(engine, [by_id[i] for i in outcome.ok])
            summary.published += len(outcome.ok)
            permanent = []
            for acc, (category, message) in outcome.failed.items():
                entry = (by_id[acc], category, redact(message, secrets))
                (retry if category in TRANSIENT_CATEGORIES else permanent).append(entry)
            _record_failed(engine, permanent)
            for (acc, *_), category, message in permanent:
                summary.errors[acc] = f"{category}: {message}"
                log.warning("not publishing health to company %s: %s: %s", acc, category, message)
            summary.failed += len(permanent)
        if not retry:
            break
        if round_no == record_rounds - 1:
            _record_failed(engine, retry)
            summary.failed += len(retry)
            for (acc, *_), category, message in retry:
                summary.errors[acc] = f"{category}: {message} (after {record_rounds} tries)"
            log.warning("%d companies still failing after %d rounds; recorded in crm_publication_errors",
                        len(retry), record_rounds)
            break
        summary.retried_records += len(retry)
        pending = [entry[0] for entry in retry]
        time.sleep(_backoff(hubspot_client, round_no))
    log.info("publish: %d changed, %d published, %d failed, %d requests", summary.changed, summary.published,
             summary.failed, summary.requests)
    return summary
