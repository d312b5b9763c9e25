"""Model-as-code: the packaged default, its hash, its lookups, and the errors bad configs produce."""

from __future__ import annotations

import copy
import functools
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from healthscore.config import (
    ModelConfig,
    ModelConfigError,
    default_model_text,
    load_model_config,
    model_config_from_dict,
    validate_model_config_text,
)

EXPECTED_SIGNALS = {
    "usage": ["active_user_pct", "logins_per_user_week", "feature_breadth", "usage_trend_mom"],
    "engagement": ["csm_touchpoints_qtr", "qbr_attended", "training_sessions_qtr"],
    "relationship": [
        "latest_nps",
        "csat_3m",
        "executive_sponsor",
        "active_champion",
        "contacts_engaged",
        "departments_engaged",
    ],
    "support": ["open_tickets", "p1_tickets_90d", "resolution_time_trend", "complaint_ratio"],
    "value": ["expansion_12m", "arr", "contract_coverage"],
    "financial": ["days_past_due", "payment_status_ok"],
}


@functools.cache
def _default_model() -> ModelConfig:
    return load_model_config()


@pytest.fixture(scope="module")
def model() -> ModelConfig:
    return _default_model()


@pytest.fixture
def default_dict() -> dict[str, Any]:
    return yaml.safe_load(default_model_text())


def _write(tmp_path: Path, data: dict[str, Any], name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ the default


def test_default_loads_with_version_and_hex_hash(model: ModelConfig) -> None:
    assert model.version == "v1"
    assert re.fullmatch(r"[0-9a-f]{64}", model.config_hash)
    assert load_model_config().config_hash == model.config_hash


def test_default_signal_catalogue(model: ModelConfig) -> None:
    assert list(model.dimensions) == list(EXPECTED_SIGNALS)
    for dim_id, signal_ids in EXPECTED_SIGNALS.items():
        assert list(model.dimensions[dim_id].signals) == signal_ids
    assert model.all_signal_ids() == tuple(s for ids in EXPECTED_SIGNALS.values() for s in ids)
    for signal_id in model.all_signal_ids():
        spec = model.signal(signal_id)
        assert spec.unit.strip() and spec.description.strip(), signal_id
    assert model.dimension_of("open_tickets") == "support"
    assert model.signal("open_tickets").direction == "lower_is_better"
    with pytest.raises(
        KeyError, match="unknown signal 'logins_per_week'; did you mean 'logins_per_user_week'"
    ):
        model.signal("logins_per_week")


def test_default_weights_sum_to_100_and_keep_field_default(model: ModelConfig) -> None:
    for segment in ("enterprise", "mid_market", "smb"):
        weights = model.weights_for(segment)
        assert set(weights) == set(EXPECTED_SIGNALS)
        assert sum(weights.values()) == pytest.approx(100)
    assert model.weights_for("mid_market") == {
        "usage": 35,
        "engagement": 25,
        "value": 20,
        "relationship": 15,
        "support": 0,
        "financial": 5,
    }
    assert model.weights_for("smb")["support"] > 0
    assert model.weights_for("enterprise")["support"] > 0
    with pytest.raises(ValueError, match="unknown segment 'startup'"):
        model.weights_for("startup")


def test_signal_weight_overrides_apply_per_segment(model: ModelConfig) -> None:
    assert model.signal_weights_for("smb", "engagement")["qbr_attended"] == 0
    assert model.signal_weights_for("mid_market", "engagement")["qbr_attended"] == 1
    assert model.signal_weights_for("enterprise", "relationship")["executive_sponsor"] == 2


def test_scoring_method_defaults(model: ModelConfig) -> None:
    assert model.scoring.method == "weighted_average"
    assert {r.signal for r in model.scoring.points.rules} <= set(model.all_signal_ids())


# ----------------------------------------------------------------------------------------- hash


def test_hash_ignores_comments_whitespace_and_key_order(
    model: ModelConfig, default_dict: dict[str, Any], tmp_path: Path
) -> None:
    reordered = yaml.safe_dump(
        _reverse_keys(default_dict), sort_keys=False, default_flow_style=True, width=60
    )
    assert reordered.splitlines()[0] != default_model_text().splitlines()[0]
    assert validate_model_config_text(reordered, "reordered").config_hash == model.config_hash

    sorted_path = tmp_path / "sorted.yaml"
    sorted_path.write_text("# a comment\n\n" + yaml.safe_dump(default_dict, sort_keys=True, indent=4))
    assert load_model_config(sorted_path).config_hash == model.config_hash

    shuffled = copy.deepcopy(default_dict)
    shuffled["bands"].reverse()  # band list order is normalized, too
    assert model_config_from_dict(shuffled).config_hash == model.config_hash


def test_hash_changes_when_a_weight_changes(model: ModelConfig, default_dict: dict[str, Any]) -> None:
    default_dict["weights"]["smb"]["usage"] -= 5
    default_dict["weights"]["smb"]["financial"] += 5
    changed = model_config_from_dict(default_dict)
    assert changed.config_hash != model.config_hash
    assert changed.weights_for("smb")["usage"] == 35


def test_hash_changes_when_a_threshold_changes(model: ModelConfig, default_dict: dict[str, Any]) -> None:
    default_dict["segment_thresholds"]["smb"]["healthy_at_or_above"] = 81
    assert model_config_from_dict(default_dict).config_hash != model.config_hash


def test_lookups_do_not_leak_into_the_hash(default_dict: dict[str, Any]) -> None:
    fresh = model_config_from_dict(default_dict)
    before = fresh.canonical_json()
    fresh.all_signal_ids()
    fresh.band_for(50, "smb", "onboarding")
    assert fresh.canonical_json() == before


def test_model_is_immutable(model: ModelConfig) -> None:
    with pytest.raises(ValueError, match="frozen"):
        model.version = "v2"  # type: ignore[misc]


# --------------------------------------------------------------------------------- bands/thresholds


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (100, "Healthy"),
        (75, "Healthy"),
        (74, "Moderate"),
        (50, "Moderate"),
        (49, "At Risk"),
        (25, "At Risk"),
        (24, "Critical"),
        (0, "Critical"),
        (74.5, "Healthy"),  # rounded half-up: the band matches the displayed 75
        (74.49, "Moderate"),
    ],
)
def test_band_for(model: ModelConfig, score: float, band: str) -> None:
    assert model.band_for(score) == band


