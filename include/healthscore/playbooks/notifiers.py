"""CSM digests and critical alerts through an outbox, written once however often a run is retried.

In the sandbox and by default, "sending" means writing the message to the outbox: one JSON line per
message in a file (tests and the demo read it) and/or one ``notifications_outbox`` row that a forwarder
can later hand to email or Slack. ``dedupe_key`` is the idempotency key of a message: the table's
unique constraint (or, file-only, the keys already in the file) makes a rerun a no-op.

With both a table and a file, the row is inserted first and ``sent_at`` is set once the line is in
the file; a crash in between is repaired by the next run (which checks the file for the key before
appending), so a line is neither lost nor written twice.

Messages are built from event payloads only (``text.py``) and passed through ``redact``: no
credential can reach an inbox. Follows ``quality.notify`` (an Airflow ``BaseNotifier``), so the same
class works as a task callback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from airflow.sdk import BaseNotifier
from sqlalchemy.engine import Engine

from healthscore.playbooks.delivery import redact
from healthscore.playbooks.text import daily_digest, task_body, task_subject
from healthscore.warehouse.models import NotificationOutbox
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)

CHANNELS = ("email", "slack")
ALERT_PLAYBOOKS = ("executive_escalation",)
_OUTBOX = NotificationOutbox.__table__
_write_lock = threading.Lock()


def default_outbox_path(data_dir: Path) -> Path:
    """Where playbook notifications go unless configured otherwise (under the settings' data_dir)."""
    return Path(data_dir) / "outbox" / "playbook_notifications.jsonl"


@dataclass(frozen=True)
class OutboxMessage:
    """One notification; ``dedupe_key`` decides whether it was already sent."""

    channel: str
    recipient: str
    subject: str | None
    body: str
    dedupe_key: str
    kind: str = "notification"

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {self.channel!r}")
        if not self.recipient:
            raise ValueError("a notification needs a recipient")


def content_key(channel: str, recipient: str, subject: str | None, body: str) -> str:
    """Default dedupe key: the same message to the same recipient is sent once."""
    digest = hashlib.sha256(f"{channel}\n{recipient}\n{subject or ''}\n{body}".encode()).hexdigest()[:24]
    return f"msg:{digest}"


class OutboxWriter:
    """Writes messages to the outbox table and/or file, each dedupe key at most once."""

    def __init__(self, engine: Engine | None = None, outbox_path: str | Path | None = None) -> None:
        if engine is None and outbox_path is None:
            raise ValueError("an outbox needs an engine, a file path, or both")
        self.engine = engine
        self.path = Path(outbox_path) if outbox_path is not None else None
        self._file_keys: set[str] | None = None

    def _keys_in_file(self) -> set[str]:
        """Dedupe keys already in the file, read once per writer (only needed without a table or
        to repair a crash)."""
        if self._file_keys is None:
            keys: set[str] = set()
            if self.path is not None and self.path.exists():
                with self.path.open(encoding="utf-8") as handle:
                    for line in handle:
                        try:
                            keys.add(str(json.loads(line)["dedupe_key"]))
                        except (ValueError, KeyError, TypeError):
                            continue  # a torn last line from a crash: ignore it
            self._file_keys = keys
        return self._file_keys

    def _append(self, message: OutboxMessage) -> None:
        assert self.path is not None
        entry = {
            "created_at": datetime.now(UTC).isoformat(),
            "kind": message.kind,
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "dedupe_key": message.dedupe_key,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with _write_lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        self._keys_in_file().add(message.dedupe_key)

    def write(self, message: OutboxMessage) -> bool:
        """Put ``message`` in the outbox; False when its dedupe key was already there."""
        message = OutboxMessage(
            message.channel,
            message.recipient,
            None if message.subject is None else redact(message.subject, limit=None),
            redact(message.body, limit=None),
            message.dedupe_key,
            message.kind,
        )
        if self.engine is None:
            with _write_lock:
                seen = message.dedupe_key in self._keys_in_file()
            if not seen:
                self._append(message)
            return not seen
        row = {
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "dedupe_key": message.dedupe_key,
        }
        with self.engine.begin() as conn:
            inserted = bulk_upsert(conn, NotificationOutbox, [row], ["dedupe_key"], update_columns=[]) == 1
            sent_at = conn.execute(
                sa.select(_OUTBOX.c.sent_at).where(_OUTBOX.c.dedupe_key == message.dedupe_key)
            ).scalar_one()
        if self.path is None:
            return inserted  # a forwarder sends it and sets sent_at
        if sent_at is not None:
            return False
        # Not yet in the file: a new row, or a crash after the insert. Check the file in the latter case.
        fresh = inserted or message.dedupe_key not in self._keys_in_file()
        if fresh:
            self._append(message)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(_OUTBOX)
                .where(_OUTBOX.c.dedupe_key == message.dedupe_key, _OUTBOX.c.sent_at.is_(None))
                .values(sent_at=datetime.now(UTC))
            )
        return fresh


class OutboxNotifier(BaseNotifier):
    """Generic e-mail/Slack notification written to the outbox (file and/or table), deduplicated.

    ``recipient``/``subject``/``body`` are templated like any Airflow notifier when used as a callback;
    call ``send()`` to write it directly. ``dedupe_key`` defaults to a hash of the rendered message.
    """

    template_fields = ("recipient", "subject", "body")

    def __init__(
        self,
        *,
        recipient: str,
        body: str,
        subject: str | None = None,
        channel: str = "email",
        dedupe_key: str | None = None,
        outbox_path: str | Path | None = None,
        engine: Engine | None = None,
        kind: str = "notification",
    ) -> None:
        super().__init__()
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
        self.recipient = recipient
        self.subject = subject
        self.body = body
        self.channel = channel
        self.dedupe_key = dedupe_key
        self.kind = kind
        self.writer = OutboxWriter(engine, outbox_path)

    def message(self) -> OutboxMessage:
        key = self.dedupe_key or content_key(self.channel, self.recipient, self.subject, self.body)
        return OutboxMessage(self.channel, self.recipient, self.subject, self.body, key, self.kind)

    def send(self) -> bool:
        """Write the message; False if it had been written before."""
        return self.writer.write(self.message())

    def notify(self, context: Any) -> None:
        """Airflow callback entry point (templates are already rendered by ``BaseNotifier``)."""
        self.send()


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
