"""The models against the oracle over a bootstrapped year: issue #12's benchmark and issue #13's goals.

Why: a model's AUC means little alone. The sandbox knows each account's hidden latent health; the same metric
computed from it (the 30-day mean latent as of the lead date, which no model can see: the oracle of
``bench_accuracy_oracle.py``) is the best any model could do on this portfolio, so the ratio to it is the
honest measure. Given a warehouse filled by ``healthscore history bootstrap`` against a sandbox of the same
seed and portfolio, this prints:

1. #12: the default model's archived scores (what the daily DAG stored) at 30, 60 and 90 days' lead over every
   renewal of the year that has one: AUC and recall at specificity >= 0.85, beside the oracle's on the same
   renewals.
2. #13: the quarterly DAG's challenger code path on a copy of the warehouse (``pipeline.recalibration``:
   ``build_training_set`` then ``recalibrate_challenger``, weighted average), its held-out rows (the split
   ``backtest`` uses: later dates of other accounts) at 60 days' lead scored by the daily scoring code, against
   the oracle (goals: AUC >= 0.95 x the oracle's, recall at specificity 0.85 >= 0.90 x the oracle's), with the
   default model beside it; and glass box against black box: a logistic regression and scikit-learn's
   HistGradientBoostingClassifier fitted on the same training rows and signal columns, scored on the same
   held-out rows (goals: recalibrated AUC >= the regression's, within 0.02 of boosting's).

Every figure has its sample size and a 95% interval (AUC: Hanley-McNeil; recall: Wilson on the positives at
the chosen threshold, which ignores the threshold's own noise, so it is optimistic). A sample whose interval
is wider than +-0.05 (the size of the goals' tolerances) is called small, and a goal met or missed on it is
noise-level. The positive class is the model YAML's (churned or contracted). The positive class of the
outcomes is the warehouse's (what the extractors landed), for the model and the oracle alike. Asserts nothing.

    nice -n 10 .venv/bin/python bench/bench_model_vs_oracle.py data/warehouse.db --accounts 300 --seed 42
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "model_vs_oracle.txt"
DAY = 86_400
Z95 = 1.959964
SMALL_HALF_WIDTH = 0.05  # a 95% interval wider than +-0.05 is as wide as the goals' tolerances: "small"
SPECIFICITY = 0.85
HORIZONS = (30, 60, 90)
GOAL_HORIZON = 60


# ------------------------------------------------------------------------------------------ figures


def auc_interval(auc: float | None, positives: int, negatives: int) -> tuple[float, float] | None:
    """95% interval of an AUC from the Hanley-McNeil (1982) standard error; None when it is undefined."""
    if auc is None or positives < 1 or negatives < 1:
        return None
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives)
    half = Z95 * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def figures(y: np.ndarray, risk: np.ndarray, specificity: float = SPECIFICITY) -> dict[str, Any]:
    """n, positives, AUC and recall at ``specificity`` with 95% intervals, and whether the sample is small."""
    from healthscore.evaluation import metrics
    from healthscore.evaluation.effectiveness import wilson

    y = np.asarray(y, dtype=np.int8)
    risk = np.asarray(risk, dtype=float)
    keep = np.isfinite(risk)
    y, risk = y[keep], risk[keep]
    pos = int(y.sum())
    neg = int(y.size - pos)
    auc = metrics.roc_auc(y, risk) if y.size else None
    op = metrics.recall_at_specificity(y, risk, specificity) if y.size else None
    recall = op.recall if op is not None else None
    auc_ci = auc_interval(auc, pos, neg)
    recall_ci = wilson(round(recall * pos), pos) if recall is not None else None
    widths = [(hi - lo) / 2 for lo, hi in (auc_ci, recall_ci)] if auc_ci and recall_ci else []
    return {"n": int(y.size), "positives": pos, "auc": auc, "auc_ci": auc_ci, "recall": recall,
            "recall_ci": recall_ci, "specificity": op.specificity if op is not None else None,
            "small": not widths or max(widths) > SMALL_HALF_WIDTH}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "[   -   ]" if ci is None else f"[{ci[0]:.2f},{ci[1]:.2f}]"


def goal(value: float | None, target: float | None, small: bool) -> str:
    if value is None or target is None:
        return "n/a"
    met = "met" if value >= target else "NOT met"
    return f"{met}{' (small sample)' if small else ''}"


# -------------------------------------------------------------------------------------------- oracle


def build_truth(accounts: int, seed: int) -> Any:
    from healthscore_sandbox.runner import SandboxOptions
    from healthscore_sandbox.world import build_world

    return build_world(SandboxOptions(seed=seed, accounts=accounts).world_spec())


def oracle_frame(world: Any, horizon: int) -> pd.DataFrame:
    """Per renewal with a full 30-day window before its lead date: the oracle's risk (minus the 30-day mean
    latent health as of the lead date), keyed by the HubSpot company id and the renewal date."""
    truth = world.ground_truth()
    ren = truth["renewal_outcomes"]
    lead_day = ((ren["term_end_ts"].to_numpy() - world.start_ts) // DAY) - horizon
    keep = lead_day >= 30
    acc = ren["account_idx"].to_numpy()[keep]
    lead = lead_day[keep]
    mean30 = np.array([world.latent[a, d - 30:d].mean() for a, d in zip(acc, lead, strict=True)])
    ids = truth["accounts"].set_index("account_idx")["hubspot_company_id"]
    return pd.DataFrame({
        "account_id": ids.loc[acc].astype(str).to_numpy(),
        "renewal_date": pd.to_datetime(ren["term_end_ts"].to_numpy()[keep], unit="s", utc=True).date,
        "oracle_risk": -mean30})


# ---------------------------------------------------------------------------------- 1. #12 (archive)


def archived_vs_oracle(engine: Any, world: Any, model: Any) -> list[tuple[int, int, dict, dict]]:
    """Per lead: (renewals with an archived score, of which the oracle covers, model figures, oracle figures)."""
    from healthscore.evaluation.accuracy import predictions_at
    from healthscore.evaluation.metrics import risk_from_health
    from healthscore.pipeline.accuracy import read_outcomes, read_scores

    ev = model.evaluation
    with engine.connect() as conn:
        outcomes = read_outcomes(conn, date(2000, 1, 1), date(2100, 1, 1))
        outcomes = outcomes[outcomes["outcome"].notna()]
        scores = read_scores(conn, sorted(set(outcomes["account_id"])), date(2000, 1, 1), date(2100, 1, 1),
                             champion_only=model.version)
    scores = scores[~scores["is_shadow"].astype(bool)]
    out = []
    for h in HORIZONS:
        preds = predictions_at(outcomes, scores, h, ev.lookup_tolerance_days)
        preds["account_id"] = preds["account_id"].astype(str)
        merged = preds.merge(oracle_frame(world, h), on=["account_id", "renewal_date"], how="inner")
        y = merged["outcome"].isin(list(ev.positive_outcomes)).to_numpy(dtype=np.int8)
        out.append((h, len(preds), figures(y, risk_from_health(merged["score"].to_numpy(float))),
                    figures(y, merged["oracle_risk"].to_numpy(float))))
    return out


# ---------------------------------------------------------------------------- 2. #13 (recalibration)


def _classifiers(table: Any, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Held-out churn probabilities of a logistic regression and of HistGradientBoosting, fitted on the
    training rows' signal columns (the same the recalibration sees; no segment)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = table.frame[[s.column for s in table.signals]].to_numpy(dtype=float)
    x = x[:, np.isfinite(x[train]).any(axis=0)]  # a signal with no value in the training rows is no feature
    y = table.y
    groups = table.accounts[train]
    lr = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True), StandardScaler(),
        LogisticRegressionCV(Cs=[0.01, 0.1, 1.0, 10.0], cv=list(GroupKFold(3).split(x[train], groups=groups)),
                             scoring="roc_auc", class_weight="balanced", max_iter=5000))
    lr.fit(x[train], y[train])
    hgb = HistGradientBoostingClassifier(random_state=0)
    hgb.fit(x[train], y[train])
    return lr.predict_proba(x[test])[:, 1], hgb.predict_proba(x[test])[:, 1]


def recalibrated_vs_oracle(warehouse: Path, world: Any, until: date, months: int) -> dict[str, Any]:
    """The quarterly DAG's steps on a copy of the warehouse, then every model on the held-out rows."""
    from threadpoolctl import threadpool_limits

    from healthscore.evaluation import challenger as cc
    from healthscore.evaluation.holdout import holdout_split
    from healthscore.evaluation.metrics import risk_from_health
    from healthscore.evaluation.training import training_table
    from healthscore.pipeline import recalibration as rc
    from healthscore.warehouse.engine import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.db"
        shutil.copyfile(warehouse, copy)  # the registry gets a challenger: never in the measured warehouse
        engine = make_engine(f"sqlite:///{copy}")
        out_dir = Path(tmp) / "recalibration"
        started = time.perf_counter()
        training = rc.build_training_set(engine, until, months, out_dir)
        made = rc.recalibrate_challenger(engine, until, out_dir)
        fit_seconds = time.perf_counter() - started
        champion = rc.champion_model(engine)
        challenger = rc._model(engine, made["challenger"])  # noqa: SLF001 - as backtest loads it
        rows = rc.read_lead_rows(out_dir)
        engine.dispose()
    table, kept = training_table(rows, champion)
    split = holdout_split(table)  # the split the challenger was fitted on and backtest scores
    held = kept.iloc[split.test].reset_index(drop=True)
    scored = {"champion": cc.score_rows(champion, held), "challenger": cc.score_rows(challenger, held)}
    with threadpool_limits(limits=1):  # BLAS and OpenMP: one core, the machine is shared
        lr_p, hgb_p = _classifiers(table, split.train, split.test)
    frame = held[["account_id", "outcome_date", "horizon_days", "outcome"]].copy()
    frame["account_id"] = frame["account_id"].astype(str)
    frame["champion"] = risk_from_health(scored["champion"]["score"].to_numpy(dtype=float))
    frame["challenger"] = risk_from_health(scored["challenger"]["score"].to_numpy(dtype=float))
    frame["logistic"], frame["boosting"] = lr_p, hgb_p
    positives = list(champion.evaluation.positive_outcomes)
    by_horizon = {}
    for h in HORIZONS:
        part = frame[frame["horizon_days"] == h].rename(columns={"outcome_date": "renewal_date"})
        merged = part.merge(oracle_frame(world, h), on=["account_id", "renewal_date"], how="inner")
        # Rows the challenger or the champion leaves unscored (coverage rule) are left out for every model.
        merged = merged[np.isfinite(merged["challenger"]) & np.isfinite(merged["champion"])]
        y = merged["outcome"].isin(positives).to_numpy(dtype=np.int8)
        by_horizon[h] = {"held_rows": len(part), "models": {
            name: figures(y, merged[name].to_numpy(dtype=float))
            for name in ("challenger", "champion", "logistic", "boosting", "oracle_risk")}}
    return {"training": training, "split": split.description, "challenger": made["challenger"],
            "champion": champion.version, "fit_seconds": fit_seconds, "by_horizon": by_horizon,
            "weights": challenger.weights_for("mid_market")}


