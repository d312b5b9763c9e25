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
   ``build_training_set`` then ``recalibrate_challenger``, weighted average; on the held-out rows the
   challenger's procedure fitted without them, as ``backtest`` scores it), its held-out rows (the split
   ``backtest`` uses: later dates of other accounts) at 60 days' lead scored by the daily scoring code, against
   the oracle (goals: AUC >= 0.95 x the oracle's, recall at specificity 0.85 >= 0.90 x the oracle's), with the
   default model beside it; and glass box against black box: a logistic regression and scikit-learn's
   HistGradientBoostingClassifier fitted on the same training rows and signal columns, scored on the same
   held-out rows (goals: recalibrated AUC >= the regression's, within 0.02 of boosting's).

3. #13's goals, held out by time: the same code path run as of a cutoff (``build_training_set`` and
   ``recalibrate_challenger`` with ``until`` = the cutoff: only renewals up to it), then every renewal after the
   cutoff scored at each lead by the daily scoring code, the default model beside the challenger, the logistic
   regression and boosting fitted on the rows the challenger was fitted on, and the oracle. The goals' verdicts
   use paired bootstrap intervals of the model/oracle ratios (met or missed only when the interval is on one side).
   Section 2's split (the one inside ``recalibrate``: 30% of the accounts, on the last 30% of the dates) leaves
   too few renewals of a 300-account year to measure anything.

