"""CSM digests and critical alerts, written once however often a run is retried, through the one outbox
(``healthscore.notify.outbox``: file and/or ``notifications_outbox`` table, deduplicated, redacted).

Messages are built from event payloads only (``text.py``): no record value beyond what a task shows, and
no credential (the outbox redacts what looks like one).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from healthscore.notify.outbox import OutboxMessage, OutboxNotifier, OutboxWriter, content_key, outbox_path
from healthscore.playbooks.text import daily_digest, task_body, task_subject

log = logging.getLogger(__name__)

ALERT_PLAYBOOKS = ("executive_escalation",)
__all__ = ["ALERT_PLAYBOOKS", "OutboxMessage", "OutboxNotifier", "OutboxWriter", "content_key", "critical_alerts",
           "default_outbox_path", "send_critical_alerts", "send_daily_digests"]


def default_outbox_path(data_dir: Path) -> Path:
    """Where playbook notifications go unless configured otherwise (under the settings' data_dir)."""
    return outbox_path(data_dir, "playbook_notifications")


# --------------------------------------------------------------------------------------- playbooks


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _owner(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _digest_frame(events: pd.DataFrame) -> pd.DataFrame:
    """Events as the digest sees them: delivered or failed tasks count as today's new tasks."""
    frame = events.copy()
    frame["payload"] = frame["payload"].map(_payload)
    frame["owner_id"] = frame["owner_id"].map(_owner)
    frame = frame[frame["status"] != "suppressed"]
    frame["status"] = frame["status"].where(frame["status"] == "deferred", "pending")
    return frame


def _day(as_of: dt.date | dt.datetime | str) -> dt.date:
    if isinstance(as_of, dt.datetime):
        return as_of.date()
    if isinstance(as_of, dt.date):
        return as_of
    return pd.Timestamp(as_of).date()


def send_daily_digests(
    engine: Engine | None,
    events: pd.DataFrame,
    outbox: str | Path | None,
    as_of: dt.date | dt.datetime | str,
    *,
    recipients: Mapping[str, str] | None = None,
    channel: str = "email",
) -> int:
    """One digest per CSM with events today (released first, then deferred); new messages written.

    ``recipients`` maps owner id -> address (e.g. from HubSpot owners); unknown owners get
    ``hubspot-owner:<id>``. Events of unassigned accounts go to ``recipients['unassigned']`` if set.
    """
    if events is None or events.empty:
        return 0
    day = _day(as_of)
    frame = _digest_frame(events)
    writer = OutboxWriter(engine, outbox)
    recipients = recipients or {}
    owners: list[str | None] = sorted({o for o in frame["owner_id"] if o is not None})
    if frame["owner_id"].isna().any():
        owners.append(None)
    written = 0
    for owner in owners:
        to = recipients.get(owner) if owner is not None else recipients.get("unassigned")
        if owner is None and not to:
            log.warning("digest of unassigned accounts skipped: no 'unassigned' recipient configured")
            continue
        subject, body = daily_digest(frame, owner, as_of=day)
        key = f"digest:{day.isoformat()}:{owner or 'unassigned'}"
        message = OutboxMessage(channel, to or f"hubspot-owner:{owner}", subject, body, key, "daily_digest")
        written += writer.write(message)
    return written


def critical_alerts(
    events: pd.DataFrame,
    *,
    recipients: Mapping[str, str] | None = None,
    playbooks: Iterable[str] = ALERT_PLAYBOOKS,
    channel: str = "email",
) -> list[OutboxMessage]:
    """Alert messages: one per escalation event and notify target (CS leader, executive sponsor...)."""
    recipients = recipients or {}
    wanted = set(playbooks)
    out: list[OutboxMessage] = []
    for ev in events.to_dict("records"):
        if ev.get("playbook") not in wanted or ev.get("status") == "suppressed":
            continue
        ev = {**ev, "payload": _payload(ev.get("payload"))}
        subject = f"[healthscore] CRITICAL: {task_subject(ev)}"
        for role in ev["payload"].get("notify_targets") or []:
            if role == "csm":
                continue
            intro = f"You are receiving this as {role.replace('_', ' ')} for this account."
            body = f"{intro}\n\n{task_body(ev)}"
            key = f"alert:{ev['idempotency_key']}:{role}"
            out.append(
                OutboxMessage(
                    channel, recipients.get(role) or f"role:{role}", subject, body, key, "critical_alert"
                )
            )
    return out


def send_critical_alerts(
    engine: Engine | None,
    events: pd.DataFrame,
    outbox: str | Path | None,
    as_of: dt.date | dt.datetime | str,
    *,
    recipients: Mapping[str, str] | None = None,
    playbooks: Iterable[str] = ALERT_PLAYBOOKS,
    channel: str = "email",
) -> int:
    """Tell the CS leader and the executive sponsor about escalations today; new messages written.

    Deferred escalations are alerted too: the CSM budget limits CSM tasks, not leadership's awareness.
    ``as_of`` keeps only events that crossed on or before that day (a backfill never alerts ahead).
    """
    if events is None or events.empty:
        return 0
    day = _day(as_of)
    crossed = pd.to_datetime(events["crossing_date"]).dt.date <= day
    writer = OutboxWriter(engine, outbox)
    messages = critical_alerts(
        events[crossed.to_numpy()], recipients=recipients, playbooks=playbooks, channel=channel
    )
    return sum(writer.write(m) for m in messages)
