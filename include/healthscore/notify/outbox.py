"""The outbox: each message written once, to a JSON-lines file and/or the ``notifications_outbox`` table.

In the sandbox and by default, "sending" means writing the message to the outbox: one JSON line per
message in a file (tests and the demo read it) and/or one ``notifications_outbox`` row that a forwarder
can later hand to email or Slack. ``dedupe_key`` is the idempotency key of a message: the table's
unique constraint (or, file-only, the keys already in the file) makes a rerun or a task retry a no-op.

With both a table and a file, the row is inserted first and ``sent_at`` is set once the line is in
the file; a crash in between is repaired by the next run (which checks the file for the key before
appending), so a line is neither lost nor written twice.

Every subject and body passes through ``redact``: no credential can reach an inbox. Light to import (no
pandas, no GX): the quality alert notifier is usable as a task callback.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from airflow.sdk import BaseNotifier
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from healthscore.warehouse.models import NotificationOutbox

CHANNELS = ("email", "slack")
_OUTBOX = NotificationOutbox.__table__
_write_lock = threading.Lock()
_SECRET_PATTERNS = (
    re.compile(r"(?i)bearer\s+\S+"),
    re.compile(r"\b(?:pat|sk|rk)[-_][A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)(hapikey|api_key|token|access_token)=[^&\s]+"),
)


def redact(text: str, secrets: tuple[str | None, ...] = (), *, limit: int | None = 500) -> str:
    """Text safe to store or send: known secrets and token-shaped strings removed, length capped."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    return text if limit is None else text[:limit]


def outbox_path(data_dir: Path, name: str) -> Path:
    """``<data_dir>/outbox/<name>.jsonl``: where a kind of notification goes unless configured otherwise."""
    return Path(data_dir) / "outbox" / f"{name}.jsonl"


@dataclass(frozen=True)
class OutboxMessage:
    """One notification; ``dedupe_key`` decides whether it was already sent. ``fields`` are extra
    JSON-able facts written into the file line (e.g. the blocked suite and dimensions of a quality alert)."""

    channel: str
    recipient: str
    subject: str | None
    body: str
    dedupe_key: str
    kind: str = "notification"
    fields: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[str, ...] = ()  # file paths an email carries; other channels name them in the body

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, not {self.channel!r}")
        if not self.recipient:
            raise ValueError("a notification needs a recipient")


def content_key(channel: str, recipient: str, subject: str | None, body: str) -> str:
    """Default dedupe key: the same message to the same recipient is sent once."""
    digest = hashlib.sha256(f"{channel}\n{recipient}\n{subject or ''}\n{body}".encode()).hexdigest()[:24]
    return f"msg:{digest}"


def _insert_once(conn: sa.Connection, row: dict[str, Any]) -> bool:
    """Insert the outbox row unless its dedupe key is there; True when inserted."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite_insert if dialect == "sqlite" else pg_insert)(_OUTBOX).values(**row)
        return conn.execute(insert.on_conflict_do_nothing(index_elements=["dedupe_key"])).rowcount == 1
    if conn.execute(sa.select(_OUTBOX.c.dedupe_key).where(_OUTBOX.c.dedupe_key == row["dedupe_key"])).first():
        return False
    conn.execute(sa.insert(_OUTBOX).values(**row))
    return True


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
            **message.fields,
            "created_at": datetime.now(UTC).isoformat(),
            "kind": message.kind,
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "dedupe_key": message.dedupe_key,
            **({"attachments": list(message.attachments)} if message.attachments else {}),
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
            message.fields,
            tuple(str(p) for p in message.attachments),
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
            "attachments": {"paths": list(message.attachments)} if message.attachments else None,
        }
        with self.engine.begin() as conn:
            inserted = _insert_once(conn, row)
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
        attachments: tuple[str, ...] = (),
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
        self.attachments = tuple(str(p) for p in attachments)
        self.writer = OutboxWriter(engine, outbox_path)

    def message(self) -> OutboxMessage:
        key = self.dedupe_key or content_key(self.channel, self.recipient, self.subject, self.body)
        return OutboxMessage(self.channel, self.recipient, self.subject, self.body, key, self.kind,
                             attachments=self.attachments)

    def send(self) -> bool:
        """Write the message; False if it had been written before."""
        return self.writer.write(self.message())

    def notify(self, context: Any) -> None:
        """Airflow callback entry point (templates are already rendered by ``BaseNotifier``)."""
        self.send()
