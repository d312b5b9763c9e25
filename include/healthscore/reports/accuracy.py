"""The monthly accuracy report as one self-contained HTML page (charts inline as SVG) plus a CSV per table.

Readable by RevOps without code: every table says its sample size, small groups say "too small" instead
of a figure, missed targets and drift alerts are at the top. Charts are rendered offline by matplotlib
(Agg backend); the page loads nothing from the network.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from healthscore.config.schema import ModelConfig

METRIC_COLUMNS = ("n", "positives", "accuracy", "precision", "recall", "specificity", "f1", "auc", "brier",
                  "top_decile_lift")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _metric_row(label: Mapping[str, Any], figs: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(label)
    if figs.get("too_small"):
        row.update({c: None for c in METRIC_COLUMNS})
        row.update({"n": figs.get("n"), "positives": figs.get("positives"), "note": "too small: no figures"})
    else:
        row.update({c: figs.get(c) for c in METRIC_COLUMNS})
        row["note"] = figs.get("auc_note", "")
    return row


def _share(figs: Mapping[str, Any] | None) -> str:
    """'42.0% [30.1-54.9%]' (Wilson 95%), or 'too small' where the group is under the minimum size."""
    if not figs or figs.get("too_small") or figs.get("rate") is None:
        return "too small"
    return f"{100 * figs['rate']:.1f}% [{100 * figs['ci_low']:.1f}-{100 * figs['ci_high']:.1f}%]"


def _points(figs: Mapping[str, Any] | None) -> str:
    if not figs or figs.get("too_small") or figs.get("mean") is None:
        return "too small"
    return f"{figs['mean']:+.1f} [{figs['ci_low']:+.1f}, {figs['ci_high']:+.1f}]"


def playbook_tables(plays: Mapping[str, Any] | None) -> dict[str, pd.DataFrame]:
    """Per playbook: fired, completed, recovery, churn against comparable accounts, velocity; and the next
    best action per situation. Each figure beside its sample size; 'too small' instead of a thin figure."""
    rows = []
    for p in (plays or {}).get("playbooks", []):
        rec, churn, vel = p["recovery"], p["churn"], p["velocity"]
        diff = churn.get("difference")
        rows.append({
            "playbook": p["playbook"], "fired": p["fired"], "completed": p["completed"],
            "completed_late": p["completed_late"],
            "recovery_n": rec["all"]["n"], "recovery": _share(rec["all"]),
            "recovery_completed_n": rec["completed"]["n"], "recovery_completed": _share(rec["completed"]),
            "recovery_left_open_n": rec["left_open"]["n"], "recovery_left_open": _share(rec["left_open"]),
            "churn_fired_n": churn["fired"]["n"], "churn_fired": _share(churn["fired"]),
            "churn_comparable_n": churn["comparable"]["n"], "churn_comparable": _share(churn["comparable"]),
            "churn_comparable_matched": ("too small" if churn.get("too_small")
                                         else _fmt(churn.get("comparable_standardised"))),
            "churn_difference": "too small" if churn.get("too_small") or diff is None else f"{100 * diff:+.1f} pts",
            "velocity_n": vel["all"]["n"], "velocity_30d": _points(vel["all"]),
            "velocity_completed": _points(vel["completed"]), "velocity_left_open": _points(vel["left_open"]),
        })
    best = [{"band": b["band"], "segment": b["segment"], "best_play": b["playbook"], "recovered": b["recovered"],
             "n": b["n"], "rate": b["rate"], "plays_compared": b["compared"]}
            for b in (plays or {}).get("next_best_action", [])]
    return {"playbook_effectiveness": pd.DataFrame(rows), "next_best_action": pd.DataFrame(best)}


def tables(report: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of the report as a frame (the CSVs and the HTML are both made from these)."""
    overall, by_segment, by_stage = [], [], []
    for h, block in report["horizons"].items():
        for version, figs in block["model_versions"].items():
            label = {"horizon_days": h, "model_version": version}
            overall.append({**_metric_row(label, figs["overall"]),
                            "with_prediction": figs["coverage"]["with_prediction"],
                            "outcomes": figs["coverage"]["outcomes"]})
            for seg, f in figs["by_segment"].items():
                by_segment.append(_metric_row({**label, "segment": seg}, f))
            for stage, f in figs["by_lifecycle_stage"].items():
                by_stage.append(_metric_row({**label, "lifecycle_stage": stage}, f))
    targets = [{"metric": k, **v} for k, v in report["targets"].items()]
    drift_dims = [{"dimension": k, **v} for k, v in report["drift"]["dimensions"].items()]
    drift_sigs = [{"signal": k, **v} for k, v in report["drift"]["signals"].items()]
    return {
        "metrics_overall": pd.DataFrame(overall),
        "metrics_by_segment": pd.DataFrame(by_segment),
        "metrics_by_lifecycle_stage": pd.DataFrame(by_stage),
        "targets": pd.DataFrame(targets),
        "retention_by_band": pd.DataFrame(report["retention_by_band"]),
        "lead_time": pd.DataFrame(report["lead_time"]["rows"]),
        "false_negatives": pd.DataFrame(report["misses"]["false_negatives"]),
        "false_positives": pd.DataFrame(report["misses"]["false_positives"]),
        "journey_velocity": pd.DataFrame(report["journey_velocity"]),
        "drift_dimensions": pd.DataFrame(drift_dims),
        "drift_signals": pd.DataFrame(drift_sigs),
        **playbook_tables(report.get("playbooks")),
        **override_tables(report.get("overrides")),
    }


