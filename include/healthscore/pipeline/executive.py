"""The monthly executive report task: build it from the warehouse, write HTML and PDF, send it once.

``healthscore.reports.executive`` reads and renders; this writes ``<data_dir>/reports/executive/YYYY-MM/``
(``executive.html``, ``executive.pdf``) and puts one message in the outbox for leadership (the deployment's
fallback address, else ``role:executive`` which stays in the outbox), keyed by the month and the champion so a
rerun or a retry sends nothing twice; then the outbox is handed to the configured transports
(``healthscore.notify.delivery``), which deliver each message at most once.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)
DEFAULT_RECIPIENT = "role:executive"


def report_dir(data_dir: Path, month: date) -> Path:
    return Path(data_dir) / "reports" / "executive" / month.strftime("%Y-%m")


def run_month(engine: Engine, month: date, data_dir: Path, recipient: str | None = None,
              *, deliver: bool = True) -> dict[str, Any]:
    """Build, write and send the month's executive report; a summary for XCom."""
    from healthscore.notify.delivery import deliver_outbox
    from healthscore.notify.outbox import OutboxNotifier, outbox_path
    from healthscore.reports import executive

    with engine.connect() as conn:
        report = executive.build(conn, month)
    out = report_dir(data_dir, report.month)
    out.mkdir(parents=True, exist_ok=True)
    html, pdf = out / "executive.html", out / "executive.pdf"
    html.write_text(executive.render_html(report), encoding="utf-8")
    pdf.write_bytes(executive.render_pdf(report))
    body = "\n".join([*report.headline(), "", f"Report: {html}", f"PDF: {pdf}"])
    key = f"executive:{report.month:%Y-%m}:{report.champion}"
    sent = OutboxNotifier(recipient=recipient or DEFAULT_RECIPIENT, channel="email", engine=engine,
                          outbox_path=outbox_path(data_dir, "executive_reports"), subject=report.title, body=body,
                          dedupe_key=key, kind="executive_report", attachments=(str(pdf),)).send()
    delivered = deliver_outbox(engine).delivered if deliver else []
    summary = {"month": report.month.isoformat(), "as_of": report.as_of.isoformat() if report.as_of else None,
               "html": str(html), "pdf": str(pdf), "sent": bool(sent), "delivered": key in delivered,
               "at_risk_arr_cents": report.at_risk_arr_cents, "accounts": report.total_accounts,
               "saves": len(report.saves), "expansions": len(report.expansions)}
    log.info("executive report %s: %s", summary["month"], summary)
    return summary
