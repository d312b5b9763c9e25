"""Alerting when the quality gate blocks a source: an Airflow notifier writing to the one outbox.

The alert goes through ``healthscore.notify.outbox`` like every notification: one JSON line in the file
(and a ``notifications_outbox`` row when given an engine), once per dedupe key, so a retried task does
not alert twice. The message names the batch, counts, block reasons and failed expectations, never
values from the records (they can hold customer data) nor anything from connections.

Use it as a task callback (``on_failure_callback=QualityAlertNotifier(path)``: the ``QualityGateError``
raised with ``fail_on_critical`` carries the outcome) or call it from the task with ``outcome=``.
Light to import: no pandas, no GX.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier
from sqlalchemy.engine import Engine

from healthscore.notify.outbox import OutboxMessage, OutboxWriter, outbox_path

if TYPE_CHECKING:
    from healthscore.quality.gate import ValidationOutcome


def default_outbox_path(data_dir: Path) -> Path:
    """Where quality alerts go unless configured otherwise (under the settings' data_dir)."""
    return outbox_path(data_dir, "quality_alerts")


def quality_alert_message(outcome: ValidationOutcome) -> tuple[str, str]:
    """(subject, body) of the alert for one validation outcome."""
    rec = outcome.reconciliation
    state = "BLOCKED" if outcome.critical_failed else "quarantined rows in"
    subject = f"[healthscore] quality gate {state} {outcome.suite} for {outcome.batch_date}"
    lines = [
        f"Suite {outcome.suite}, batch {outcome.batch_date}, run {outcome.run_id}.",
        f"Landed {rec['landed']}, accepted {rec['accepted']}, quarantined {rec['quarantined']}"
        + (f", out of scope {rec['out_of_scope']}." if rec.get("out_of_scope") else "."),
    ]
    if outcome.critical_failed:
        dims = ", ".join(d for ds in outcome.blocked_dimensions.values() for d in ds)
        lines.append(f"Blocked dimensions: {dims} (today's scores must not use this source for them).")
        lines += [f"- {reason}" for reason in outcome.block_reasons]
    failed = [r for r in outcome.results if not r["success"]]
    if failed:
        lines.append("Failed expectations:")
        lines += [f"- [{r['severity']}] {r['expectation']}({r['column'] or ''}): {r['observed_value']}"
                  for r in failed[:15]]
        if len(failed) > 15:
            lines.append(f"- ... and {len(failed) - 15} more")
    per_check = Counter(q["expectation"] for q in outcome.quarantine)
    if per_check:
        lines.append("Quarantine rows per expectation: "
                     + ", ".join(f"{name}: {count}" for name, count in per_check.most_common(10)))
    if outcome.docs_path:
        lines.append(f"Data Docs: {outcome.docs_path}")
    return subject, "\n".join(lines)


class QualityAlertNotifier(BaseNotifier):
    """Writes the alert to the outbox (``outbox_path``, and the table when ``engine`` is given).

    ``subject``/``body`` (templated) override the message; otherwise it is built from ``outcome`` or,
    in a failure callback, from the ``QualityGateError`` in the Airflow context.
    """

    template_fields = ("subject", "body")

    def __init__(self, outbox_path: str | Path, *, outcome: ValidationOutcome | None = None,
                 subject: str | None = None, body: str | None = None, channel: str = "email",
                 recipient: str = "data-quality", engine: Engine | None = None) -> None:
        super().__init__()
        self.outbox_path = Path(outbox_path)
        self.outcome = outcome
        self.subject = subject
        self.body = body
        self.channel = channel
        self.recipient = recipient
        self.engine = engine

    def notify(self, context: Any) -> None:
        """Write the alert to the outbox (creating folders as needed), once per dedupe key."""
        outcome = self.outcome or getattr(_get(context, "exception"), "outcome", None)
        subject, body = quality_alert_message(outcome) if outcome is not None else (None, None)
        ids = _ids(context)
        if subject is None:
            error = _get(context, "exception")
            subject = f"[healthscore] task {ids['task_id'] or '?'} failed"
            body = f"{type(error).__name__}: {error}" if error is not None else "no details"
        key = (f"quality:{outcome.suite}:{outcome.batch_date}:{outcome.run_id}" if outcome
               else f"task:{ids['dag_id']}:{ids['task_id']}:{ids['run_id']}")
        fields = {**ids, "suite": outcome.suite if outcome else None,
                  "critical_failed": outcome.critical_failed if outcome else None,
                  "blocked_dimensions": outcome.blocked_dimensions if outcome else {}}
        message = OutboxMessage(self.channel, self.recipient, self.subject or subject, self.body or body or "", key,
                                "quality_alert", fields)
        OutboxWriter(self.engine, self.outbox_path).write(message)


def _get(context: Any, key: str) -> Any:
    try:
        return context.get(key)
    except AttributeError:
        return None


def _ids(context: Any) -> dict[str, str | None]:
    ti = _get(context, "ti") or _get(context, "task_instance")
    return {"dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
            "run_id": getattr(ti, "run_id", None) or _get(context, "run_id")}
