"""The monthly accuracy evaluation over a real (SQLite) warehouse holding a synthetic archive.

The archive is built so the right answers are known: per renewal, the score the archive held 30/60/90 days
before it, plus a *planted* score dated after each lead date that peeks at the outcome (0 for churners,
100 for the rest). A leak would make that perfect predictor win; strict point-in-time reads must ignore it.
Then: figures equal scikit-learn's on the same predictions, the report renders with the table's numbers,
and a missed target and a drift alert each reach the outbox (table and file), once however often it runs.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn import metrics as skm

from healthscore.config import load_model_config
from healthscore.pipeline.accuracy import AccuracyPaths, evaluate_month, run_month
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.migrate import upgrade
from healthscore.warehouse.models import (
    AccuracyReport,
    HealthScore,
    NotificationOutbox,
    RenewalOutcome,
    ScoreOverride,
)
from healthscore.warehouse.registry import register_model_version

MONTH = date(2026, 6, 1)
N = 160


def _band(score: float) -> str:
    return "Healthy" if score >= 75 else "Moderate" if score >= 50 else "At Risk" if score >= 25 else "Critical"


def seed_warehouse(url: str) -> dict:
    """A migrated warehouse with N renewals in MONTH and their archived scores (honest and planted)."""
    upgrade(url)
    engine = make_engine(url)
    model = load_model_config(None)
    register_model_version(engine, model)
    rng = np.random.default_rng(3)
    outcomes, scores, truth = [], [], []
    for i in range(N):
        account = f"acc{i:04d}"
        renewal = MONTH + timedelta(days=int(rng.integers(0, 30)))
        outcome = rng.choice(["renewed", "churned", "contracted", "expanded"], p=[0.55, 0.2, 0.1, 0.15])
        positive = outcome in ("churned", "contracted")
        segment = ["smb", "mid_market", "enterprise"][i % 3]
        # honest, noisy scores before the lead dates; the last month of history is a different population
        base = float(np.clip(rng.normal(40 if positive else 65, 15), 0, 100))
        for day_back in range(95, 20, -1):
            as_of = renewal - timedelta(days=day_back)
            s = float(np.clip(base + rng.normal(0, 3), 0, 100))
            scores.append({"account_id": account, "as_of_date": as_of, "score": s, "segment": segment})
        # planted: dated after every lead date, it knows the outcome
        for day_back in range(20, 0, -1):
            s = 0.0 if positive else 100.0
            scores.append({"account_id": account, "as_of_date": renewal - timedelta(days=day_back), "score": s,
                           "segment": segment})
        outcomes.append({"account_id": account, "renewal_date": renewal, "kind": "renewal", "outcome": outcome,
                         "source": "crm+billing", "agreement": "agree", "first_batch_date": renewal,
                         "as_of_batch_date": renewal})
        truth.append((account, renewal, int(positive)))
    with engine.begin() as conn:
        conn.execute(sa.insert(RenewalOutcome), outcomes)
        conn.execute(sa.insert(HealthScore), [
            {**r, "model_version": model.version, "band": _band(r["score"]), "lifecycle_stage": "maturity",
             "days_in_stage": 400, "is_shadow": False, "config_hash": model.config_hash,
             "dimension_scores": {d: r["score"] for d in model.dimensions}} for r in scores])
    engine.dispose()
    return {"scores": pd.DataFrame(scores), "truth": truth, "model": model}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("accuracy")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    seeded = seed_warehouse(url)
    engine = make_engine(url)
    with engine.begin() as conn:  # three CSM overrides standing through every lead date (never revoked)
        conn.execute(sa.insert(ScoreOverride), [
            {"account_id": f"acc{i:04d}", "override_band": "Critical", "reason": "csm", "author": "csm",
             "created_at": datetime(2026, 1, 2), "expires_on": date(2026, 12, 31)} for i in range(3)])
    paths = AccuracyPaths.under(tmp / "data")
    report = evaluate_month(engine, MONTH)
    first = run_month(engine, MONTH, paths)
    second = run_month(engine, MONTH, paths)  # a rerun: same rows, no alert twice
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(AccuracyReport.__table__)).mappings()]
        outbox = [dict(r) for r in conn.execute(sa.select(NotificationOutbox.__table__)).mappings()]
    engine.dispose()
    return {"report": report, "first": first, "second": second, "rows": rows, "outbox": outbox,
            "paths": paths, **seeded}


def _honest(warehouse: dict, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """What a strictly point-in-time prediction must be: the archived score exactly ``horizon`` days before."""
    scores = warehouse["scores"].set_index(["account_id", "as_of_date"])["score"]
    y, s = [], []
    for account, renewal, positive in warehouse["truth"]:
        y.append(positive)
        s.append(scores.loc[(account, renewal - timedelta(days=horizon))])
    return np.asarray(y), np.asarray(s)


@pytest.mark.parametrize("horizon", [30, 60, 90])
def test_predictions_are_point_in_time_and_the_figures_equal_scikit_learns(warehouse: dict, horizon: int) -> None:
    block = warehouse["report"]["horizons"][horizon]
    preds = block["predictions"]
    assert len(preds) == N
    assert (pd.to_datetime(preds["as_of_date"]) <= pd.to_datetime(preds["lead_date"])).all()
    y, s = _honest(warehouse, horizon)
    overall = block["model_versions"]["v1"]["overall"]
    pred = np.array([_band(v) in ("At Risk", "Critical") for v in s])
    assert overall["auc"] == pytest.approx(skm.roc_auc_score(y, (100 - s) / 100))
    assert overall["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert overall["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert overall["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert overall["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert overall["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert overall["brier"] == pytest.approx(skm.brier_score_loss(y, (100 - s) / 100))
    # The planted peeking score would give a perfect AUC: it must not have leaked in.
    assert overall["auc"] < 0.95


def test_small_groups_are_flagged_not_numbered(warehouse: dict) -> None:
    figs = warehouse["report"]["horizons"][60]["model_versions"]["v1"]
    sizes = {k: v["n"] for k, v in figs["by_segment"].items()}
    assert sum(sizes.values()) == N
    for seg in figs["by_segment"].values():
        assert seg["too_small"] is (seg["n"] < 20)
    small = {"n": 5}
    from healthscore.evaluation.accuracy import figures

    tiny = figures(warehouse["report"]["horizons"][60]["predictions"].head(small["n"]), warehouse["model"].evaluation)
    assert tiny["too_small"] and "auc" not in tiny and tiny["n"] == 5


def test_the_table_and_report_hold_the_same_figures(warehouse: dict) -> None:
    rows = {(r["model_version"], r["horizon_days"]): r for r in warehouse["rows"]}
    assert set(rows) == {("v1", 30), ("v1", 60), ("v1", 90)}
    head = rows[("v1", 60)]["metrics"]
    head = json.loads(head) if isinstance(head, str) else head
    assert head["overall"]["auc"] == pytest.approx(warehouse["report"]["horizons"][60]["model_versions"]["v1"]
                                                   ["overall"]["auc"])
    html_path = Path(rows[("v1", 60)]["report_path"])
    page = html_path.read_text()
    assert "<svg" in page and "http://" not in page.split("</style>")[0] and "cdn" not in page.lower()
    assert f"{head['overall']['auc']:.3f}" in page
    overall_csv = pd.read_csv(html_path.parent / "metrics_overall.csv")
    assert overall_csv.loc[overall_csv["horizon_days"] == 60, "auc"].iloc[0] == pytest.approx(head["overall"]["auc"])
    for name in ("retention_by_band", "lead_time", "false_negatives", "false_positives", "targets",
                 "drift_dimensions", "metrics_by_segment"):
        assert (html_path.parent / f"{name}.csv").exists(), name
    assert warehouse["second"]["rows"] == warehouse["first"]["rows"] == len(warehouse["rows"])


def test_overrides_are_scored_against_the_outcomes_in_the_table_and_the_report(warehouse: dict) -> None:
    truth = {account: positive for account, _, positive in warehouse["truth"]}
    result = warehouse["report"]["overrides"]
    assert result["n"] == 3 and result["too_small"]  # three renewals: under min_group_size (20)
    rows = {r["account_id"]: r for r in result["rows"]}
    assert set(rows) == {"acc0000", "acc0001", "acc0002"}
    for account, row in rows.items():
        assert row["override_band"] == "Critical" and row["override_right"] is bool(truth[account])
    head = next(r for r in warehouse["rows"] if r["horizon_days"] == 60)
    stored = json.loads(head["metrics"]) if isinstance(head["metrics"], str) else head["metrics"]
    assert stored["overrides"]["n"] == 3 and stored["overrides"]["override_right"]["too_small"]
    page = Path(head["report_path"]).read_text()
    assert "Were the humans right?" in page and "too small" in page
    csv = pd.read_csv(Path(head["report_path"]).parent / "override_renewals.csv")
    assert sorted(csv["account_id"]) == sorted(rows)


def test_missed_targets_and_drift_reach_the_outbox_once(warehouse: dict) -> None:
    report = warehouse["report"]
    assert report["missed_targets"], report["targets"]  # noisy honest scores miss the field's targets
    # The last month's scores are the planted population (0/100): the distribution drifted.
    assert report["drift"]["score_psi"]["level"] == "alert", report["drift"]["score_psi"]
    subjects = [r["subject"] for r in warehouse["outbox"]]
    assert any("below the target" in s for s in subjects), subjects
    assert any("PSI" in s for s in subjects), subjects
    assert warehouse["first"]["alerts_sent"] == len(subjects) and warehouse["second"]["alerts_sent"] == 0
    lines = warehouse["paths"].outbox_path.read_text().splitlines()
    assert len(lines) == len(subjects)