def override_tables(result: Mapping[str, Any] | None) -> dict[str, pd.DataFrame]:
    """Were the humans right? The override band's prediction against the computed band's on the same renewals
    (all of them, and where the two disagreed), each share beside its sample size; and the renewals themselves."""
    if not result:
        return {"override_accuracy": pd.DataFrame(), "override_renewals": pd.DataFrame()}
    summary = [{"renewals": "with an override standing at the lead date", "n": result["n"],
                "override_right": _share(result["override_right"]), "computed_right": _share(result["computed_right"])},
               {"renewals": "where the override and the computed band disagreed", "n": result["disagreed"]["n"],
                "override_right": _share(result["disagreed"]["override_right"]),
                "computed_right": _share(result["disagreed"]["computed_right"])}]
    for row in summary:
        row["verdict"] = result["verdict"] if row is summary[-1] else ""
    return {"override_accuracy": pd.DataFrame(summary), "override_renewals": pd.DataFrame(result["rows"])}


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def charts(report: Mapping[str, Any], model: ModelConfig, snapshot_scores: Sequence[float] = ()) -> dict[str, str]:
    """Inline SVG charts: metrics against targets, retention by band, lead times."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out: dict[str, str] = {}
    t = report["targets"]
    names = list(t)
    fig, ax = plt.subplots(figsize=(6, 2.8))
    values = [t[n]["value"] or 0.0 for n in names]
    colors = ["#2e7d32" if t[n]["met"] else ("#c62828" if t[n]["met"] is False else "#9e9e9e") for n in names]
    ax.bar(names, values, color=colors)
    ax.scatter(names, [t[n]["target"] for n in names], marker="_", s=900, color="black", label="target")
    ax.set_ylim(0, 1)
    ax.set_title(f"{model.evaluation.headline_horizon_days}-day lead: metrics against targets")
    ax.legend(loc="lower right")
    out["targets"] = _svg(fig)
    plt.close(fig)

    bands = [r for r in report["retention_by_band"]]
    if bands:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        colors = {b.name: b.color or "#607d8b" for b in model.bands}
        ax.bar([f"{r['band']}\n{r['score_range']}\nn={r['n']}" for r in bands],
               [r["retention_rate"] or 0.0 for r in bands], color=[colors.get(r["band"], "#607d8b") for r in bands])
        ax.set_ylim(0, 1)
        ax.set_title("Retention by score band (hatched-free bars: too small shows 0)")
        out["retention"] = _svg(fig)
        plt.close(fig)
    lead = [r["lead_days"] for r in report["lead_time"]["rows"] if r["lead_days"] is not None]
    if lead:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.hist(lead, bins=12, color="#ef6c00")
        ax.set_xlabel("days from the first At Risk flag to the outcome")
        ax.set_title("Lead time")
        out["lead_time"] = _svg(fig)
        plt.close(fig)
    return out


def _table_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.85rem}td,th{border:1px solid #ccc;padding:.2rem .5rem}
th{background:#f0f0f0}.alert{background:#ffebee;border-left:4px solid #c62828;padding:.5rem 1rem}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.5rem 1rem}.muted{color:#777}"""