@pytest.mark.parametrize("score", [-0.6, 100.5, float("nan")])
def test_band_for_rejects_out_of_range(model: ModelConfig, score: float) -> None:
    with pytest.raises(ValueError, match="score must be within 0..100"):
        model.band_for(score)


@given(st.integers(min_value=0, max_value=100))
def test_every_integer_score_is_in_exactly_one_band(score: int) -> None:
    model = _default_model()
    matching = [b.name for b in model.bands if b.min <= score <= b.max]
    assert matching == [model.band_for(score)]


def test_segment_thresholds_enterprise_vs_smb(model: ModelConfig) -> None:
    ent, smb = model.thresholds_for("enterprise"), model.thresholds_for("smb")
    assert (ent.healthy_at_or_above, ent.at_risk_below) == (70, 50)
    assert (smb.healthy_at_or_above, smb.at_risk_below) == (80, 60)
    mid = model.thresholds_for("mid_market")
    assert 70 < mid.healthy_at_or_above < 80 and 50 < mid.at_risk_below < 60
    # the same score reads differently per segment
    assert model.band_for(72, segment="enterprise") == "Healthy"
    assert model.band_for(72, segment="smb") == "Moderate"
    assert model.band_for(55, segment="enterprise") == "Moderate"
    assert model.band_for(55, segment="smb") == "At Risk"
    assert model.band_for(20, segment="enterprise") == "Critical"


