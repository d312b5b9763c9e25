"""``model_probability``: fit a calibrated classifier, store it in the model YAML, score with it.

Small frames on ``linear_model`` (one 0..100 signal per dimension, so a dimension score is its signal's
value): fit -> YAML text -> loaded model, whose scores must be scikit-learn's ``predict_proba`` of the
same fit; the breakdown must explain the score; a bad artifact must be a one-line config error.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.calibration import CalibratedClassifierCV

from healthscore.config import (
    ModelConfig,
    ModelConfigError,
    model_config_from_dict,
    validate_model_config_text,
)
from healthscore.evaluation.probability import (
    ProbabilityFitError,
    _pipeline,
    fit_probability_model,
    probability_features,
    time_splits,
    with_probability_model,
)
from healthscore.scoring import CONTRIBUTION_PREFIX, DIM_PREFIX, score_accounts
from healthscore.scoring.compiled import compile_model
from healthscore.scoring.probability import ArtifactClassifier, probability_scorer
from tests.unit.test_scoring import DIMS, _linear_dict, history_rows, linear_signals

START = dt.date(2025, 1, 31)


@functools.cache
def base_model() -> ModelConfig:
    return model_config_from_dict(_linear_dict())


@functools.cache
def training() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(signals, frame): 150 accounts x 6 month ends; churn driven by usage and support, plus noise."""
    rng = np.random.default_rng(3)
    rows = []
    for month in range(6):
        for i in range(150):
            values = {d: float(rng.uniform(0, 100)) for d in DIMS}
            if rng.random() < 0.05:
                values["value"] = np.nan  # gaps are read as 50, as the daily scoring reads them
            rows.append({"account_id": f"a{i}", "as_of_date": START + dt.timedelta(days=30 * month), **values})
    signals = linear_signals(rows)
    features = probability_features(signals, base_model())
    logit = -1.5 + 0.05 * (50 - features["usage"]) + 0.04 * (50 - features["support"])
    churned = (rng.random(len(features)) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = features.assign(churned=churned, as_of_date=signals["as_of_date"], account_id=signals["account_id"])
    return signals, frame


def _sklearn_reference(frame: pd.DataFrame, artifact, calibration: str) -> CalibratedClassifierCV:
    """The same estimator fitted by scikit-learn directly, with the splits and strength the fit chose."""
    X = frame[list(DIMS)].fillna(50.0).to_numpy()  # noqa: N806
    y = frame["churned"].to_numpy()
    splits = time_splits(pd.to_datetime(frame["as_of_date"]).to_numpy(), frame["account_id"].to_numpy())
    est = _pipeline(artifact.fit["strength_C"])
    return CalibratedClassifierCV(est, method=calibration, cv=splits, ensemble=True).fit(X, y)


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_fit_yaml_round_trip_scores_like_sklearn(calibration: str) -> None:
    signals, frame = training()
    artifact = fit_probability_model(frame, "churned", list(DIMS), calibration=calibration)
    assert len(artifact.members) == 3 and artifact.fit["cv_auc"] > 0.7
    model = with_probability_model(base_model(), artifact, version="v2-prob")
    text = yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
    loaded = validate_model_config_text(text, "model.yaml")  # what `healthscore config validate` runs
    assert loaded.config_hash == model.config_hash
    assert loaded.scoring.method.value == "model_probability"

    reference = _sklearn_reference(frame, artifact, calibration)
    X = frame[list(DIMS)].fillna(50.0).to_numpy()  # noqa: N806
    stored = ArtifactClassifier(loaded.scoring.model_probability.artifact)
    np.testing.assert_allclose(stored.predict_proba(X), reference.predict_proba(X), rtol=0, atol=1e-12)

    day = signals[signals["as_of_date"] == START + dt.timedelta(days=150)]
    out = score_accounts(day, loaded, model_version="v2-prob")
    scored = out["score"].notna().to_numpy()
    assert scored.all()
    expected = 100 * reference.predict_proba(frame.loc[day.index, list(DIMS)].fillna(50.0).to_numpy())[:, 0]
    np.testing.assert_allclose(out["raw_score"].to_numpy(dtype=float), expected, rtol=0, atol=1e-9)
    # Bands are the model's bands over the probability score (100 x P(retained)).
    bands = [loaded.band_for(v, "mid_market", "maturity") for v in out["score"].to_numpy(dtype=float)]
    assert out["band"].astype(str).tolist() == bands
    assert {"Healthy", "Critical"} <= set(bands)
    # The glass-box dimension scores stay; contributions explain score - base in points, per dimension.
    np.testing.assert_allclose(out[DIM_PREFIX + "usage"].to_numpy(dtype=float), day["usage_pct"], atol=0.05)
    base = probability_scorer(compile_model(loaded)).base_score
    points = out[[CONTRIBUTION_PREFIX + d for d in DIMS]].to_numpy(dtype=float)
    np.testing.assert_allclose(points.sum(axis=1) + base, out["raw_score"].to_numpy(dtype=float), atol=0.05 * len(DIMS))
    # Usage and support drive churn: they carry most of the explanation, in the right direction.
    share = np.abs(points).sum(axis=0) / np.abs(points).sum()
    assert share[DIMS.index("usage")] + share[DIMS.index("support")] > 0.6
    low_usage = day["usage_pct"].to_numpy() < 20
    assert (points[low_usage, DIMS.index("usage")] <= 0).all()  # an isotonic step can be flat
    assert points[low_usage, DIMS.index("usage")].mean() < -5


def test_attribution_explains_the_probability_score_change() -> None:
    model = with_probability_model(base_model(), sigmoid_artifact(), version="v2-prob")
    today = linear_signals([{"account_id": "x", **dict.fromkeys(DIMS, 60.0), "usage": 10.0}])
    then = linear_signals([{"account_id": "x", **dict.fromkeys(DIMS, 60.0), "usage": 80.0}])
    past = score_accounts(then, model, model_version="v1").iloc[0]  # history_rows' version
    history = pd.DataFrame(
        history_rows("x", {30: float(past["score"])}, {30: {d: float(past[DIM_PREFIX + d]) for d in DIMS}})
    )
    row = score_accounts(today, model, history=history, model_version="v1").iloc[0]
    assert row["trend_30d"] < -5
    top = row["attribution"][0]
    assert top["dimension"] == "usage"
    # The secant slopes differ between the two days, so the other dimensions' points move a little too.
    assert top["delta"] < 0 and abs(top["delta"]) > 0.8 * abs(row["trend_30d"])


@functools.cache
def sigmoid_artifact():
    return fit_probability_model(training()[1], "churned", list(DIMS))


def _with_artifact(edit) -> dict:
    artifact = sigmoid_artifact().model_dump(mode="json")
    edit(artifact)
    data = base_model().model_dump(mode="json")
    data["scoring"]["method"] = "model_probability"
    data["scoring"]["model_probability"]["artifact"] = artifact
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a["features"].__setitem__(0, "usag"), r"artifact\.features\[0\]: unknown feature 'usag'.*did you mean 'usage'"),
        (lambda a: a["members"][1]["coefficients"].pop(), r"artifact\.members\[1\]\.coefficients: has 5 values but there are 6 features"),
        (lambda a: a["members"][0]["scale"].__setitem__(2, 0.0), r"artifact\.members\[0\]\.scale\[2\]: .*greater than 0"),
        (lambda a: a["members"][0].update(isotonic={"x": [0.0, 1.0], "y": [0.2, 0.5]}), r"members\[0\]\.sigmoid: give exactly one calibrator"),
        (lambda a: a["members"][0].pop("sigmoid") and a["members"][0].update(isotonic={"x": [0.0, 1.0], "y": [0.5, 0.2]}), r"members\[0\]\.isotonic\.y: must be non-decreasing"),
        (lambda a: a["members"][0].update(intercept=float("nan")), r"members\[0\]\.intercept: Input should be a finite number"),
        (lambda a: a.update(fit_with="pickle"), r"artifact\.fit_with: unknown key"),
    ],
)
def test_a_bad_artifact_is_a_config_error_naming_the_key(edit, message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        model_config_from_dict(_with_artifact(edit), "model.yaml")


def test_fit_refuses_unusable_frames() -> None:
    frame = training()[1]
    with pytest.raises(ProbabilityFitError, match="no column 'churn'"):
        fit_probability_model(frame, "churn", list(DIMS))
    with pytest.raises(ProbabilityFitError, match="must hold 0/1"):
        fit_probability_model(frame.assign(churned=frame["churned"] * 2), "churned", list(DIMS))
    one_day = frame[frame["as_of_date"] == START]
    with pytest.raises(ProbabilityFitError, match="1 distinct dates"):
        fit_probability_model(one_day, "churned", list(DIMS), account_column=None)
    by_account = fit_probability_model(one_day, "churned", list(DIMS))  # too few dates: by account only
    assert by_account.fit["cv"].startswith("3 splits grouped by account")
    with pytest.raises(ModelConfigError, match="unknown feature 'churned'"):
        with_probability_model(base_model(), fit_probability_model(frame, "churned", [*DIMS[:2], "churned"]))


def test_a_model_without_an_artifact_dumps_and_hashes_as_before() -> None:
    data = base_model().model_dump(mode="json")
    assert data["scoring"]["model_probability"] == {"predicts": "churn"}  # no artifact: null key
    assert model_config_from_dict(data).config_hash == base_model().config_hash
