"""healthscore.evaluation.metrics agrees with scikit-learn on the same data, and says "undefined" when it is."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from healthscore.evaluation import metrics as m


def _data(seed: int, n: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    risk = np.clip(0.3 * y + rng.normal(0.4, 0.2, n), 0, 1)
    if ties:
        risk = np.round(risk, 1)  # many exact ties, as health scores rounded to integers have
    return y, risk


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_rank_metrics_match_sklearn(seed: int, ties: bool) -> None:
    y, risk = _data(seed, ties=ties)
    assert m.roc_auc(y, risk) == pytest.approx(skm.roc_auc_score(y, risk), abs=1e-12)
    assert m.brier_score(y, risk) == pytest.approx(skm.brier_score_loss(y, risk), abs=1e-12)

    fpr, tpr, thr = skm.roc_curve(y, risk, drop_intermediate=False)
    curve = m.roc_curve(y, risk)
    assert curve is not None
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], thr[1:])

    for target in (0.5, 0.85, 0.95):
        ok = (1 - fpr) >= target
        expected = tpr[ok].max()
        op = m.recall_at_specificity(y, risk, target)
        assert op.recall == pytest.approx(expected)
        assert op.specificity is not None and op.specificity >= target
        # The threshold it reports reproduces its figures.
        cm = m.confusion_at(y, risk, op.threshold)
        assert cm.recall == pytest.approx(op.recall) and cm.specificity == pytest.approx(op.specificity)

    for target in (0.5, 0.75, 0.9):
        op = m.specificity_at_recall(y, risk, target)
        ok = tpr >= target
        assert op.specificity == pytest.approx((1 - fpr[ok]).max())
        assert op.recall is not None and op.recall >= target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_figures_match_sklearn(seed: int) -> None:
    y, risk = _data(seed)
    pred = (risk >= 0.5).astype(int)
    cm = m.confusion_matrix(y, pred)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (cm.tn, cm.fp, cm.fn, cm.tp) == (tn, fp, fn, tp)
    assert cm.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    assert cm.precision == pytest.approx(skm.precision_score(y, pred))
    assert cm.recall == pytest.approx(skm.recall_score(y, pred))
    assert cm.sensitivity == cm.recall
    assert cm.specificity == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert cm.f1 == pytest.approx(skm.f1_score(y, pred))
    assert m.confusion_at(y, risk, 0.5) == cm


def test_top_decile_lift_is_the_churn_rate_of_the_riskiest_tenth_over_the_base_rate() -> None:
    y, risk = _data(5, n=1000)  # continuous risk: no ties at the cut
    top = np.argsort(-risk)[:100]
    assert m.top_decile_lift(y, risk) == pytest.approx(y[top].mean() / y.mean())
    # Ties at the cut: the expected value of a random tie-break, whatever the row order.
    y2 = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0] * 10)
    r2 = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1] * 10)
    lift = m.top_decile_lift(y2, r2)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(4000):
        perm = rng.permutation(y2.size)
        order = perm[np.argsort(-r2[perm], kind="stable")][:10]
        draws.append(y2[order].mean() / y2.mean())
    assert lift == pytest.approx(np.mean(draws), rel=0.02)
    assert m.top_decile_lift(y2[::-1], r2[::-1]) == pytest.approx(lift)


def test_health_scores_become_risk_so_that_healthier_means_less_risky() -> None:
    score = np.array([90.0, 10.0, 50.0, 100.0, 0.0])
    y = np.array([0, 1, 0, 0, 1])
    risk = m.risk_from_health(score)
    np.testing.assert_allclose(risk, [0.1, 0.9, 0.5, 0.0, 1.0])
    assert m.roc_auc(y, risk) == 1.0
    np.testing.assert_array_equal(m.predicted_at_risk(score, 50), [False, True, False, False, True])


def test_one_class_only_is_undefined_not_a_crash() -> None:
    y = np.zeros(50, dtype=int)
    risk = np.linspace(0, 1, 50)
    assert m.roc_auc(y, risk) is None
    assert m.roc_curve(y, risk) is None
    assert m.recall_at_specificity(y, risk).recall is None
    assert m.top_decile_lift(y, risk) is None  # nobody churned: no base rate to lift
    report = m.binary_metrics(y, risk, threshold=0.5)
    assert report["auc"] is None and "one class" in report["auc_note"]
    assert report["decision"]["recall"] is None  # no churners to catch
    assert report["decision"]["specificity"] == pytest.approx(0.5)
    assert report["brier"] == pytest.approx(skm.brier_score_loss(y, risk))
    json.dumps(report, allow_nan=False)  # JSON-ready: no NaN, no infinity

    all_churned = m.binary_metrics(np.ones(10, dtype=int), np.full(10, 0.3), threshold=0.5)
    assert all_churned["auc"] is None and all_churned["decision"]["precision"] is None
    assert all_churned["top_decile_lift"] == pytest.approx(1.0)


def test_empty_and_missing_values() -> None:
    empty = m.binary_metrics([], [], threshold=0.5)
    assert empty["n"] == 0 and empty["auc"] is None and empty["brier"] is None
    assert empty["decision"]["accuracy"] is None
    y = np.array([0, 1, 0, 1, 1, 0])
    risk = np.array([0.1, 0.9, np.nan, 0.8, np.nan, 0.2])
    report = m.binary_metrics(y, risk, threshold=0.5)
    assert (report["n"], report["n_excluded"], report["positives"], report["negatives"]) == (4, 2, 2, 2)
    assert report["auc"] == 1.0 and report["decision"]["f1"] == 1.0


def test_summary_matches_sklearn_and_has_sample_sizes() -> None:
    y, risk = _data(7)
    score = 100 * (1 - risk)
    report = m.binary_metrics(y, m.risk_from_health(score), y_pred=m.predicted_at_risk(score, 55))
    assert report["n"] == y.size and report["positives"] == y.sum()
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, risk))
    pred = (score < 55).astype(int)
    assert report["decision"]["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert report["decision"]["tp"] + report["decision"]["fn"] == y.sum()
    json.dumps(report, allow_nan=False)
    # Every threshold flagging nobody (specificity 1.0 required, no perfect point): recall 0, no threshold.
    strict = m.binary_metrics(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5]), specificity_target=1.0)
    assert strict["recall_at_specificity"] == {
        "specificity_target": 1.0,
        "threshold": None,
        "recall": 0.0,
        "specificity": 1.0,
    }


@pytest.mark.parametrize(
    "y,message",
    [([0, 2, 1], "0 or 1, found 2"), ([0, np.nan, 1], "missing values"), ([0, 0.5, 1], "found 0.5")],
)
def test_bad_outcomes_are_refused_with_the_value(y: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        m.roc_auc(y, [0.1, 0.2, 0.3])


def test_brier_refuses_a_health_score_passed_as_probability() -> None:
    with pytest.raises(ValueError, match="risk_from_health"):
        m.brier_score([0, 1], [80.0, 20.0])