Every figure has its sample size and a 95% interval (AUC: Hanley-McNeil; recall: Wilson on the positives at
the chosen threshold, which ignores the threshold's own noise, so it is optimistic). A sample whose interval
is wider than +-0.05 (the size of the goals' tolerances) is called small, and a goal met or missed on it is
noise-level. The positive class is the model YAML's (churned or contracted). The positive class of the
outcomes is the warehouse's (what the extractors landed), for the model and the oracle alike. Asserts nothing.

    nice -n 10 .venv/bin/python bench/bench_model_vs_oracle.py data/warehouse.db --accounts 300 --seed 42
    # and the CI fixture of tests/integration/test_recalibration_sandbox_year.py:
    ... --write-rows tests/fixtures/sandbox_year_lead_rows.parquet
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


MODELS = ("challenger", "champion", "logistic", "boosting", "oracle_risk")


def _risk_frame(kept: pd.DataFrame, scored: dict[str, pd.DataFrame], lr_p: np.ndarray,
                hgb_p: np.ndarray) -> pd.DataFrame:
    """One row per scored lead row: each model's churn risk beside the outcome."""
    from healthscore.evaluation.metrics import risk_from_health

    frame = kept[["account_id", "outcome_date", "horizon_days", "outcome"]].copy()
    frame["account_id"] = frame["account_id"].astype(str)
    frame["champion"] = risk_from_health(scored["champion"]["score"].to_numpy(dtype=float))
    frame["challenger"] = risk_from_health(scored["challenger"]["score"].to_numpy(dtype=float))
    frame["logistic"], frame["boosting"] = lr_p, hgb_p
    return frame


def _with_oracle(frame: pd.DataFrame, world: Any, horizon: int,
                 positives: list[str]) -> tuple[int, pd.DataFrame, np.ndarray]:
    """The horizon's rows joined to the oracle: (rows at the horizon, the joined rows, their 0/1 outcome).
    Rows the challenger or the champion leaves unscored (coverage rule) are left out for every model."""
    part = frame[frame["horizon_days"] == horizon].rename(columns={"outcome_date": "renewal_date"})
    merged = part.merge(oracle_frame(world, horizon), on=["account_id", "renewal_date"], how="inner")
    merged = merged[np.isfinite(merged["challenger"]) & np.isfinite(merged["champion"])]
    return len(part), merged, merged["outcome"].isin(positives).to_numpy(dtype=np.int8)


def recalibrated_vs_oracle(warehouse: Path, world: Any, until: date, months: int) -> dict[str, Any]:
    """The quarterly DAG's steps on a copy of the warehouse, then every model on the held-out rows."""
    from threadpoolctl import threadpool_limits

    from healthscore.evaluation import challenger as cc
    from healthscore.evaluation.holdout import holdout_split
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
        # The registered challenger learned from every row (refit_all); on the split's held-out rows backtest
        # scores its procedure fitted without them, and so does this section.
        from healthscore.config import load_model_config

        challenger = load_model_config(out_dir / rc.HOLDOUT_FIT_FILE)
        rows = rc.read_lead_rows(out_dir)
        engine.dispose()
    table, kept = training_table(rows, champion)
    split = holdout_split(table)  # the split backtest scores; the held-out fit learned from its training part
    held = kept.iloc[split.test].reset_index(drop=True)
    scored = {"champion": cc.score_rows(champion, held), "challenger": cc.score_rows(challenger, held)}
    with threadpool_limits(limits=1):  # BLAS and OpenMP: one core, the machine is shared
        lr_p, hgb_p = _classifiers(table, split.train, split.test)
    frame = _risk_frame(held, scored, lr_p, hgb_p)
    positives = list(champion.evaluation.positive_outcomes)
    by_horizon = {}
    for h in HORIZONS:
        rows, merged, y = _with_oracle(frame, world, h, positives)
        by_horizon[h] = {"held_rows": rows, "models": {
            name: figures(y, merged[name].to_numpy(dtype=float)) for name in MODELS}}
    return {"training": training, "split": split.description, "challenger": made["challenger"],
            "champion": champion.version, "fit_seconds": fit_seconds, "by_horizon": by_horizon,
            "weights": challenger.weights_for("mid_market")}


# ------------------------------------------------------------------- 3. #13 held out by time (the goals)


def ratio_interval(y: np.ndarray, model_risk: np.ndarray, oracle_risk: np.ndarray, *, draws: int = 2000,
                   seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """95% percentile-bootstrap intervals of the model/oracle ratios of AUC and of recall at specificity 0.85,
    resampling renewals (rows) with both models paired on each draw: what the goals compare, with its noise."""
    from healthscore.evaluation import metrics

    rng = np.random.default_rng(seed)
    n = y.size
    auc_r, rec_r = [], []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        yy = y[i]
        if yy.min() == yy.max():
            continue
        a_m, a_o = metrics.roc_auc(yy, model_risk[i]), metrics.roc_auc(yy, oracle_risk[i])
        if a_m is not None and a_o:
            auc_r.append(a_m / a_o)
        r_m = metrics.recall_at_specificity(yy, model_risk[i], SPECIFICITY).recall
        r_o = metrics.recall_at_specificity(yy, oracle_risk[i], SPECIFICITY).recall
        if r_m is not None and r_o:
            rec_r.append(r_m / r_o)

    def pct(values: list[float]) -> tuple[float, float] | None:
        return (float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))) if len(values) > 50 else None

    return {"auc_ratio": pct(auc_r), "recall_ratio": pct(rec_r)}


def by_time(warehouse: Path, world: Any, until: date, cutoff: date | None, months: int) -> dict[str, Any]:
    """The goals' measurement: the quarterly DAG's code path run as of ``cutoff`` (``build_training_set`` and
    ``recalibrate_challenger`` with ``until=cutoff``: renewals up to the cutoff, their snapshots at each lead),
    then every renewal after the cutoff up to ``until`` (their lead rows as ``build_training_set`` reads them)
    scored by the daily scoring code (``challenger.score_rows``) with the default model and the challenger;
    a logistic regression and HistGradientBoosting fitted on the rows the challenger was fitted on."""
    from threadpoolctl import threadpool_limits

    from healthscore.evaluation import challenger as cc
    from healthscore.evaluation.holdout import holdout_split
    from healthscore.evaluation.training import training_table
    from healthscore.pipeline import recalibration as rc
    from healthscore.warehouse.engine import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.db"
        shutil.copyfile(warehouse, copy)  # the registry gets a challenger: never in the measured warehouse
        engine = make_engine(f"sqlite:///{copy}")
        every_dir, fit_dir = Path(tmp) / "every", Path(tmp) / "fit"
        rc.build_training_set(engine, until, months, every_dir)
        cutoff = cutoff or time_cutoff(rc.read_lead_rows(every_dir))
        started = time.perf_counter()
        training = rc.build_training_set(engine, cutoff, months, fit_dir)
        made = rc.recalibrate_challenger(engine, cutoff, fit_dir)
        fit_seconds = time.perf_counter() - started
        champion = rc.champion_model(engine)
        challenger = rc._model(engine, made["challenger"])  # noqa: SLF001 - as backtest loads it
        every, fit_rows = rc.read_lead_rows(every_dir), rc.read_lead_rows(fit_dir)
        engine.dispose()
    fit_table, _ = training_table(fit_rows, champion)
    fit_split = holdout_split(fit_table)  # recalibrate's own split (for its held-out figures); the challenger
    fit_rows_all = np.arange(len(fit_table))  # is refitted on every row (refit_all), so are the classifiers
    later = every[every["outcome_date"] > cutoff]
    later_table, later_kept = training_table(later, champion)
    scored = {"champion": cc.score_rows(champion, later_kept), "challenger": cc.score_rows(challenger, later_kept)}
    side = cc.side_by_side({"champion": (champion, scored["champion"]), "challenger": (challenger, scored["challenger"])})
    columns = [s.column for s in fit_table.signals]
    x_fit = fit_table.frame[columns].to_numpy(dtype=float)
    x_later = later_table.frame.reindex(columns=columns).to_numpy(dtype=float)
    keep_cols = np.isfinite(x_fit[fit_rows_all]).any(axis=0)
    with threadpool_limits(limits=1):
        lr_p, hgb_p = _fit_classifiers(x_fit[:, keep_cols], fit_table.y, fit_table.accounts, fit_rows_all,
                                       x_later[:, keep_cols])
    frame = _risk_frame(later_kept, scored, lr_p, hgb_p)
    positives = list(champion.evaluation.positive_outcomes)
    by_horizon = {}
    for h in HORIZONS:
        rows, merged, y = _with_oracle(frame, world, h, positives)
        models = {name: figures(y, merged[name].to_numpy(dtype=float)) for name in MODELS}
        oracle = merged["oracle_risk"].to_numpy(dtype=float)
        ratios = {name: ratio_interval(y, merged[name].to_numpy(dtype=float), oracle)
                  for name in ("challenger", "champion")} if h == GOAL_HORIZON and y.size else {}
        f1 = {role: side[role]["by_horizon"].get(h, {}).get("f1") for role in side}
        by_horizon[h] = {"rows": rows, "models": models, "ratios": ratios, "f1": f1}
    return {"cutoff": cutoff, "training": training, "challenger": made["challenger"], "champion": champion.version,
            "fit_split": fit_split.description, "fit_seconds": fit_seconds, "later_renewals":
            int(later[["account_id", "outcome_date"]].drop_duplicates().shape[0]), "by_horizon": by_horizon,
            "overall_f1": {role: side[role]["overall"].get("f1") for role in side},
            "overall_auc": {role: side[role]["overall"].get("auc") for role in side},
            "weights": challenger.weights_for("mid_market")}


def write_rows(warehouse: Path, until: date, months: int, path: Path) -> None:
    """Every renewal's lead rows as the quarterly DAG's ``build_training_set`` reads them (a copy's registry)."""
    from healthscore.pipeline import recalibration as rc
    from healthscore.warehouse.engine import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "warehouse.db"
        shutil.copyfile(warehouse, copy)
        engine = make_engine(f"sqlite:///{copy}")
        rc.build_training_set(engine, until, months, Path(tmp) / "rows")
        engine.dispose()
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "rows" / rc.LEAD_ROWS_FILE, path)


