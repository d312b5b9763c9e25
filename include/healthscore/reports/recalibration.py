"""The quarterly recalibration report: champion against challenger, and what changed. One offline HTML file
(inline SVG, no scripts, no CDN)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

METRIC_COLUMNS = ("n", "positives", "accuracy", "precision", "recall", "specificity", "f1", "auc", "brier")
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.better{color:#0a6}.worse{color:#c33}.note{color:#555}"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f"<th class='l'>{html.escape(h)}</th>" if i < left else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class='l'>{_fmt(v)}</td>" if i < left else f"<td>{_fmt(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _band_chart(bands: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Grouped bars: the share of held-out rows per band, champion and challenger."""
    names = [b["band"] for b in next(iter(bands.values()))]
    width, height, pad = 520, 180, 30
    group = (width - pad) / max(len(names), 1)
    colours = {"champion": "#888", "challenger": "#2a7"}
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 40}' role='img'>"]
    for i, name in enumerate(names):
        for j, (role, rows) in enumerate(bands.items()):
            share = next((r["share"] or 0.0 for r in rows if r["band"] == name), 0.0)
            h = share * height
            x = pad + i * group + j * group / 2.5
            parts.append(f"<rect x='{x:.1f}' y='{height - h:.1f}' width='{group / 2.8:.1f}' height='{h:.1f}' "
                         f"fill='{colours.get(role, '#555')}'><title>{html.escape(role)} {html.escape(name)}: "
                         f"{share:.1%}</title></rect>")
        parts.append(f"<text x='{pad + i * group + 4:.1f}' y='{height + 16}' font-size='12'>{html.escape(name)}</text>")
    for j, role in enumerate(bands):
        parts.append(f"<rect x='{pad + j * 120}' y='{height + 26}' width='10' height='10' "
                     f"fill='{colours.get(role, '#555')}'/><text x='{pad + j * 120 + 14}' y='{height + 35}' "
                     f"font-size='12'>{html.escape(role)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def render_report(report: Mapping[str, Any], table_rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    figures, decision, changes = report["figures"], report["decision"], report["changes"]
    champ, chall = report["champion"], report["challenger"]
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Recalibration {html.escape(chall)}</title>"
           f"<style>{STYLE}</style></head><body>",
           f"<h1>Quarterly recalibration: {html.escape(chall)} against champion {html.escape(champ)}</h1>",
           f"<p class='{'better' if decision['better'] else 'worse'}'><b>"
           f"{'The challenger is better' if decision['better'] else 'The challenger is not better'}</b>: "
           f"{html.escape(decision['why'])}. "
           + ("It waits for a person's approval in the Airflow UI before it is promoted."
              if decision["better"] else "Nothing is promoted.") + "</p>",
           f"<p class='note'>Held-out rows only ({html.escape(report['held_out']['method'])}); both models scored "
           "by the daily DAG's scoring code over the stored point-in-time signal snapshots. Prediction: band At "
           "Risk or worse. Brier reads (100 - score) / 100 as a churn probability."
           + (f" Challenger scored as {html.escape(report['challenger_scored_as'])}."
              if report.get("challenger_scored_as") else "") + "</p>",
           "<h2>Side by side</h2>"]
    rows = [[r["scope"], r["group"], r["model"], *(r.get(m) for m in METRIC_COLUMNS)] for r in table_rows]
    rows.sort(key=lambda r: (r[0] != "overall", r[0], r[1], r[2] != "champion"))
    out.append(_table(["scope", "group", "model", *METRIC_COLUMNS], rows, left=3))
    out.append("<h2>Band distribution on held-out rows</h2>")
    out.append(_band_chart({role: block["bands"] for role, block in figures.items()}))
    band_rows = []
    for role, block in figures.items():
        for b in block["bands"]:
            band_rows.append([role, b["band"], b["n"], b["share"], b["churn_rate"]])
    out.append(_table(["model", "band", "rows", "share", "churn rate"], band_rows, left=2))
    out.append("<h2>What changed</h2><h3>Dimension weights (%)</h3>")
    w_rows = []
    for seg, dims in changes["weights"].items():
        for dim, (before, after) in dims.items():
            w_rows.append([seg, dim, before, after, None if before is None or after is None else after - before])
    out.append(_table(["segment", "dimension", champ, chall, "change"], w_rows, left=2))
    out.append("<h3>Signals</h3><p>Dropped (absent from the challenger): "
               f"{html.escape(', '.join(changes['dropped_signals']) or 'none')}. Weight 0 in the challenger: "
               f"{html.escape(', '.join(changes.get('zero_weight_signals', [])) or 'none')}. Added: "
               f"{html.escape(', '.join(changes['added_signals']) or 'none')}.</p>")
    if changes.get("correlations"):
        out.append("<p class='note'>Correlation of each signal (healthy direction) with retention on the training "
                   "rows; |r| &lt; 0.3 is flagged weak (the field's rule).</p>")
        out.append(_table(["signal", "dimension", "rows", "r", "weak"],
                          [[c["signal"], c["dimension"], c["n"], c["r"], "weak" if c["weak"] else ""]
                           for c in changes["correlations"]], left=2))
    c_rows = [[sid, *(m["before"][k] for k in ("floor", "baseline", "target", "cap")),
               *(m["after"][k] for k in ("floor", "baseline", "target", "cap"))]
              for sid, m in changes["moved_curves"].items()]
    out.append("<h3>Moved curves</h3>" + _table(
        ["signal", "floor", "baseline", "target", "cap", "new floor", "new baseline", "new target", "new cap"], c_rows))
    out.append("<h3>Band lines</h3>" + _table(
        ["model", "bands (name, min, max)"],
        [[champ, "; ".join(f"{n} {lo}-{hi}" for n, lo, hi in changes["bands"]["before"])],
         [chall, "; ".join(f"{n} {lo}-{hi}" for n, lo, hi in changes["bands"]["after"])]], left=2))
    seg_rows = []
    for role, name in (("before", champ), ("after", chall)):
        for seg, lines in (changes["segment_thresholds"][role] or {}).items():
            seg_rows.append([name, seg, lines.get("healthy_at_or_above"), lines.get("at_risk_below")])
    out.append(_table(["model", "segment", "healthy at or above", "at risk below"], seg_rows, left=2))
    out.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
