"""The bring-your-own-table commands, as a user runs them: good tables in, files out; bad tables, one line out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from healthscore.cli import main
from healthscore.config import load_model_config
from healthscore.evaluation.backtest import score_table
from healthscore.evaluation.byo import load_byo, signal_id_for
from healthscore.evaluation.curve_fit import apply_curve
from healthscore.evaluation.holdout import holdout_split
from healthscore.evaluation.metrics import roc_auc
from healthscore.evaluation.weight_fit import fit_nonneg_logistic
from healthscore.scoring import normalize_signals
from tests.byo_tables import MAPPING, OUTCOME, make_table

DIMS = ["usage", "engagement", "relationship", "support", "financial"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("byo")
    table = root / "friction.csv"
    make_table("friction", accounts=600, dates=4, seed=3).to_csv(table, index=False)
    mapping = root / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING), encoding="utf-8")
    return {"root": root, "table": table, "mapping": mapping}


@pytest.fixture(scope="module")
def recalibrated(files: dict[str, Path]) -> Path:
    out = files["root"] / "recal"
    code = main(
        [
            "recalibrate",
            str(files["table"]),
            "--mapping",
            str(files["mapping"]),
            "--outcome",
            OUTCOME,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_recalibrate_writes_a_valid_model_and_held_out_metrics(files, recalibrated, capsys) -> None:
    assert {p.name for p in recalibrated.iterdir()} >= {"model.yaml", "metrics.json", "report.html"}
    assert main(["config", "validate", str(recalibrated / "model.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: model v1-byo")
    model = load_model_config(recalibrated / "model.yaml")
    assert set(model.dimensions) == set(DIMS)
    for seg in ("enterprise", "mid_market", "smb"):
        weights = model.weights_for(seg)
        assert all(w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(100)

    m = json.loads((recalibrated / "metrics.json").read_text())
    ev = m["evaluation"]
    assert ev["held_out"] is True and ev["cutoff_date"] is not None
    assert ev["train"]["last_date"] < ev["cutoff_date"] <= ev["test"]["first_date"]
    # No account on both sides of the split.
    table = load_byo(files["table"], files["mapping"], OUTCOME)
    split = holdout_split(table)
    assert not set(table.accounts[split.train]) & set(table.accounts[split.test])
    assert (
        ev["test"]["rows"]
        == split.test.size
        == m["recalibrated"]["held_out"]["overall"]["n"] + m["recalibrated"]["held_out"]["unscored"]
    )
    base, new = m["baseline"]["held_out"]["overall"], m["recalibrated"]["held_out"]["overall"]
    # The table's true drivers are support and billing friction, which the packaged weights barely use.
    assert new["auc"] > base["auc"] + 0.03
    assert new["decision"]["f1"] > base["decision"]["f1"]
    friction = {"support", "financial"}
    assert (
        sum(m["weights"]["mid_market"][d] for d in friction)
        > 50
        > sum(m["baseline_weights"]["mid_market"][d] for d in friction)
    )
    # The lines in the model are the lines reported.
    for seg, line in m["lines"]["at_risk_below"].items():
        assert model.segment_thresholds.get(seg).at_risk_below == line
    assert "recall" in m["lines"]["how"]["universal"]
    json.dumps(m, allow_nan=False)
    report = (recalibrated / "report.html").read_text()
    assert (
        report.count("data:image/png;base64,") >= 4 and "http://" not in report and "https://" not in report
    )


def test_the_written_model_round_trips_into_backtest(files, recalibrated, tmp_path) -> None:
    out = tmp_path / "bt"
    assert (
        main(
            [
                "backtest",
                str(files["table"]),
                "--mapping",
                str(files["mapping"]),
                "--outcome",
                OUTCOME,
                "--out",
                str(out),
                "--model",
                str(recalibrated / "model.yaml"),
            ]
        )
        == 0
    )
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["account_id", "as_of_date", "score", "band", OUTCOME, *DIMS]
    # Backtest scores the held-out rows exactly as recalibrate measured them (one engine).
    table = load_byo(files["table"], files["mapping"], OUTCOME)
    test = holdout_split(table).test
    held = scores.iloc[test]
    ok = held["score"].notna().to_numpy()
    auc = roc_auc(held[OUTCOME].to_numpy()[ok], -held["score"].to_numpy()[ok])
    m = json.loads((recalibrated / "metrics.json").read_text())
    assert auc == pytest.approx(m["recalibrated"]["held_out"]["overall"]["auc"], abs=1e-12)
    bt = json.loads((out / "metrics.json").read_text())
    assert bt["model"]["config_hash"] == load_model_config(recalibrated / "model.yaml").config_hash
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3


def test_recalibrate_probability_writes_a_classifier_that_validates_and_backtests(files, tmp_path, capsys) -> None:
    out = tmp_path / "prob"
    args = ["--mapping", str(files["mapping"]), "--outcome", OUTCOME]
    assert main(["recalibrate", str(files["table"]), *args, "--out", str(out), "--probability"]) == 0
    assert "(probability model; the weighted one:" in capsys.readouterr().out
    assert main(["config", "validate", str(out / "model.yaml")]) == 0
    model = load_model_config(out / "model.yaml")
    artifact = model.scoring.model_probability.artifact
    assert model.scoring.method.value == "model_probability" and artifact.features == list(model.dimensions)
    assert "pickle" not in (out / "model.yaml").read_text() and len(artifact.members) >= 2
    m = json.loads((out / "metrics.json").read_text())
    prob, weighted = m["recalibrated"]["held_out"]["overall"], m["weighted"]["held_out"]["overall"]
    base = m["baseline"]["held_out"]["overall"]
    # Held out: it ranks about as well as the weighted model it reads, and its probabilities are calibrated.
    assert prob["auc"] > base["auc"] + 0.03 and prob["auc"] > weighted["auc"] - 0.03
    assert prob["brier"] < weighted["brier"]
    for seg, line in m["probability"]["lines"]["at_risk_below"].items():
        assert model.segment_thresholds.get(seg).at_risk_below == line
    bt = tmp_path / "bt"
    assert main(["backtest", str(files["table"]), *args, "--out", str(bt), "--model", str(out / "model.yaml")]) == 0
    scores = pd.read_csv(bt / "scores.csv")
    table = load_byo(files["table"], files["mapping"], OUTCOME)
    held = scores.iloc[holdout_split(table).test]
    ok = held["score"].notna().to_numpy()
    assert roc_auc(held[OUTCOME].to_numpy()[ok], -held["score"].to_numpy()[ok]) == pytest.approx(prob["auc"], abs=1e-12)


def test_backtest_without_a_model_uses_the_packaged_weights_over_the_table(files, tmp_path, capsys) -> None:
    out = tmp_path / "bt0"
    assert (
        main(
            [
                "backtest",
                str(files["table"]),
                "--mapping",
                str(files["mapping"]),
                "--outcome",
                OUTCOME,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "AUC" in capsys.readouterr().out
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["account_id", "as_of_date", "score", "band", OUTCOME, *DIMS]
    scored = scores["score"].dropna()
    assert scored.between(0, 100).all() and len(scored) > 0.95 * len(scores)
    assert set(scores["band"].dropna()) <= {"Healthy", "Moderate", "At Risk", "Critical"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["overall"]["n"] == len(scored) and m["unscored"] == len(scores) - len(scored)
    assert 0.5 < m["overall"]["auc"] < 1 and set(m["by_segment"]) == {"enterprise", "mid_market", "smb"}
    # The packaged mid_market weights restricted to the mapped dimensions (no value signal): 35/25/15/0/5 of 80.
    assert "packaged" in m["model"]["how"]
    shares = {"usage": 35, "engagement": 25, "relationship": 15, "support": 0, "financial": 5}
    mid = scores[(pd.read_csv(files["table"])["segment"] == "mid_market").to_numpy()].dropna()
    full = mid[(mid[DIMS].notna()).all(axis=1)]
    expected = sum(full[d] * w for d, w in shares.items()) / 80
    np.testing.assert_allclose(full["score"], expected, atol=0.1)


def test_parquet_json_mapping_without_segments(tmp_path) -> None:
    frame = make_table("usage", accounts=400, dates=3, seed=5, segments=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    (tmp_path / "m.json").write_text(json.dumps(MAPPING))
    out = tmp_path / "out"
    assert (
        main(
            [
                "recalibrate",
                str(tmp_path / "t.parquet"),
                "--mapping",
                str(tmp_path / "m.json"),
                "--outcome",
                OUTCOME,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert any("no segment column" in n for n in m["notes"])
    assert m["segments_with_own_fit"] == []
    weights = m["weights"]
    assert weights["enterprise"] == weights["mid_market"] == weights["smb"]  # one universal model
    assert m["recalibrated"]["held_out"]["overall"]["auc"] > 0.7
    model = load_model_config(out / "model.yaml")
    # Curves score through the engine exactly as the fitting saw them.
    table = load_byo(tmp_path / "t.parquet", tmp_path / "m.json", OUTCOME)
    frame_ids = pd.DataFrame(
        {"account_id": table.accounts, "as_of_date": table.dates, "segment": table.segments}
    )
    for sig in table.signals:
        frame_ids[sig.signal_id] = table.raw(sig)
    engine = normalize_signals(frame_ids.drop_duplicates("account_id"), model)
    first = frame_ids.drop_duplicates("account_id")
    for sig in table.signals:
        ours = apply_curve(first[sig.signal_id].to_numpy(), model.signal(sig.signal_id), sig.direction)
        np.testing.assert_allclose(ours, engine[sig.signal_id].to_numpy(), atol=1e-9)
    assert score_table(model, table.subset(np.arange(50)))["score"].notna().any()


def test_nonnegative_logistic_matches_sklearn_when_unconstrained_is_positive() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((800, 4))  # noqa: N806
    y = (rng.random(800) < 1 / (1 + np.exp(-(3 * X[:, 0] + 1.5 * X[:, 1] - 2)))).astype(float)
    l2 = 1e-3
    coef, intercept = fit_nonneg_logistic(X, y, penalty="l2", strength=l2)
    ref = LogisticRegression(C=1 / (len(y) * l2), class_weight="balanced", tol=1e-10, max_iter=10_000).fit(
        X, y
    )
    if (ref.coef_ > 0).all():
        np.testing.assert_allclose(coef, ref.coef_[0], rtol=1e-3, atol=1e-3)
        assert intercept == pytest.approx(ref.intercept_[0], abs=1e-3)
    # A feature that lowers the outcome gets weight 0, not a negative one.
    coef, _ = fit_nonneg_logistic(np.c_[X, 1 - X[:, 0]], y, penalty="l2", strength=l2)
    assert (coef >= 0).all()


def test_signal_ids_are_valid_and_stable() -> None:
    assert signal_id_for("Active Users %") == "active_users"
    assert signal_id_for("2fa enabled") == "s_2fa_enabled"
    assert signal_id_for("tenure_days") == "tenure_days_signal"
    assert signal_id_for("logins_per_week") == "logins_per_week"


# ------------------------------------------------------------------------------------------ bad tables


def _bad(tmp_path: Path, change, mapping: dict | None = None) -> tuple[Path, Path]:
    frame = make_table("friction", accounts=60, dates=2, seed=1)
    frame = change(frame) if change else frame
    table = tmp_path / "bad.csv"
    frame.to_csv(table, index=False)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(mapping or MAPPING))
    return table, path


def _set(column: str, row: int, value: object):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return change


BAD_CASES = {
    "missing mapped column": (lambda f: f.drop(columns=["nps"]), None, "'nps'"),
    "missing account_id": (lambda f: f.drop(columns=["account_id"]), None, "'account_id'"),
    "missing as_of_date": (lambda f: f.drop(columns=["as_of_date"]), None, "'as_of_date'"),
    "missing outcome column": (lambda f: f.drop(columns=[OUTCOME]), None, f"'{OUTCOME}'"),
    "non-numeric signal": (_set("open_tickets", 3, "three"), None, "'open_tickets'"),
    "outcome not 0/1": (_set(OUTCOME, 5, 2), None, f"'{OUTCOME}'"),
    "outcome text": (_set(OUTCOME, 0, "yes"), None, f"'{OUTCOME}'"),
    "outcome empty": (_set(OUTCOME, 0, None), None, f"'{OUTCOME}'"),
    "unknown dimension": (None, {**MAPPING, "nps": {"dimension": "happiness", "direction": 1}}, "'nps'"),
    "bad direction": (None, {**MAPPING, "nps": {"dimension": "relationship", "direction": 0}}, "'nps'"),
    "not a date": (_set("as_of_date", 2, "someday"), None, "'as_of_date'"),
    "unknown segment": (_set("segment", 2, "startup"), None, "'segment'"),
    "duplicate rows": (lambda f: pd.concat([f, f.head(1)]), None, "'account_id'"),
}


# Both commands share the checks, which run before either does anything: every case through backtest,
# the four kinds the issue names through recalibrate as well.
ISSUE_KINDS = ("missing mapped column", "non-numeric signal", "outcome not 0/1", "unknown dimension")


@pytest.mark.parametrize(
    "case,command", [(c, "backtest") for c in BAD_CASES] + [(c, "recalibrate") for c in ISSUE_KINDS]
)
def test_bad_tables_get_one_line_naming_the_column(case, command, tmp_path, capsys) -> None:
    change, mapping, needle = BAD_CASES[case]
    table, mapping_path = _bad(tmp_path, change, mapping)
    code = main(
        [
            command,
            str(table),
            "--mapping",
            str(mapping_path),
            "--outcome",
            OUTCOME,
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_one_class_outcome_cannot_be_recalibrated(tmp_path, capsys) -> None:
    table, mapping = _bad(tmp_path, lambda f: f.assign(**{OUTCOME: 0}))
    assert (
        main(
            [
                "recalibrate",
                str(table),
                "--mapping",
                str(mapping),
                "--outcome",
                OUTCOME,
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and OUTCOME in err
    # Backtest still works: AUC is undefined, said so, not a crash.
    assert (
        main(
            [
                "backtest",
                str(table),
                "--mapping",
                str(mapping),
                "--outcome",
                OUTCOME,
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["overall"]["auc"] is None and "one class" in m["overall"]["auc_note"]


def test_the_installed_command_prints_no_traceback(tmp_path) -> None:
    table, mapping = _bad(tmp_path, _set("payment_ok", 1, "unknown"))
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("healthscore")),
            "backtest",
            str(table),
            "--mapping",
            str(mapping),
            "--outcome",
            OUTCOME,
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "'payment_ok'" in proc.stderr and "not numeric" in proc.stderr


def test_a_signal_missing_from_the_earlier_dates_does_not_break_recalibration(tmp_path, capsys) -> None:
    # A source connected later: "nps" has no value at all before the last date, so the earliest time folds'
    # training parts hold none of it (this raised IndexError from the distribution-curve fallback).
    frame = make_table("usage", accounts=400, dates=4, seed=9, segments=False)
    dates = sorted(frame["as_of_date"].unique())
    frame.loc[frame["as_of_date"] != dates[-1], "nps"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "m.json").write_text(json.dumps(MAPPING))
    out = tmp_path / "out"
    assert main(["recalibrate", str(tmp_path / "t.csv"), "--mapping", str(tmp_path / "m.json"),
                 "--outcome", OUTCOME, "--out", str(out)]) == 0, capsys.readouterr().err
    load_model_config(out / "model.yaml")  # a complete, valid model
    assert json.loads((out / "metrics.json").read_text())["recalibrated"]["held_out"]["overall"]["n"] > 0


def test_a_column_without_any_value_gets_a_placeholder_curve() -> None:
    from healthscore.evaluation.backtest import binary_curve, distribution_curve

    empty = np.array([np.nan, np.nan])
    assert distribution_curve(empty, 1, False) == binary_curve(1)
    assert distribution_curve(empty, -1, False) == binary_curve(-1)
