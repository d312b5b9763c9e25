"""The quarterly recalibration's tasks: training set -> challenger -> backtest -> (approval) -> promotion.

Read (warehouse: renewal outcomes, stored signal snapshots, the registry) -> ``healthscore.evaluation``
(training set, the recalibration's learning, champion against challenger) -> write (the challenger in the
registry as a shadow-scoring challenger with its parent, metrics and changelog; the HTML report and CSVs under
``DATA_DIR/reports/recalibration/<date>/``). Promotion is a separate step that only a person's approval (or a
configured auto-approval) reaches; rollback is ``healthscore model rollback``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from healthscore.config import ModelConfig, model_config_from_dict
from healthscore.evaluation import challenger as cc
from healthscore.evaluation.backtest import write_json, write_model_yaml
from healthscore.evaluation.byo import SEGMENTS
from healthscore.evaluation.training import Window, correlations, lead_rows, training_table
from healthscore.pipeline.accuracy import read_outcomes
from healthscore.pipeline.score import registered_models
from healthscore.pipeline.signals import load_signal_history
from healthscore.warehouse import registry

log = logging.getLogger(__name__)
LEAD_ROWS_FILE = "lead_rows.parquet"
HOLDOUT_FIT_FILE = "holdout_fit.yaml"  # the challenger's procedure fitted without the backtest's held-out rows


@dataclass(frozen=True)
class RecalibrationOptions:
    months: int = 12  # outcomes of the last N months
    margin: float = 0.01  # held-out AUC the challenger must gain
    auto_approve: bool = False  # promote without a person (off by default)


def run_dir(data_dir: Path, until: date) -> Path:
    return Path(data_dir) / "reports" / "recalibration" / until.isoformat()


def champion_model(engine: Engine) -> ModelConfig:
    return next(m for m, shadow in registered_models(engine) if not shadow)


# ------------------------------------------------------------------------------------------ training set


def build_training_set(engine: Engine, until: date, months: int, out_dir: Path) -> dict[str, Any]:
    """Renewals resolved in the window, each joined to the snapshot at each lead; written as Parquet."""
    champion = champion_model(engine)
    ev = champion.evaluation
    window = Window.months_until(until, months)
    with engine.connect() as conn:
        outcomes = read_outcomes(conn, window.first, window.last)
    outcomes = outcomes[outcomes["outcome"].notna()]
    accounts = sorted(set(outcomes["account_id"]))
    first = window.first - timedelta(days=max(ev.horizons_days) + ev.lookup_tolerance_days)
    last = window.last - timedelta(days=min(ev.horizons_days))
    snapshots = load_signal_history(engine, first, last, accounts)
    rows = lead_rows(outcomes, snapshots, ev.horizons_days, ev.lookup_tolerance_days, ev.positive_outcomes)
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = rows.drop(columns=[c for c in ("dimension_sources",) if c in rows.columns])
    stored.to_parquet(out_dir / LEAD_ROWS_FILE, index=False)
    summary = {
        "window": [window.first.isoformat(), window.last.isoformat()], "outcomes": len(outcomes),
        "rows": len(rows), "accounts": int(rows["account_id"].nunique()) if len(rows) else 0,
        "churned": int(rows["churned"].sum()) if len(rows) else 0,
        "by_horizon": {int(k): int(v) for k, v in rows["horizon_days"].value_counts().sort_index().items()},
        "path": str(out_dir / LEAD_ROWS_FILE), "champion": champion.version,
    }
    log.info("training set: %s", summary)
    return summary


def read_lead_rows(out_dir: Path) -> pd.DataFrame:
    rows = pd.read_parquet(out_dir / LEAD_ROWS_FILE)
    for column in ("as_of_date", "renewal_date", "outcome_date", "lead_date"):
        if column in rows.columns:
            rows[column] = pd.to_datetime(rows[column]).dt.date
    if "blocked_dimensions" in rows.columns:
        rows["blocked_dimensions"] = rows["blocked_dimensions"].map(lambda v: list(v) if v is not None else [])
    return rows


# ----------------------------------------------------------------------------------------- challenger


def _renamed(model: ModelConfig, version: str, description: str) -> ModelConfig:
    data = model.model_dump(mode="json")
    data["version"] = version
    data["description"] = description
    return model_config_from_dict(data, f"<recalibrated {version}>")


def _free_version(engine: Engine, base: str, model: ModelConfig, description: str) -> ModelConfig:
    """``base``, or ``base-2``, ``base-3``... : the first name free or already holding this very config."""
    taken = {r["version"]: r["config_hash"] for r in registry.list_versions(engine)}
    for i in range(1, 100):
        name = base if i == 1 else f"{base}-{i}"
        candidate = _renamed(model, name, description)
        if name not in taken or taken[name] == candidate.config_hash:
            return candidate
    raise registry.ModelRegistryError(f"no free version name after {base}-99")


def _with_probability(model: ModelConfig, kept: pd.DataFrame, train: Any) -> ModelConfig:
    """``model`` scoring by a calibrated classifier of its dimension scores, fitted on the training rows only
    (``healthscore.evaluation.probability``; the coefficients are stored in the YAML, no pickle)."""
    from healthscore.evaluation.probability import (
        fit_probability_model,
        probability_features,
        with_probability_model,
    )
    from healthscore.evaluation.training import OUTCOME_COLUMN, scoring_frame

    rows = kept.iloc[train].reset_index(drop=True)
    frame = probability_features(scoring_frame(rows), model)
    features = list(frame.columns)
    frame[OUTCOME_COLUMN] = rows[OUTCOME_COLUMN].to_numpy()
    frame["as_of_date"] = rows["as_of_date"].to_numpy()
    frame["account_id"] = rows["account_id"].to_numpy()
    return with_probability_model(model, fit_probability_model(frame, OUTCOME_COLUMN, features))


def recalibrate_challenger(engine: Engine, until: date, out_dir: Path, *, author: str = "health_model_recalibration",
                           method: str = "weighted_average") -> dict[str, Any]:
    """Learn the challenger from the training rows (recalibrate.py's steps) and register it with its parent.

    ``method`` ``model_probability``: the recalibrated curves then feed a calibrated classifier fitted on the
    same training rows (the glass-box weighted average stays the default).
    """
    from threadpoolctl import threadpool_limits

    from healthscore.evaluation.recalibrate import recalibrate

    if method not in ("weighted_average", "model_probability"):
        raise ValueError(f"method {method!r}: weighted_average or model_probability")
    champion = champion_model(engine)
    rows = read_lead_rows(out_dir)
    table, kept = training_table(rows, champion, source=str(out_dir / LEAD_ROWS_FILE))
    with threadpool_limits(limits=1, user_api="blas"):
        result = recalibrate(table, champion, base_given=True, refit_all=True)
        evaluated = result.evaluated or result.model
        if method == "model_probability":
            result.model = _with_probability(result.model, kept, np.arange(len(kept)))
            evaluated = _with_probability(evaluated, kept, result.split.train)
    root = champion.version.split("-q")[0]
    description = (f"Recalibrated from {champion.version} on the warehouse's outcomes up to {until.isoformat()}: "
                   f"curves, non-negative weights and band lines learned from all {len(kept)} point-in-time "
                   f"lead rows (the backtest judges the same procedure fitted on "
                   f"{result.split.description['train']['rows']} of them, without its held-out rows)")
    suffix = "p" if method == "model_probability" else ""
    model = _free_version(engine, f"{root}-q{until.strftime('%Y%m%d')}{suffix}", result.model, description)
    held = result.metrics["recalibrated"]["held_out"]["overall"]
    changelog = (f"quarterly recalibration ({method}) of {champion.version} to {until.isoformat()}: weighted "
                 f"held-out AUC {held.get('auc') or 0:.3f}; dropped {', '.join(result.metrics['dropped_signals']) or 'no signals'}")
    reg = registry.register(engine, model, role="challenger", parent=champion.version, author=author,
                            changelog=changelog, metrics={"recalibration": _compact(result.metrics)})
    # One recalibrated challenger shadow-scores at a time: an earlier quarter's that was never promoted retires.
    retired = [v["version"] for v in registry.list_versions(engine)
               if v["role"] == "challenger" and v["author"] == author and v["version"] != model.version]
    for version in retired:
        registry.set_role(engine, version, "retired")
    write_model_yaml(out_dir / "model.yaml", model,
                     f"healthscore model {model.version}, recalibrated from {champion.version} by "
                     f"health_model_recalibration\nconfig_hash {model.config_hash}")
    # What the backtest scores on the held-out rows: the procedure's fit without them (the registered model
    # learned from them too, so scoring it there would be in-sample).
    evaluated = _renamed(evaluated, f"{model.version}-holdout"[:64], "the challenger's procedure fitted on the "
                         "training part of the backtest's split only")
    write_model_yaml(out_dir / HOLDOUT_FIT_FILE, evaluated,
                     f"healthscore model {evaluated.version}: {model.version}'s procedure without the held-out rows")
    write_json(out_dir / "recalibration.json", result.metrics)
    log.info("challenger %s (#%s, parent %s): %s", model.version, reg.number, champion.version, reg.message)
    return {"challenger": model.version, "number": reg.number, "parent": champion.version, "created": reg.created,
            "config_hash": model.config_hash, "split": result.split.description, "retired_challengers": retired}


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("rows", "accounts", "evaluation", "cross_validation", "weights", "lines", "dropped_signals",
            "segments_with_own_fit", "improvement")
    return json.loads(json.dumps({k: metrics.get(k) for k in keep}, default=str))


# ------------------------------------------------------------------------------------------- backtest


def _model(engine: Engine, version: str) -> ModelConfig:
    row = registry.get_version(engine, version)
    return model_config_from_dict(row["config"], f"model_versions[{version}]", stored=True)


def backtest(engine: Engine, out_dir: Path, challenger_version: str, margin: float) -> dict[str, Any]:
    """Champion and challenger score the same held-out snapshots with the daily scoring code; report both."""
    from healthscore.evaluation.holdout import holdout_split
    from healthscore.reports.recalibration import render_report

    champion = champion_model(engine)
    challenger = _model(engine, challenger_version)
    rows = read_lead_rows(out_dir)
    table, kept = training_table(rows, champion)
    split = holdout_split(table)  # the same deterministic split the challenger was fitted on
    held_out = kept.iloc[split.test].reset_index(drop=True)
    # The challenger learned from every row; its procedure refitted without the held-out rows stands in for it
    # there (a challenger registered without that file, e.g. by hand, is scored as it is).
    judged, judged_as = challenger, "the challenger as registered"
    fit_file = out_dir / HOLDOUT_FIT_FILE
    if fit_file.exists():
        from healthscore.config import load_model_config

        judged = load_model_config(fit_file)
        judged_as = (f"{judged.version}: {challenger.version}'s procedure fitted without the held-out rows "
                     f"({challenger.version} itself learned from every row)")
    scored = {"champion": (champion, cc.score_rows(champion, held_out)),
              "challenger": (judged, cc.score_rows(judged, held_out))}
    figures = cc.side_by_side(scored)
    decision = cc.verdict(figures, margin)
    changes = cc.changes(champion, challenger, SEGMENTS)
    changes["correlations"] = correlations(table, split.train)  # on the training rows, as the fit saw them
    table_rows = cc.table_rows(figures)
    pd.DataFrame(table_rows).to_csv(out_dir / "backtest_metrics.csv", index=False)
    pd.concat([frame for _, frame in scored.values()], ignore_index=True).to_csv(out_dir / "backtest_scores.csv",
                                                                                  index=False)
    report = {"champion": champion.version, "challenger": challenger.version, "held_out": split.description,
              "challenger_scored_as": judged_as,
              "figures": figures, "decision": decision, "changes": changes}
    html = render_report(report, table_rows, out_dir / "report.html")
    write_json(out_dir / "backtest.json", report)
    stored = registry.get_version(engine, challenger.version).get("metrics") or {}
    registry.record_metrics(engine, challenger.version, json.loads(json.dumps(
        {**stored, "backtest": {"against": champion.version, "decision": decision,
                                "challenger": figures["challenger"]["overall"],
                                "champion": figures["champion"]["overall"], "report": str(html)}}, default=str)))
    summary = {"champion": champion.version, "challenger": challenger.version, "better": decision["better"],
               "why": decision["why"], "report": str(html),
               "figures": {role: {k: figures[role]["overall"].get(k) for k in cc.METRICS} for role in figures}}
    log.info("backtest: %s", summary)
    return summary


APPROVE = "Approve"  # the ApprovalOperator's option; a response without it approves nothing


def approver_of(response: Mapping[str, Any] | None) -> str | None:
    """Who approved, from the approval task's response, or None when nothing approved the challenger.

    The promote task runs under a trigger rule that also fires when both approval paths were skipped (the
    challenger was not better), so it must not take "ran" for "approved": only a response whose chosen option
    is Approve counts (the auto-approval answers the same way)."""
    if not response or APPROVE not in (response.get("chosen_options") or []):
        return None
    user = response.get("responded_by_user") or {}
    return str(user.get("name") or user.get("id") or "unknown approver")


def promote_challenger(engine: Engine, version: str, approver: str | None) -> dict[str, Any]:
    result = registry.promote(engine, version, approver=approver,
                              changelog=f"promoted by {approver or 'auto-approval'} after the quarterly backtest")
    log.info("promoted %s (was %s), approved by %s", version, result["previous_champion"], approver)
    return result