def test_lifecycle_and_renewal_thresholds(model: ModelConfig) -> None:
    onboarding = model.thresholds_for("smb", "onboarding")
    assert (onboarding.healthy_at_or_above, onboarding.at_risk_below) == (60, 40)
    assert model.thresholds_for("smb", "maturity") == model.thresholds_for("smb")
    assert model.thresholds_for(stage="adoption").at_risk_below == 50
    in_window = model.thresholds_for("enterprise", "maturity", days_to_renewal=30)
    assert (in_window.healthy_at_or_above, in_window.at_risk_below) == (70, 65)
    assert model.thresholds_for("enterprise", "maturity", days_to_renewal=61).at_risk_below == 50
    assert model.band_for(62, "enterprise", "maturity", days_to_renewal=10) == "At Risk"
    assert model.band_for(62, "enterprise", "maturity") == "Moderate"
    assert [model.stage_for(d) for d in (0, 89, 90, 364, 365, 4000)] == [
        "onboarding",
        "onboarding",
        "adoption",
        "adoption",
        "maturity",
        "maturity",
    ]
    gate = model.lifecycle.stages[0].exit_gate
    assert gate is not None and gate.min_score == 60
    with pytest.raises(ValueError, match="unknown lifecycle stage 'onboard'"):
        model.thresholds_for("smb", "onboard")


def test_momentum_and_playbooks(model: ModelConfig) -> None:
    m = model.momentum
    assert (m.window_days, m.stable_band_points, m.alert_drop_points, m.rapid_decline_points) == (
        30,
        5,
        10,
        15,
    )
    rules = model.playbooks.rules
    assert set(rules) == {
        "save_plan",
        "executive_escalation",
        "rapid_decline",
        "engagement_sequence",
        "expansion_opportunity",
        "renewal_prep",
        "advocacy",
    }
    assert rules["save_plan"].trigger.type == "band_entered" and rules["save_plan"].sla_hours == 48
    assert "expansion_opportunity" in rules["save_plan"].suppresses
    assert rules["engagement_sequence"].trigger.model_dump() == {
        "type": "band_transition",
        "from_band": "Healthy",
        "to_band": "Moderate",
    }
    assert model.hysteresis_for("save_plan") == model.playbooks.defaults.hysteresis
    assert model.hysteresis_for("executive_escalation").persistence_days == 0
    assert model.hysteresis_for("executive_escalation").margin_points == 2
    assert model.playbooks.csm_daily_task_budget > 0
    assert (model.playbooks.lookback_days, model.momentum.history_days) == (120, 400)
    assert (model.carry_forward.decay_per_day, model.carry_forward.max_days) == (0.9, 30)


def test_normalization_per_plan_and_stage(model: ModelConfig) -> None:
    smb = model.normalization_for("logins_per_user_week", "smb")
    ent = model.normalization_for("logins_per_user_week", "enterprise")
    assert smb.score(5) == 100 and ent.score(5) < 60
    assert ent.score(ent.baseline) == 50 and ent.score(0) == 0 and ent.score(1000) == 100
    onboarding = model.normalization_for("logins_per_user_week", "enterprise", "onboarding")
    assert onboarding.baseline == pytest.approx(4 * 0.7)
    tickets = model.normalization_for("open_tickets", "mid_market")
    assert (tickets.score(0), tickets.score(3), tickets.score(30), tickets.score(99)) == (100, 50, 0, 0)


@given(
    st.sampled_from(sorted(sum(EXPECTED_SIGNALS.values(), []))), st.floats(-1e7, 1e7), st.floats(-1e7, 1e7)
)
def test_normalized_scores_are_bounded_and_monotone(signal_id: str, a: float, b: float) -> None:
    norm = _default_model().normalization_for(signal_id, "mid_market")
    low, high = sorted((a, b))
    s_low, s_high = norm.score(low), norm.score(high)
    assert 0 <= s_low <= 100 and 0 <= s_high <= 100
    if norm.direction == "higher_is_better":
        assert s_low <= s_high + 1e-9
    else:
        assert s_low >= s_high - 1e-9


# ------------------------------------------------------------------------------------- bad configs


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value

    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]

    return edit