# ------------------------------------------------------------------------------------------- output


def _row(label: str, f: dict[str, Any], oracle: dict[str, Any] | None) -> str:
    a_ratio = ratio(f["auc"], oracle["auc"]) if oracle else None
    r_ratio = ratio(f["recall"], oracle["recall"]) if oracle else None
    return (f"  {label:<26}{f['n']:>5}{f['positives']:>5}  AUC {_num(f['auc'])} {_ci(f['auc_ci'])}"
            f"{'' if oracle is None else f' x{_num(a_ratio, 2)}':>6}  recall {_num(f['recall'])} "
            f"{_ci(f['recall_ci'])}{'' if oracle is None else f' x{_num(r_ratio, 2)}':>6}"
            f"{'  small' if f['small'] else ''}")


def report(args: argparse.Namespace, archived: list, recal: dict[str, Any], load0: tuple, seconds: float,
           cpu: float) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    load1 = os.getloadavg()
    lines = [
        f"# model vs oracle, {datetime.now().isoformat(timespec='seconds')}, commit {commit}, {platform.node()} "
        f"({os.cpu_count()} cores), load average before {load0[0]:.1f} after {load1[0]:.1f} (shared machine); "
        f"{seconds:.0f} s wall, {cpu:.0f} s CPU",
        f"warehouse {args.warehouse} (bootstrapped year to {args.until}); truth: sandbox world of {args.accounts} "
        f"accounts, seed {args.seed}; positive = churned or contracted (the model YAML's); recall at specificity "
        f">= {SPECIFICITY}; [95% interval]; xR = ratio to the oracle on the same renewals; 'small' = an interval "
        f"wider than +-{SMALL_HALF_WIDTH}",
        "",
        "## #12: the default model's archived scores (what the daily DAG stored) vs the oracle, every renewal of "
        "the year with both",
        f"  {'':<26}{'n':>5}{'pos':>5}",
    ]
    for h, n_preds, model, oracle in archived:
        lines.append(f" lead {h} d ({n_preds} renewals with an archived score; the oracle needs a full 30-day "
                     f"window before the lead date)")
        lines.append(_row("default model", model, oracle))
        lines.append(_row("oracle", oracle, None))
    if "error" in recal:
        lines += ["", f"## #13: the quarterly recalibration FAILED on this warehouse: {recal['error']}"]
        return "\n".join(lines) + "\n"
    s = recal["split"]
    lines += [
        "",
        f"## #13: the quarterly recalibration (challenger {recal['challenger']} from {recal['champion']}; "
        f"build_training_set + recalibrate_challenger on a copy, {recal['fit_seconds']:.0f} s)",
        f"  training set: {recal['training']['outcomes']} renewals, {recal['training']['rows']} lead rows "
        f"{recal['training']['by_horizon']}, {recal['training']['churned']} positive",
        f"  split: {s['method']}; train {s['train']['rows']} rows / {s['train']['accounts']} accounts / "
        f"{s['train']['churned']} positive, held out {s['test']['rows']} rows / {s['test']['accounts']} accounts / "
        f"{s['test']['churned']} positive, {s['rows_unused']} rows unused",
        f"  challenger weights (mid_market): {recal['weights']}",
        "  logistic = LogisticRegressionCV (median imputation + indicators, standardized, balanced, C by 3-fold "
        "account-grouped CV); boosting = HistGradientBoostingClassifier (defaults); both on the training rows' "
        "signal columns",
    ]
    for h in HORIZONS:
        block = recal["by_horizon"][h]
        o = block["models"]["oracle_risk"]
        tag = "  <- the goals' lead" if h == GOAL_HORIZON else ""
        lines.append(f" held out, lead {h} d ({block['held_rows']} held-out rows at this lead){tag}")
        lines.append(f"  {'':<26}{'n':>5}{'pos':>5}")
        for name, label in (("challenger", "recalibrated (challenger)"), ("champion", "default model"),
                            ("logistic", "logistic regression"), ("boosting", "hist gradient boosting")):
            lines.append(_row(label, block["models"][name], o))
        lines.append(_row("oracle", o, None))
    m = recal["by_horizon"][GOAL_HORIZON]["models"]
    c, o, lr, hgb = m["challenger"], m["oracle_risk"], m["logistic"], m["boosting"]
    small = c["small"] or o["small"]
    lines += [
        "",
        f"## goals at {GOAL_HORIZON} d, held out (n={c['n']}, {c['positives']} positive"
        f"{': a small sample, every verdict below is within its noise' if small else ''})",
        f"  #13 AUC >= 0.95 x oracle: {_num(c['auc'])} vs {_num(0.95 * o['auc'] if o['auc'] else None)}: "
        f"{goal(c['auc'], 0.95 * o['auc'] if o['auc'] else None, small)}",
        f"  #13 recall >= 0.90 x oracle: {_num(c['recall'])} vs {_num(0.90 * o['recall'] if o['recall'] else None)}"
        f": {goal(c['recall'], 0.90 * o['recall'] if o['recall'] else None, small)}",
        f"  #13 glass box AUC >= logistic regression's: {_num(c['auc'])} vs {_num(lr['auc'])}: "
        f"{goal(c['auc'], lr['auc'], small)}",
        f"  #13 glass box AUC within 0.02 of boosting's: {_num(c['auc'])} vs {_num(hgb['auc'])} - 0.02 = "
        f"{_num(hgb['auc'] - 0.02 if hgb['auc'] is not None else None)}: "
        f"{goal(c['auc'], hgb['auc'] - 0.02 if hgb['auc'] is not None else None, small)}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouse", type=Path, help="SQLite file of a bootstrapped warehouse")
    parser.add_argument("--accounts", type=int, default=300, help="the portfolio it was bootstrapped from")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--until", type=date.fromisoformat, default=date(2026, 9, 30),
                        help="the recalibration's batch date (the bootstrap's last day)")
    parser.add_argument("--months", type=int, default=12, help="the quarterly DAG's outcome window")
    args = parser.parse_args()
    from healthscore.pipeline import recalibration as rc
    from healthscore.warehouse.engine import make_engine

    load0 = os.getloadavg()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    world = build_truth(args.accounts, args.seed)
    engine = make_engine(f"sqlite:///{args.warehouse.resolve()}")
    archived = archived_vs_oracle(engine, world, rc.champion_model(engine))
    engine.dispose()
    try:
        recal = recalibrated_vs_oracle(args.warehouse.resolve(), world, args.until, args.months)
    except Exception as exc:  # noqa: BLE001 - the #12 figures still print; the failure is the #13 result
        recal = {"error": f"{type(exc).__name__}: {exc}"}
    text = report(args, archived, recal, load0, time.perf_counter() - wall0, time.process_time() - cpu0)
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    RESULTS.write_text(text + ("\n" + old if old else ""), encoding="utf-8")  # newest first, older runs kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
