"""The monthly accuracy task: read outcomes and the score archive, evaluate, store, render, alert.

Read (warehouse) -> ``healthscore.evaluation.accuracy`` (pure) -> write ``accuracy_reports`` (one row per
model version and horizon), the HTML report with its CSVs (``healthscore.reports.accuracy``), and the
alerts (missed targets, drift) through the outbox. Rerunning a month replaces its rows and files and sends
no alert twice (each alert's dedupe key names the month, model version and alert).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from healthscore.config.schema import ModelConfig
from healthscore.evaluation import accuracy as acc
from healthscore.evaluation import effectiveness
from healthscore.pipeline.score import registered_models
from healthscore.warehouse.models import (
    AccountSignals,
    AccuracyReport,
    HealthScore,
    PlaybookEvent,
    RenewalOutcome,
    ScoreOverride,
)
from healthscore.warehouse.upsert import bulk_upsert

log = logging.getLogger(__name__)
SCORE_COLUMNS = ("account_id", "as_of_date", "model_version", "is_shadow", "score", "band", "segment",
                 "lifecycle_stage", "days_in_stage", "dimension_scores")


@dataclass(frozen=True)
class AccuracyPaths:
    reports_dir: Path
    outbox_path: Path

    @classmethod
    def under(cls, data_dir: Path) -> AccuracyPaths:
        return cls(Path(data_dir) / "reports" / "accuracy", Path(data_dir) / "outbox" / "accuracy_alerts.jsonl")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def read_outcomes(conn: sa.Connection, first: date, last: date) -> pd.DataFrame:
    o = RenewalOutcome.__table__
    rows = conn.execute(sa.select(o.c.account_id, o.c.renewal_date, o.c.outcome, o.c.agreement, o.c.source)
                        .where(o.c.kind == "renewal", o.c.renewal_date >= first, o.c.renewal_date <= last)
                        .order_by(o.c.renewal_date, o.c.account_id)).mappings().all()
    return pd.DataFrame(rows, columns=["account_id", "renewal_date", "outcome", "agreement", "source"])


def read_scores(conn: sa.Connection, accounts: list[str] | None, first: date, last: date,
                champion_only: str | None = None) -> pd.DataFrame:
    h = HealthScore.__table__
    cond = [h.c.as_of_date >= first, h.c.as_of_date <= last, h.c.score.is_not(None)]
    if champion_only is not None:
        cond.append(h.c.model_version == champion_only)
    frames = []
    chunks = [None] if accounts is None else [accounts[i:i + 500] for i in range(0, len(accounts), 500)]
    for chunk in chunks:
        query = sa.select(*(h.c[c] for c in SCORE_COLUMNS)).where(*cond)
        if chunk is not None:
            if not chunk:
                continue
            query = query.where(h.c.account_id.in_(chunk))
        frames.append(pd.DataFrame(conn.execute(query).mappings().all(), columns=list(SCORE_COLUMNS)))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(SCORE_COLUMNS))
    frame["dimension_scores"] = frame["dimension_scores"].map(_json)
    return frame


def snapshot(conn: sa.Connection, version: str, on_or_before: date) -> pd.DataFrame:
    """The version's newest archived day at or before a date (the population for drift and velocity)."""
    h = HealthScore.__table__
    day = conn.execute(sa.select(sa.func.max(h.c.as_of_date)).where(
        h.c.model_version == version, h.c.as_of_date <= on_or_before)).scalar()
    if day is None:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    return read_scores(conn, None, day, day, champion_only=version)


def signals_on(conn: sa.Connection, day: date | None) -> pd.DataFrame:
    if day is None:
        return pd.DataFrame()
    s = AccountSignals.__table__
    rows = conn.execute(sa.select(s.c.account_id, s.c.signals).where(s.c.as_of_date == day)).all()
    return pd.DataFrame([{"account_id": r[0], **(_json(r[1]) or {})} for r in rows])


PLAYS_LOOKBACK_DAYS = 365  # plays delivered this far before the month's end are evaluated
PLAY_EVENT_COLUMNS = ("account_id", "playbook", "crossing_date", "task_status", "task_completed_at", "due_at")
PLAY_SCORE_COLUMNS = ("account_id", "as_of_date", "score", "band", "segment", "trend_30d")


