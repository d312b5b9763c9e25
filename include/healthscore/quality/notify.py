"""Alerting when the quality gate blocks a source: an Airflow notifier that appends to an outbox file.

In the sandbox and by default, "sending" means appending one JSON line per notification to an outbox
file (tests and the demo read it; a delivery task can forward it to email/Slack later). The message
names the batch, counts, block reasons and failed expectations, never values from the records (they
can hold customer data) nor anything from connections.

Use it as a task callback (``on_failure_callback=QualityAlertNotifier(path)``: the ``QualityGateError``
raised with ``fail_on_critical`` carries the outcome) or call it from the task with ``outcome=``.
Light to import: no pandas, no GX.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from healthscore.quality.gate import ValidationOutcome

_write_lock = threading.Lock()


def default_outbox_path(data_dir: Path) -> Path:
    """Where quality alerts go unless configured otherwise (under the settings' data_dir)."""
    return Path(data_dir) / "outbox" / "quality_alerts.jsonl"


def quality_alert_message(outcome: ValidationOutcome) -> tuple[str, str]:
    """(subject, body) of the alert for one validation outcome."""
    rec = outcome.reconciliation
    state = "BLOCKED" if outcome.critical_failed else "quarantined rows in"
    subject = f"[healthscore] quality gate {state} {outcome.suite} for {outcome.batch_date}"
    lines = [
        f"Suite {outcome.suite}, batch {outcome.batch_date}, run {outcome.run_id}.",
        f"Landed {rec['landed']}, accepted {rec['accepted']}, quarantined {rec['quarantined']}.",
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
    """Writes one JSON line per notification to ``outbox_path``.

    ``subject``/``body`` (templated) override the message; otherwise it is built from ``outcome`` or,
    in a failure callback, from the ``QualityGateError`` in the Airflow context.
    """

    template_fields = ("subject", "body")

    def __init__(self, outbox_path: str | Path, *, outcome: ValidationOutcome | None = None,
                 subject: str | None = None, body: str | None = None, channel: str = "quality",
                 recipient: str = "data-quality") -> None:
        super().__init__()
        self.outbox_path = Path(outbox_path)
        self.outcome = outcome
        self.subject = subject
        self.body = body
        self.channel = channel
        self.recipient = recipient

    def notify(self, context: Any) -> None:
        """Append the alert to the outbox (creating folders as needed)."""
        outcome = self.outcome or getattr(_get(context, "exception"), "outcome", None)
        subject, body = quality_alert_message(outcome) if outcome is not None else (None, None)
        if subject is None:
            error = _get(context, "exception")
            subject = f"[healthscore] task {_ids(context)['task_id'] or '?'} failed"
            body = f"{type(error).__name__}: {error}" if error is not None else "no details"
        entry = {
            "created_at": datetime.now(UTC).isoformat(),
            "channel": self.channel,
            "recipient": self.recipient,
            "subject": self.subject or subject,
            "body": self.body or body,
            **_ids(context),
            "suite": outcome.suite if outcome else None,
            "critical_failed": outcome.critical_failed if outcome else None,
            "blocked_dimensions": outcome.blocked_dimensions if outcome else {},
            "dedupe_key": (f"quality:{outcome.suite}:{outcome.batch_date}:{outcome.run_id}" if outcome
                           else f"task:{_ids(context)['dag_id']}:{_ids(context)['task_id']}:{_ids(context)['run_id']}"),
        }
        self.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        with _write_lock, self.outbox_path.open("a", encoding="utf-8") as handle:
            handle.write(line)


def _get(context: Any, key: str) -> Any:
    try:
        return context.get(key)
    except AttributeError:
        return None


def _ids(context: Any) -> dict[str, str | None]:
    ti = _get(context, "ti") or _get(context, "task_instance")
    return {"dag_id": getattr(ti, "dag_id", None), "task_id": getattr(ti, "task_id", None),
            "run_id": getattr(ti, "run_id", None) or _get(context, "run_id")}
