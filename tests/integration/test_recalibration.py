"""The quarterly recalibration's steps over a SQLite warehouse holding a year of point-in-time snapshots and outcomes
(``recalibration_history``), and the model lifecycle commands on the registry it leaves.

The steps run once for the module (training set, challenger, backtest: ~10 s); the DAG test runs the same steps
in Airflow. Without approval nothing is promoted; promote and rollback change what ``score_and_archive`` scores with.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from healthscore.batch import Batch
from healthscore.cli import main
from healthscore.config import load_model_config, model_config_from_dict
from healthscore.pipeline import recalibration as rc
from healthscore.pipeline.score import registered_models, score_batch
from healthscore.pipeline.signals import load_signals
from healthscore.warehouse.engine import make_engine
from healthscore.warehouse.models import HealthScore
from healthscore.warehouse.registry import champion_version, list_versions
from tests.integration.recalibration_history import ACCOUNTS, PLANTED_DAYS, seed_history

UNTIL = date(2026, 11, 30)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("recalibration")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    seeded = seed_history(url)
    engine = make_engine(url)
    out = rc.run_dir(tmp / "data", UNTIL)
    training = rc.build_training_set(engine, UNTIL, 12, out)
    challenger = rc.recalibrate_challenger(engine, UNTIL, out)
    backtest = rc.backtest(engine, out, challenger["challenger"], margin=0.01)
    engine.dispose()
    return {"url": url, "out": out, "training": training, "challenger": challenger, "backtest": backtest, **seeded}


def test_the_training_set_is_point_in_time_at_each_lead(run: dict) -> None:
    rows = rc.read_lead_rows(run["out"])
    assert run["training"]["by_horizon"] == {30: ACCOUNTS, 60: ACCOUNTS, 90: ACCOUNTS}
    assert (rows["as_of_date"] <= rows["lead_date"]).all()
    assert all(a == o - timedelta(days=int(h)) for a, o, h in zip(rows["as_of_date"], rows["outcome_date"], rows["horizon_days"], strict=True))
    # the planted build that knows the outcome (10 days before the renewal) is never read
    assert not (rows["as_of_date"] == rows["outcome_date"] - timedelta(days=PLANTED_DAYS)).any()
    truth = rows["account_id"].map(run["truth"]).astype(int)
    assert (rows["churned"] == truth).all()


def test_the_challenger_beats_the_champion_on_held_out_outcomes_and_waits_for_approval(run: dict) -> None:
    bt, ch = run["backtest"], run["challenger"]
    champ, chall = bt["figures"]["champion"], bt["figures"]["challenger"]
    assert bt["better"] is True, bt["why"]
    assert chall["auc"] > champ["auc"] + 0.01 and chall["f1"] >= champ["f1"]
    assert chall["recall"] >= 0.75  # the At Risk line is set for recall >= 75%
    engine = make_engine(run["url"])
    versions = {v["version"]: v for v in list_versions(engine)}
    assert champion_version(engine) == "v1"  # nothing promoted without an approval
    row = versions[ch["challenger"]]
    assert (row["role"], row["parent_version"], row["number"]) == ("challenger", "v1", 2)
    assert row["metrics"]["backtest"]["decision"]["better"] is True and row["changelog"].startswith("quarterly")
    shadow = {m.version: s for m, s in registered_models(engine)}
    assert shadow == {"v1": False, ch["challenger"]: True}  # the challenger scores daily in shadow
    engine.dispose()
    model = load_model_config(run["out"] / "model.yaml")
    assert model.version == ch["challenger"] and model.config_hash == ch["config_hash"]
    for seg in ("smb", "mid_market", "enterprise"):
        assert sum(model.weights_for(seg).values()) == pytest.approx(100.0)
        assert min(model.weights_for(seg).values()) >= 0


def test_the_challenger_learns_from_every_row_and_is_judged_by_its_fit_without_the_held_out_rows(run: dict) -> None:
    made = rc.read_lead_rows(run["out"])
    report = json.loads((run["out"] / "backtest.json").read_text())
    stored = json.loads((run["out"] / "recalibration.json").read_text())
    # The registered model is the procedure refitted on every training row, not on the split's training part.
    assert stored["final_fit"]["rows"] == len(made) > stored["evaluation"]["train"]["rows"]
    registered = load_model_config(run["out"] / "model.yaml")
    judged = load_model_config(run["out"] / rc.HOLDOUT_FIT_FILE)
    assert registered.config_hash != judged.config_hash
    # The backtest scores the fit that never saw the held-out rows, and says so.
    assert report["figures"]["challenger"]["version"] == judged.version != registered.version
    assert "without the held-out rows" in report["challenger_scored_as"]
    assert "without the held-out rows" in Path(run["backtest"]["report"]).read_text()


def test_the_report_and_csv_hold_the_side_by_side_figures(run: dict) -> None:
    table = pd.read_csv(run["out"] / "backtest_metrics.csv")
    page = Path(run["backtest"]["report"]).read_text()
    for role in ("champion", "challenger"):
        overall = table[(table["scope"] == "overall") & (table["model"] == role)].iloc[0]
        figs = run["backtest"]["figures"][role]
        for metric in ("accuracy", "precision", "recall", "specificity", "f1", "auc", "brier"):
            assert overall[metric] == pytest.approx(figs[metric])
            assert f"{figs[metric]:.3f}" in page
    assert set(table[table["scope"] == "segment"]["group"]) == {"smb", "mid_market", "enterprise"}
    assert set(table[table["scope"] == "horizon_days"]["group"].astype(str)) <= {"30", "60", "90"}
    assert "<svg" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    report = json.loads((run["out"] / "backtest.json").read_text())
    corr = {c["signal"]: c for c in report["changes"]["correlations"]}
    # the history's drivers: active users and days past due carry the latent health, feature breadth is noise
    assert not corr["active_user_pct"]["weak"] and not corr["days_past_due"]["weak"]
    assert corr["feature_breadth"]["weak"] and abs(corr["feature_breadth"]["r"]) < 0.1
    assert "flagged weak" in page


def test_a_challenger_short_of_the_margin_is_not_better_and_the_report_says_nothing_is_promoted(run: dict) -> None:
    engine = make_engine(run["url"])
    try:
        strict = rc.backtest(engine, run["out"], run["challenger"]["challenger"], margin=0.5)
        assert strict["better"] is False and "margin 0.500" in strict["why"]
        assert "Nothing is promoted" in Path(strict["report"]).read_text()
        assert champion_version(engine) == "v1"
    finally:
        rc.backtest(engine, run["out"], run["challenger"]["challenger"], margin=0.01)  # the module's files again
        engine.dispose()


def _score_day(url: str, day: date) -> dict[str, bool]:
    engine = make_engine(url)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
    score_batch(engine, load_signals(engine, day), Batch(day, end, "test"))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(HealthScore.model_version, HealthScore.is_shadow)
                            .where(HealthScore.as_of_date == day).distinct()).all()
    engine.dispose()
    return {r.model_version: bool(r.is_shadow) for r in rows}


def test_lifecycle_commands_promote_and_rollback_change_what_the_daily_run_scores_with(
        run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", run["url"])
    challenger = run["challenger"]["challenger"]
    engine = make_engine(run["url"])
    with engine.connect() as conn:  # three days of stored signals, one per daily run below
        days = [date.fromisoformat(str(d)) for d in conn.execute(sa.text(
            "select distinct as_of_date from account_signals order by as_of_date desc limit 3")).scalars()]
    engine.dispose()

    assert main(["model", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["number"], r["version"], r["role"]) for r in listed] == [(1, "v1", "champion"),
                                                                        (2, challenger, "challenger")]
    assert main(["model", "show", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == challenger and shown["config"]["version"] == challenger
    assert main(["model", "diff", "v1", challenger]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["same_config"] is False and diff["changes"]["weights"]["smb"]
    out = tmp_path / "exported.yaml"
    assert main(["model", "export", challenger, "--out", str(out)]) == 0
    capsys.readouterr()
    assert load_model_config(out).config_hash == run["challenger"]["config_hash"]

    assert _score_day(run["url"], days[2]) == {"v1": False, challenger: True}
    assert main(["model", "promote", challenger, "--approver", "alice"]) == 0
    assert json.loads(capsys.readouterr().out)["previous_champion"] == "v1"
    assert _score_day(run["url"], days[1]) == {challenger: False}  # v1 is retired: the challenger scores and acts
    assert main(["model", "rollback"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v1"
    engine = make_engine(run["url"])
    assert champion_version(engine) == "v1"
    versions = {v["version"]: v for v in list_versions(engine)}
    assert _score_day(run["url"], days[0]) == {"v1": False}
    engine.dispose()
    assert versions[challenger]["approved_by"] == "alice" and versions[challenger]["role"] == "retired"
    assert main(["model", "promote", "nope"]) == 1
    assert "no model version 'nope'" in capsys.readouterr().err
    # rollback to any earlier version by name: back to the challenger, then back again
    assert main(["model", "rollback", challenger]) == 0 and main(["model", "rollback", "v1"]) == 0
    capsys.readouterr()


def test_a_new_yaml_version_is_registered_as_a_shadow_challenger_at_prepare(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from healthscore.pipeline.tasks import run_prepare

    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("HEALTHSCORE_WAREHOUSE_URL", url)
    assert run_prepare({})["role"] == "champion"
    data = yaml.safe_load(load_model_config(None).canonical_json())
    data["version"] = "v2"
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(data))
    model_config_from_dict(data, "v2")  # valid
    monkeypatch.setenv("HEALTHSCORE_MODEL_CONFIG", str(path))
    with caplog.at_level("WARNING"):
        result = run_prepare({})
    assert result["role"] == "challenger" and result["champion"] == "v1"
    assert "healthscore model promote v2" in caplog.text
    engine = make_engine(url)
    assert {m.version: s for m, s in registered_models(engine)} == {"v1": False, "v2": True}
    engine.dispose()


def test_a_model_probability_challenger_is_stored_as_coefficients_and_scored_by_the_daily_code(run: dict) -> None:
    engine = make_engine(run["url"])
    try:
        made = rc.recalibrate_challenger(engine, UNTIL, run["out"], method="model_probability")
        bt = rc.backtest(engine, run["out"], made["challenger"], margin=0.01)
        versions = {v["version"]: v for v in list_versions(engine)}
    finally:
        engine.dispose()
    assert made["challenger"].endswith("p") and made["parent"] == "v1"
    model = load_model_config(run["out"] / "model.yaml")
    assert model.scoring.method.value == "model_probability"
    assert model.scoring.model_probability.artifact is not None
    assert versions[made["challenger"]]["role"] == "challenger"
    figs = bt["figures"]["challenger"]
    assert figs["n"] == bt["figures"]["champion"]["n"] and figs["auc"] > bt["figures"]["champion"]["auc"]