BAD_CONFIGS = [
    pytest.param(
        _set("weights/smb/usage", 35),
        "weights.smb",
        "weights sum to 95.0, must sum to 100",
        id="weights-not-100",
    ),
    pytest.param(
        _set("signal_weight_overrides/smb/logins_per_week", 0.5),
        "signal_weight_overrides.smb.logins_per_week",
        "unknown signal 'logins_per_week'; did you mean 'logins_per_user_week'?",
        id="unknown-signal-in-weight-override",
    ),
    pytest.param(
        _set("scoring/points/rules/0/signal", "active_users"),
        "scoring.points.rules[0].signal",
        "unknown signal 'active_users'",
        id="unknown-signal-in-points-rule",
    ),
    pytest.param(
        _set("scoring/rag_rules/rules/1/signal", "nps"),
        "scoring.rag_rules.rules[1].signal",
        "unknown signal 'nps'",
        id="unknown-signal-in-rag-rule",
    ),
    pytest.param(
        _set("bands/1/max", 76),
        "bands[0].min",
        "band 'Healthy' (75-100) overlaps band 'Moderate' (50-76) on 75-76",
        id="overlapping-bands",
    ),
    pytest.param(
        _set("bands/1/max", 70),
        "bands[0].min",
        "gap: no band covers 71-74",
        id="gapped-bands",
    ),
    pytest.param(
        _set("bands/0/max", 99),
        "bands[0].max",
        "gap: no band covers 100-100",
        id="band-gap-at-the-top",
    ),
    pytest.param(
        _set("dimensions/usage/signals/logins_per_user_week/cap", -5),
        "dimensions.usage.signals.logins_per_user_week.cap",
        "cap -5 is negative; a rate signal can't be negative",
        id="negative-cap",
    ),
    pytest.param(
        _set("dimensions/usage/signals/feature_breadth/cap", 65),
        "dimensions.usage.signals.feature_breadth.by_segment.enterprise.target",
        "target 70 is above cap 65, so 100 could never be reached",
        id="target-above-cap",
    ),
    pytest.param(
        _set("dimensions/support/signals/open_tickets/by_stage/onboarding", 5),
        "dimensions.support.signals.open_tickets.by_stage.onboarding",
        "factor 5 with enterprise baselines: baseline 40 is above cap 30",
        id="stage-factor-pushes-past-cap",
    ),
    pytest.param(
        _set("dimensions/usage/signals/feature_breadth/by_stage/onboardng", 0.5),
        "dimensions.usage.signals.feature_breadth.by_stage.onboardng",
        "unknown lifecycle stage 'onboardng'; did you mean 'onboarding'?",
        id="unknown-stage",
    ),
    pytest.param(
        _set("colour", "green"),
        "colour",
        "unknown top-level key; allowed: version, description, dimensions",
        id="unknown-top-level-key",
    ),
    pytest.param(
        _set("momentum/stable_band", 5),
        "momentum.stable_band",
        "unknown key",
        id="unknown-nested-key",
    ),
    pytest.param(_delete("version"), "version", "required key is missing", id="missing-key"),
    pytest.param(
        _set("segment_thresholds/smb/at_risk_below", 85),
        "segment_thresholds.smb.at_risk_below",
        "at_risk_below 85 is above healthy_at_or_above 80",
        id="thresholds-inverted",
    ),
    pytest.param(
        _set("playbooks/rules/save_plan/trigger/band", "At-Risk"),
        "playbooks.rules.save_plan.trigger.band",
        "unknown band 'At-Risk'; did you mean 'At Risk'?",
        id="unknown-band-in-trigger",
    ),
    pytest.param(
        _set("playbooks/rules/save_plan/trigger", {"type": "score_drop", "points": 15}),
        "playbooks.rules.save_plan.trigger.within_days",
        "required key is missing",
        id="trigger-missing-field",
    ),
    pytest.param(
        _set("playbooks/rules/save_plan/trigger", {"type": "band_left", "band": "Healthy"}),
        "playbooks.rules.save_plan.trigger.type",
        "Input tag 'band_left' found using 'type' does not match",
        id="unknown-trigger-type",
    ),
    pytest.param(
        _set("scoring/method", "neural_net"),
        "scoring.method",
        "(got 'neural_net')",
        id="unknown-scoring-method",
    ),
    pytest.param(
        _set("momentum/alert_drop_points", 4),
        "momentum.alert_drop_points",
        "alert_drop_points must exceed stable_band_points",
        id="momentum-order",
    ),
    pytest.param(
        _set("lifecycle/stages/1/start_day", 100),
        "lifecycle.stages[1].start_day",
        "start_day 100 must be 90 (stages are contiguous)",
        id="stage-gap",
    ),
    pytest.param(
        _set("playbooks/rules/rapid_decline/trigger/points", 12),
        "playbooks.rules.rapid_decline.trigger.points",
        "playbooks.rules.rapid_decline.trigger.points 12 disagrees with momentum.rapid_decline_points 15",
        id="rapid-decline-playbook-vs-momentum",
    ),
    pytest.param(
        _set("momentum/rapid_decline_points", 20),
        "playbooks.rules.rapid_decline.trigger.points",
        "playbooks.rules.rapid_decline.trigger.points 15 disagrees with momentum.rapid_decline_points 20",
        id="momentum-vs-rapid-decline-playbook",
    ),
    pytest.param(
        _set("playbooks/rules/renewal_prep/trigger/days_before_renewal", 45),
        "playbooks.rules.renewal_prep.trigger.days_before_renewal",
        "playbooks.rules.renewal_prep.trigger.days_before_renewal 45 disagrees with "
        "lifecycle.renewal_window.days_before_renewal 60",
        id="renewal-playbook-vs-renewal-window",
    ),
    pytest.param(
        _set("lifecycle/renewal_window/days_before_renewal", 90),
        "playbooks.rules.renewal_prep.trigger.days_before_renewal",
        "playbooks.rules.renewal_prep.trigger.days_before_renewal 60 disagrees with "
        "lifecycle.renewal_window.days_before_renewal 90",
        id="renewal-window-vs-renewal-playbook",
    ),
    pytest.param(
        _set("momentum/history_days", 300),
        "momentum.history_days",
        "momentum.history_days 300 is shorter than the longest trend window: momentum.trend_windows_days "
        "reaches 365 days back, plus momentum.lookup_tolerance_days 3 = 368",
        id="history-shorter-than-trend-window",
    ),
    pytest.param(
        _set("momentum/trend_windows_days", [30, 90, 400]),
        "momentum.history_days",
        "momentum.history_days 400 is shorter than the longest trend window: momentum.trend_windows_days "
        "reaches 400 days back, plus momentum.lookup_tolerance_days 3 = 403",
        id="trend-window-longer-than-history",
    ),
    pytest.param(
        _set("playbooks/lookback_days", 60),
        "playbooks.lookback_days",
        "playbooks.lookback_days 60 is shorter than playbooks.rules.advocacy.trigger.days needs (91 days",
        id="lookback-shorter-than-sustained-rule",
    ),
    pytest.param(
        _set("playbooks/rules/rapid_decline/trigger/within_days", 150),
        "playbooks.lookback_days",
        "playbooks.lookback_days 120 is shorter than playbooks.rules.rapid_decline.trigger.within_days needs "
        "(151 days",
        id="drop-rule-longer-than-lookback",
    ),
    pytest.param(
        _set("playbooks/lookback_days", 0),
        "playbooks.lookback_days",
        "Input should be greater than 0 (got 0)",
        id="lookback-not-positive",
    ),
    pytest.param(
        _set("carry_forward/decay_per_day", 0),
        "carry_forward.decay_per_day",
        "Input should be greater than 0 (got 0)",
        id="carry-forward-decay-zero",
    ),
    pytest.param(
        _set("carry_forward/decay_per_day", 1.1),
        "carry_forward.decay_per_day",
        "Input should be less than or equal to 1 (got 1.1)",
        id="carry-forward-decay-above-one",
    ),
    pytest.param(
        _set("carry_forward/max_days", 0),
        "carry_forward.max_days",
        "Input should be greater than or equal to 1 (got 0)",
        id="carry-forward-max-days-zero",
    ),
    pytest.param(
        _set("carry_forward/max_days", 400),
        "carry_forward.max_days",
        "Input should be less than or equal to 365 (got 400)",
        id="carry-forward-max-days-too-long",
    ),
    pytest.param(
        _set("scoring/model_probability/model_name", "churn_classifier"),
        "scoring.model_probability.model_name",
        "unknown key (not part of the model schema)",
        id="retired-model-name-key",
    ),
    pytest.param(
        _set("scoring/model_probability/calibration", "isotonic"),
        "scoring.model_probability.calibration",
        "unknown key (not part of the model schema)",
        id="retired-calibration-key",
    ),
    pytest.param(
        _set("weights/mid_market/usage", "lots"),
        "weights.mid_market.usage",
        "Input should be a valid number, unable to parse string as a number (got 'lots')",
        id="wrong-type",
    ),
]