def read_plays(conn: sa.Connection, version: str, last: date) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The champion's delivered plays, its archive and the renewals of the plays' window (nothing after ``last``)."""
    e, h = PlaybookEvent.__table__, HealthScore.__table__
    first = last - timedelta(days=PLAYS_LOOKBACK_DAYS)
    events = pd.DataFrame(conn.execute(sa.select(*(e.c[c] for c in PLAY_EVENT_COLUMNS)).where(
        e.c.model_version == version, e.c.crm_task_id.is_not(None), e.c.crossing_date >= first,
        e.c.crossing_date <= last)).mappings().all(), columns=list(PLAY_EVENT_COLUMNS))
    scores = pd.DataFrame(conn.execute(sa.select(*(h.c[c] for c in PLAY_SCORE_COLUMNS)).where(
        h.c.model_version == version, h.c.is_shadow.is_(False), h.c.score.is_not(None), h.c.as_of_date >= first,
        h.c.as_of_date <= last)).mappings().all(), columns=list(PLAY_SCORE_COLUMNS))
    return events, scores, read_outcomes(conn, first, last)


def read_overrides(conn: sa.Connection, accounts: list[str]) -> pd.DataFrame:
    """Every override of these accounts, revoked and expired ones included (which stood when is decided later)."""
    o = ScoreOverride.__table__
    columns = list(acc.OVERRIDE_COLUMNS)
    rows = []
    for i in range(0, len(accounts), 500):
        rows.extend(conn.execute(sa.select(*(o.c[c] for c in columns)).where(
            o.c.account_id.in_(accounts[i:i + 500]))).mappings().all())
    return pd.DataFrame(rows, columns=columns)


def accuracy_history(conn: sa.Connection, version: str, horizon: int, before: date) -> list[float | None]:
    r = AccuracyReport.__table__
    rows = conn.execute(sa.select(r.c.metrics).where(r.c.model_version == version, r.c.horizon_days == horizon,
                                                     r.c.period_end < before).order_by(r.c.period_end)).scalars()
    return [(_json(m) or {}).get("overall", {}).get("accuracy") for m in rows]


def evaluate_month(engine: Engine, month: date, model: ModelConfig | None = None) -> dict[str, Any]:
    """The whole report for the month containing ``month`` (pure figures, nothing written)."""
    first, last = acc.month_bounds(month)
    models = registered_models(engine)
    champion = model or next(m for m, shadow in models if not shadow)
    ev = champion.evaluation
    dims = list(champion.dimensions)
    span = max(ev.horizons_days) + ev.lookup_tolerance_days
    with engine.connect() as conn:
        outcomes = read_outcomes(conn, first, last)
        accounts = sorted(set(outcomes["account_id"]))
        scores = read_scores(conn, accounts, first - timedelta(days=max(span, ev.lead_time_lookback_days)), last)
        now = snapshot(conn, champion.version, last)
        before = snapshot(conn, champion.version, first - timedelta(days=1))
        sig_now = signals_on(conn, now["as_of_date"].max() if len(now) else None)
        sig_before = signals_on(conn, before["as_of_date"].max() if len(before) else None)
        history = accuracy_history(conn, champion.version, ev.headline_horizon_days, first)
        plays = read_plays(conn, champion.version, last)
        overrides = read_overrides(conn, accounts)
    report: dict[str, Any] = {
        "period_start": first, "period_end": last, "champion": champion.version,
        "positive_outcomes": list(ev.positive_outcomes), "at_risk_bands": list(ev.at_risk_bands),
        "min_group_size": ev.min_group_size,
        "outcomes": {"n": len(outcomes), "by_outcome": outcomes["outcome"].value_counts().sort_index().to_dict(),
                     "by_agreement": outcomes["agreement"].value_counts().sort_index().to_dict()},
        "horizons": {},
    }
    for h in ev.horizons_days:
        preds = acc.predictions_at(outcomes, scores, h, ev.lookup_tolerance_days)
        per_version = {}
        for version, frame in preds.groupby("model_version", sort=True) if len(preds) else []:
            per_version[str(version)] = {
                "coverage": {"outcomes": len(outcomes), "with_prediction": len(frame)},
                "overall": acc.figures(frame, ev),
                "by_segment": acc.grouped(frame, "segment", ev),
                "by_lifecycle_stage": acc.grouped(frame, "lifecycle_stage", ev),
            }
        if champion.version not in per_version:  # no prediction this far back: the report says so, with n = 0
            none = preds.iloc[0:0] if len(preds) else pd.DataFrame(columns=["outcome", "band", "score"])
            per_version[champion.version] = {
                "coverage": {"outcomes": len(outcomes), "with_prediction": 0},
                "overall": acc.figures(none, ev), "by_segment": {}, "by_lifecycle_stage": {}}
        report["horizons"][h] = {"model_versions": per_version, "predictions": preds}
    head = report["horizons"][ev.headline_horizon_days]
    champ_preds = head["predictions"]
    champ_preds = champ_preds[champ_preds["model_version"] == champion.version] if len(champ_preds) else champ_preds
    overall = head["model_versions"].get(champion.version, {}).get("overall", {"n": 0, "too_small": True})
    report["targets"] = acc.check_targets(overall, ev)
    report["missed_targets"] = [k for k, v in report["targets"].items() if v["met"] is False]
    report["retention_by_band"] = acc.retention_by_band(champ_preds, champion) if len(champ_preds) else []
    champ_history = scores[scores["model_version"] == champion.version]
    report["lead_time"] = acc.lead_times(outcomes, champ_history, ev)
    report["misses"] = acc.misses(champ_preds, ev, dims) if len(champ_preds) else {"false_negatives": [],
                                                                                   "false_positives": []}
    report["journey_velocity"] = acc.journey_velocity(now, champion)
    current_accuracy = overall.get("accuracy") if not overall.get("too_small") else None
    report["drift"] = acc.drift(now, before, sig_now, sig_before, dims, [*history, current_accuracy], ev)
    report["overrides"] = acc.override_accuracy(champ_preds, overrides, champion, ev.headline_horizon_days)
    report["playbooks"] = effectiveness.playbook_effectiveness(
        *plays, end=last, at_risk_bands=ev.at_risk_bands, positive_outcomes=ev.positive_outcomes,
        min_group_size=ev.min_group_size)
    return report


def store_report(engine: Engine, report: dict[str, Any], report_path: Path | None, model: ModelConfig) -> int:
    """One ``accuracy_reports`` row per model version and horizon (the headline row holds the rest)."""
    ev = model.evaluation
    threshold = float(min(b.min for b in model.bands if b.name not in ev.at_risk_bands))
    rows = []
    for h, block in report["horizons"].items():
        for version, figs in block["model_versions"].items():
            metrics = {k: v for k, v in figs.items()}
            metrics["positive_outcomes"] = report["positive_outcomes"]
            if h == ev.headline_horizon_days and version == report["champion"]:
                for key in ("targets", "missed_targets", "retention_by_band", "lead_time", "misses",
                            "journey_velocity", "drift", "outcomes", "playbooks", "overrides"):
                    metrics[key] = report[key]
            rows.append({"model_version": version, "period_start": report["period_start"],
                         "period_end": report["period_end"], "horizon_days": int(h),
                         "at_risk_threshold": threshold, "metrics": _jsonable(metrics),
                         "report_path": str(report_path) if report_path else None})
    with engine.begin() as conn:
        r = AccuracyReport.__table__
        conn.execute(sa.delete(r).where(r.c.period_start == report["period_start"],
                                        r.c.period_end == report["period_end"]))
        if rows:
            bulk_upsert(conn, AccuracyReport, rows, ["model_version", "period_start", "period_end", "horizon_days"])
    return len(rows)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, pd.DataFrame):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def alerts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, message) per missed target and per drift alert."""
    out = []
    for name in report["missed_targets"]:
        t = report["targets"][name]
        out.append((f"target:{name}", f"{name} {t['value']:.3f} is below the target {t['target']:.2f}"))
    for i, text in enumerate(report["drift"]["alerts"]):
        out.append((f"drift:{i}:{text.split(' ')[0]}:{text.split(' ')[1]}", text))
    return out


