"""Properties of the scoring engine that must hold for any input, checked with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthscore.config import Direction, ModelConfig, default_model_text, model_config_from_dict
from healthscore.scoring import assign_bands, normalize_signals, score_accounts
from tests.unit.test_scoring import AS_OF, DIMS, default_model, linear_model, linear_signals

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEGMENTS = ("enterprise", "mid_market", "smb")
STAGES = ("onboarding", "adoption", "maturity")

MODEL = default_model()
SIGNALS = MODEL.all_signal_ids()


def _raw_value(signal_id: str) -> st.SearchStrategy[float]:
    """Anything a source could send: inside and beyond [floor, cap], or missing."""
    spec = MODEL.signal(signal_id)
    span = spec.cap - spec.floor
    return st.one_of(
        st.just(math.nan),
        st.floats(spec.floor - span, spec.cap + span, allow_nan=False),
    )


@st.composite
def accounts(draw: st.DrawFn) -> dict[str, object]:
    row: dict[str, object] = {
        "account_id": "acc",
        "as_of_date": AS_OF,
        "segment": draw(st.sampled_from(SEGMENTS)),
        # An explicit stage and no tenure: no exit gate, so the stage (and its curve) stays fixed.
        "lifecycle_stage": draw(st.sampled_from(STAGES)),
        "tenure_days": math.nan,
        "arr_cents": 10_000_000,
        "renewal_date": None,
    }
    for sig in SIGNALS:
        row[sig] = draw(_raw_value(sig))
    return row


def _with_method(method: str) -> ModelConfig:
    data = yaml.safe_load(default_model_text())
    data["scoring"]["method"] = method
    return model_config_from_dict(data)


ROW_METHOD_MODELS = {m: _with_method(m) for m in ("weighted_average", "points", "rag_rules")}


def _score(row: dict[str, object], model: ModelConfig = MODEL) -> pd.Series:
    return score_accounts(pd.DataFrame([row]), model, model_version="v1").iloc[0]


@PROPERTY_SETTINGS
@given(accounts())
def test_score_is_within_0_100_or_unscored_with_reason(row: dict[str, object]) -> None:
    out = _score(row)
    if pd.isna(out["score"]):
        assert isinstance(out["unscored_reason"], str) and out["unscored_reason"]
        assert pd.isna(out["band"])
    else:
        assert 0.0 <= out["score"] <= 100.0 and not math.isnan(out["score"])
        assert 0.0 <= out["raw_score"] <= 100.0
        assert pd.isna(out["unscored_reason"])
        assert out["band"] == MODEL.band_for(out["score"], row["segment"], row["lifecycle_stage"])
    assert 0.0 <= out["confidence"] <= 1.0


@pytest.mark.parametrize("method", list(ROW_METHOD_MODELS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accounts(), st.sampled_from(SIGNALS), st.floats(0, 1e6, allow_nan=False), st.data())
def test_score_is_monotone_in_each_signal_direction(
    method: str, row: dict[str, object], signal_id: str, step: float, data: st.DataObject
) -> None:
    model = ROW_METHOD_MODELS[method]
    spec = MODEL.signal(signal_id)
    if math.isnan(row[signal_id]):  # type: ignore[arg-type]
        row[signal_id] = data.draw(st.floats(spec.floor, spec.cap, allow_nan=False))
    better = dict(row)
    delta = step if spec.direction is Direction.HIGHER_IS_BETTER else -step
    better[signal_id] = row[signal_id] + delta  # type: ignore[operator]
    before, after = _score(row, model), _score(better, model)
    assert pd.isna(before["score"]) == pd.isna(after["score"])  # presence, not value, decides coverage
    if not pd.isna(before["score"]):
        assert after["raw_score"] >= before["raw_score"] - 1e-9
        assert after["score"] >= before["score"]


@st.composite
def partial_dimensions(draw: st.DrawFn) -> tuple[dict[str, float], dict[str, float]]:
    """Dimension weights (percent, sum 100) and dimension scores with some dimensions missing."""
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=len(DIMS) - 1, max_size=len(DIMS) - 1)))
    bounds = [0, *cuts, 100]
    weights = {d: float(bounds[i + 1] - bounds[i]) for i, d in enumerate(DIMS)}
    values = {
        d: draw(st.one_of(st.just(math.nan), st.floats(0, 100, allow_nan=False, allow_subnormal=False)))
        for d in DIMS
    }
    return weights, values


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(partial_dimensions(), st.sampled_from(SEGMENTS))
def test_missing_dimensions_renormalize_to_the_weighted_mean_of_present_ones(
    case: tuple[dict[str, float], dict[str, float]], segment: str
) -> None:
    weights, values = case
    model = linear_model(weights)
    present = {d: v for d, v in values.items() if not math.isnan(v) and weights[d] > 0}
    coverage = sum(weights[d] for d in present) / 100
    out = score_accounts(linear_signals([{"segment": segment, **values}]), model, model_version="v1").iloc[0]
    assert out["confidence"] == round(coverage, 3)
    if coverage < model.scoring.weighted_average.min_weight_coverage - 1e-9:
        assert pd.isna(out["score"]) and out["unscored_reason"].startswith("insufficient data")
        return
    expected = sum(weights[d] * v for d, v in present.items()) / sum(weights[d] for d in present)
    assert out["raw_score"] == pytest.approx(expected, rel=1e-12, abs=1e-9)
    for d in DIMS:
        contribution = out[f"contribution_{d}"]
        if d in present:
            assert contribution == round_half_up(weights[d] * present[d] / (coverage * 100))
        elif math.isnan(values[d]):
            assert pd.isna(contribution)


def round_half_up(value: float) -> float:
    return math.floor(value * 10 + 0.5) / 10


@settings(max_examples=60, deadline=None)
@given(st.lists(accounts(), min_size=1, max_size=20))
def test_vectorized_normalization_equals_the_reference_curve(rows: list[dict[str, object]]) -> None:
    frame = pd.DataFrame(rows).assign(account_id=[f"a{i}" for i in range(len(rows))])
    got = normalize_signals(frame, MODEL)
    for i, row in enumerate(rows):
        for sig in SIGNALS:
            ref = MODEL.normalization_for(sig, row["segment"], row["lifecycle_stage"]).score(row[sig])
            value = got.iloc[i][sig]
            assert (math.isnan(ref) and math.isnan(value)) or value == ref


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 100, allow_nan=False),
            st.sampled_from((*SEGMENTS, None)),
            st.sampled_from((*STAGES, None)),
            st.one_of(st.none(), st.integers(-30, 400)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_vectorized_bands_equal_band_for(
    cases: list[tuple[float, str | None, str | None, int | None]],
) -> None:
    scores, segments, stages, days = zip(*cases, strict=True)
    got = assign_bands(
        pd.Series(scores),
        pd.Series(segments, dtype=object),
        MODEL,
        lifecycle_stage=pd.Series(stages, dtype=object),
        days_to_renewal=pd.Series([np.nan if d is None else d for d in days]),
    )
    expected = [MODEL.band_for(*case) for case in cases]
    assert got.tolist() == expected