@pytest.mark.parametrize(("edit", "key", "problem"), BAD_CONFIGS)
def test_bad_config_names_file_key_and_problem(
    default_dict: dict[str, Any],
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    key: str,
    problem: str,
) -> None:
    edit(default_dict)
    path = _write(tmp_path, default_dict, "bad_model.yaml")
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path)
    err = caught.value
    assert isinstance(err, ValueError)
    assert err.source == str(path)
    assert [p.key for p in err.problems] == [key], str(err)
    assert problem in err.problems[0].message
    line = err.problems[0].line
    assert line is not None
    assert str(err) == f"{path}:{line}: {key}: {err.problems[0].message}"


def test_error_line_points_at_the_offending_key(tmp_path: Path) -> None:
    text = default_model_text()
    before, sep, after = text.partition("        cap: 40\n")
    assert sep, "default YAML layout changed; adjust the test"
    path = tmp_path / "negative_cap.yaml"
    path.write_text(before + "        cap: -40\n" + after, encoding="utf-8")
    expected_line = before.count("\n") + 1
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path)
    assert str(caught.value) == (
        f"{path}:{expected_line}: dimensions.usage.signals.logins_per_user_week.cap: "
        "cap -40 is negative; a rate signal can't be negative"
    )


def test_several_problems_are_reported_together(default_dict: dict[str, Any], tmp_path: Path) -> None:
    default_dict["weights"]["smb"]["usage"] = 35
    default_dict["weights"]["enterprise"]["usage"] = 10
    path = _write(tmp_path, default_dict)
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 2 problems in model config\n")
    assert "weights.enterprise: weights sum to 80.0, must sum to 100" in message
    assert "weights.smb: weights sum to 95.0, must sum to 100" in message


