"""Delivery of the outbox to real channels: email through Airflow's SMTP provider, Slack through an incoming webhook.

The outbox (``notifications_outbox``) stays the record of what was meant to be sent; this module hands each
message to its transport and keeps, per message, a ``notification_deliveries`` row: attempts, the last error
and ``delivered_at`` once the SMTP server or the webhook accepted it. A delivered message is never handed over
again, however often the task is retried or the run rerun: the attempt is recorded (committed) before the
hand-over and ``delivered_at`` right after it. The one window left is a crash between the server's accept and
that commit; an email resent then carries the same ``Message-ID`` (derived from the dedupe key), which the
receiving server recognises as a duplicate.

Transports come from Airflow connections, configured per deployment (none in the sandbox: the outbox alone):
``healthscore_smtp`` (conn type smtp; ``from_email`` in its extra) and ``healthscore_slack`` (conn type
slackwebhook). Bodies are sent as text (escaped inside HTML for email), never rendered as templates: an account
name with ``{{ }}`` in it is text, not Jinja.

Recipients of CSM digests are the HubSpot owners' emails (``owner_recipients``); an owner without one goes to the
configured fallback address, with a warning.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.warehouse import pointintime
from healthscore.warehouse.models import NotificationDelivery, NotificationOutbox

log = logging.getLogger(__name__)

SMTP_CONN_ID = "healthscore_smtp"
SLACK_CONN_ID = "healthscore_slack"
OWNER_PREFIX = "hubspot-owner:"
ROLE_PREFIX = "role:"
_OUTBOX = NotificationOutbox.__table__
_DELIVERIES = NotificationDelivery.__table__


class DeliveryError(RuntimeError):
    """Some messages could not be delivered (they stay pending; the task's retry delivers only those)."""


@dataclass(frozen=True)
class OutboxRow:
    dedupe_key: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    attachments: Any = None  # the outbox column: {"paths": [...]} or None

    @property
    def files(self) -> list[str]:
        value = self.attachments
        if isinstance(value, str):
            value = json.loads(value)
        return list((value or {}).get("paths") or [])


Sender = Callable[[OutboxRow], str]  # hands one message over; returns the address it went to


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_channels: dict[str, int] = field(default_factory=dict)  # channel -> pending messages, no transport


# ------------------------------------------------------------------------------------------ recipients


def resolve_recipients(owners: list[Mapping[str, Any]], fallback: str | None) -> dict[str, str]:
    """owner id -> email address; an owner without an email gets ``fallback`` (and a warning naming the owner)."""
    out = {}
    for owner in owners:
        owner_id = str(owner.get("id") or "")
        if not owner_id:
            continue
        email = str(owner.get("email") or "").strip()
        if email:
            out[owner_id] = email
        elif fallback:
            log.warning("HubSpot owner %s has no email: their notifications go to the fallback %s", owner_id,
                        fallback)
            out[owner_id] = fallback
        else:
            log.warning("HubSpot owner %s has no email and no fallback is configured "
                        "(HEALTHSCORE_NOTIFY_FALLBACK_EMAIL): their notifications stay in the outbox", owner_id)
    return out


def owner_recipients(engine: Engine, as_of: date, fallback: str | None) -> dict[str, str]:
    """Recipients from the HubSpot owners landed on or before ``as_of``: each owner's newest version, an
    owner dropped from later owner lists included (accounts may still name them). Read through
    ``warehouse.pointintime``, record by record, so the cost follows the owners, not the landed batches."""
    with engine.connect() as conn:
        owners = pointintime.latest(conn, "hubspot", "owners", as_of, per_record=True)
    recipients = resolve_recipients(owners, fallback)
    if fallback:
        recipients.setdefault("unassigned", fallback)
    return recipients


# ------------------------------------------------------------------------------------------ transports


def message_id(dedupe_key: str, domain: str = "healthscore.invalid") -> str:
    """A stable Message-ID per outbox message, so a resent email is recognisably the same one."""
    return f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]}@{domain}>"


def smtp_sender(conn_id: str = SMTP_CONN_ID) -> Sender:
    """Email through the SMTP provider's hook (``airflow.providers.smtp``)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    def send(row: OutboxRow) -> str:
        if "@" not in row.recipient:
            raise ValueError(f"{row.recipient!r} is not an email address (no owner email and no fallback?)")
        body = f"<pre style=\"font-family: sans-serif; white-space: pre-wrap\">{html.escape(row.body)}</pre>"
        with SmtpHook(smtp_conn_id=conn_id) as hook:
            hook.send_email_smtp(to=row.recipient, subject=row.subject or "[healthscore]", html_content=body,
                                 mime_subtype="mixed" if row.files else "alternative", files=row.files or None,
                                 custom_headers={"Message-ID": message_id(row.dedupe_key),
                                                 "X-Healthscore-Dedupe-Key": row.dedupe_key})
        return row.recipient

    return send


def slack_sender(conn_id: str = SLACK_CONN_ID) -> Sender:
    """Slack through the Slack provider's incoming-webhook hook (``airflow.providers.slack``)."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    hook = SlackWebhookHook(slack_webhook_conn_id=conn_id)

    def send(row: OutboxRow) -> str:
        text = f"*{row.subject}*\n{row.body}" if row.subject else row.body
        response = hook.send_text(text, unfurl_links=False, unfurl_media=False)
        if response.status_code >= 300:
            raise RuntimeError(f"Slack webhook answered {response.status_code}: {str(response.body)[:200]}")
        return row.recipient

    return send