def send_alerts(engine: Engine, report: dict[str, Any], paths: AccuracyPaths, report_path: Path | None) -> int:
    """Missed targets and drift alerts to RevOps through the outbox (table and file), once per month."""
    from healthscore.playbooks.notifiers import OutboxNotifier

    sent = 0
    month = report["period_start"].strftime("%Y-%m")
    for kind, text in alerts(report):
        body = (f"Health model {report['champion']}, renewals resolved in {month} "
                f"({report['outcomes']['n']} outcomes): {text}."
                + (f"\nReport: {report_path}" if report_path else ""))
        notifier = OutboxNotifier(recipient="revops", channel="email", engine=engine, outbox_path=paths.outbox_path,
                                  subject=f"[healthscore] accuracy {month}: {text}", body=body,
                                  dedupe_key=f"accuracy:{month}:{report['champion']}:{kind}", kind="accuracy_alert")
        sent += bool(notifier.send())
    return sent


def run_month(engine: Engine, month: date, paths: AccuracyPaths) -> dict[str, Any]:
    """Evaluate, store, render and alert for one month; a summary for XCom."""
    from healthscore.reports.accuracy import render_report

    models = registered_models(engine)
    champion = next(m for m, shadow in models if not shadow)
    report = evaluate_month(engine, month, champion)
    out_dir = paths.reports_dir / report["period_start"].strftime("%Y-%m")
    html = render_report(report, champion, out_dir)
    rows = store_report(engine, report, html, champion)
    sent = send_alerts(engine, report, paths, html)
    head = report["horizons"][champion.evaluation.headline_horizon_days]["model_versions"].get(champion.version, {})
    summary = {"month": report["period_start"].isoformat(), "outcomes": report["outcomes"]["n"], "rows": rows,
               "report": str(html), "alerts_sent": sent, "missed_targets": report["missed_targets"],
               "drift_alerts": report["drift"]["alerts"],
               "headline": {k: head.get("overall", {}).get(k) for k in ("n", "accuracy", "recall", "specificity",
                                                                         "f1", "auc")}}
    log.info("accuracy %s: %s", summary["month"], summary)
    return summary