def test_weight_sum_tolerates_float_error(default_dict: dict[str, Any]) -> None:
    default_dict["weights"]["smb"] = {
        "usage": 100 / 3,
        "engagement": 100 / 3,
        "value": 100 / 3,
        "relationship": 0,
        "support": 0,
        "financial": 0,
    }
    assert sum(model_config_from_dict(default_dict).weights_for("smb").values()) == pytest.approx(100)
    default_dict["weights"]["smb"]["usage"] += 1e-5
    with pytest.raises(ModelConfigError, match=r"weights\.smb: weights sum to 100\.00001, must sum to 100"):
        model_config_from_dict(default_dict)


def test_missing_dimension_weight_and_unknown_dimension(default_dict: dict[str, Any]) -> None:
    weights = default_dict["weights"]["enterprise"]
    weights["usage_dim"] = weights.pop("usage")
    with pytest.raises(ModelConfigError) as caught:
        model_config_from_dict(default_dict, "edited")
    assert {(p.key, p.message) for p in caught.value.problems} == {
        ("weights.enterprise.usage_dim", "unknown dimension 'usage_dim'; did you mean 'usage'?"),
        ("weights.enterprise", "missing weight for dimension 'usage'"),
    }


def test_duplicate_signal_id_across_dimensions(default_dict: dict[str, Any]) -> None:
    signals = default_dict["dimensions"]
    signals["value"]["signals"]["open_tickets"] = copy.deepcopy(signals["support"]["signals"]["open_tickets"])
    with pytest.raises(
        ModelConfigError,
        match=r"dimensions\.value\.signals\.open_tickets: signal id 'open_tickets' "
        r"is already defined in dimension 'support'",
    ):
        model_config_from_dict(default_dict)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "model.yaml"
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path)
    assert str(caught.value) == f"{path}: file not found"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: v1\ndimensions:\n  usage: [unclosed\nweights: {}\n", encoding="utf-8")
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: YAML syntax error: ")
    assert "column" in message


def test_duplicate_yaml_key_is_an_error() -> None:
    text = default_model_text().replace("version: v1\n", "version: v1\nversion: v2\n", 1)
    with pytest.raises(ModelConfigError) as caught:
        validate_model_config_text(text, "dup.yaml")
    assert re.match(
        r"dup\.yaml:\d+: YAML syntax error: .*duplicate key 'version' \(first defined on line \d+\)",
        str(caught.value),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "the file is empty"), ("- a\n- b\n", "the top level must be a mapping of keys, got a list")],
)
def test_non_mapping_documents(text: str, problem: str) -> None:
    with pytest.raises(ModelConfigError, match=re.escape(problem)) as caught:
        validate_model_config_text(text, "cli-input.yaml")
    assert str(caught.value).startswith("cli-input.yaml")


