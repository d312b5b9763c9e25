"""HTML reports of the BYO commands: one self-contained file, charts rendered offline (matplotlib, inline PNG).

A data team outside Airflow gets this file and nothing else to judge a model by, so it says what was fitted,
on which rows, what changed against the baseline (weights, dropped signals, moved curves and band lines)
and how both did on held-out rows.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from healthscore.evaluation.metrics import risk_from_health, roc_curve

COLORS = {"baseline": "#8d8d8d", "recalibrated": "#1565c0", "model": "#1565c0"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9rem}
img{max-width:100%}.good{color:#2e7d32}.bad{color:#c62828}
"""


def _png(draw: Callable[[Figure], None], width: float = 7.0, height: float = 4.0) -> str:
    # Fixed margins: constrained/tight layout measure every label again and cost more than the drawing.
    fig = Figure(figsize=(width, height), dpi=80)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.22, top=0.9, wspace=0.35, hspace=0.7)
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


METRIC_ROWS = (
    ("rows scored", lambda o: o["n"]),
    ("churned", lambda o: o["positives"]),
    ("AUC", lambda o: o["auc"]),
    ("recall at specificity 0.85", lambda o: o["recall_at_specificity"]["recall"]),
    ("top-decile lift", lambda o: o["top_decile_lift"]),
    ("Brier (score as probability)", lambda o: o["brier"]),
    ("accuracy (band rule)", lambda o: (o.get("decision") or {}).get("accuracy")),
    ("precision (band rule)", lambda o: (o.get("decision") or {}).get("precision")),
    ("recall (band rule)", lambda o: (o.get("decision") or {}).get("recall")),
    ("specificity (band rule)", lambda o: (o.get("decision") or {}).get("specificity")),
    ("F1 (band rule)", lambda o: (o.get("decision") or {}).get("f1")),
)


