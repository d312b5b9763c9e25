"""The monthly executive report: one page of the portfolio for leadership, HTML and PDF, charts included, offline.

Sections: the portfolio by band against last month, At Risk ARR, the top 10 at-risk accounts by ARR, accounts
approaching renewal, saves and expansions this month, and model accuracy. Every figure is read from the warehouse
(``build``) into plain data (``ExecutiveReport``) that both renderers show unchanged:

- scores are the champion's (never shadow rows) on its newest scored day of the month, compared with its newest
  scored day of the month before; bands are the computed ones (the Portfolio page's), the at-risk list also
  takes an account whose standing override puts it in an at-risk band (the At risk page's rule);
- a *save* is a renewal resolved this month as renewed or expanded for an account a playbook fired on in the
  ``SAVE_LOOKBACK_DAYS`` before it; an *expansion* is any outcome ``expanded`` this month (at renewal or mid-term),
  with the ARR it added where the CRM or billing says;
- model accuracy is the headline-horizon row of ``accuracy_reports`` for the month (and the months before it).

Charts are drawn by matplotlib (Agg): inline SVG in the HTML, PNG images in the PDF (reportlab). Nothing is
loaded from the network.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import Any

import sqlalchemy as sa

from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.warehouse import pointintime
from healthscore.warehouse.models import (
    AccountSignals,
    AccuracyReport,
    HealthScore,
    ModelVersion,
    PlaybookEvent,
    RenewalOutcome,
)

H, S = HealthScore.__table__, AccountSignals.__table__
TOP_AT_RISK = 10
RENEWAL_WINDOW_DAYS = 90
RENEWALS_LISTED = 25
SAVE_LOOKBACK_DAYS = 180
ACCURACY_MONTHS = 12


def month_bounds(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def dollars(cents: int | float | None) -> str:
    return "—" if cents is None else f"${cents / 100:,.0f}"


def signed_dollars(cents: int | float | None) -> str:
    return "—" if cents is None else f"{'+' if cents >= 0 else '-'}${abs(cents) / 100:,.0f}"


@dataclass
class BandRow:
    band: str
    accounts: int
    arr_cents: int
    accounts_before: int | None
    arr_cents_before: int | None


@dataclass
class ExecutiveReport:
    month: date
    period_end: date
    champion: str | None
    as_of: date | None
    before: date | None
    at_risk_bands: list[str]
    band_colors: dict[str, str]
    bands: list[BandRow] = field(default_factory=list)
    at_risk_arr_cents: int = 0
    at_risk_arr_cents_before: int | None = None
    at_risk_accounts: int = 0
    total_accounts: int = 0
    total_arr_cents: int = 0
    top_at_risk: list[dict[str, Any]] = field(default_factory=list)
    renewals: list[dict[str, Any]] = field(default_factory=list)
    renewals_total: int = 0
    renewals_arr_cents: int = 0
    renewals_at_risk_arr_cents: int = 0
    saves: list[dict[str, Any]] = field(default_factory=list)
    expansions: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None
    accuracy_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Customer health: executive report, {self.month:%B %Y}"

    @property
    def at_risk_arr_delta_cents(self) -> int | None:
        return None if self.at_risk_arr_cents_before is None else self.at_risk_arr_cents - self.at_risk_arr_cents_before

    @property
    def expansion_arr_cents(self) -> int:
        return sum(e["arr_change_cents"] or 0 for e in self.expansions)

    @property
    def saved_arr_cents(self) -> int:
        return sum(s["arr_cents"] or 0 for s in self.saves)

    def headline(self) -> list[str]:
        """The figures an executive reads first (also the notification's body)."""
        delta = self.at_risk_arr_delta_cents
        lines = [f"Portfolio: {self.total_accounts} accounts, {dollars(self.total_arr_cents)} ARR"
                 + (f" (scored {self.as_of.isoformat()})" if self.as_of else " (no scores this month)"),
                 f"At Risk ARR: {dollars(self.at_risk_arr_cents)} over {self.at_risk_accounts} accounts"
                 + (f" ({signed_dollars(delta)} against last month)" if delta is not None else ""),
                 f"Renewals in the next {RENEWAL_WINDOW_DAYS} days: {self.renewals_total} accounts, "
                 f"{dollars(self.renewals_arr_cents)} ARR, {dollars(self.renewals_at_risk_arr_cents)} of it at risk",
                 f"Saves this month: {len(self.saves)} ({dollars(self.saved_arr_cents)} ARR kept); expansions: "
                 f"{len(self.expansions)} ({signed_dollars(self.expansion_arr_cents)} ARR)"]
        acc = self.accuracy
        if acc is None:
            lines.append("Model accuracy: no accuracy report for this month yet")
        elif acc.get("too_small"):
            lines.append(f"Model accuracy ({acc['model_version']}, {acc['horizon_days']}-day lead): "
                         f"too small to measure ({acc.get('n', 0)} renewals)")
        else:
            lines.append(f"Model accuracy ({acc['model_version']}, {acc['horizon_days']}-day lead): "
                         f"{100 * acc['accuracy']:.1f}% over {acc['n']} renewals, recall {100 * acc['recall']:.1f}%"
                         + (f", AUC {acc['auc']:.3f}" if acc.get("auc") is not None else ""))
        return lines


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _champion(conn: sa.Connection) -> tuple[str | None, ModelConfig | None]:
    row = conn.execute(sa.select(ModelVersion.version, ModelVersion.config_yaml)
                       .where(ModelVersion.role == "champion")).first()
    if row is None:
        return None, None
    return row.version, model_config_from_dict(json.loads(row.config_yaml), f"model_versions[{row.version}]")


def _rows(version: str, day: date) -> Any:
    return (sa.select(H, S.c.arr_cents, S.c.renewal_date)
            .select_from(H.outerjoin(S, sa.and_(S.c.account_id == H.c.account_id, S.c.as_of_date == H.c.as_of_date)))
            .where(H.c.model_version == version, H.c.as_of_date == day, H.c.is_shadow.is_(False)))


def _by_band(conn: sa.Connection, version: str, day: date) -> dict[str, tuple[int, int]]:
    band = sa.func.coalesce(H.c.band, "unscored")
    query = (sa.select(band.label("band"), sa.func.count(), sa.func.coalesce(sa.func.sum(S.c.arr_cents), 0))
             .select_from(H.outerjoin(S, sa.and_(S.c.account_id == H.c.account_id, S.c.as_of_date == H.c.as_of_date)))
             .where(H.c.model_version == version, H.c.as_of_date == day, H.c.is_shadow.is_(False)).group_by(band))
    return {str(b): (int(n), int(arr or 0)) for b, n, arr in conn.execute(query)}


def _names(conn: sa.Connection, ids: list[str], day: date) -> dict[str, str]:
    if not ids:
        return {}
    out = {}
    for company in pointintime.latest(conn, "hubspot", "companies", day, only=sorted(set(ids))):
        name = (company.get("properties") or {}).get("name")
        if name:
            out[str(company["id"])] = str(name)
    return out


def _arr_change(row: Any) -> int | None:
    if row.crm_arr_after_cents is not None and row.crm_arr_before_cents is not None:
        return int(row.crm_arr_after_cents - row.crm_arr_before_cents)
    if row.mrr_after_cents is not None and row.mrr_before_cents is not None:
        return int(12 * (row.mrr_after_cents - row.mrr_before_cents))
    return None


def build(conn: sa.Connection, month: date) -> ExecutiveReport:
    """The report for the month containing ``month``, read from the warehouse (nothing written)."""
    first, last = month_bounds(month)
    version, model = _champion(conn)
    at_risk = list(model.evaluation.at_risk_bands) if model else []
    report = ExecutiveReport(first, last, version, None, None, at_risk,
                             {b.name: b.color or "#888888" for b in model.bands} if model else {})
    if version is None or model is None:
        return report
    champion_rows = sa.and_(H.c.model_version == version, H.c.is_shadow.is_(False))
    as_of = conn.execute(sa.select(sa.func.max(H.c.as_of_date)).where(champion_rows, H.c.as_of_date <= last)).scalar()
    before = conn.execute(sa.select(sa.func.max(H.c.as_of_date)).where(
        champion_rows, H.c.as_of_date < first)).scalar()
    report.as_of, report.before = as_of, before
    _outcomes(conn, report, first, last)
    _accuracy(conn, report, model, last)
    if as_of is None:
        return report
    now = _by_band(conn, version, as_of)
    old = _by_band(conn, version, before) if before else None
    order = [b.name for b in model.bands] + ["unscored"]
    for band in dict.fromkeys([*order, *sorted(now), *sorted(old or {})]):
        if band not in now and band not in (old or {}):
            continue
        n, arr = now.get(band, (0, 0))
        n0, arr0 = (old.get(band, (0, 0)) if old is not None else (None, None))
        report.bands.append(BandRow(band, n, arr, n0, arr0))
    report.total_accounts = sum(r.accounts for r in report.bands)
    report.total_arr_cents = sum(r.arr_cents for r in report.bands)
    report.at_risk_accounts = sum(r.accounts for r in report.bands if r.band in at_risk)
    report.at_risk_arr_cents = sum(r.arr_cents for r in report.bands if r.band in at_risk)
    if old is not None:
        report.at_risk_arr_cents_before = sum(r.arr_cents_before or 0 for r in report.bands if r.band in at_risk)

    base = _rows(version, as_of)
    risky = base.where(sa.or_(H.c.band.in_(at_risk), H.c.override_band.in_(at_risk)))
    top = conn.execute(risky.order_by(S.c.arr_cents.desc().nulls_last(), H.c.account_id).limit(TOP_AT_RISK)).all()
    window = base.where(S.c.renewal_date > as_of, S.c.renewal_date <= as_of + timedelta(days=RENEWAL_WINDOW_DAYS))
    renewals = conn.execute(window.order_by(S.c.renewal_date, S.c.arr_cents.desc().nulls_last(),
                                            H.c.account_id)).all()
    names = _names(conn, [r.account_id for r in (*top, *renewals[:RENEWALS_LISTED])], as_of)

    def item(row: Any) -> dict[str, Any]:
        return {"account_id": row.account_id, "name": names.get(row.account_id, row.account_id), "band": row.band,
                "score": row.score, "override_band": row.override_band, "arr_cents": row.arr_cents,
                "renewal_date": row.renewal_date, "trend_30d": row.trend_30d}

    report.top_at_risk = [item(r) for r in top]
    report.renewals = [item(r) for r in renewals[:RENEWALS_LISTED]]
    report.renewals_total = len(renewals)
    report.renewals_arr_cents = sum(r.arr_cents or 0 for r in renewals)
    report.renewals_at_risk_arr_cents = sum(r.arr_cents or 0 for r in renewals
                                            if r.band in at_risk or r.override_band in at_risk)
    return report


def _outcomes(conn: sa.Connection, report: ExecutiveReport, first: date, last: date) -> None:
    o, e = RenewalOutcome.__table__, PlaybookEvent.__table__
    rows = conn.execute(sa.select(o).where(o.c.renewal_date >= first, o.c.renewal_date <= last)
                        .order_by(o.c.renewal_date, o.c.account_id)).all()
    if not rows:
        return
    ids = sorted({r.account_id for r in rows})
    plays: dict[str, list[tuple[date, str]]] = {}
    for account, crossing, playbook in conn.execute(
            sa.select(e.c.account_id, e.c.crossing_date, e.c.playbook).where(
                e.c.account_id.in_(ids), e.c.status != "suppressed",
                e.c.crossing_date >= first - timedelta(days=SAVE_LOOKBACK_DAYS), e.c.crossing_date <= last)):
        plays.setdefault(account, []).append((crossing, playbook))
    arr = {}
    for account, value in conn.execute(
            sa.select(S.c.account_id, S.c.arr_cents).where(S.c.account_id.in_(ids), S.c.as_of_date <= last)
            .order_by(S.c.as_of_date)):
        arr[account] = value  # the newest known ARR by the month's end
    names = _names(conn, ids, last)
    for row in rows:
        base = {"account_id": row.account_id, "name": names.get(row.account_id, row.account_id),
                "renewal_date": row.renewal_date, "kind": row.kind, "outcome": row.outcome,
                "arr_cents": arr.get(row.account_id), "arr_change_cents": _arr_change(row)}
        fired = sorted({p for d, p in plays.get(row.account_id, [])
                        if row.renewal_date - timedelta(days=SAVE_LOOKBACK_DAYS) <= d <= row.renewal_date})
        if row.kind == "renewal" and row.outcome in ("renewed", "expanded") and fired:
            report.saves.append({**base, "playbooks": fired})
        if row.outcome == "expanded":
            report.expansions.append(base)
        if row.kind == "renewal" and row.outcome in ("churned", "contracted"):
            report.losses.append(base)


def _accuracy(conn: sa.Connection, report: ExecutiveReport, model: ModelConfig, last: date) -> None:
    r = AccuracyReport.__table__
    horizon = model.evaluation.headline_horizon_days
    rows = conn.execute(sa.select(r.c.period_start, r.c.period_end, r.c.metrics).where(
        r.c.model_version == report.champion, r.c.horizon_days == horizon, r.c.period_end <= last)
        .order_by(r.c.period_end.desc()).limit(ACCURACY_MONTHS)).all()
    for start, end, metrics in reversed(rows):
        m = _json(metrics) or {}
        overall = dict(m.get("overall") or {})
        entry = {"period_start": start, "period_end": end, "model_version": report.champion, "horizon_days": horizon,
                 **{k: overall.get(k) for k in ("n", "accuracy", "recall", "precision", "auc", "too_small")},
                 "missed_targets": list(m.get("missed_targets") or []),
                 "drift_alerts": list((m.get("drift") or {}).get("alerts") or []),
                 "overrides": m.get("overrides")}
        report.accuracy_history.append(entry)
    if report.accuracy_history and report.accuracy_history[-1]["period_start"] == report.month:
        report.accuracy = report.accuracy_history[-1]


# ---------------------------------------------------------------------------------------------- charts


def _figures(report: ExecutiveReport) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figs: dict[str, Any] = {}
    if report.bands:
        fig, ax = plt.subplots(figsize=(6.4, 2.6))
        labels = [b.band for b in report.bands]
        xs = range(len(labels))
        now = [b.arr_cents / 100 for b in report.bands]
        ax.bar([x + 0.2 for x in xs], now, 0.4, label=f"{report.as_of}",
               color=[report.band_colors.get(b, "#607d8b") for b in labels])
        if report.before:
            ax.bar([x - 0.2 for x in xs], [(b.arr_cents_before or 0) / 100 for b in report.bands], 0.4,
                   label=f"{report.before}", color="#cfd8dc")
        ax.set_xticks(list(xs), labels)
        ax.yaxis.set_major_formatter(lambda value, _: f"${value / 1000:,.0f}k")
        ax.set_ylabel("ARR")
        ax.set_title("ARR by band: this month against last month")
        ax.legend(loc="upper right", fontsize=8)
        figs["bands"] = fig
    history = [h for h in report.accuracy_history if h.get("accuracy") is not None and not h.get("too_small")]
    if history:
        fig, ax = plt.subplots(figsize=(6.4, 2.2))
        xs = list(range(len(history)))
        ax.plot(xs, [h["accuracy"] for h in history], marker="o", label="accuracy")
        ax.plot(xs, [h["recall"] or 0 for h in history], marker="s", label="recall")
        ax.set_xticks(xs, [f"{h['period_start']:%Y-%m}" for h in history])
        ax.set_ylim(0, 1)
        ax.set_title(f"Model accuracy by month ({history[-1]['horizon_days']}-day lead)")
        ax.legend(loc="lower right", fontsize=8)
        figs["accuracy"] = fig
    return figs


def _charts(report: ExecutiveReport, fmt: str) -> dict[str, Any]:
    from matplotlib import pyplot as plt

    out: dict[str, Any] = {}
    for name, fig in _figures(report).items():
        if fmt == "svg":
            buf = io.StringIO()
            fig.savefig(buf, format="svg", bbox_inches="tight")
            out[name] = buf.getvalue()[buf.getvalue().index("<svg"):]
        else:
            data = io.BytesIO()
            fig.savefig(data, format="png", dpi=110, bbox_inches="tight")
            out[name] = data.getvalue()
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- tables


def _delta(now: int, before: int | None, money: bool) -> str:
    if before is None:
        return "—"
    return signed_dollars(now - before) if money else f"{now - before:+d}"


def tables(report: ExecutiveReport) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Each section's (header, rows) as the reader sees them: the HTML and the PDF show the same cells."""
    def risky_row(a: dict[str, Any]) -> list[str]:
        band = a["band"] or "unscored"
        if a["override_band"] and a["override_band"] != a["band"]:
            band += f" (override: {a['override_band']})"
        return [a["name"], band, "—" if a["score"] is None else f"{a['score']:.0f}", dollars(a["arr_cents"]),
                str(a["renewal_date"] or "—"), "—" if a["trend_30d"] is None else f"{a['trend_30d']:+.1f}"]

    def outcome_row(o: dict[str, Any], extra: str) -> list[str]:
        return [o["name"], str(o["renewal_date"]), o["outcome"] + ("" if o["kind"] == "renewal" else " (mid-term)"),
                dollars(o["arr_cents"]), extra]

    return {
        "bands": (["Band", "Accounts", "Change", "ARR", "Change"],
                  [[b.band, str(b.accounts), _delta(b.accounts, b.accounts_before, False), dollars(b.arr_cents),
                    _delta(b.arr_cents, b.arr_cents_before, True)] for b in report.bands]),
        "top_at_risk": (["Account", "Band", "Score", "ARR", "Renewal", "30-day trend"],
                        [risky_row(a) for a in report.top_at_risk]),
        "renewals": (["Account", "Band", "Score", "ARR", "Renewal", "30-day trend"],
                     [risky_row(a) for a in report.renewals]),
        "saves": (["Account", "Renewal", "Outcome", "ARR", "Playbooks"],
                  [outcome_row(s, ", ".join(s["playbooks"])) for s in report.saves]),
        "expansions": (["Account", "Date", "Outcome", "ARR", "ARR added"],
                       [outcome_row(e, signed_dollars(e["arr_change_cents"])) for e in report.expansions]),
        "accuracy": (["Month", "Renewals", "Accuracy", "Recall", "Precision", "AUC", "Missed targets", "Drift"],
                     [[f"{h['period_start']:%Y-%m}", str(h["n"] or 0)]
                      + (["too small"] * 4 if h["too_small"] else
                         [_pct(h["accuracy"]), _pct(h["recall"]), _pct(h["precision"]),
                          "—" if h["auc"] is None else f"{h['auc']:.3f}"])
                      + [", ".join(h["missed_targets"]) or "none", str(len(h["drift_alerts"]))]
                      for h in report.accuracy_history]),
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


SECTIONS = (("bands", "Portfolio by band"), ("top_at_risk", f"Top {TOP_AT_RISK} at-risk accounts by ARR"),
            ("renewals", f"Accounts approaching renewal (next {RENEWAL_WINDOW_DAYS} days)"),
            ("saves", "Saves this month"), ("expansions", "Expansions this month"), ("accuracy", "Model accuracy"))
CHART_AFTER = {"bands": "bands", "accuracy": "accuracy"}


def _caption(report: ExecutiveReport, key: str) -> str:
    if key == "renewals" and report.renewals_total > len(report.renewals):
        return f"The first {len(report.renewals)} of {report.renewals_total}, by renewal date."
    if key == "bands" and report.before is None:
        return "No scores from last month to compare with."
    if key == "accuracy" and report.accuracy and report.accuracy.get("overrides"):
        o = report.accuracy["overrides"]
        return (f"Were the overrides right? {o['n']} renewal(s) this month had a CSM override standing at the "
                f"{o['horizon_days']}-day lead date; {o['disagreed']['n']} where it disagreed with the score: "
                f"{o['verdict']}.")
    if key == "saves":
        return (f"Renewed or expanded this month after a playbook fired in the {SAVE_LOOKBACK_DAYS} days before; "
                f"{len(report.losses)} renewal(s) churned or contracted.")
    return ""


def render_html(report: ExecutiveReport) -> str:
    svgs = _charts(report, "svg")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(report.title)}</title>"
             "<style>body{font-family:sans-serif;max-width:900px;margin:24px auto;color:#1f2328}"
             "h1{font-size:22px}h2{font-size:16px;margin-top:24px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}.empty{color:#666}</style></head><body>",
             f"<h1>{escape(report.title)}</h1><ul id='headline'>",
             *(f"<li>{escape(line)}</li>" for line in report.headline()), "</ul>"]
    for key, (header, rows) in tables(report).items():
        title = dict(SECTIONS)[key]
        parts.append(f"<section id='{key}'><h2>{escape(title)}</h2>")
        if caption := _caption(report, key):
            parts.append(f"<p>{escape(caption)}</p>")
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            parts.append("</table>")
        else:
            parts.append("<p class='empty'>None this month.</p>")
        if key in CHART_AFTER and CHART_AFTER[key] in svgs:
            parts.append(f"<figure>{svgs[CHART_AFTER[key]]}</figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def render_pdf(report: ExecutiveReport) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (
        Image,
        ListFlowable,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=report.title, author="Customer Success",
                            leftMargin=1.5 * cm, rightMargin=1.5 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm)
    pngs = _charts(report, "png")
    story: list[Any] = [Paragraph(escape(report.title), styles["Title"]),
                        ListFlowable([Paragraph(escape(line), styles["BodyText"]) for line in report.headline()],
                                     bulletType="bullet")]
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    for key, (header, rows) in tables(report).items():
        story.append(Paragraph(escape(dict(SECTIONS)[key]), styles["Heading2"]))
        if caption := _caption(report, key):
            story.append(Paragraph(escape(caption), styles["BodyText"]))
        if rows:
            cells = [[Paragraph(escape(c), small) for c in row] for row in [header, *rows]]
            table = Table(cells, repeatRows=1, hAlign="LEFT")
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                                       ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f4"))]))
            story.append(table)
        else:
            story.append(Paragraph("None this month.", styles["BodyText"]))
        if key in CHART_AFTER and CHART_AFTER[key] in pngs:
            image = Image(io.BytesIO(pngs[CHART_AFTER[key]]))
            scale = (17 * cm) / image.drawWidth
            image.drawWidth, image.drawHeight = image.drawWidth * scale, image.drawHeight * scale
            story.extend([Spacer(1, 4), image])
    doc.build(story)
    return buffer.getvalue()