def time_cutoff(rows: pd.DataFrame, later_share: float = 0.4) -> date:
    """The renewal date that leaves ``later_share`` of the renewals with a 60-day lead row after it."""
    dates = sorted(rows.loc[rows["horizon_days"] == GOAL_HORIZON, "outcome_date"])
    return dates[max(int(len(dates) * (1 - later_share)) - 1, 0)]


def _fit_classifiers(x: np.ndarray, y: np.ndarray, accounts: np.ndarray, train: np.ndarray,
                     x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As ``_classifiers``, on given matrices: fitted on ``x[train]``, churn probabilities of ``x_test``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True), StandardScaler(),
        LogisticRegressionCV(Cs=[0.01, 0.1, 1.0, 10.0], cv=list(GroupKFold(3).split(x[train], groups=accounts[train])),
                             scoring="roc_auc", class_weight="balanced", max_iter=5000))
    lr.fit(x[train], y[train])
    hgb = HistGradientBoostingClassifier(random_state=0)
    hgb.fit(x[train], y[train])
    return lr.predict_proba(x_test)[:, 1], hgb.predict_proba(x_test)[:, 1]


# ------------------------------------------------------------------------------------------- output


def _row(label: str, f: dict[str, Any], oracle: dict[str, Any] | None) -> str:
    a_ratio = ratio(f["auc"], oracle["auc"]) if oracle else None
    r_ratio = ratio(f["recall"], oracle["recall"]) if oracle else None
    return (f"  {label:<26}{f['n']:>5}{f['positives']:>5}  AUC {_num(f['auc'])} {_ci(f['auc_ci'])}"
            f"{'' if oracle is None else f' x{_num(a_ratio, 2)}':>6}  recall {_num(f['recall'])} "
            f"{_ci(f['recall_ci'])}{'' if oracle is None else f' x{_num(r_ratio, 2)}':>6}"
            f"{'  small' if f['small'] else ''}")


