"""Scoring engine: worked examples from the field, bands, trends, overrides, coverage, methods, gates."""

from __future__ import annotations

import copy
import datetime as dt
import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from healthscore.config import (
    ModelConfig,
    ModelConfigError,
    default_model_text,
    load_model_config,
    model_config_from_dict,
)
from healthscore.scoring import (
    CONTRIBUTION_PREFIX,
    DIM_PREFIX,
    ScoringInputError,
    active_overrides,
    assign_bands,
    breakdown_dicts,
    dimension_scores,
    flatten_dimension_scores,
    normalize_signals,
    output_columns,
    score_accounts,
    time_in_stage_summary,
)

AS_OF = dt.date(2025, 6, 30)
DIMS = ("usage", "engagement", "relationship", "support", "value", "financial")
MATURE = 400  # tenure days: maturity stage, far from any exit gate


# ------------------------------------------------------------------------------------------ helpers


@functools.cache
def default_model() -> ModelConfig:
    return load_model_config()


def _linear_dict(weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Default model with one 0..100 signal ``<dim>_pct`` per dimension whose normalized score is its value."""
    data = yaml.safe_load(default_model_text())
    for dim in DIMS:
        data["dimensions"][dim]["signals"] = {
            f"{dim}_pct": {
                "description": f"{dim} already on a 0-100 scale",
                "unit": "points",
                "kind": "percent",
                "source": "crm",
                "direction": "higher_is_better",
                "floor": 0,
                "cap": 100,
                "baseline": 50,
                "target": 100,
            }
        }
    if weights is not None:
        full = {d: weights.get(d, 0) for d in DIMS}
        data["weights"] = {seg: dict(full) for seg in ("enterprise", "mid_market", "smb")}
    data["signal_weight_overrides"] = {}
    data["scoring"]["points"]["rules"] = [
        {"signal": "usage_pct", "op": "gte", "value": 60, "points": 40},
        {"signal": "engagement_pct", "op": "gte", "value": 60, "points": 30},
        {"signal": "financial_pct", "op": "gte", "value": 50, "points": 30},
        {"signal": "support_pct", "op": "lt", "value": 20, "points": -20},
    ]
    data["scoring"]["rag_rules"]["rules"] = [
        {"signal": "usage_pct", "green_at": 70, "red_at": 40},
        {"signal": "relationship_pct", "green_at": 70, "red_at": 40},
    ]
    return data


def linear_model(weights: dict[str, float] | None = None, **scoring: Any) -> ModelConfig:
    data = _linear_dict(weights)
    data["scoring"].update(scoring)
    return model_config_from_dict(data)


def linear_signals(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Accounts for ``linear_model``: pass dimension values as ``usage=80`` etc. (missing = NaN)."""
    records = []
    for i, row in enumerate(rows):
        rec: dict[str, Any] = {
            "account_id": row.get("account_id", f"acc-{i}"),
            "as_of_date": row.get("as_of_date", AS_OF),
            "segment": row.get("segment", "mid_market"),
            "plan": "pro",
            "tenure_days": row.get("tenure_days", MATURE),
            "arr_cents": row.get("arr_cents", 5_000_000),
            "renewal_date": row.get("renewal_date"),
            "owner_id": "owner-1",
        }
        for dim in DIMS:
            rec[f"{dim}_pct"] = float(row.get(dim, np.nan))
        for key in ("lifecycle_stage", "blocked_dimensions", *(f"confidence_{d}" for d in DIMS)):
            if key in row:
                rec[key] = row[key]
        records.append(rec)
    return pd.DataFrame(records)


def random_signals(model: ModelConfig, n: int, seed: int = 0, missing: float = 0.1) -> pd.DataFrame:
    """A random portfolio for the default model: values across [floor, cap], some missing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "account_id": [f"acc-{i}" for i in range(n)],
            "as_of_date": AS_OF,
            "segment": rng.choice(["enterprise", "mid_market", "smb"], n),
            "plan": "pro",
            "tenure_days": rng.integers(0, 1500, n),
            "arr_cents": rng.integers(100_000, 200_000_000, n),
            "renewal_date": [AS_OF + dt.timedelta(days=int(d)) for d in rng.integers(1, 400, n)],
            "owner_id": "owner-1",
        }
    )
    for sig in model.all_signal_ids():
        spec = model.signal(sig)
        values = rng.uniform(spec.floor, spec.cap, n)
        if spec.kind == "binary":
            values = np.round(values)
        values[rng.random(n) < missing] = np.nan
        frame[sig] = values
    return frame


def history_rows(account_id: str, points: dict[int, float], dims: dict[int, dict[str, float]] | None = None):
    """Archive rows ``days_back -> score`` (with uniform or given dimension scores)."""
    rows = []
    for back, score in points.items():
        rows.append(
            {
                "account_id": account_id,
                "as_of_date": AS_OF - dt.timedelta(days=back),
                "score": score,
                "band": None,
                "dimension_scores": (dims or {}).get(back, dict.fromkeys(DIMS, score)),
                "lifecycle_stage": "maturity",
                "model_version": "v1",
            }
        )
    return rows


def one(frame: pd.DataFrame, account_id: str) -> pd.Series:
    return frame.set_index("account_id").loc[account_id]


# ---------------------------------------------------------------------------- worked examples


def test_field_example_35_25_20_15_5_gives_74_moderate() -> None:
    model = linear_model({"usage": 35, "engagement": 25, "value": 20, "relationship": 15, "financial": 5})
    signals = linear_signals(
        [{"usage": 80, "engagement": 70, "value": 75, "relationship": 60, "financial": 90}]
    )
    out = score_accounts(signals, model, model_version="v1")
    row = out.iloc[0]
    assert row["score"] == 74.0
    assert row["raw_score"] == 74.0
    assert row["band"] == "Moderate"
    assert row["contribution_usage"] == 28.0
    assert pd.isna(row["contribution_support"])
    assert breakdown_dicts(out, CONTRIBUTION_PREFIX)[0] == {
        "usage": 28.0,
        "engagement": 17.5,
        "relationship": 9.0,
        "support": None,
        "value": 15.0,
        "financial": 4.5,
    }
    assert row["confidence"] == 1.0


def test_field_example_default_mid_market_weights_give_the_same_74() -> None:
    # The default mid_market weights are the documented field default (support 0).
    model = linear_model()
    signals = linear_signals(
        [{"usage": 80, "engagement": 70, "value": 75, "relationship": 60, "financial": 90, "support": 10}]
    )
    row = score_accounts(signals, model, model_version="v1").iloc[0]
    assert (row["score"], row["band"]) == (74.0, "Moderate")
    assert row["dim_support"] == 10.0  # shown, weighs nothing for mid_market


def test_field_example_40_25_20_15_gives_73() -> None:
    model = linear_model({"usage": 40, "engagement": 25, "value": 20, "relationship": 15})
    signals = linear_signals([{"usage": 75, "engagement": 80, "value": 70, "relationship": 60}])
    row = score_accounts(signals, model, model_version="v1").iloc[0]
    assert row["score"] == 73.0
    assert row["band"] == "Moderate"
    assert row["confidence"] == 1.0  # support/financial weigh 0, so their absence costs nothing


def test_enterprise_72_is_healthy_smb_72_is_not() -> None:
    model = linear_model()
    flat = dict.fromkeys(DIMS, 72)
    signals = linear_signals(
        [
            {"account_id": "ent", "segment": "enterprise", **flat},
            {"account_id": "smb", "segment": "smb", **flat},
            {"account_id": "mm", "segment": "mid_market", **flat},
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert out["score"].tolist() == [72.0, 72.0, 72.0]
    assert out.loc["ent", "band"] == "Healthy"  # enterprise healthy >= 70
    assert out.loc["smb", "band"] == "Moderate"  # smb healthy >= 80
    assert out.loc["mm", "band"] == "Moderate"  # mid_market healthy >= 75


def _momentum_pair(arr_rising: int, arr_falling: int) -> pd.DataFrame:
    model = linear_model()
    signals = linear_signals(
        [
            {
                "account_id": "rising",
                "segment": "enterprise",
                "arr_cents": arr_rising,
                **dict.fromkeys(DIMS, 70),
            },
            {
                "account_id": "falling",
                "segment": "enterprise",
                "arr_cents": arr_falling,
                "usage": 62,
                "engagement": 82,
                "relationship": 77,
                "support": 72,
                "value": 72,
                "financial": 72,
            },
        ]
    )
    history = pd.DataFrame(
        history_rows("rising", {30: 62.0, 90: 55.0}) + history_rows("falling", {30: 84.0, 90: 90.0})
    )
    return score_accounts(signals, model, history=history, model_version="v1").set_index("account_id")


def test_rising_70_and_falling_72_get_opposite_momentum_and_attention() -> None:
    out = _momentum_pair(arr_rising=4_000_000, arr_falling=50_000_000)  # $40k vs $500k ARR
    rising, falling = out.loc["rising"], out.loc["falling"]
    assert (rising["score"], falling["score"]) == (70.0, 72.0)
    assert (rising["trend_30d"], rising["trend_90d"]) == (8.0, 15.0)
    assert (falling["trend_30d"], falling["trend_90d"]) == (-12.0, -18.0)
    assert np.isnan(rising["trend_365d"]) and np.isnan(falling["trend_365d"])
    assert (rising["momentum"], falling["momentum"]) == ("up", "down")
    # Both are Healthy for enterprise (>= 70), yet the fall of 12 (>= alert 10) flags the second one.
    assert (rising["band"], falling["band"]) == ("Healthy", "Healthy")
    assert rising["value_segment"] == "Emerging Champions"
    assert falling["value_segment"] == "High-Value At-Risk"
    # least squares through (-90, 55), (-30, 62), (0, 70) and (-90, 90), (-30, 84), (0, 72), read at +90
    assert rising["projection_90d"] == 83.1
    assert falling["projection_90d"] == 57.9
    assert rising["projection_90d"] == round(
        float(np.polyval(np.polyfit([-90, -30, 0], [55, 62, 70], 1), 90)), 1
    )
    assert rising["attribution"] == [
        {"dimension": "usage", "delta": 2.4},
        {"dimension": "engagement", "delta": 1.6},
        {"dimension": "relationship", "delta": 1.6},
    ]
    assert falling["attribution"] == [
        {"dimension": "usage", "delta": -6.6},
        {"dimension": "value", "delta": -2.4},
        {"dimension": "relationship", "delta": -1.4},
    ]


def test_momentum_pair_with_arr_swapped() -> None:
    out = _momentum_pair(arr_rising=50_000_000, arr_falling=4_000_000)
    assert out.loc["rising", "value_segment"] == "High-Value Healthy"
    assert out.loc["falling", "value_segment"] == "Low-Value At-Risk"


# ------------------------------------------------------------------------------------ bands


@pytest.mark.parametrize(
    ("segment", "tenure", "score", "renewal_in", "band"),
    [
        ("mid_market", MATURE, 62, None, "Moderate"),
        ("mid_market", MATURE, 62, 30, "At Risk"),  # renewal window: at risk below 65
        ("mid_market", MATURE, 62, 61, "Moderate"),  # 61 days out: outside the 60-day window
        ("mid_market", MATURE, 62, -1, "Moderate"),  # renewal already passed
        ("smb", MATURE, 55, None, "At Risk"),  # smb at risk below 60
        ("smb", 30, 55, None, "Moderate"),  # onboarding: moderate from 40
        ("smb", 30, 62, None, "Healthy"),  # onboarding: healthy from 60
        ("enterprise", 200, 69, None, "Moderate"),  # adoption: healthy from 70
        ("enterprise", MATURE, 20, None, "Critical"),
    ],
)
def test_bands_follow_segment_stage_and_renewal(
    segment: str, tenure: int, score: int, renewal_in: int | None, band: str
) -> None:
    model = linear_model()
    renewal = None if renewal_in is None else AS_OF + dt.timedelta(days=renewal_in)
    signals = linear_signals(
        [{"segment": segment, "tenure_days": tenure, "renewal_date": renewal, **dict.fromkeys(DIMS, score)}]
    )
    row = score_accounts(signals, model, model_version="v1").iloc[0]
    assert row["score"] == score
    assert row["band"] == band
    days = None if renewal_in is None else renewal_in
    stage = model.stage_for(tenure)
    assert model.band_for(score, segment, stage, days) == band


def test_assign_bands_matches_band_for() -> None:
    model = default_model()
    scores = pd.Series([74.5, 74.4, 49.5, 0.0, 100.0, np.nan])
    segments = pd.Series(["mid_market", "mid_market", "smb", "enterprise", "smb", "smb"])
    bands = assign_bands(scores, segments, model, lifecycle_stage=pd.Series(["maturity"] * 6))
    assert bands.iloc[:5].tolist() == [
        model.band_for(s, seg, "maturity") for s, seg in zip(scores[:5], segments[:5], strict=True)
    ]
    assert bands.tolist()[:2] == ["Healthy", "Moderate"]  # 74.5 shows as 75: mid_market healthy from 75
    assert pd.isna(bands.iloc[5])


# ------------------------------------------------------------------ output contract, precision


def test_output_columns_and_types() -> None:
    model = default_model()
    out = score_accounts(random_signals(model, 50), model, model_version="v1")
    assert tuple(out.columns) == output_columns(DIMS)
    assert len(out) == 50
    assert (out["model_version"] == "v1").all()
    assert (out["config_hash"] == model.config_hash).all()
    scored = out["score"].notna()
    assert scored.any()
    values = out.loc[scored, "score"].to_numpy(dtype=float)
    assert np.all((values >= 0) & (values <= 100))
    assert np.array_equal(values, np.round(values, 1))
    raw = out.loc[scored, "raw_score"].to_numpy(dtype=float)
    assert np.all(np.abs(raw - values) <= 0.05 + 1e-9)
    assert out["momentum"].isna().all()  # no history
    assert set(out["lifecycle_stage"]) <= {"onboarding", "adoption", "maturity"}
    for cell, has_score in zip(breakdown_dicts(out, CONTRIBUTION_PREFIX), scored, strict=True):
        assert set(cell) == set(DIMS) if has_score else cell is None
    dims = breakdown_dicts(out, DIM_PREFIX)
    assert [list(cell) for cell in dims] == [list(DIMS)] * len(out)
    assert dims[0]["usage"] == out["dim_usage"].iloc[0]


def test_breakdown_dicts_are_the_flat_columns_and_the_output_reads_back_as_history() -> None:
    model = default_model()
    month_ago = score_accounts(random_signals(model, 60, seed=3, missing=0.3), model, model_version="v1")
    month_ago["as_of_date"] = AS_OF - dt.timedelta(days=30)
    dims = breakdown_dicts(month_ago, DIM_PREFIX)
    contributions = breakdown_dicts(month_ago, CONTRIBUTION_PREFIX)
    for i, (dim_cell, contribution_cell) in enumerate(zip(dims, contributions, strict=True)):
        for d in DIMS:
            flat = month_ago[DIM_PREFIX + d].iloc[i]
            assert dim_cell[d] == (None if pd.isna(flat) else flat)
            if contribution_cell is not None:
                flat = month_ago[CONTRIBUTION_PREFIX + d].iloc[i]
                assert contribution_cell[d] == (None if pd.isna(flat) else flat)
        assert (contribution_cell is None) == pd.isna(month_ago["score"].iloc[i])
    assert any(c is None for c in contributions) and any(c is not None for c in contributions)

    # today's scores see the same past whether the archive arrives flat or as its JSON dicts
    archived = month_ago.drop(
        columns=[c for c in month_ago.columns if c.startswith((DIM_PREFIX, CONTRIBUTION_PREFIX))]
    )
    archived["dimension_scores"] = dims
    today = random_signals(model, 60, seed=4, missing=0.3)
    from_flat = score_accounts(today, model, history=month_ago, model_version="v1")
    from_json = score_accounts(today, model, history=archived, model_version="v1")
    pd.testing.assert_frame_equal(from_flat, from_json)
    assert from_flat["attribution"].notna().sum() > 30
    assert from_flat["trend_30d"].notna().sum() > 30


def test_raw_score_keeps_full_precision_and_score_rounds_half_up() -> None:
    model = linear_model({"usage": 50, "engagement": 50})
    signals = linear_signals([{"usage": 74.25, "engagement": 74.25}, {"usage": 74.75, "engagement": 74.75}])
    out = score_accounts(signals, model, model_version="v1")
    assert out["raw_score"].tolist() == [74.25, 74.75]
    assert out["score"].tolist() == [74.3, 74.8]  # half-up (banker's rounding would give 74.2)
    # The band follows the stored number, which users see as 74 and 75: mid_market is healthy from 75.
    assert out["band"].tolist() == ["Moderate", "Healthy"]
    assert out["band"].tolist() == [model.band_for(s, "mid_market", "maturity") for s in (74.3, 74.8)]


# ------------------------------------------------------------------------------------ overrides


def _overrides(**changes: Any) -> pd.DataFrame:
    base = {
        "id": 7,
        "account_id": "acc-0",
        "override_score": 35.0,
        "override_band": "At Risk",
        "reason": "champion left last week",
        "author": "csm@example.com",
        "created_at": pd.Timestamp("2025-06-01 09:00", tz="UTC"),
        "expires_on": AS_OF + dt.timedelta(days=10),
        "revoked_at": pd.NaT,
    }
    base.update(changes)
    return pd.DataFrame([base])


def _score_with(overrides: pd.DataFrame | None) -> pd.Series:
    model = linear_model()
    signals = linear_signals([dict.fromkeys(DIMS, 80)])
    return score_accounts(signals, model, overrides=overrides, model_version="v1").iloc[0]


def test_active_override_is_shown_beside_the_computed_score() -> None:
    row = _score_with(_overrides())
    assert (row["score"], row["band"]) == (80.0, "Healthy")  # computed values untouched
    assert (row["override_score"], row["override_band"], row["override_id"]) == (35.0, "At Risk", 7)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"expires_on": AS_OF}, id="expires-today"),
        pytest.param({"expires_on": AS_OF - dt.timedelta(days=1)}, id="expired"),
        pytest.param({"revoked_at": pd.Timestamp("2025-06-20 12:00", tz="UTC")}, id="revoked"),
        pytest.param({"revoked_at": pd.Timestamp("2025-07-01 08:00", tz="UTC")}, id="revoked-after-as-of"),
        pytest.param({"account_id": "someone-else"}, id="other-account"),
    ],
)
def test_inactive_override_falls_off(changes: dict[str, Any]) -> None:
    row = _score_with(_overrides(**changes))
    assert (row["score"], row["band"]) == (80.0, "Healthy")
    assert pd.isna(row["override_score"]) and pd.isna(row["override_band"]) and pd.isna(row["override_id"])


def test_override_created_after_the_as_of_date_applies_at_the_next_run() -> None:
    row = _score_with(_overrides(created_at=pd.Timestamp("2025-07-01 08:00", tz="UTC"), expires_on=None))
    assert row["override_id"] == 7 and row["score"] == 80.0


def test_score_only_override_gets_its_band_from_the_account_context() -> None:
    row = _score_with(_overrides(override_band=None, override_score=62.0))
    assert (row["override_score"], row["override_band"]) == (62.0, "Moderate")


def test_band_only_override_and_newest_wins() -> None:
    older = _overrides(id=1, override_score=None, override_band="Critical")
    newer = _overrides(
        id=2, override_score=None, override_band="At Risk", created_at=pd.Timestamp("2025-06-10", tz="UTC")
    )
    row = _score_with(pd.concat([newer, older], ignore_index=True))
    assert row["override_id"] == 2 and row["override_band"] == "At Risk" and pd.isna(row["override_score"])


def test_active_overrides_helper_aligns_with_accounts() -> None:
    accounts = pd.Series(["a", "acc-0", "b"])
    as_of = np.array([AS_OF] * 3, dtype="datetime64[D]")
    out = active_overrides(_overrides(), accounts, as_of)
    assert out["override_id"].tolist() == [pd.NA, 7, pd.NA]


# ------------------------------------------------------------------------ coverage, confidence


def test_too_little_data_is_unscored_with_a_reason_never_nan() -> None:
    model = linear_model()  # mid_market: usage 35, engagement 25, value 20, relationship 15, financial 5
    signals = linear_signals(
        [
            {"account_id": "thin", "usage": 80, "financial": 90},  # 40% of the weight
            {"account_id": "empty"},
            {"account_id": "ok", "usage": 80, "engagement": 70},  # exactly 60%
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert pd.isna(out.loc["thin", "score"]) and pd.isna(out.loc["thin", "band"])
    assert out.loc["thin", "unscored_reason"] == (
        "insufficient data: 40% of the composite weight has data (minimum 60%); "
        "no data for engagement, relationship, value"
    )
    assert out.loc["thin", "confidence"] == 0.4
    assert out.loc["thin", "dim_usage"] == 80.0  # what data there is stays visible
    assert out.loc["thin", [CONTRIBUTION_PREFIX + d for d in DIMS]].isna().all()
    assert out.loc["empty", "confidence"] == 0.0
    assert out.loc["empty", "unscored_reason"].startswith("insufficient data: 0% ")
    # renormalized over usage and engagement: (35*80 + 25*70) / 60
    assert out.loc["ok", "score"] == 75.8
    assert pd.isna(out.loc["ok", "unscored_reason"])
    assert out["score"].isna().tolist() == out["unscored_reason"].notna().tolist()
    assert not np.isnan(out["score"].dropna().to_numpy(dtype=float)).any()


def test_unknown_segment_is_unscored() -> None:
    model = linear_model()
    signals = linear_signals(
        [
            {"account_id": "x", "segment": "startup", **dict.fromkeys(DIMS, 80)},
            {"account_id": "y", "segment": None, **dict.fromkeys(DIMS, 80)},
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert out.loc["x", "unscored_reason"] == "unknown segment 'startup'"
    assert out.loc["y", "unscored_reason"] == "segment missing"
    assert out["score"].isna().all()


def test_blocked_dimension_is_missing_for_the_run() -> None:
    model = linear_model()
    full = dict.fromkeys(DIMS, 80) | {"usage": 20}
    signals = linear_signals(
        [
            {"account_id": "blocked", "blocked_dimensions": ["usage"], **full},
            {"account_id": "blocked-str", "blocked_dimensions": "usage, engagement", **full},
            {"account_id": "clear", "blocked_dimensions": None, **full},
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert out.loc["clear", "score"] == 59.0  # 0.35*20 + 0.65*80
    assert out.loc["blocked", "score"] == 80.0  # usage ignored, weights renormalized
    assert out.loc["blocked", "confidence"] == 0.65
    assert pd.isna(out.loc["blocked", "dim_usage"])
    assert out.loc["blocked-str", "unscored_reason"] == (
        "insufficient data: 40% of the composite weight has data (minimum 60%); "
        "blocked by data quality: usage, engagement"
    )


def test_confidence_combines_coverage_and_carry_forward_multipliers() -> None:
    model = default_model()
    signals = random_signals(model, 3, seed=3, missing=0.0)
    signals["segment"] = "mid_market"
    signals["confidence_usage"] = [1.0, 0.5, np.nan]
    signals.loc[2, "feature_breadth"] = np.nan  # 1 of usage's 5 signal-weight units
    out = score_accounts(signals, model, model_version="v1")
    assert out["confidence"].tolist() == [1.0, round(1 - 0.35 * 0.5, 3), round(1 - 0.35 * 0.2, 3)]
    assert out["score"].notna().all()


def test_confidence_multiplier_out_of_range_is_rejected() -> None:
    signals = linear_signals([{"usage": 80, "confidence_usage": 1.5}])
    with pytest.raises(ScoringInputError, match=r"confidence_usage must be within \[0, 1\]"):
        score_accounts(signals, linear_model(), model_version="v1")


# --------------------------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["weighted_average", "points", "rag_rules", "percentile_rank"])
def test_every_method_scores_a_portfolio_validly(method: str) -> None:
    data = yaml.safe_load(default_model_text())
    data["scoring"]["method"] = method
    data["scoring"]["percentile_rank"]["min_peers"] = 5
    model = model_config_from_dict(data)
    out = score_accounts(random_signals(model, 300, seed=11), model, model_version="v1")
    scored = out["score"].notna()
    assert scored.mean() > 0.8
    values = out.loc[scored, "score"].to_numpy(dtype=float)
    assert np.all((values >= 0) & (values <= 100)) and np.isfinite(values).all()
    assert out.loc[~scored, "unscored_reason"].notna().all()
    assert out.loc[scored, "band"].notna().all()


def test_points_method_exact() -> None:
    model = linear_model(method="points")
    signals = linear_signals(
        [
            {"account_id": "all", "usage": 60, "engagement": 60, "financial": 50, "support": 50, "value": 50},
            {
                "account_id": "penalty",
                "usage": 60,
                "engagement": 10,
                "financial": 50,
                "support": 10,
                "value": 5,
            },
            {"account_id": "partial", "usage": 70, "engagement": 70, "support": 90, "value": 50},
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert out.loc["all", "score"] == 100.0
    assert out.loc["penalty", "score"] == 50.0  # (40 + 30 - 20) / 100
    assert out.loc["partial", "score"] == 100.0  # financial missing: its 30 points leave both sides


def test_rag_method_exact() -> None:
    model = linear_model(method="rag_rules")
    signals = linear_signals(
        [
            {"account_id": "gg", "usage": 70, "relationship": 90, **{d: 60 for d in ("engagement", "value")}},
            {"account_id": "ar", "usage": 50, "relationship": 39, **{d: 60 for d in ("engagement", "value")}},
        ]
    )
    out = score_accounts(signals, model, model_version="v1").set_index("account_id")
    assert out.loc["gg", "score"] == 100.0
    assert out.loc["ar", "score"] == 25.0  # amber 50 and red 0


def test_rag_without_any_rule_signal_is_unscored() -> None:
    model = linear_model(method="rag_rules")
    signals = linear_signals([{"engagement": 60, "value": 60, "financial": 60, "support": 60}])
    # coverage: 25 + 20 + 5 = 50% < 60% -> the coverage reason comes first
    row = score_accounts(signals, model, model_version="v1").iloc[0]
    assert row["unscored_reason"].startswith("insufficient data")
    model = linear_model({"engagement": 50, "value": 50}, method="rag_rules")
    row = score_accounts(signals, model, model_version="v1").iloc[0]
    assert row["unscored_reason"] == "rag_rules: no rule signal has data (relationship_pct, usage_pct)"


def test_percentile_rank_within_segment_with_small_group_fallback() -> None:
    data = _linear_dict()
    data["scoring"]["method"] = "percentile_rank"
    data["scoring"]["percentile_rank"]["min_peers"] = 3
    model = model_config_from_dict(data)
    rows = [
        {"account_id": f"m{v}", "segment": "mid_market", **dict.fromkeys(DIMS, v)} for v in (20, 40, 60, 80)
    ]
    rows.append({"account_id": "s1", "segment": "smb", **dict.fromkeys(DIMS, 90)})
    out = score_accounts(linear_signals(rows), model, model_version="v1").set_index("account_id")
    assert out.loc[["m20", "m40", "m60", "m80"], "score"].tolist() == [12.5, 37.5, 62.5, 87.5]
    assert out.loc["s1", "score"] == 90.0  # one smb peer < min_peers: ranked among all 5 -> (5 - 0.5) / 5


# A stored artifact the injected classifier below takes precedence over (the schema requires one).
PLACEHOLDER_ARTIFACT = {
    "features": ["usage"],
    "members": [{"center": [50.0], "scale": [10.0], "coefficients": [-1.0], "intercept": 0.0,
                 "sigmoid": {"a": -1.0, "b": 0.0}}],
}


def test_model_probability_with_an_injected_classifier() -> None:
    data = yaml.safe_load(default_model_text())
    data["scoring"]["method"] = "model_probability"
    data["scoring"]["model_probability"]["artifact"] = PLACEHOLDER_ARTIFACT
    model = model_config_from_dict(data)
    train = random_signals(model, 400, seed=5, missing=0.0)
    features = normalize_signals(train, model).fillna(50.0)
    noise = np.random.default_rng(1).normal(0, 25, len(features))
    churned = (features["active_user_pct"] + features["latest_nps"] + noise < 90).astype(int)
    clf = LogisticRegression(max_iter=1000).fit(features, churned)

    signals = random_signals(model, 200, seed=6).assign(tenure_days=MATURE)  # no exit gate in play
    out = score_accounts(signals, model, churn_model=clf, model_version="v2")
    scored = out["score"].notna()
    values = out.loc[scored, "score"].to_numpy(dtype=float)
    assert scored.mean() > 0.8 and np.all((values >= 0) & (values <= 100))
    expected = 100 * (1 - clf.predict_proba(normalize_signals(signals, model).fillna(50.0))[:, 1])
    np.testing.assert_allclose(
        out.loc[scored, "raw_score"].to_numpy(dtype=float), expected[scored], atol=1e-9
    )

    plain = LogisticRegression(max_iter=1000).fit(features.to_numpy(), churned)  # no feature names
    again = score_accounts(signals, model, churn_model=plain, model_version="v2")
    np.testing.assert_allclose(
        again["raw_score"].to_numpy(dtype=float, na_value=np.nan),
        out["raw_score"].to_numpy(dtype=float, na_value=np.nan),
        atol=1e-6,
    )


def test_model_probability_without_an_artifact_is_a_config_error() -> None:
    data = yaml.safe_load(default_model_text())
    data["scoring"]["method"] = "model_probability"
    with pytest.raises(ModelConfigError, match="scoring.model_probability.artifact: method 'model_probability' needs"):
        model_config_from_dict(data)


# ------------------------------------------------------------------------- history and journey


def test_trend_uses_nearest_archived_score_within_tolerance() -> None:
    model = linear_model()
    signals = linear_signals(
        [
            {"account_id": "near", **dict.fromkeys(DIMS, 70)},
            {"account_id": "far", **dict.fromkeys(DIMS, 70)},
            {"account_id": "exact", **dict.fromkeys(DIMS, 70)},
        ]
    )
    history = pd.DataFrame(
        history_rows("near", {33: 60.0, 20: 65.0})  # 33 days back is within 3 days of 30
        + history_rows("far", {34: 60.0})  # one day too old
        + history_rows("exact", {30: 50.0, 31: 10.0, 0: 99.0})  # today's own row is ignored
    )
    out = score_accounts(signals, model, history=history, model_version="v1").set_index("account_id")
    assert out.loc["near", "trend_30d"] == 10.0
    assert np.isnan(out.loc["far", "trend_30d"])
    assert out.loc["exact", "trend_30d"] == 20.0
    assert out.loc["near", "momentum"] == "up" and pd.isna(out.loc["far", "momentum"])


def test_history_prefers_the_running_model_version_and_skips_unscored_days() -> None:
    model = linear_model()
    signals = linear_signals([{"account_id": "a", **dict.fromkeys(DIMS, 70)}])
    rows = history_rows("a", {30: 60.0})
    shadow = dict(rows[0], score=10.0, model_version="v2")
    unscored = dict(rows[0], as_of_date=AS_OF - dt.timedelta(days=90), score=None)
    history = pd.DataFrame([shadow, rows[0], unscored])
    row = score_accounts(signals, model, history=history, model_version="v1").iloc[0]
    assert row["trend_30d"] == 10.0
    assert np.isnan(row["trend_90d"])
    row = score_accounts(signals, model, history=history, model_version="v2").iloc[0]
    assert row["trend_30d"] == 60.0


def test_flat_momentum_and_flat_dimension_columns_in_history() -> None:
    model = linear_model()
    signals = linear_signals([{"account_id": "a", **dict.fromkeys(DIMS, 70)}])
    history = flatten_dimension_scores(pd.DataFrame(history_rows("a", {30: 65.0})), DIMS).drop(
        columns="dimension_scores"
    )
    row = score_accounts(signals, model, history=history, model_version="v1").iloc[0]
    assert row["trend_30d"] == 5.0 and row["momentum"] == "flat"  # +5 is within the stable band
    assert row["attribution"][0] == {"dimension": "usage", "delta": 1.8}
    assert np.isnan(row["projection_90d"])  # two points are not a trend


def test_onboarding_exit_gate_holds_low_scores() -> None:
    model = linear_model()
    signals = linear_signals(
        [
            {"account_id": "held", "tenure_days": 100, **dict.fromkeys(DIMS, 45)},
            {"account_id": "graduates", "tenure_days": 100, **dict.fromkeys(DIMS, 80)},
            {"account_id": "released", "tenure_days": 125, **dict.fromkeys(DIMS, 45)},
            {"account_id": "onboarding", "tenure_days": 40, **dict.fromkeys(DIMS, 45)},
            {"account_id": "left-before", "tenure_days": 100, **dict.fromkeys(DIMS, 45)},
        ]
    )
    left = history_rows("left-before", {5: 61.0})
    left[0]["lifecycle_stage"] = "adoption"
    history = pd.DataFrame(left)
    out = score_accounts(signals, model, history=history, model_version="v1").set_index("account_id")
    assert out.loc["held", ["lifecycle_stage", "stage_gate_blocked"]].tolist() == ["onboarding", True]
    assert out.loc["held", "band"] == "Moderate"  # judged by onboarding lines (moderate from 40)
    assert out.loc["held", "days_in_stage"] == 100
    assert out.loc["graduates", ["lifecycle_stage", "stage_gate_blocked"]].tolist() == ["adoption", False]
    assert out.loc["released", ["lifecycle_stage", "stage_gate_blocked"]].tolist() == ["adoption", False]
    assert out.loc["onboarding", ["lifecycle_stage", "stage_gate_blocked"]].tolist() == ["onboarding", False]
    assert out.loc["left-before", ["lifecycle_stage", "stage_gate_blocked"]].tolist() == ["adoption", False]
    assert out.loc["left-before", "band"] == "At Risk"  # adoption: at risk below 50


def test_exit_gate_uses_the_score_under_onboarding_expectations() -> None:
    model = default_model()
    signals = random_signals(model, 400, seed=21, missing=0.0)
    signals["tenure_days"] = 100
    out = score_accounts(signals, model, model_version="v1")
    held = out["stage_gate_blocked"]
    assert held.any() and (~held).any()
    assert (out.loc[held, "lifecycle_stage"] == "onboarding").all()
    assert (out.loc[held, "score"] < 60).all()
    assert (out.loc[~held, "lifecycle_stage"] == "adoption").all()
    onboarding_view = signals.assign(lifecycle_stage="onboarding", tenure_days=np.nan)
    as_onboarding = score_accounts(onboarding_view, model, model_version="v1")
    assert (as_onboarding.loc[~held, "score"] >= 60).all()
    assert out.loc[held, "score"].tolist() == as_onboarding.loc[held, "score"].tolist()


def test_days_in_stage_from_history() -> None:
    model = linear_model()
    signals = linear_signals(
        [
            {"account_id": "moved", "tenure_days": 150, **dict.fromkeys(DIMS, 70)},
            {"account_id": "stayed", "tenure_days": 200, **dict.fromkeys(DIMS, 70)},
            {"account_id": "today", "tenure_days": 95, **dict.fromkeys(DIMS, 70)},
            {"account_id": "new", "tenure_days": 10, **dict.fromkeys(DIMS, 70)},
        ]
    )
    moved = history_rows("moved", {60: 60.0, 40: 62.0, 20: 65.0})
    moved[0]["lifecycle_stage"] = "onboarding"  # entered adoption 40 days ago (gate held it a while)
    for r in moved[1:]:
        r["lifecycle_stage"] = "adoption"
    stayed = history_rows("stayed", {10: 70.0})
    stayed[0]["lifecycle_stage"] = "adoption"
    today = history_rows("today", {1: 65.0})
    today[0]["lifecycle_stage"] = "onboarding"
    history = pd.DataFrame(moved + stayed + today)
    out = score_accounts(signals, model, history=history, model_version="v1").set_index("account_id")
    assert out["lifecycle_stage"].tolist() == ["adoption"] * 3 + ["onboarding"]
    assert out["days_in_stage"].tolist() == [40, 110, 0, 10]


def test_time_in_stage_summary() -> None:
    frame = pd.DataFrame(
        {
            "lifecycle_stage": ["onboarding", "onboarding", "adoption", "adoption"],
            "band": ["Healthy", "Healthy", "At Risk", None],
            "days_in_stage": pd.array([10, 30, 100, None], dtype="Int64"),
            "stage_gate_blocked": [False, True, False, False],
        }
    )
    out = time_in_stage_summary(frame).set_index(["lifecycle_stage", "band"])
    assert out.loc[("onboarding", "Healthy"), ["accounts", "median_days", "gate_blocked"]].tolist() == [
        2,
        20,
        1,
    ]
    assert out.loc[("adoption", "Unscored"), "accounts"] == 1


# ------------------------------------------------------------------------------ frames, errors


def test_normalize_and_dimension_frames_match_the_reference_curve() -> None:
    model = default_model()
    signals = random_signals(model, 60, seed=9)
    norm = normalize_signals(signals, model)
    for i in range(len(signals)):
        stage = model.stage_for(int(signals.loc[i, "tenure_days"]))
        for sig in model.all_signal_ids():
            expected = model.normalization_for(sig, signals.loc[i, "segment"], stage).score(
                signals.loc[i, sig]
            )
            got = norm.loc[i, sig]
            assert (np.isnan(expected) and np.isnan(got)) or got == expected, (i, sig)
    dims = dimension_scores(signals, model)
    assert list(dims.columns) == list(DIMS)
    assert ((dims.stack() >= 0) & (dims.stack() <= 100)).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="usage_pct"), r"lacks columns for config signals \['usage_pct'\]"),
        (lambda f: pd.concat([f, f]), "one row per account"),
        (lambda f: f.assign(blocked_dimensions=[["usgae"]]), r"unknown dimensions \['usgae'\]"),
        (lambda f: f.assign(lifecycle_stage="onboard"), r"unknown lifecycle_stage values \['onboard'\]"),
        (lambda f: f.drop(columns="segment"), r"required columns \['segment'\]"),
    ],
)
def test_contract_violations_fail_loudly(mutate: Any, message: str) -> None:
    signals = mutate(linear_signals([dict.fromkeys(DIMS, 70)]))
    with pytest.raises(ScoringInputError, match=message):
        score_accounts(signals, linear_model(), model_version="v1")


def test_inputs_are_not_mutated_and_index_is_kept() -> None:
    model = default_model()
    signals = random_signals(model, 20).set_index(pd.Index(range(100, 120)))
    before = copy.deepcopy(signals)
    out = score_accounts(signals, model, model_version="v1")
    pd.testing.assert_frame_equal(signals, before)
    assert list(out.index) == list(signals.index)