def _metrics_table(columns: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [[label, *(get(m) for m in columns.values())] for label, get in METRIC_ROWS]
    return _table(["", *columns], rows)


def _roc_chart(series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#ccc", lw=1)
        for name, (y, score) in series.items():
            ok = np.isfinite(score)
            curve = roc_curve(y[ok], risk_from_health(score[ok]))
            if curve is not None:
                ax.plot(curve.fpr, curve.tpr, label=name, color=COLORS.get(name), lw=2)
        ax.set_xlabel("false positive rate (1 - specificity)")
        ax.set_ylabel("recall")
        ax.set_title("ROC, held-out rows" if len(series) > 1 else "ROC")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
        else:
            ax.text(0.5, 0.5, "undefined: one outcome class only", ha="center")

    return _png(draw, 5.5, 4.5)


def _band_chart(bands: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    def draw(fig: Figure) -> None:
        ax_rate, ax_share = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        names = [r["band"] for r in next(iter(bands.values()))]
        width = 0.8 / len(bands)
        for i, (label, rows) in enumerate(bands.items()):
            x = np.arange(len(rows)) + i * width
            ax_rate.bar(x, [r["churn_rate"] or 0 for r in rows], width, label=label, color=COLORS.get(label))
            ax_share.bar(x, [r["share"] or 0 for r in rows], width, label=label, color=COLORS.get(label))
        for ax, title in ((ax_rate, "churn rate per band"), (ax_share, "share of accounts per band")):
            ax.set_xticks(np.arange(len(names)) + width * (len(bands) - 1) / 2, names)
            ax.set_title(title)
        ax_rate.legend()

    return _png(draw, 9, 3.8)


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


# ------------------------------------------------------------------------------------------ backtest


def backtest_report(metrics: Mapping[str, Any], scored: Any, table: Any, model: Any) -> str:
    """report.html of ``healthscore backtest``."""
    y = table.y
    score = scored["score"].to_numpy(dtype=float)
    parts = [
        f"<p>Table <code>{html.escape(metrics['table'])}</code>, outcome <code>{html.escape(metrics['outcome'])}</code>; "
        f"{metrics['rows']} rows, {metrics['accounts']} accounts, {metrics['dates']['count']} dates "
        f"({metrics['dates']['first']} to {metrics['dates']['last']}). Model {html.escape(model.version)}: "
        f"{html.escape(metrics['model']['how'])}.</p>",
        f"<p class='note'>{html.escape(metrics['evaluation'])}. {metrics['unscored']} rows got no score "
        "(too little data for the model's coverage rule). Decision rule: "
        f"{html.escape(metrics['decision_rule'])}.</p>",
        "<h2>Accuracy</h2>",
        _metrics_table({"all rows": metrics["overall"], **metrics["by_segment"]}),
        _roc_chart({"model": (y, score)}),
        "<h2>Bands</h2>",
        _table(
            ["band", "accounts", "share", "churned", "churn rate"],
            [[r["band"], r["n"], r["share"], r["churned"], r["churn_rate"]] for r in metrics["bands"]],
        ),
        f"<p>Bands ordered by churn (each worse band churns at least as much): {_fmt(metrics['bands_ordered'])}</p>",
        _band_chart({"model": metrics["bands"]}),
        "<h2>Scores by outcome</h2>",
        _png(lambda fig: _hist(fig, score, y), 7, 3.5),
        _notes(metrics.get("notes", [])),
    ]
    return _page(f"Backtest of model {model.version}", "".join(parts))


def _hist(fig: Figure, score: np.ndarray, y: np.ndarray) -> None:
    ax = fig.add_subplot()
    ok = np.isfinite(score)
    bins = np.linspace(0, 100, 21)
    for label, cls, color in (("retained", 0, "#2e7d32"), ("churned", 1, "#c62828")):
        values = score[ok & (y == cls)]
        if values.size:
            ax.hist(values, bins=bins, alpha=0.6, label=label, color=color, density=True)
    ax.set_xlabel("score (higher is healthier)")
    ax.legend()


# ------------------------------------------------------------------------------------- recalibration


def recalibration_report(result: Any) -> str:
    """report.html of ``healthscore recalibrate``: what changed and why, and the held-out evidence."""
    m = result.metrics
    test = result.table.subset(result.split.test)
    y = test.y
    base_out = m["baseline"]["held_out"]
    new_out = m["recalibrated"]["held_out"]
    ev = m["evaluation"]
    parts = [
        f"<p>Table <code>{html.escape(m['table'])}</code>, outcome <code>{html.escape(m['outcome'])}</code>: "
        f"{m['rows']} rows, {m['accounts']} accounts. Baseline: {html.escape(m['baseline']['how'])}. "
        f"Challenger: {html.escape(result.model.version)} (config hash <code>{result.model.config_hash[:12]}</code>).</p>",
        f"<p class='note'>{html.escape(ev['method'])}. Training: {ev['train']['rows']} rows "
        f"({ev['train']['churned']} churned); held out: {ev['test']['rows']} rows ({ev['test']['churned']} churned). "
        "Every figure here is on held-out rows; nothing is in-sample.</p>",
        "<h2>Held-out accuracy, baseline against recalibrated</h2>",
        _metrics_table({"baseline": base_out["overall"], "recalibrated": new_out["overall"]}),
    ]
    segs = sorted(set(base_out["by_segment"]) | set(new_out["by_segment"]))
    if segs:
        parts.append("<h3>Per segment (AUC)</h3>")
        parts.append(
            _table(
                ["segment", "rows", "baseline AUC", "recalibrated AUC"],
                [
                    [
                        s,
                        new_out["by_segment"].get(s, {}).get("n"),
                        base_out["by_segment"].get(s, {}).get("auc"),
                        new_out["by_segment"].get(s, {}).get("auc"),
                    ]
                    for s in segs
                ],
            )
        )
    parts.append(
        _roc_chart(
            {
                "baseline": (y, result.test_scores["baseline"]["score"].to_numpy(dtype=float)),
                "recalibrated": (y, result.test_scores["recalibrated"]["score"].to_numpy(dtype=float)),
            }
        )
    )
    parts += [
        "<h2>Bands on held-out rows</h2>",
        _table(
            [
                "band",
                "baseline accounts",
                "baseline churn rate",
                "recalibrated accounts",
                "recalibrated churn rate",
            ],
            [
                [b["band"], b["n"], b["churn_rate"], r["n"], r["churn_rate"]]
                for b, r in zip(base_out["bands"], new_out["bands"], strict=True)
            ],
        ),
        f"<p>Bands ordered by churn: baseline {_fmt(base_out['bands_ordered'])}, recalibrated "
        f"{_fmt(new_out['bands_ordered'])}.</p>",
        _band_chart({"baseline": base_out["bands"], "recalibrated": new_out["bands"]}),
        "<h2>Band lines</h2>",
        _table(
            ["segment", "healthy at or above", "at risk below"],
            [
                [s, m["lines"]["healthy_at_or_above"][s], m["lines"]["at_risk_below"][s]]
                for s in m["lines"]["at_risk_below"]
            ],
        ),
        f"<p>Critical below {m['lines']['critical_below']}. "
        + " ".join(f"{html.escape(k)}: {html.escape(v)}." for k, v in m["lines"]["how"].items())
        + "</p>",
        "<h2>Dimension weights (percent of the score)</h2>",
        _weights_table(m["baseline_weights"], m["weights"]),
        _png(lambda fig: _weights_chart(fig, m["baseline_weights"], m["weights"]), 9, 3.5),
        "<h2>Signals: curves and weights</h2>",
        _table(
            [
                "column",
                "dimension",
                "direction",
                "floor",
                "baseline",
                "target",
                "cap",
                "coefficient",
                "dropped",
                "how",
            ],
            [
                [
                    s["column"],
                    s["dimension"],
                    s["direction"],
                    s["curve"]["floor"],
                    s["curve"]["baseline"],
                    s["curve"]["target"],
                    s["curve"]["cap"],
                    s["coefficient"],
                    s["dropped"],
                    s["how"],
                ]
                for s in m["signals"]
            ],
        ),
        "<p class='note'>A dropped signal has weight 0: it added nothing in its mapped direction once the others "
        "were known. Curves: raw value to 0..100; the baseline's (grey) comes from the distribution alone.</p>",
        _png(lambda fig: _curves_chart(fig, result), 10, 2.6 * max(1, int(np.ceil(len(m["signals"]) / 4)))),
        "<h2>Cross-validation</h2>",
        f"<p>{html.escape(m['cross_validation']['folds'])}; chosen: {m['cross_validation']['selected']['penalty']} "
        f"{m['cross_validation']['selected']['strength']:g}, "
        f"{'per-segment' if m['cross_validation']['selected']['per_segment_weights'] else 'universal'} "
        "curves and weights.</p>",
        _table(
            ["penalty", "strength", "per segment", "mean validation AUC"],
            [
                [c["penalty"], f"{c['strength']:g}", c["per_segment"], c["mean_auc"]]
                for c in m["cross_validation"]["candidates"]
            ],
        ),
        _notes(m.get("notes", [])),
    ]
    return _page(f"Recalibration: {result.baseline.version} against {result.model.version}", "".join(parts))


def _weights_table(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> str:
    dims = list(next(iter(after.values())))
    rows = []
    for seg in after:
        rows.append([f"{seg} baseline", *(before[seg].get(d) for d in dims)])
        rows.append([f"{seg} recalibrated", *(after[seg].get(d) for d in dims)])
    return _table(
        ["", *dims], [[r[0], *(f"{v:.1f}" if v is not None else None for v in r[1:])] for r in rows]
    )


def _weights_chart(
    fig: Figure, before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> None:
    segs = list(after)
    dims = list(next(iter(after.values())))
    for i, seg in enumerate(segs):
        ax = fig.add_subplot(1, len(segs), i + 1)
        x = np.arange(len(dims))
        ax.bar(
            x - 0.2, [before[seg].get(d, 0) for d in dims], 0.4, label="baseline", color=COLORS["baseline"]
        )
        ax.bar(
            x + 0.2,
            [after[seg].get(d, 0) for d in dims],
            0.4,
            label="recalibrated",
            color=COLORS["recalibrated"],
        )
        ax.set_xticks(x, dims, rotation=45, ha="right", fontsize=8)
        ax.set_title(seg)
    fig.axes[0].legend(fontsize=8)


def _curves_chart(fig: Figure, result: Any) -> None:
    from healthscore.evaluation.curve_fit import apply_curve  # the same arithmetic as the engine

    signals = result.table.signals
    cols = 4
    rows = max(1, int(np.ceil(len(signals) / cols)))
    base_specs = {sid: result.baseline.signal(sid) for sid in result.baseline.all_signal_ids()}
    for i, sig in enumerate(signals):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = result.table.raw(sig)
        values = values[np.isfinite(values)]
        lo, hi = np.quantile(values, [0.0, 1.0]) if values.size else (0.0, 1.0)
        x = np.linspace(lo, hi if hi > lo else lo + 1, 200)
        new = result.model.signal(sig.signal_id)
        ax.plot(x, apply_curve(x, new, sig.direction), color=COLORS["recalibrated"], lw=2)
        old = base_specs.get(sig.signal_id)
        if old is not None:
            ax.plot(x, apply_curve(x, old, sig.direction), color=COLORS["baseline"], lw=1.5, ls="--")
        ax.set_title(sig.column[:28], fontsize=9)
        ax.set_ylim(-5, 105)
        ax.tick_params(labelsize=7)