def _ratio_ci(ci: tuple[float, float] | None) -> str:
    return "[   -   ]" if ci is None else f"[{ci[0]:.2f},{ci[1]:.2f}]"


def verdict(ci: tuple[float, float] | None, target: float) -> str:
    """met / missed only when the whole 95% interval of the ratio is on one side of the goal's factor."""
    if ci is None:
        return "n/a"
    if ci[0] >= target:
        return "MET (the interval is above the goal)"
    if ci[1] < target:
        return "MISSED (the interval is below the goal)"
    return "not distinguishable (the interval spans the goal)"


def time_report(t: dict[str, Any]) -> list[str]:
    if "error" in t:
        return ["", f"## #13 goals, held out by time: the recalibration FAILED: {t['error']}"]
    s = t["fit_split"]
    lines = [
        "",
        f"## #13 goals, held out by time: the quarterly DAG's code path as of {t['cutoff']} (challenger "
        f"{t['challenger']} from {t['champion']}, {t['fit_seconds']:.0f} s), scored on the {t['later_renewals']} "
        f"renewals after it",
        f"  training set as of the cutoff: {t['training']['outcomes']} renewals, {t['training']['rows']} lead rows "
        f"{t['training']['by_horizon']}, {t['training']['churned']} positive; the challenger is refitted on all of "
        f"them (recalibrate's own split, {s['train']['rows']} rows / {s['train']['churned']} positive, gives its "
        f"held-out figures, checked on {s['test']['rows']} rows)",
        f"  challenger weights (mid_market): {t['weights']}",
        "  logistic and boosting: fitted on the same rows the challenger was fitted on; every model scores the same "
        "later renewals' lead rows",
        f"  F1 at each model's own At Risk line, all later lead rows: default {_num(t['overall_f1']['champion'])}, "
        f"recalibrated {_num(t['overall_f1']['challenger'])}; AUC default {_num(t['overall_auc']['champion'])}, "
        f"recalibrated {_num(t['overall_auc']['challenger'])}",
    ]
    for h in HORIZONS:
        block = t["by_horizon"][h]
        o = block["models"]["oracle_risk"]
        tag = "  <- the goals' lead" if h == GOAL_HORIZON else ""
        lines.append(f" later renewals, lead {h} d ({block['rows']} lead rows; F1 default "
                     f"{_num(block['f1'].get('champion'))}, recalibrated {_num(block['f1'].get('challenger'))}){tag}")
        lines.append(f"  {'':<26}{'n':>5}{'pos':>5}")
        for name, label in (("challenger", "recalibrated (challenger)"), ("champion", "default model"),
                            ("logistic", "logistic regression"), ("boosting", "hist gradient boosting")):
            lines.append(_row(label, block["models"][name], o))
        lines.append(_row("oracle", o, None))
    g = t["by_horizon"][GOAL_HORIZON]
    m, r = g["models"], g["ratios"]
    c, o = m["challenger"], m["oracle_risk"]
    lines += ["", f"## goals at {GOAL_HORIZON} d, held out by time (n={c['n']}, {c['positives']} positive; ratio "
              "intervals: paired percentile bootstrap over renewals, 2000 draws)"]
    for name, label in (("challenger", "recalibrated"), ("champion", "default")):
        rr = r.get(name, {})
        f = m[name]
        lines.append(f"  {label:<13} AUC/oracle {_num(ratio(f['auc'], o['auc']), 2)} {_ratio_ci(rr.get('auc_ratio'))} "
                     f"vs 0.95: {verdict(rr.get('auc_ratio'), 0.95)}")
        lines.append(f"  {label:<13} recall/oracle {_num(ratio(f['recall'], o['recall']), 2)} "
                     f"{_ratio_ci(rr.get('recall_ratio'))} vs 0.90: {verdict(rr.get('recall_ratio'), 0.90)}")
    lr, hgb = m["logistic"], m["boosting"]
    lines.append(f"  glass box AUC {_num(c['auc'])} vs logistic {_num(lr['auc'])} and boosting {_num(hgb['auc'])} "
                 f"(each +-{(c['auc_ci'][1] - c['auc_ci'][0]) / 2 if c['auc_ci'] else 0:.2f}): differences this small "
                 "are within the noise of this sample")
    return lines


