"""The customer-facing QBR summary of one account: adoption, growth and recommendations, HTML and PDF.

Written for the customer, so it shows usage and growth in their own terms and never the internal score, band or
the vocabulary of the health model: ``FORBIDDEN_WORDS`` lists what must not appear, and ``check_wording`` is run
on every text this module produces (a test scans the rendered HTML and the PDF's text too). The customer's own
name is exempt ("Clearlight Health LLC" may keep its name).
Figures come from the account's signals in the warehouse (``account_signals``) now and about 90 days before.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import Any

import sqlalchemy as sa

from healthscore.warehouse.models import AccountSignals, landing_table

FORBIDDEN_WORDS = ("risk", "churn", "health", "score", "critical", "at-risk")
QUARTER_DAYS = 90


class WordingError(ValueError):
    """A customer-facing text used internal vocabulary."""


def check_wording(text: str, names: tuple[str, ...] = ()) -> str:
    """``text`` unchanged, or WordingError; ``names`` (the customer's own name) are not judged."""
    scanned = text
    for name in names:
        scanned = scanned.replace(name, " ").replace(escape(name), " ")
    found = sorted({w for w in FORBIDDEN_WORDS if re.search(rf"\b{re.escape(w)}", scanned, re.I)})
    if found:
        raise WordingError(f"customer-facing text uses {found}: {text[:120]!r}")
    return text


@dataclass
class Metric:
    label: str
    now: float | None
    before: float | None
    unit: str

    @property
    def change(self) -> float | None:
        return None if self.now is None or self.before is None else self.now - self.before

    def line(self) -> str:
        if self.now is None:
            return f"{self.label}: not measured yet"
        text = f"{self.label}: {self.now:,.0f}{self.unit}"
        if self.change is not None and abs(self.change) >= 0.5:
            text += f" ({'up' if self.change > 0 else 'from'} {abs(self.change):,.0f}{self.unit} "
            text += "on last quarter)" if self.change > 0 else f"{self.before:,.0f}{self.unit} last quarter)"
        return text


@dataclass
class QbrSummary:
    account_id: str
    name: str
    as_of: date
    adoption: list[Metric] = field(default_factory=list)
    growth: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [self.title, *(m.line() for m in self.adoption), *self.growth, *self.recommendations]

    @property
    def title(self) -> str:
        return f"{self.name}: quarterly business review, {self.as_of:%B %Y}"


def _signals(conn: sa.Connection, account_id: str, on_or_before: date) -> dict[str, Any] | None:
    t = AccountSignals.__table__
    row = conn.execute(sa.select(t).where(t.c.account_id == account_id, t.c.as_of_date <= on_or_before)
                       .order_by(t.c.as_of_date.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    out = dict(row)
    out["signals"] = json.loads(out["signals"]) if isinstance(out["signals"], str) else (out["signals"] or {})
    return out


def _name(conn: sa.Connection, account_id: str, day: date) -> str:
    companies = landing_table("hubspot", "companies")
    payload = conn.execute(sa.select(companies.c.payload).where(
        companies.c.record_id == account_id, companies.c.batch_date <= day)
        .order_by(companies.c.batch_date.desc()).limit(1)).scalar()
    return str((json.loads(payload).get("properties") or {}).get("name") or account_id) if payload else account_id


def build_summary(conn: sa.Connection, account_id: str, as_of: date) -> QbrSummary:
    """The summary from the newest signals on or before ``as_of`` and those about a quarter earlier."""
    now = _signals(conn, account_id, as_of)
    if now is None:
        raise LookupError(f"account {account_id} has no signals on or before {as_of}")
    before = _signals(conn, account_id, now["as_of_date"] - timedelta(days=QUARTER_DAYS - 5))
    s, b = now["signals"], (before or {}).get("signals") or {}

    def metric(label: str, key: str, unit: str = "") -> Metric:
        return Metric(label, s.get(key), b.get(key) if before else None, unit)

    summary = QbrSummary(account_id, _name(conn, account_id, now["as_of_date"]), now["as_of_date"])
    summary.adoption = [metric("Licensed seats active in the last 30 days", "active_user_pct", "%"),
                        metric("Features in use", "feature_breadth", "%"),
                        metric("Weekly logins per active user", "logins_per_user_week"),
                        metric("People engaged across your teams", "contacts_engaged"),
                        metric("Departments using the product", "departments_engaged")]
    arr_now, arr_before = now.get("arr_cents"), (before or {}).get("arr_cents")
    if arr_now and arr_before and arr_now > arr_before:
        summary.growth.append(f"Your subscription grew {100 * (arr_now - arr_before) / arr_before:.0f}% this quarter.")
    if (s.get("expansion_12m") or 0) >= 1:
        summary.growth.append(f"You expanded your plan {int(s['expansion_12m'])} time(s) in the last 12 months.")
    for m in summary.adoption:
        if m.change is not None and m.change > 0.5:
            summary.growth.append(f"{m.label} rose by {m.change:,.0f}{m.unit} since last quarter.")
    if not summary.growth:
        summary.growth.append("Your usage held steady this quarter, a solid base for the goals below." if before else
                              "This is your first quarterly summary: the next one will show how each figure moved.")
    recs = summary.recommendations
    if (s.get("active_user_pct") or 0) < 60:
        recs.append("Invite the remaining licensed users with a short onboarding session for each team.")
    if (s.get("feature_breadth") or 0) < 60:
        recs.append("Book a workshop on the features your plan includes that your teams have not tried yet.")
    if (s.get("training_sessions_qtr") or 0) < 1:
        recs.append("Join one of our monthly training webinars to get more from new releases.")
    if (s.get("qbr_attended") or 0) < 1 or (s.get("executive_sponsor") or 0) < 1:
        recs.append("Let us schedule the next quarterly review with your executive sponsor.")
    if not recs:
        recs.append("Share your next-quarter goals with your success manager so we can plan the next milestones.")
    for text in summary.texts():
        check_wording(text, (summary.name,))
    return summary


def render_html(summary: QbrSummary) -> str:
    items = "".join(f"<li>{escape(m.line())}</li>" for m in summary.adoption)
    growth = "".join(f"<li>{escape(g)}</li>" for g in summary.growth)
    recs = "".join(f"<li>{escape(r)}</li>" for r in summary.recommendations)
    html = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(summary.title)}</title>"
            "<style>body{font-family:sans-serif;max-width:760px;margin:24px auto;color:#1f2328}"
            "h1{font-size:22px}h2{font-size:16px;margin-top:22px}</style></head><body>"
            f"<h1>{escape(summary.title)}</h1><h2>Adoption</h2><ul>{items}</ul><h2>Growth</h2><ul>{growth}</ul>"
            f"<h2>Recommendations for next quarter</h2><ul>{recs}</ul></body></html>")
    return check_wording(html, (summary.name,))


def render_pdf(summary: QbrSummary) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import ListFlowable, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=summary.title, author="Customer Success")

    def bullets(lines: list[str]) -> ListFlowable:
        return ListFlowable([Paragraph(escape(line), styles["BodyText"]) for line in lines], bulletType="bullet")

    doc.build([Paragraph(escape(summary.title), styles["Title"]),
               Paragraph("Adoption", styles["Heading2"]), bullets([m.line() for m in summary.adoption]),
               Paragraph("Growth", styles["Heading2"]), bullets(summary.growth), Spacer(1, 6),
               Paragraph("Recommendations for next quarter", styles["Heading2"]), bullets(summary.recommendations)])
    return buffer.getvalue()
