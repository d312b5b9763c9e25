"""CSM overrides entered by people (the account page's form, ``healthscore override``): checked, stored, revoked.

An override is a row in ``score_overrides``; it is never updated except to stamp ``revoked_at``, and never
deleted, so the archive keeps every human judgement beside the computed score. The scoring engine applies the
newest active one at each run (``scoring.overrides``); expiry is a date, so the computed score returns by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.ui import queries
from healthscore.warehouse.models import ScoreOverride
from healthscore.warehouse.types import utcnow

MAX_REASON_CHARS = 500
O = ScoreOverride.__table__  # noqa: E741


class OverrideError(ValueError):
    """What was wrong with an override request, in one line a person can act on."""


@dataclass(frozen=True)
class OverrideRequest:
    account_id: str
    reason: str
    expires_on: date
    author: str
    score: float | None = None
    band: str | None = None


def _parse_score(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise OverrideError(f"score must be a number from 0 to 100, not {value!r}") from None
    if math.isnan(score) or not 0 <= score <= 100:
        raise OverrideError(f"score must be within 0..100, not {value}")
    return score


def _parse_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    if value is None or not str(value).strip():
        raise OverrideError("expiry date is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise OverrideError(f"expiry must be a date like 2026-12-31, not {value!r}") from None


def validate(account_id: str, *, reason: Any, expires_on: Any, author: str, score: Any = None, band: Any = None,
             band_names: list[str], today: date, max_days: int) -> OverrideRequest:
    """An ``OverrideRequest`` or ``OverrideError`` naming the first problem."""
    account_id = str(account_id or "").strip()
    if not account_id:
        raise OverrideError("account is required")
    text = str(reason or "").strip()
    if not text:
        raise OverrideError("reason is required: say why the computed score is wrong")
    if len(text) > MAX_REASON_CHARS:
        raise OverrideError(f"reason is {len(text)} characters; at most {MAX_REASON_CHARS}")
    parsed_score = _parse_score(score)
    parsed_band = str(band).strip() if band is not None and str(band).strip() else None
    if parsed_band is not None and parsed_band not in band_names:
        raise OverrideError(f"band must be one of {', '.join(band_names)}, not {parsed_band!r}")
    if parsed_score is None and parsed_band is None:
        raise OverrideError("give a score, a band or both")
    expiry = _parse_date(expires_on)
    if expiry <= today:
        raise OverrideError(f"expiry {expiry} must be after today ({today})")
    if expiry > today + timedelta(days=max_days):
        raise OverrideError(f"expiry {expiry} is more than {max_days} days away (latest {today + timedelta(days=max_days)})")
    if not author or not str(author).strip():
        raise OverrideError("author is required")
    return OverrideRequest(account_id, text, expiry, str(author).strip(), parsed_score, parsed_band)


def set_override(engine: Engine, account_id: str, *, reason: Any, expires_on: Any, author: str, score: Any = None,
                 band: Any = None, today: date | None = None, max_days: int = 90) -> int:
    """Check and store an override; its id. The account must be known to the warehouse."""
    today = today or date.today()
    with engine.begin() as conn:
        ctx = queries.context(conn)
        request = validate(account_id, reason=reason, expires_on=expires_on, author=author, score=score, band=band,
                           band_names=ctx.band_names, today=today, max_days=max_days)
        if not queries.account_exists(conn, request.account_id):
            raise OverrideError(f"account {request.account_id!r} is not in the warehouse")
        result = conn.execute(sa.insert(O).values(
            account_id=request.account_id, override_score=request.score, override_band=request.band,
            reason=request.reason, author=request.author, expires_on=request.expires_on, created_at=utcnow()))
        return int(result.inserted_primary_key[0])


def revoke_override(engine: Engine, override_id: int, *, author: str, today: date | None = None) -> dict[str, Any]:
    """Stamp ``revoked_at`` on an active override (the row stays); the row as it now is."""
    today = today or date.today()
    with engine.begin() as conn:
        row = conn.execute(sa.select(O).where(O.c.id == override_id)).mappings().first()
        if row is None:
            raise OverrideError(f"override {override_id} does not exist")
        status = queries.override_status(dict(row), today)
        if status != "active":
            raise OverrideError(f"override {override_id} is already {status}")
        if not author or not str(author).strip():
            raise OverrideError("author is required")
        conn.execute(sa.update(O).where(O.c.id == override_id, O.c.revoked_at.is_(None))
                     .values(revoked_at=utcnow(), revoked_by=str(author).strip()))
        out = dict(conn.execute(sa.select(O).where(O.c.id == override_id)).mappings().one())
    out["status"] = "revoked"
    return out


def list_overrides(engine: Engine, account_id: str | None = None, *, today: date | None = None,
                   active_only: bool = False) -> list[dict[str, Any]]:
    """Overrides newest first, each with its status (active, expired, revoked)."""
    today = today or date.today()
    with engine.connect() as conn:
        rows = queries.overrides_of(conn, account_id, today, limit=10_000)
    return [r for r in rows if r["status"] == "active"] if active_only else rows