def report(args: argparse.Namespace, archived: list, recal: dict[str, Any], load0: tuple, seconds: float,
           cpu: float, timed: dict[str, Any] | None = None) -> str:
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
    if timed is not None:
        lines += time_report(timed)
    if "error" in recal:
        lines += ["", f"## #13: the quarterly recalibration FAILED on this warehouse: {recal['error']}"]
        return "\n".join(lines) + "\n"
    s = recal["split"]
    lines += [
        "",
        f"## #13 (as before, not the goals' split): the quarterly recalibration as of the last day (challenger "
        f"{recal['challenger']} from {recal['champion']}; "
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
    parser.add_argument("--write-rows", type=Path, default=None,
                        help="also write every renewal's lead rows (build_training_set to --until) to this Parquet "
                             "file: tests/fixtures/sandbox_year_lead_rows.parquet is made so")
    parser.add_argument("--cutoff", type=date.fromisoformat, default=None,
                        help="held out by time: recalibrate as of this date, score the renewals after it "
                             "(default: the renewal date that leaves 40%% of the renewals with a 60-day lead row after it)")
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
    if args.write_rows is not None:
        write_rows(args.warehouse.resolve(), args.until, args.months, args.write_rows)
    try:
        timed = by_time(args.warehouse.resolve(), world, args.until, args.cutoff, args.months)
    except Exception as exc:  # noqa: BLE001 - printed as the result
        timed = {"error": f"{type(exc).__name__}: {exc}"}
    text = report(args, archived, recal, load0, time.perf_counter() - wall0, time.process_time() - cpu0, timed)
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    RESULTS.write_text(text + ("\n" + old if old else ""), encoding="utf-8")  # newest first, older runs kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