def test_validate_text_uses_the_given_source_name(default_dict: dict[str, Any]) -> None:
    default_dict["weights"]["smb"]["usage"] = 35
    with pytest.raises(ModelConfigError) as caught:
        validate_model_config_text(yaml.safe_dump(default_dict), "candidate/v2.yaml")
    assert str(caught.value).startswith("candidate/v2.yaml:")
    assert str(caught.value).endswith("weights.smb: weights sum to 95.0, must sum to 100")


def test_error_survives_pickling(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(tmp_path / "missing.yaml")
    clone = pickle.loads(pickle.dumps(caught.value))
    assert str(clone) == str(caught.value) and clone.problems == caught.value.problems


# ------------------------------------------------------------------ model decisions in the YAML


def test_carry_forward_confidence_decays_and_stops_at_the_maximum(model: ModelConfig) -> None:
    carry = model.carry_forward
    assert carry.confidence(1) == 0.9 and carry.confidence(2) == 0.9**2 and carry.confidence(30) == 0.9**30
    assert carry.confidence(0) == 0.0 and carry.confidence(31) == 0.0


def test_older_models_without_the_new_keys_keep_the_old_constants(default_dict: dict[str, Any]) -> None:
    del default_dict["carry_forward"], default_dict["momentum"]["history_days"]
    del default_dict["playbooks"]["lookback_days"]
    older = model_config_from_dict(default_dict)
    assert older.config_hash == _default_model().config_hash  # the defaults are the YAML's values


def test_a_signal_no_code_computes_is_a_load_error(default_dict: dict[str, Any], tmp_path: Path) -> None:
    from healthscore.pipeline.signals import COMPUTED_SIGNALS

    assert set(_default_model().all_signal_ids()) <= COMPUTED_SIGNALS
    assert load_model_config(computable_signals=COMPUTED_SIGNALS).config_hash == _default_model().config_hash
    spec = dict(default_dict["dimensions"]["relationship"]["signals"]["latest_nps"], description="NPS, misspelt")
    default_dict["dimensions"]["relationship"]["signals"]["latest_nsp"] = spec
    path = _write(tmp_path, default_dict)
    load_model_config(path)  # without the pipeline's catalogue the schema alone cannot tell
    with pytest.raises(ModelConfigError) as caught:
        load_model_config(path, computable_signals=COMPUTED_SIGNALS)
    (problem,) = caught.value.problems
    assert problem.key == "dimensions.relationship.signals.latest_nsp" and problem.line is not None
    assert problem.message.startswith("no code computes signal 'latest_nsp'; did you mean 'latest_nps'?")
    with pytest.raises(ModelConfigError, match="no code computes signal 'latest_nsp'"):
        model_config_from_dict(default_dict, computable_signals=COMPUTED_SIGNALS)


def test_stored_models_may_carry_retired_keys(default_dict: dict[str, Any]) -> None:
    default_dict["scoring"]["model_probability"].update(model_name="churn_classifier", calibration="isotonic")
    with pytest.raises(ModelConfigError, match="model_probability.model_name: unknown key"):
        model_config_from_dict(default_dict)
    stored = model_config_from_dict(default_dict, "model_versions[v1]", stored=True)
    assert stored.config_hash == _default_model().config_hash
