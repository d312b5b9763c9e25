"""Notifications that arrive: the outbox delivered to a real SMTP server (aiosmtpd, started here) and to a Slack
incoming webhook (a local HTTP receiver), through the Airflow connections a deployment configures; exactly once
across reruns and retries; recipients from the HubSpot owners' emails, with a fallback."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from healthscore.notify.delivery import (
    DeliveryError,
    deliver_outbox,
    message_id,
    owner_recipients,
    resolve_recipients,
)
from healthscore.playbooks.notifiers import OutboxMessage, OutboxWriter
from healthscore.warehouse import pointintime
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import upgrade
from healthscore.warehouse.models import NotificationDelivery
from healthscore_sandbox.runner import free_port

NAME = "Zoë's \"Café\" 🚀 {{ 7 * 7 }} <b>x'); DROP TABLE health_scores;--"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


class _SmtpServer:
    """aiosmtpd on a fixed port that can go down and come back (a Controller cannot be restarted)."""

    def __init__(self, inbox: _Inbox, port: int) -> None:
        self.inbox, self.port, self.controller = inbox, port, None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(monkeypatch) -> Iterator[tuple[_Inbox, int, _SmtpServer]]:
    inbox, port = _Inbox(), free_port()
    controller = _SmtpServer(inbox, port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_HEALTHSCORE_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": "healthscore@example.test", "disable_tls": True, "disable_ssl": True,
                  "timeout": 5, "retry_limit": 1}}))
    try:
        yield inbox, port, controller
    finally:
        controller.stop()


@pytest.fixture
def slack(monkeypatch) -> Iterator[list[dict]]:
    posts: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_HEALTHSCORE_SLACK", json.dumps({
        "conn_type": "slackwebhook", "host": f"http://127.0.0.1:{server.server_port}",
        "password": "T000/B000/secret-webhook-token"}))
    try:
        yield posts
    finally:
        server.shutdown()


@pytest.fixture
def engine(sqlite_url):
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def _deliveries(engine) -> dict[str, dict]:
    table = NotificationDelivery.__table__
    with engine.connect() as conn:
        return {row["dedupe_key"]: dict(row) for row in conn.execute(sa.select(table)).mappings()}


def test_email_and_slack_arrive_once_across_reruns_and_retries(engine, smtp, slack, tmp_path):
    inbox, port, controller = smtp
    writer = OutboxWriter(engine, tmp_path / "outbox.jsonl")
    writer.write(OutboxMessage("email", "csm.one@example.test", f"[healthscore] digest for {NAME}",
                               f"Account {NAME} dropped to At Risk.\nLine two.", "digest:1", "daily_digest"))
    writer.write(OutboxMessage("slack", "#cs-alerts", "[healthscore] CRITICAL", f"{NAME} is Critical",
                               "alert:1", "critical_alert"))

    report = deliver_outbox(engine)
    assert sorted(report.delivered) == ["alert:1", "digest:1"] and not report.failed

    [(rcpt, message)] = inbox.messages
    assert rcpt == ["csm.one@example.test"]
    assert message["To"] == "csm.one@example.test" and message["From"] == "healthscore@example.test"
    assert message["Subject"] == f"[healthscore] digest for {NAME}"
    assert message["Message-ID"] == message_id("digest:1")
    html_body = message.get_body(("html",)).get_content()
    assert "{{ 7 * 7 }}" in html_body and "49" not in html_body  # text, never rendered as a template
    assert "&lt;b&gt;x&#x27;); DROP TABLE health_scores;--" in html_body and "🚀" in html_body
    [post] = slack
    assert post["path"] == "/T000/B000/secret-webhook-token"
    assert post["json"]["text"] == f"*[healthscore] CRITICAL*\n{NAME} is Critical"

    # A rerun (or a retry of the task) hands nothing over again.
    assert deliver_outbox(engine).delivered == []
    assert len(inbox.messages) == 1 and len(slack) == 1

    # The SMTP server down: the new message fails, is recorded, stays pending; the task would be retried.
    writer.write(OutboxMessage("email", "csm.two@example.test", "s2", "b2", "digest:2", "daily_digest"))
    controller.stop()
    with pytest.raises(DeliveryError, match="digest:2"):
        deliver_outbox(engine)
    failed = _deliveries(engine)["digest:2"]
    assert failed["delivered_at"] is None and failed["attempts"] == 1 and "Error" in failed["last_error"]
    controller.start()
    assert deliver_outbox(engine).delivered == ["digest:2"]
    assert [m["To"] for _, m in inbox.messages] == ["csm.one@example.test", "csm.two@example.test"]
    assert len(slack) == 1
    done = _deliveries(engine)
    assert done["digest:2"]["attempts"] == 2 and done["digest:2"]["last_error"] is None
    assert all(row["delivered_at"] is not None for row in done.values())
    assert (tmp_path / "outbox.jsonl").read_text().count("\n") == 3  # the outbox stays the record


def test_without_a_transport_messages_stay_in_the_outbox(engine, tmp_path):
    OutboxWriter(engine, tmp_path / "o.jsonl").write(
        OutboxMessage("email", "a@example.test", "s", "b", "k:1", "daily_digest"))
    report = deliver_outbox(engine)
    assert report.delivered == [] and report.skipped_channels == {"email": 1}
    assert _deliveries(engine) == {}


def test_recipients_are_the_owners_emails_with_a_fallback(engine, caplog):
    batches = {date(2026, 9, 1): [{"id": "1", "email": "old@example.test"}],
               date(2026, 9, 20): [{"id": "1", "email": "ana@example.test"}, {"id": "2", "email": None}],
               date(2026, 9, 25): [{"id": "2", "email": None}],  # owner 1 dropped from the list: still a recipient
               date(2026, 10, 5): [{"id": "3", "email": "later@example.test"}]}
    with engine.begin() as conn:  # landed as extraction lands them (the record index kept)
        for day, owners in batches.items():
            pointintime.land_batch(conn, "hubspot", "owners", day, [[
                {"record_id": o["id"], "batch_date": day, "payload": json.dumps(o), "payload_sha256": "x"}
                for o in owners]])
    with caplog.at_level(logging.WARNING, logger="healthscore.notify.delivery"):
        recipients = owner_recipients(engine, date(2026, 9, 30), "revops@example.test")
    assert recipients == {"1": "ana@example.test", "2": "revops@example.test", "unassigned": "revops@example.test"}
    assert "HubSpot owner 2 has no email" in caplog.text
    with caplog.at_level(logging.WARNING, logger="healthscore.notify.delivery"):
        assert resolve_recipients([{"id": "2", "email": ""}], None) == {}
    assert "no fallback is configured" in caplog.text


def test_an_email_carries_its_attachments_and_other_channels_only_name_them(engine, smtp, tmp_path):
    inbox, _, _ = smtp
    pdf = tmp_path / "executive.pdf"
    pdf.write_bytes(b"%PDF-1.4 the month's executive report")
    writer = OutboxWriter(engine, tmp_path / "outbox.jsonl")
    writer.write(OutboxMessage("email", "leadership@example.test", "[healthscore] September", f"PDF: {pdf}",
                               "executive:2026-09:v1", "executive_report", attachments=(str(pdf),)))
    assert deliver_outbox(engine).delivered == ["executive:2026-09:v1"]
    [(_, message)] = inbox.messages
    [part] = list(message.iter_attachments())
    assert part.get_filename() == "executive.pdf" and part.get_content() == pdf.read_bytes()
    assert f"PDF: {pdf}" in message.get_body(("html",)).get_content()
    line = json.loads((tmp_path / "outbox.jsonl").read_text())
    assert line["attachments"] == [str(pdf)]  # the outbox file records what was attached