def _connection_exists(conn_id: str) -> bool:
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - not defined (or no Airflow): that channel is not configured
        if type(exc).__name__ not in ("AirflowNotFoundException", "ImportError"):
            log.warning("connection %s could not be read (%s): its channel is not delivered", conn_id,
                        type(exc).__name__)
        return False
    return True


def configured_senders() -> dict[str, tuple[str, Sender]]:
    """channel -> (transport name, sender), for the channels whose Airflow connection exists."""
    senders: dict[str, tuple[str, Sender]] = {}
    if _connection_exists(SMTP_CONN_ID):
        senders["email"] = ("smtp", smtp_sender())
    if _connection_exists(SLACK_CONN_ID):
        senders["slack"] = ("slack_webhook", slack_sender())
    return senders


# ------------------------------------------------------------------------------------------- delivery


def pending_messages(engine: Engine, channels: list[str]) -> list[OutboxRow]:
    """Outbox messages of these channels not delivered yet, oldest first."""
    query = (sa.select(_OUTBOX.c.dedupe_key, _OUTBOX.c.channel, _OUTBOX.c.recipient, _OUTBOX.c.subject,
                       _OUTBOX.c.body, _OUTBOX.c.attachments)
             .outerjoin(_DELIVERIES, _DELIVERIES.c.dedupe_key == _OUTBOX.c.dedupe_key)
             .where(_OUTBOX.c.channel.in_(channels), _DELIVERIES.c.delivered_at.is_(None))
             .order_by(_OUTBOX.c.id))
    with engine.connect() as conn:
        return [OutboxRow(*row) for row in conn.execute(query).all()]


def _record_attempt(engine: Engine, row: OutboxRow, transport: str) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        updated = conn.execute(sa.update(_DELIVERIES).where(_DELIVERIES.c.dedupe_key == row.dedupe_key).values(
            attempts=_DELIVERIES.c.attempts + 1, last_attempt_at=now, transport=transport)).rowcount
        if not updated:
            conn.execute(sa.insert(_DELIVERIES).values(dedupe_key=row.dedupe_key, transport=transport,
                                                       address=row.recipient, attempts=1, last_attempt_at=now))


def _record_outcome(engine: Engine, row: OutboxRow, address: str | None, error: str | None) -> None:
    values: dict[str, Any] = {"last_error": error}
    if error is None:
        values |= {"delivered_at": datetime.now(UTC), "address": address}
    with engine.begin() as conn:
        conn.execute(sa.update(_DELIVERIES).where(_DELIVERIES.c.dedupe_key == row.dedupe_key).values(**values))


def deliver_outbox(engine: Engine, senders: Mapping[str, tuple[str, Sender]] | None = None,
                   *, raise_on_failure: bool = True) -> DeliveryReport:
    """Hand every pending outbox message to its channel's transport, each at most once after it was accepted.

    Messages of channels without a transport stay pending (counted in ``skipped_channels``). Failures are
    recorded per message and, with ``raise_on_failure``, raised together at the end so the task is retried
    (a retry delivers only what is still pending).
    """
    senders = configured_senders() if senders is None else senders
    report = DeliveryReport()
    with engine.connect() as conn:
        unconfigured = conn.execute(
            sa.select(_OUTBOX.c.channel, sa.func.count()).outerjoin(
                _DELIVERIES, _DELIVERIES.c.dedupe_key == _OUTBOX.c.dedupe_key)
            .where(_DELIVERIES.c.delivered_at.is_(None), _OUTBOX.c.channel.not_in(list(senders) or [""]))
            .group_by(_OUTBOX.c.channel)).all()
    report.skipped_channels = {channel: count for channel, count in unconfigured}
    for row in pending_messages(engine, list(senders)):
        transport, send = senders[row.channel]
        _record_attempt(engine, row, transport)
        try:
            address = send(row)
        except Exception as exc:  # noqa: BLE001 - recorded per message; raised together below
            error = f"{type(exc).__name__}: {exc}"[:500]
            _record_outcome(engine, row, None, error)
            report.failed[row.dedupe_key] = error
            log.warning("delivery of %s by %s failed: %s", row.dedupe_key, transport, error)
            continue
        _record_outcome(engine, row, address, None)
        report.delivered.append(row.dedupe_key)
    log.info("notifications: %d delivered, %d failed, pending without a transport: %s", len(report.delivered),
             len(report.failed), report.skipped_channels or "none")
    if report.failed and raise_on_failure:
        raise DeliveryError(f"{len(report.failed)} notification(s) not delivered (they stay pending): "
                            + "; ".join(f"{k}: {v}" for k, v in list(report.failed.items())[:3]))
    return report