SECTIONS = (
    ("metrics_overall", "Metrics per lead time and model version",
     "Positive class = the outcomes listed above. A prediction is positive when the archived band is one of the "
     "at-risk bands. AUC and Brier use risk = (100 - score) / 100 (the score is not a calibrated probability)."),
    ("targets", "Targets", "Checked on the champion at the headline lead time."),
    ("metrics_by_segment", "By segment", ""),
    ("metrics_by_lifecycle_stage", "By lifecycle stage", ""),
    ("retention_by_band", "Retention by score band", "Band at the headline lead time; retained = not positive."),
    ("lead_time", "Lead time", "Days from the first At Risk flag (within the lookback) to each positive outcome."),
    ("false_negatives", "Misses: healthy, then churned or contracted", "Dimension scores at the prediction."),
    ("false_positives", "Misses: flagged, then renewed", "Dimension scores at the prediction."),
    ("journey_velocity", "Journey velocity", "Days in the current lifecycle stage, by stage and band, at month end."),
    ("drift_dimensions", "Drift per dimension", "PSI of each dimension's scores against last month's end."),
    ("drift_signals", "Drift per signal", "PSI of each signal's raw values (deciles of last month)."),
    ("playbook_effectiveness", "Do the playbooks work?",
     "Every play delivered up to the month's end (12 months back). Completed: the CRM task read back as completed. "
     "Recovery: fired in At Risk or Critical, then Moderate or better within 60 days. Churn: churned or contracted "
     "at the first renewal within 180 days, against accounts on which the play never fired, matched on segment, "
     "band and 30-day trend (falling / flat / rising; 'matched' re-weights them to the fired plays' mix). "
     "Velocity: score points per 30 days after the crossing. Brackets: 95% intervals (Wilson for shares)."),
    ("override_accuracy", "Were the humans right? Overrides against outcomes",
     "Renewals whose account had a CSM override standing at the headline lead date: right = the band predicted "
     "the outcome (an at-risk band and churned or contracted, or another band and renewed). The override's band "
     "(or the band of its score) against the computed band on the same renewals. Brackets: Wilson 95%."),
    ("override_renewals", "Overridden renewals", "One row per renewal judged above."),
    ("next_best_action", "Next best action",
     "Per situation (band when the play fired x segment), the play whose completed tasks recovered the most "
     "accounts; named on new tasks only where it rests on enough completed plays."),
)


def render_report(report: Mapping[str, Any], model: ModelConfig, out_dir: Path) -> Path:
    """Write ``index.html`` and one CSV per table under ``out_dir``; the HTML's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = tables(report)
    for name, frame in frames.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)
    svgs = charts(report, model)
    month = report["period_start"].strftime("%Y-%m")
    alerts = [f"Missed target: {m} {report['targets'][m]['value']:.3f} &lt; {report['targets'][m]['target']:.2f}"
              for m in report["missed_targets"]] + [html.escape(a) for a in report["drift"]["alerts"]]
    head = ("<div class='alert'><b>Alerts</b><ul>" + "".join(f"<li>{a}</li>" for a in alerts) + "</ul></div>"
            if alerts else "<div class='ok'>All targets met, no drift alert.</div>")
    outcomes = report["outcomes"]
    score_psi = report["drift"]["score_psi"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Health model accuracy {month}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Does the health score predict churn? {month}</h1>",
        f"<p>Champion model <b>{html.escape(report['champion'])}</b>. Renewals resolved "
        f"{report['period_start']} to {report['period_end']}: <b>{outcomes['n']}</b> "
        f"({html.escape(', '.join(f'{k} {v}' for k, v in outcomes['by_outcome'].items()))}); CRM and billing "
        f"{html.escape(', '.join(f'{k} {v}' for k, v in outcomes['by_agreement'].items()))}. Positive class: "
        f"{html.escape(' or '.join(report['positive_outcomes']))}. Groups under {report['min_group_size']} outcomes "
        "are shown as too small.</p>",
        head,
        f"<p>Score distribution PSI against last month: <b>{_fmt(score_psi['value'])}</b> ({score_psi['level']}); "
        f"accuracy month-over-month falls in a row: {report['drift']['accuracy_decline']['months']}.</p>",
    ]
    for key in ("targets", "retention", "lead_time"):
        if key in svgs:
            parts.append(f"<figure>{svgs[key]}</figure>")
    for name, title, note in SECTIONS:
        parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p class='muted'>{html.escape(note)}</p>" if note else "")
                     + _table_html(frames[name]) + f"<p class='muted'>CSV: <a href='{name}.csv'>{name}.csv</a></p>")
    parts.append("</body></html>")
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
