"""Health scores -> HubSpot company properties, only on change (``publish_scores``).

Ensures the company properties ``health_score``/``health_band``/``health_trend``/``health_score_computed``/
``health_score_override_reason`` exist (409 means already there), then sends the companies whose shown
values (rounded score and band, momentum, computed score, override reason) differ from
``crm_publications`` through HubSpot's batch update, 100 per request, reading the answer input by
input (200, or 207 Multi-Status with per-record errors). Shadow rows never publish. Tasks stay one
POST each: batch create has no idempotency key, and exactly-once matters more there. While a CSM
override stands the CRM shows its score and/or band, flagged by a non-empty reason, beside the computed
score; once it expires or is revoked the next run publishes the computed values with an empty reason.

Task delivery is ``healthscore.playbooks.delivery``; the request helpers both use are
``healthscore.playbooks.crm_http``.

``account_id`` is the HubSpot company id (the CRM is the account root); a payload
``hubspot_company_id`` overrides it for portfolios keyed otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from healthscore.playbooks.crm_http import _CHUNK, _Ambiguous, _backoff, _secrets, _send, _summary, redact
from healthscore.sources.base import HttpClient, RetryableError
from healthscore.warehouse.models import CrmPublication, CrmPublicationError
from healthscore.warehouse.types import utcnow
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

COMPANY_PROPERTIES_PATH = "/crm/v3/properties/companies"
_PUBLICATIONS = CrmPublication.__table__

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


def _round_half_up(value: float) -> int:
    """The integer shown in the UI (same rounding as the band lookup and task text)."""
    return math.floor(float(value) + 0.5)


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
